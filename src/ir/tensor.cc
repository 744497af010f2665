#include "ir/tensor.h"

#include <fmt/format.h>

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

std::string ToString(const Tensor& tensor) {
  return fmt::format("t{} '{}' {}{} {}", tensor.id.value, tensor.name, ToString(tensor.dtype),
                     ShapeToString(tensor.shape), ToString(tensor.role));
}

std::ostream& operator<<(std::ostream& os, const Tensor& tensor) { return os << ToString(tensor); }

}  // namespace memfit
