#include "autodiff/training_graph.h"

#include <fmt/format.h>

#include <cmath>

#include "autodiff/backward_rules.h"
#include "ir/builder.h"
#include "ir/registry.h"
#include "util/error.h"

namespace memfit {
namespace {

using autodiff::BackwardContext;

TensorId FindLoss(const Graph& forward) {
  std::vector<TensorId> candidates = forward.outputs;
  if (candidates.empty()) {
    for (const Tensor& t : forward.tensors()) {
      if (t.role == TensorRole::kOutput) candidates.push_back(t.id);
    }
  }
  if (candidates.size() != 1) {
    Fail("graph '{}' must have exactly one output (the loss) to differentiate, found {}", forward.name,
         candidates.size());
  }
  const Tensor& loss = forward.tensor(candidates[0]);
  if (loss.numel() != 1 || !IsFloatingPoint(loss.dtype)) {
    Fail("the loss {} must be a floating-point scalar", ToString(loss));
  }
  return loss.id;
}

// Tensors whose value depends on a parameter through differentiable ops.
std::vector<bool> RequiresGrad(const Graph& g) {
  std::vector<bool> requires_grad(g.num_tensors(), false);
  for (const Tensor& t : g.tensors()) requires_grad[t.id.index()] = t.role == TensorRole::kParameter && !t.alias_of;
  for (const Op& op : g.ops()) {
    if (autodiff::IsNonDifferentiable(op.type)) continue;
    bool any = false;
    for (TensorId in : op.inputs) any = any || requires_grad[in.index()];
    if (!any) continue;
    for (TensorId out : op.outputs) requires_grad[out.index()] = IsFloatingPoint(g.tensor(out).dtype);
  }
  return requires_grad;
}

// Tensors the loss depends on.
std::vector<bool> ReachesLoss(const Graph& g, TensorId loss) {
  std::vector<bool> reaches(g.num_tensors(), false);
  reaches[loss.index()] = true;
  for (auto it = g.ops().rbegin(); it != g.ops().rend(); ++it) {
    bool any = false;
    for (TensorId out : it->outputs) any = any || reaches[out.index()];
    if (!any) continue;
    for (TensorId in : it->inputs) reaches[in.index()] = true;
  }
  return reaches;
}

class Differentiator {
 public:
  Differentiator(const Graph& forward, const TrainingOptions& options)
      : forward_(forward), options_(options), builder_(Graph(forward), forward.tensors().empty() ? DType::kF32 : ParamDType(forward)) {}

  Graph Run() {
    const TensorId loss = FindLoss(forward_);
    const std::vector<bool> requires_grad = RequiresGrad(forward_);
    const std::vector<bool> reaches = ReachesLoss(forward_, loss);
    grads_.assign(forward_.num_tensors(), std::nullopt);
    builder_.mutable_graph().outputs = {loss};

    builder_.set_phase(Phase::kBackward);
    grads_[loss.index()] = builder_.Call("aten.ones_like", {loss}, {{"memory_format", std::string("preserve_format")}}, "loss.grad_seed");

    for (auto it = forward_.ops().rbegin(); it != forward_.ops().rend(); ++it) {
      const Op& op = *it;
      std::vector<std::optional<TensorId>> out_grads;
      bool any_out = false;
      for (TensorId out : op.outputs) {
        out_grads.push_back(grads_[out.index()]);
        any_out = any_out || grads_[out.index()].has_value();
      }
      std::vector<bool> needs(op.inputs.size());
      bool any_in = false;
      for (size_t i = 0; i < op.inputs.size(); ++i) {
        needs[i] = requires_grad[op.inputs[i].index()] && reaches[op.inputs[i].index()];
        any_in = any_in || needs[i];
      }
      if (!any_out || !any_in) continue;
      const autodiff::BackwardRule* rule = autodiff::FindBackwardRule(op.type);
      if (!rule) {
        Fail("op '{}' ({}) is on the path to the loss but memfit has no backward rule for it", op.name,
             op.qualified_type());
      }
      BackwardContext ctx{builder_, op, out_grads, needs, "bwd." + op.name};
      const auto in_grads = (*rule)(ctx);
      for (size_t i = 0; i < op.inputs.size() && i < in_grads.size(); ++i) {
        if (needs[i] && in_grads[i]) Accumulate(op.inputs[i], *in_grads[i], op.name);
      }
    }

    FinishParameterGradients();
    if (options_.update_weights) {
      builder_.set_phase(Phase::kOptimizer);
      for (const auto& [param, grad] : param_grads_) AppendUpdate(param, grad);
    } else {
      for (const auto& [param, grad] : param_grads_) builder_.MarkOutput(grad);
    }
    Graph result = builder_.Finish();
    result.metadata["training"] = options_.update_weights ? std::string(ToString(options_.optimizer)) : "no-update";
    return result;
  }

 private:
  static DType ParamDType(const Graph& g) {
    for (const Tensor& t : g.tensors()) {
      if (t.role == TensorRole::kParameter) return t.dtype;
    }
    return DType::kF32;
  }

  void Accumulate(TensorId target, TensorId grad, const std::string& op_name) {
    auto& slot = grads_[target.index()];
    if (!slot) {
      slot = grad;
      return;
    }
    slot = builder_.Call("aten.add.Tensor", {*slot, grad}, {}, "bwd.accumulate." + forward_.tensor(target).name);
  }

  // Renames each parameter's final gradient "<param>.grad" with role
  // gradient; a gradient that is a parameter's own value or shared with
  // another parameter is first copied so each parameter has its own.
  void FinishParameterGradients() {
    std::vector<bool> taken(builder_.graph().num_tensors(), false);
    for (const Tensor& t : forward_.tensors()) {
      if (t.role != TensorRole::kParameter || t.alias_of || !grads_[t.id.index()]) continue;
      TensorId grad = *grads_[t.id.index()];
      const Tensor& g = builder_.tensor(grad);
      if (taken[grad.index()] || !g.producer || g.shape != t.shape) {
        grad = builder_.Call("aten.clone", {grad}, {}, "bwd.copy." + t.name);
      }
      taken[grad.index()] = true;
      Tensor& gt = builder_.mutable_graph().mutable_tensor(grad);
      gt.role = TensorRole::kGradient;
      gt.name = t.name + ".grad";
      param_grads_.push_back({t.id, grad});
    }
  }

  TensorId State(const Tensor& param, std::string_view suffix) {
    return builder_.Source(param.name + "." + std::string(suffix), param.shape, param.dtype,
                           TensorRole::kOptimizerState);
  }

  // One steady-state step of torch.optim.SGD / torch.optim.Adam
  // (single-tensor implementation), in place.
  void AppendUpdate(TensorId param_id, TensorId grad) {
    const Tensor param = builder_.tensor(param_id);
    const std::string name = "optimizer." + param.name;
    TensorId updated;
    if (options_.optimizer == OptimizerKind::kSgd) {
      TensorId direction = grad;
      if (options_.momentum != 0.0) {
        TensorId buf = State(param, "momentum_buffer");
        buf = builder_.Call("aten.mul_.Scalar", {buf}, {{"other", options_.momentum}}, name);
        direction = builder_.Call("aten.add_.Tensor", {buf, grad}, {{"alpha", 1.0}}, name);
      }
      updated = builder_.Call("aten.add_.Tensor", {param_id, direction}, {{"alpha", -options_.learning_rate}}, name);
    } else {
      const double b1 = options_.beta1, b2 = options_.beta2;
      const double step = static_cast<double>(options_.step);
      const double bias_correction1 = 1.0 - std::pow(b1, step);
      const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(b2, step));
      const double step_size = options_.learning_rate / bias_correction1;
      TensorId m = State(param, "exp_avg");
      TensorId v = State(param, "exp_avg_sq");
      m = builder_.Call("aten.mul_.Scalar", {m}, {{"other", b1}}, name);
      m = builder_.Call("aten.add_.Tensor", {m, grad}, {{"alpha", 1.0 - b1}}, name);
      v = builder_.Call("aten.mul_.Scalar", {v}, {{"other", b2}}, name);
      v = builder_.Call("aten.addcmul_", {v, grad, grad}, {{"value", 1.0 - b2}}, name);
      TensorId denom = builder_.Call("aten.sqrt", {v}, {}, name);
      denom = builder_.Call("aten.div.Scalar", {denom}, {{"other", bias_correction2_sqrt}}, name);
      denom = builder_.Call("aten.add_.Scalar", {denom}, {{"other", options_.epsilon}}, name);
      updated = builder_.Call("aten.addcdiv_", {param_id, m, denom}, {{"value", -step_size}}, name);
    }
    builder_.MarkOutput(updated);
  }

  const Graph& forward_;
  const TrainingOptions& options_;
  GraphBuilder builder_;
  std::vector<std::optional<TensorId>> grads_;
  std::vector<std::pair<TensorId, TensorId>> param_grads_;
};

}  // namespace

std::string_view ToString(OptimizerKind kind) { return kind == OptimizerKind::kSgd ? "sgd" : "adam"; }

std::optional<OptimizerKind> ParseOptimizerKind(std::string_view name) {
  if (name == "sgd") return OptimizerKind::kSgd;
  if (name == "adam") return OptimizerKind::kAdam;
  return std::nullopt;
}

Graph BuildTrainingGraph(const Graph& forward, const TrainingOptions& options) {
  if (options.learning_rate <= 0 || !std::isfinite(options.learning_rate)) {
    Fail("learning rate {} must be a positive number", options.learning_rate);
  }
  return Differentiator(forward, options).Run();
}

std::vector<std::pair<TensorId, std::optional<TensorId>>> ParameterGradients(const Graph& training) {
  std::unordered_map<std::string, TensorId> by_name;
  for (const Tensor& t : training.tensors()) {
    if (t.role == TensorRole::kGradient) by_name.emplace(t.name, t.id);
  }
  std::vector<std::pair<TensorId, std::optional<TensorId>>> result;
  for (const Tensor& t : training.tensors()) {
    if (t.role != TensorRole::kParameter || t.alias_of) continue;
    auto it = by_name.find(t.name + ".grad");
    result.push_back({t.id, it == by_name.end() ? std::nullopt : std::optional<TensorId>(it->second)});
  }
  return result;
}

}  // namespace memfit
