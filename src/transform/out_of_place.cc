#include "transform/out_of_place.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
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

// Per storage root: the tensors in it, whether it is written by an op's
// mutated arguments, whether it is a result of the step. Per tensor: the
// ops reading it (program order).
struct StorageFacts {
  std::vector<std::vector<TensorId>> members;
  std::vector<bool> mutated, result;
  std::vector<std::vector<OpId>> readers;
};

StorageFacts FactsOf(const Graph& g) {
  const size_t num_tensors = g.num_tensors();
  StorageFacts f{std::vector<std::vector<TensorId>>(num_tensors), std::vector<bool>(num_tensors, false),
                 std::vector<bool>(num_tensors, false), std::vector<std::vector<OpId>>(num_tensors)};
  auto root = [&g](TensorId t) { return g.StorageRoot(t).index(); };
  for (const Tensor& t : g.tensors()) f.members[root(t.id)].push_back(t.id);
  for (TensorId t : g.outputs) f.result[root(t)] = true;
  for (const Op& op : g.ops()) {
    for (TensorId t : op.inputs) {
      auto& r = f.readers[t.index()];
      if (r.empty() || r.back() != op.id) r.push_back(op.id);
    }
    for (size_t i : MutatedInputs(g, op)) f.mutated[root(op.inputs[i])] = true;
  }
  return f;
}

// Whether `t` is `y` or aliases it through a chain of alias_of.
bool DerivesFrom(const Graph& g, TensorId t, TensorId y) {
  for (std::optional<TensorId> at = t; at; at = g.tensor(*at).alias_of) {
    if (*at == y) return true;
  }
  return false;
}

// A dropout mask's chain (out_of_place.h): the allocation, the draw into it,
// the scales after it.
struct MaskChain {
  OpId alloc, draw;
  std::vector<OpId> scales;
};

bool IsContiguousAllocation(const Graph& g, const Op& alloc) {
  if (alloc.outputs.size() != 1) return false;
  const bool like = alloc.type == "aten.empty_like";
  if (!(like && alloc.inputs.size() == 1) && !(alloc.type == "aten.empty" && alloc.inputs.empty())) return false;
  auto it = alloc.attrs.find("memory_format");
  const std::string* format = it == alloc.attrs.end() ? nullptr : std::get_if<std::string>(&it->second);
  if (format && (*format == "contiguous_format" || *format == "torch.contiguous_format")) return true;
  // Absent or preserved (the default): contiguous for empty, where x is for empty_like.
  const bool preserve = it == alloc.attrs.end() || std::holds_alternative<std::monostate>(it->second) ||
                        (format && (*format == "preserve_format" || *format == "torch.preserve_format"));
  return preserve && (!like || g.tensor(alloc.inputs[0]).strides.empty());
}

std::vector<MaskChain> FindMaskChains(const Graph& g, const StorageFacts& facts) {
  const auto& readers = facts.readers;
  const auto& members = facts.members;
  const auto& result = facts.result;
  std::vector<MaskChain> chains;
  for (const Op& draw : g.ops()) {
    if (draw.type != "aten.bernoulli_" || draw.inputs.size() != 1 || draw.outputs.size() != 1) continue;
    auto p = draw.attrs.find("p");  // bernoulli_.float(self, p): bernoulli.p takes the same p
    if (p == draw.attrs.end() || !std::holds_alternative<double>(p->second)) continue;
    const Tensor& n = g.tensor(draw.inputs[0]);
    if (n.alias_of || !n.producer || !n.strides.empty() || !IsFloatingPoint(n.dtype) || result[n.id.index()]) continue;
    if (readers[n.id.index()].size() != 1 || !IsContiguousAllocation(g, g.op(*n.producer))) continue;
    MaskChain chain{*n.producer, draw.id, {}};
    std::vector<TensorId> chain_tensors{n.id, draw.outputs[0]};
    for (;;) {
      const std::vector<OpId>& next = readers[chain_tensors.back().index()];
      if (next.size() != 1) break;
      const Op& scale = g.op(next[0]);
      if ((scale.type != "aten.div_" && scale.type != "aten.mul_") || scale.overload != "Scalar" ||
          scale.inputs.size() != 1 || scale.outputs.size() != 1) {
        break;
      }
      chain.scales.push_back(scale.id);
      chain_tensors.push_back(scale.outputs[0]);
    }
    // The storage holds the chain's tensors and what derives from its last.
    bool other = false;
    for (TensorId m : members[n.id.index()]) {
      if (std::find(chain_tensors.begin(), chain_tensors.end(), m) != chain_tensors.end()) continue;
      other |= !DerivesFrom(g, m, chain_tensors.back());
    }
    for (size_t i = 0; i + 1 < chain_tensors.size(); ++i) {
      other |= g.tensor(chain_tensors[i + 1]).alias_of != chain_tensors[i];
    }
    if (!other) chains.push_back(std::move(chain));
  }
  return chains;
}

Rewrites FindRewrites(const Graph& g, const StorageFacts& facts, bool only_copied) {
  Rewrites plan{std::vector<bool>(g.num_ops(), false), std::vector<bool>(g.num_ops(), false), {}, 0};
  auto root = [&g](TensorId t) { return g.StorageRoot(t).index(); };
  const auto& members = facts.members;
  const auto& mutated = facts.mutated;
  const auto& result = facts.result;
  const auto& readers = facts.readers;

  for (const Op& op : g.ops()) {
    if (!HasOutOfPlaceTwin(op.type) || op.inputs.empty() || op.outputs.size() != 1) continue;
    const Tensor& x = g.tensor(op.inputs[0]);
    const Tensor& y = g.tensor(op.outputs[0]);
    if (y.alias_of != x.id || x.alias_of || !x.producer || result[x.id.index()] || mutated[x.id.index()]) continue;
    if (y.shape != x.shape || y.dtype != x.dtype || !x.strides.empty() || x.storage_offset != 0) continue;
    // The storage holds x, y and what aliases y only; nothing after the op
    // reads x (it would read y's values through x's name).
    bool other_member = false;
    for (TensorId m : members[x.id.index()]) other_member |= m != x.id && !DerivesFrom(g, m, y.id);
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
  const StorageFacts facts = FactsOf(graph);
  const Rewrites plan = FindRewrites(graph, facts, only_copied);
  const std::vector<MaskChain> masks = FindMaskChains(graph, facts);
  // By op: its mask chain (which FindRewrites leaves alone: bernoulli_ has no
  // twin, and the scales write a view of the draw's storage).
  std::unordered_map<size_t, const MaskChain*> mask_of_op;
  int rewritten = plan.rewritten;
  for (const MaskChain& m : masks) {
    for (OpId id : m.scales) mask_of_op[id.index()] = &m;
    mask_of_op[m.alloc.index()] = mask_of_op[m.draw.index()] = &m;
    rewritten += 1 + static_cast<int>(m.scales.size());
  }
  if (rewritten == 0) return {graph, 0, 0};
  Rewriter b(graph);
  int dropped = 0;
  for (const Op& op : graph.ops()) {
    if (auto it = mask_of_op.find(op.id.index()); it != mask_of_op.end()) {
      const Tensor& out = graph.tensor(op.outputs[0]);
      if (op.id == it->second->alloc) {
        // The template: one element, seen as the whole shape.
        Op one = b.NewOp(op.name, "aten.empty", "memory_format", {},
                         {{"size", Shape{}}, {"dtype", std::string(ToString(out.dtype))}}, op.phase);
        const TensorId element = b.Emit(std::move(one), {&out}, ".element")[0];
        Op expand = b.NewOp(op.name + ".template", "aten.expand", "", {element}, {{"size", out.shape}}, op.phase);
        b.SetWhole(out.id, b.EmitNamed(std::move(expand), out));
      } else {
        // bernoulli_.float -> bernoulli.p; div_ / mul_ -> div / mul (Scalar).
        const bool draw = op.id == it->second->draw;
        Op twin = b.NewOp(op.name, op.type.substr(0, op.type.size() - 1), draw ? "p" : op.overload,
                          {b.Whole(op.inputs[0])}, op.attrs, op.phase);
        b.SetWhole(out.id, b.EmitNamed(std::move(twin), out));
      }
    } else if (plan.dropped[op.id.index()]) {
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
      fmt::format("{}{} (copies dropped: {})", kOutOfPlaceRecordPrefix, rewritten, dropped);
  return {std::move(out), rewritten, dropped};
}

std::vector<std::string> RecordedRewrites(const Graph& graph) { return NumberedRecords(graph, "rewrite"); }

}  // namespace memfit
