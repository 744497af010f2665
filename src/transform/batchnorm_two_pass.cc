#include "transform/batchnorm_two_pass.h"

#include <string>

#include <fmt/format.h>

#include "ir/registry.h"
#include "transform/fission.h"
#include "transform/rewriter.h"

namespace memfit {
namespace {

// Where native_batch_norm_backward's tensor arguments are among its inputs
// (grad_out, input, weight?, running_mean?, running_var?, save_mean?,
// save_invstd?).
struct BackwardArgs {
  std::optional<size_t> grad_out, input, weight, save_mean, save_invstd;
};

BackwardArgs Resolve(const Op& op) {
  const auto at = ResolveTensorArgs(FindOpSchema(op.type)->tensor_args, op, op.inputs.size());
  return {at.at(0), at.at(1), at.at(2), at.at(5), at.at(6)};
}

// native_batch_norm's (input, weight?, bias?, running_mean?, running_var?).
struct ForwardArgs {
  std::optional<size_t> input, weight, bias, running_mean, running_var;
};

ForwardArgs ResolveForward(const Op& op) {
  const auto at = ResolveTensorArgs(FindOpSchema(op.type)->tensor_args, op, op.inputs.size());
  return {at.at(0), at.at(1), at.at(2), at.at(3), at.at(4)};
}

// A bool attribute, true where absent; nullopt where it is not a bool.
std::optional<bool> Training(const Op& op, const std::string& name) {
  auto it = op.attrs.find(name);
  if (it == op.attrs.end()) return true;
  if (const bool* on = std::get_if<bool>(&it->second)) return *on;
  return std::nullopt;
}


class TwoPassRewriter : public Rewriter {
 public:
  using Rewriter::Rewriter;

  void EmitTwoPass(const Op& op) {
    const BackwardArgs a = Resolve(op);
    const std::vector<bool> mask = OutputMask(op);
    const Tensor& x = in_.tensor(op.inputs[*a.input]);
    const Tensor& grad_input = in_.tensor(op.outputs[0]);
    const int64_t channels = x.shape[1];
    const double per_channel = static_cast<double>(x.numel()) / static_cast<double>(channels);

    // Pass 1: the sums (the weight and bias gradients, which keep their names).
    Op sums = op;
    for (TensorId& t : sums.inputs) t = Whole(t);
    sums.attrs["output_mask"] = std::vector<int64_t>{0, 1, 1};
    sums.outputs.clear();
    size_t next = 1;  // op.outputs[next]: the original's next result
    Tensor dot = Intermediate(grad_input, op.name + ".sum_dy_xhat"), total = Intermediate(grad_input, op.name + ".sum_dy");
    const Tensor* dot_like = mask[1] ? &in_.tensor(op.outputs[next++]) : &dot;
    const Tensor* total_like = mask[2] ? &in_.tensor(op.outputs[next++]) : &total;
    const std::vector<TensorId> s = Emit(std::move(sums), {dot_like, total_like}, "");
    if (mask[1]) SetWhole(op.outputs[1], s[0]);
    if (mask[2]) SetWhole(op.outputs[mask[1] ? 2 : 1], s[1]);

    // The per-channel coefficients.
    auto small = [&](std::string_view what, std::string type, std::string overload, std::vector<TensorId> inputs,
                     Attrs attrs = {}) {
      return Small(op, grad_input, what, std::move(type), std::move(overload), std::move(inputs), std::move(attrs));
    };
    const TensorId invstd = Whole(op.inputs[*a.save_invstd]), mean = Whole(op.inputs[*a.save_mean]);
    const TensorId k = a.weight ? small("k", "aten.mul", "Tensor", {Whole(op.inputs[*a.weight]), invstd}) : invstd;
    const TensorId k_invstd = small("k_invstd", "aten.mul", "Tensor", {k, invstd});
    const TensorId k_invstd_dot = small("k_invstd_dot", "aten.mul", "Tensor", {k_invstd, s[0]});
    const TensorId b = small("b", "aten.mul", "Scalar", {k_invstd_dot}, {{"other", -1.0 / per_channel}});
    const TensorId k_total = small("k_total", "aten.mul", "Tensor", {k, s[1]});
    const TensorId k_mean = small("k_mean", "aten.mul", "Scalar", {k_total}, {{"other", -1.0 / per_channel}});
    const TensorId c = small("c", "aten.addcmul", "", {k_mean, b, mean}, {{"value", -1.0}});
    auto broadcast = [&](TensorId t, std::string_view what) { return Channels(op, grad_input, x, t, what); };
    const TensorId k4 = broadcast(k, "k_channels"), b4 = broadcast(b, "b_channels"), c4 = broadcast(c, "c_channels");

    // Pass 2, element-wise: grad_input = (c + dy·k) + x·b.
    Tensor partial_like = Intermediate(grad_input, op.name + ".grad_input_dy");
    const TensorId partial =
        Emit(NewOp(op.name + ".grad_input_dy", "aten.addcmul", "", {c4, Whole(op.inputs[*a.grad_out]), k4}, {},
                   op.phase),
             {&partial_like}, "")[0];
    const TensorId dx = Emit(NewOp(op.name + ".grad_input", "aten.addcmul", "", {partial, Whole(op.inputs[*a.input]), b4},
                                   {}, op.phase),
                             {&grad_input}, "")[0];
    SetWhole(op.outputs[0], dx);
  }

  void EmitTwoPassForward(const Op& op) {
    const ForwardArgs a = ResolveForward(op);
    const Tensor& x = in_.tensor(op.inputs[*a.input]);
    const Tensor& y = in_.tensor(op.outputs[0]);
    auto small = [&](std::string_view what, std::string type, std::string overload, std::vector<TensorId> inputs,
                     Attrs attrs = {}) {
      return Small(op, y, what, std::move(type), std::move(overload), std::move(inputs), std::move(attrs));
    };

    // Pass 1: the batch statistics (and the running statistics' update),
    // under the original op's name; the mean is the saved mean.
    std::vector<TensorId> inputs{Whole(op.inputs[*a.input])};
    Attrs attrs{{"momentum", DoubleAttr(op, "momentum", 0.1)}};
    for (auto [arg, name] : {std::pair{a.running_mean, "running_mean"}, std::pair{a.running_var, "running_var"}}) {
      if (arg) {
        inputs.push_back(Whole(op.inputs[*arg]));
      } else {
        attrs[name] = AttrValue{std::monostate{}};
      }
    }
    Tensor var = Intermediate(in_.tensor(op.outputs[2]), op.name + ".var");
    Op update = op;  // keeps the name
    update.type = "aten.batch_norm_update_stats";
    update.overload.clear();
    update.inputs = std::move(inputs);
    update.attrs = std::move(attrs);
    update.outputs.clear();
    const std::vector<TensorId> stats = Emit(std::move(update), {&in_.tensor(op.outputs[1]), &var}, "");
    SetWhole(op.outputs[1], stats[0]);

    // The saved inverse std, and the coefficients of y = x·k + c.
    const TensorId var_eps = small("var_eps", "aten.add", "Scalar", {stats[1]}, {{"other", DoubleAttr(op, "eps", 1e-5)}});
    const TensorId invstd =
        Emit(NewOp(op.name + ".invstd", "aten.rsqrt", "", {var_eps}, {}, op.phase), {&in_.tensor(op.outputs[2])}, "")[0];
    SetWhole(op.outputs[2], invstd);
    const TensorId k = a.weight ? small("scale", "aten.mul", "Tensor", {Whole(op.inputs[*a.weight]), invstd}) : invstd;
    const TensorId c =
        a.bias ? small("shift", "aten.addcmul", "", {Whole(op.inputs[*a.bias]), stats[0], k}, {{"value", -1.0}})
               : small("shift", "aten.mul", "Scalar", {small("mean_scale", "aten.mul", "Tensor", {stats[0], k})},
                       {{"other", -1.0}});

    // Pass 2, element-wise.
    const TensorId k4 = Channels(op, y, x, k, "scale_channels"), c4 = Channels(op, y, x, c, "shift_channels");
    SetWhole(op.outputs[0],
             Emit(NewOp(op.name + ".normalize", "aten.addcmul", "", {c4, Whole(op.inputs[*a.input]), k4}, {}, op.phase),
                  {&y}, "")[0]);
  }

 private:
  // A per-channel op of `op`'s rewrite, "<op>.<what>".
  TensorId Small(const Op& op, const Tensor& like_base, std::string_view what, std::string type, std::string overload,
                 std::vector<TensorId> inputs, Attrs attrs) {
    Tensor like = Intermediate(like_base, fmt::format("{}.{}", op.name, what));
    return Emit(NewOp(fmt::format("{}.{}", op.name, what), std::move(type), std::move(overload), std::move(inputs),
                      std::move(attrs), op.phase),
                {&like}, "")[0];
  }

  // Per-channel `t` viewed as [1, C, 1, ...] against `x`.
  TensorId Channels(const Op& op, const Tensor& like_base, const Tensor& x, TensorId t, std::string_view what) {
    std::vector<int64_t> shape(x.shape.size(), 1);
    shape[1] = x.shape[1];
    return Small(op, like_base, what, "aten.reshape", "", {t}, {{"shape", shape}});
  }

  // A new intermediate of the step, named `name` (made unique).
  Tensor Intermediate(const Tensor& like, const std::string& name) {
    Tensor t = like;
    t.name = UniqueTensorName(name);
    t.role = TensorRole::kActivation;
    return t;
  }
};

// The graph with every op of `ops` (every op, when empty) that `accepts`
// rewritten by `emit`; graph.metadata records "<record>N ops". The graph
// unchanged when nothing was rewritten.
Graph RewriteEach(const Graph& graph, const std::vector<OpId>& ops, bool (*accepts)(const Graph&, const Op&),
                  void (TwoPassRewriter::*emit)(const Op&), std::string_view record) {
  std::vector<bool> chosen(graph.num_ops(), ops.empty());
  for (OpId id : ops) chosen.at(id.index()) = true;
  TwoPassRewriter b(graph);
  int rewritten = 0;
  for (const Op& op : graph.ops()) {
    if (chosen[op.id.index()] && accepts(graph, op)) {
      (b.*emit)(op);
      ++rewritten;
    } else {
      b.CopyOp(op);
    }
  }
  if (rewritten == 0) return graph;
  b.MapOutputs();
  Graph out = b.Take();
  out.metadata[fmt::format("fission.{}", RecordedFissions(graph).size())] = fmt::format("{}{} ops", record, rewritten);
  return out;
}

}  // namespace

bool HasTwoPassBackward(const Graph& graph, const Op& op) {
  if (op.type != "aten.native_batch_norm_backward") return false;
  if (Training(op, "train") != true) return false;
  if (!OutputMask(op)[0] || op.outputs.empty()) return false;
  const BackwardArgs a = Resolve(op);
  if (!a.grad_out || !a.input || !a.save_mean || !a.save_invstd) return false;
  const Tensor& x = graph.tensor(op.inputs[*a.input]);
  if (x.shape.size() < 2 || (x.dtype != DType::kF32 && x.dtype != DType::kF64)) return false;
  const Shape per_channel{x.shape[1]};
  for (std::optional<size_t> i : {a.weight, a.save_mean, a.save_invstd}) {
    if (!i) continue;
    const Tensor& t = graph.tensor(op.inputs[*i]);
    if (t.dtype != x.dtype || t.shape != per_channel) return false;
  }
  const Tensor& dy = graph.tensor(op.inputs[*a.grad_out]);
  return dy.dtype == x.dtype && dy.shape == x.shape;
}

Graph TwoPassBatchNormBackward(const Graph& graph, const std::vector<OpId>& ops) {
  return RewriteEach(graph, ops, HasTwoPassBackward, &TwoPassRewriter::EmitTwoPass, kTwoPassRecordPrefix);
}

bool HasTwoPassForward(const Graph& graph, const Op& op) {
  if (op.type != "aten.native_batch_norm" || Training(op, "training") != true || op.outputs.size() != 3) return false;
  const ForwardArgs a = ResolveForward(op);
  if (!a.input) return false;
  const Tensor& x = graph.tensor(op.inputs[*a.input]);
  if (x.shape.size() < 2 || (x.dtype != DType::kF32 && x.dtype != DType::kF64)) return false;
  const Shape per_channel{x.shape[1]};
  for (std::optional<size_t> i : {a.weight, a.bias, a.running_mean, a.running_var}) {
    if (!i) continue;
    const Tensor& t = graph.tensor(op.inputs[*i]);
    if (t.dtype != x.dtype || t.shape != per_channel) return false;
  }
  return true;
}

Graph TwoPassBatchNormForward(const Graph& graph, const std::vector<OpId>& ops) {
  return RewriteEach(graph, ops, HasTwoPassForward, &TwoPassRewriter::EmitTwoPassForward,
                     kTwoPassForwardRecordPrefix);
}

}  // namespace memfit
