#include "ir/tensor.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

namespace memfit {
namespace {

constexpr std::array<std::string_view, 7> kRoleNames = {
    "parameter", "buffer", "input", "activation", "gradient", "optimizer_state", "output"};

}  // namespace

std::string_view ToString(TensorRole role) { return kRoleNames[static_cast<size_t>(role)]; }

std::optional<TensorRole> ParseTensorRole(std::string_view name) {
  for (size_t i = 0; i < kRoleNames.size(); ++i) {
    if (kRoleNames[i] == name) return static_cast<TensorRole>(i);
  }
  return std::nullopt;
}

bool IsSourceRole(TensorRole role) {
  return role == TensorRole::kParameter || role == TensorRole::kBuffer ||
         role == TensorRole::kInput || role == TensorRole::kOptimizerState;
}

std::optional<int64_t> CheckedNumel(const Shape& shape) {
  int64_t numel = 1;
  for (int64_t dim : shape) {
    if (dim < 0) return std::nullopt;
    if (dim != 0 && numel > kMaxTensorBytes / dim) return std::nullopt;
    numel *= dim;
  }
  return numel;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t dim : shape) n *= dim;
  return n;
}

int64_t Tensor::size_bytes() const { return numel() * DTypeBytes(dtype); }

std::string ShapeToString(const Shape& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

std::optional<Shape> Broadcast(const Shape& a, const Shape& b) {
  const size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) return std::nullopt;
    out[i] = da == 1 ? db : da;
  }
  return out;
}

std::string ToString(const Tensor& tensor) {
  return fmt::format("t{} '{}' {}{} {}", tensor.id.value, tensor.name, ToString(tensor.dtype),
                     ShapeToString(tensor.shape), ToString(tensor.role));
}

std::ostream& operator<<(std::ostream& os, const Tensor& tensor) { return os << ToString(tensor); }

}  // namespace memfit
