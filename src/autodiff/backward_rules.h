// Backward rules: for one forward op, the ATen ops that compute the
// gradients of its inputs from the gradients of its outputs. Internal to
// autodiff.
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "ir/builder.h"

namespace memfit::autodiff {

struct BackwardContext {
  GraphBuilder& builder;
  const Op& op;
  // Gradient of each output of `op`, when one reaches it.
  const std::vector<std::optional<TensorId>>& output_grads;
  // Whether each input of `op` needs a gradient.
  const std::vector<bool>& needs_grad;
  // Name prefix for the backward ops.
  std::string name;

  TensorId in(size_t i) const { return op.inputs.at(i); }
  TensorId out(size_t i) const { return op.outputs.at(i); }
  // By value: a reference into the builder dangles once a rule's next Call
  // adds a tensor (the tensors grow and move; a training graph imported
  // from ONNX reduced a gradient to the shape [] so).
  Shape shape(TensorId t) const { return builder.shape(t); }
  // Output gradient i, or a zeros tensor of the output's shape.
  TensorId grad(size_t i = 0) const;
  // A zeros tensor of t's shape and dtype.
  TensorId Zeros(TensorId t) const;
  TensorId Call(std::string_view type, std::vector<TensorId> inputs, Attrs attrs = {}) const {
    return builder.Call(type, std::move(inputs), std::move(attrs), name);
  }
  std::vector<TensorId> CallMulti(std::string_view type, std::vector<TensorId> inputs, Attrs attrs = {}) const {
    return builder.CallMulti(type, std::move(inputs), std::move(attrs), name);
  }
  // Sums `grad` over broadcast dims so it has `shape` (for broadcasting ops).
  TensorId ReduceTo(TensorId grad, const Shape& shape) const;
  // grad viewed as `shape` (cloning first when grad is not contiguous).
  TensorId Reshape(TensorId grad, const Shape& shape) const;
};

// Gradients for each input of ctx.op (nullopt where none is needed).
using BackwardRule = std::function<std::vector<std::optional<TensorId>>(const BackwardContext&)>;

// The rule for `type` ("aten.mm"), or nullptr when there is none.
const BackwardRule* FindBackwardRule(std::string_view type);

// Ops whose outputs carry no gradient (integer results, random draws of
// fresh values, factories): autodiff stops there.
bool IsNonDifferentiable(std::string_view type);

}  // namespace memfit::autodiff
