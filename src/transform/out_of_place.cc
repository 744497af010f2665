#include "transform/out_of_place.h"

#include <fmt/format.h>

#include <string_view>
#include <unordered_map>
#include <vector>

#include "ir/registry.h"
#include "transform/rewriter.h"

namespace memfit {
namespace {

// In-place element-wise ops whose out-of-place twin (the name without the
// trailing '_') takes the same arguments and computes the same values.
bool HasOutOfPlaceTwin(std::string_view type) {
  static constexpr std::string_view kTwins[] = {
      "aten.relu_",    "aten.hardtanh_", "aten.silu_",     "aten.hardswish_", "aten.hardsigmoid_", "aten.leaky_relu_",
      "aten.gelu_",    "aten.sigmoid_",  "aten.tanh_",     "aten.exp_",       "aten.neg_",         "aten.sqrt_",
      "aten.clamp_",   "aten.clamp_min_", "aten.clamp_max_", "aten.add_",     "aten.sub_",         "aten.mul_",
      "aten.div_",     "aten.addcmul_",  "aten.addcdiv_",  "aten.masked_fill_", "aten.lerp_"};
  for (std::string_view t : kTwins) {
    if (t == type) return true;
  }
  return false;
}

// A clone that copies `x` as it is: no other memory format asked for.
bool CopiesAsIs(const Op& op) {
  if (op.type != "aten.clone") return false;
  auto it = op.attrs.find("memory_format");
  if (it == op.attrs.end() || std::holds_alternative<std::monostate>(it->second)) return true;
  const std::string* format = std::get_if<std::string>(&it->second);
  return format && (*format == "torch.preserve_format" || *format == "preserve_format");
}

struct Rewrites {
  std::vector<bool> rewrite;                   // by op: written out of place
  std::vector<bool> dropped;                   // by op: a copy whose readers read its input instead
  std::unordered_map<size_t, TensorId> reads;  // a dropped copy's result -> the input it copied
  int rewritten = 0;
};

Rewrites FindRewrites(const Graph& g, bool only_copied) {
  const size_t num_tensors = g.num_tensors();
  Rewrites plan{std::vector<bool>(g.num_ops(), false), std::vector<bool>(g.num_ops(), false), {}, 0};
  auto root = [&g](TensorId t) { return g.StorageRoot(t).index(); };

  // Per storage root: the tensors in it, whether it is written by an op's
  // mutated arguments, whether it is a result of the step. Per tensor: the
  // ops reading it (program order).
  std::vector<std::vector<TensorId>> members(num_tensors);
  std::vector<bool> mutated(num_tensors, false), result(num_tensors, false);
  std::vector<std::vector<OpId>> readers(num_tensors);
  for (const Tensor& t : g.tensors()) members[root(t.id)].push_back(t.id);
  for (TensorId t : g.outputs) result[root(t)] = true;
  for (const Op& op : g.ops()) {
    for (TensorId t : op.inputs) {
      if (readers[t.index()].empty() || readers[t.index()].back() != op.id) readers[t.index()].push_back(op.id);
    }
    for (size_t i : MutatedInputs(g, op)) mutated[root(op.inputs[i])] = true;
  }
  // Whether `t` is `y` or aliases it through a chain of alias_of.
  auto derives_from = [&g](TensorId t, TensorId y) {
    for (std::optional<TensorId> at = t; at; at = g.tensor(*at).alias_of) {
      if (*at == y) return true;
    }
    return false;
  };

  for (const Op& op : g.ops()) {
    if (!HasOutOfPlaceTwin(op.type) || op.inputs.empty() || op.outputs.size() != 1) continue;
    const Tensor& x = g.tensor(op.inputs[0]);
    const Tensor& y = g.tensor(op.outputs[0]);
    if (y.alias_of != x.id || x.alias_of || !x.producer || result[x.id.index()] || mutated[x.id.index()]) continue;
    if (y.shape != x.shape || y.dtype != x.dtype || !x.strides.empty() || x.storage_offset != 0) continue;
    // The storage holds x, y and what aliases y only; nothing after the op
    // reads x (it would read y's values through x's name).
    bool other_member = false;
    for (TensorId m : members[x.id.index()]) other_member |= m != x.id && !derives_from(m, y.id);
    if (other_member || readers[x.id.index()].back() != op.id) continue;
    bool other_alias = false;  // x twice (x * x) is fine; another tensor of its storage is not
    for (size_t i = 1; i < op.inputs.size(); ++i) other_alias |= op.inputs[i] != x.id && root(op.inputs[i]) == x.id.index();
    if (other_alias) continue;
    // The copies of x made before the op.
    std::vector<OpId> copies;
    for (OpId reader : readers[x.id.index()]) {
      const Op& c = g.op(reader);
      if (reader == op.id || !CopiesAsIs(c) || c.outputs.size() != 1) continue;
      const Tensor& copy = g.tensor(c.outputs[0]);
      if (copy.alias_of || members[copy.id.index()].size() != 1 || result[copy.id.index()] ||
          mutated[copy.id.index()] || copy.shape != x.shape || copy.dtype != x.dtype || !copy.strides.empty()) {
        continue;
      }
      copies.push_back(reader);
    }
    if (only_copied && copies.empty()) continue;
    // The twin must infer y's type from the same arguments.
    const OpSchema* twin = FindOpSchema(op.type.substr(0, op.type.size() - 1));
    if (!twin) continue;
    Op probe = op;
    probe.type = twin->type;
    const std::vector<TensorType> types = InferOutputTypes(*twin, g, probe);
    if (types.size() != 1 || types[0].shape != y.shape || types[0].dtype != y.dtype) continue;
    plan.rewrite[op.id.index()] = true;
    ++plan.rewritten;
    for (OpId c : copies) {
      plan.dropped[c.index()] = true;
      plan.reads[g.op(c).outputs[0].index()] = x.id;
    }
  }
  return plan;
}

}  // namespace

OutOfPlaceResult WriteOutOfPlace(const Graph& graph, bool only_copied) {
  const Rewrites plan = FindRewrites(graph, only_copied);
  if (plan.rewritten == 0) return {graph, 0, 0};
  Rewriter b(graph);
  int dropped = 0;
  for (const Op& op : graph.ops()) {
    if (plan.dropped[op.id.index()]) {
      const TensorId copy = op.outputs[0];
      b.SetWhole(copy, b.Whole(plan.reads.at(copy.index())));
      ++dropped;
    } else if (plan.rewrite[op.id.index()]) {
      std::vector<TensorId> inputs;
      for (TensorId t : op.inputs) inputs.push_back(b.Whole(t));
      Op twin = b.NewOp(op.name, op.type.substr(0, op.type.size() - 1), op.overload, std::move(inputs), op.attrs,
                        op.phase);
      const Tensor& y = graph.tensor(op.outputs[0]);
      b.SetWhole(y.id, b.EmitNamed(std::move(twin), y));
    } else {
      b.CopyOp(op);
    }
  }
  b.MapOutputs();
  Graph out = b.Take();
  out.metadata[fmt::format("rewrite.{}", RecordedRewrites(graph).size())] =
      fmt::format("{}{} (copies dropped: {})", kOutOfPlaceRecordPrefix, plan.rewritten, dropped);
  return {std::move(out), plan.rewritten, dropped};
}

std::vector<std::string> RecordedRewrites(const Graph& graph) { return NumberedRecords(graph, "rewrite"); }

}  // namespace memfit
