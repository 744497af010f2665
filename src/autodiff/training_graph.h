// Autodiff: from a forward graph ending in a scalar loss, build the graph of
// one training step — forward, backward, optimizer update — in the ATen
// vocabulary PyTorch's autograd produces (aten.convolution_backward,
// aten.native_layer_norm_backward, aten._softmax_backward_data, ...).
//
// Reverse mode over program order: every op with a differentiable input
// that reaches the loss gets its backward ops, gradient contributions from
// several uses are summed with aten.add, and every trainable parameter ends
// with exactly one gradient tensor ("<param>.grad", role gradient). The
// update is in place (aten.add_, aten.addcdiv_, ...), as torch.optim does it
// for one steady-state step, with optimizer state tensors as sources.
#pragma once

#include <optional>
#include <ostream>
#include <string_view>

#include "ir/graph.h"

namespace memfit {

enum class OptimizerKind : uint8_t { kSgd, kAdam };
std::string_view ToString(OptimizerKind kind);
inline std::ostream& operator<<(std::ostream& os, OptimizerKind kind) { return os << ToString(kind); }
std::optional<OptimizerKind> ParseOptimizerKind(std::string_view name);

struct TrainingOptions {
  // Append the optimizer update; when false the gradients are outputs of the
  // step (MAGIS's update_weight = False).
  bool update_weights = true;
  OptimizerKind optimizer = OptimizerKind::kSgd;
  double learning_rate = 1e-3;
  // SGD momentum; 0 means plain SGD without a momentum buffer.
  double momentum = 0.0;
  // Adam hyper-parameters.
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
  // Adam's step count used for bias correction.
  int64_t step = 1;
};

// Builds the training graph of `forward`, whose single graph output (or the
// tensor with role output) is the scalar loss. Throws Error when there is no
// scalar loss or an op on the path to the loss has no backward rule (naming
// the op).
Graph BuildTrainingGraph(const Graph& forward, const TrainingOptions& options = {});

// The gradient tensor of every parameter of a training graph, by parameter
// (empty optional for parameters the loss does not depend on).
std::vector<std::pair<TensorId, std::optional<TensorId>>> ParameterGradients(const Graph& training);

}  // namespace memfit
