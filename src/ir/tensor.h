// A tensor of the graph: one SSA value with a shape, an element type, a role
// in the training step, and the storage it lives in.
//
// Storage and aliasing: a tensor either owns a new storage or aliases the
// storage of another tensor (`alias_of`): views (aten.view, aten.permute,
// aten.t, ...) and the results of in-place ops (aten.add_, the optimizer's
// updates) share their base's storage. Memory is counted per storage, never
// per alias; StorageRoot() in graph.h walks `alias_of` to the owner.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "ir/dtype.h"
#include "ir/ids.h"

namespace memfit {

using Shape = std::vector<int64_t>;

enum class TensorRole : uint8_t {
  kParameter,       // trainable weight; lives for the whole step
  kBuffer,          // non-trainable state (BatchNorm running stats); whole step
  kInput,           // data fed to the step (images, token ids, labels)
  kActivation,      // intermediate result of the forward or backward pass
  kGradient,        // gradient of a parameter (or of an activation)
  kOptimizerState,  // Adam moments, SGD momentum; whole step
  kOutput,          // a result of the step (the loss)
};

std::string_view ToString(TensorRole role);
std::optional<TensorRole> ParseTensorRole(std::string_view name);
inline std::ostream& operator<<(std::ostream& os, TensorRole r) { return os << ToString(r); }

// True for roles whose tensors exist before the step starts (no producer op).
bool IsSourceRole(TensorRole role);

struct Tensor {
  TensorId id;
  std::string name;
  Shape shape;
  DType dtype = DType::kF32;
  TensorRole role = TensorRole::kActivation;
  // The tensor whose storage this one shares (a view or an in-place result).
  std::optional<TensorId> alias_of;
  // Element strides; empty means contiguous row-major.
  std::vector<int64_t> strides;
  // Offset into the storage, in elements (views only).
  int64_t storage_offset = 0;
  // The elements of a small integer (or bool) source whose values are known
  // (an ONNX import's integer constants, its shape arithmetic folded at
  // import: Swin's window indices), row-major; empty: generated when run.
  std::vector<int64_t> values;
  // The op that produces this tensor; empty for source tensors.
  std::optional<OpId> producer;

  // Number of elements; 1 for a scalar (rank 0).
  int64_t numel() const;
  // numel() * element size. Shapes are validated so that this cannot overflow.
  int64_t size_bytes() const;
};

// "[2, 3, 4]".
std::string ShapeToString(const Shape& shape);
// NumPy-style broadcast of two shapes; nullopt when incompatible.
std::optional<Shape> Broadcast(const Shape& a, const Shape& b);
// "t12 'layer0.attn.q' f32[2, 3] activation".
std::string ToString(const Tensor& tensor);
std::ostream& operator<<(std::ostream& os, const Tensor& tensor);

// Largest byte size memfit accepts for one tensor (2^56 bytes, 64 PiB); sums
// of many such sizes still fit in int64.
inline constexpr int64_t kMaxTensorBytes = int64_t{1} << 56;

// Returns the element count of `shape`, or nullopt when a dimension is
// negative or the product exceeds kMaxTensorBytes.
std::optional<int64_t> CheckedNumel(const Shape& shape);

}  // namespace memfit
