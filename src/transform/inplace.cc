#include "transform/inplace.h"

#include <string_view>

#include "ir/registry.h"

namespace memfit {
namespace {

// Out-of-place op -> its in-place variant (same overloads, same attributes).
std::string_view InPlaceVariant(std::string_view type) {
  if (type == "aten.relu") return "aten.relu_";
  if (type == "aten.add") return "aten.add_";
  if (type == "aten.sub") return "aten.sub_";
  if (type == "aten.mul") return "aten.mul_";
  if (type == "aten.div") return "aten.div_";
  if (type == "aten.sqrt") return "aten.sqrt_";
  return {};
}

}  // namespace

InPlaceResult ReuseDeadInputs(const Graph& graph) {
  InPlaceResult result{graph};
  Graph& g = result.graph;
  const size_t num = g.num_tensors();
  // Storages by root (Graph::StorageRoot follows alias_of): a rewritten
  // op's result joins its input's storage by its new alias_of.
  auto root = [&g](TensorId t) { return g.StorageRoot(t).index(); };

  // Per storage root: the last op reading it, whether a view of it exists,
  // whether it is a result of the step or exists before it.
  std::vector<int64_t> last_read(num, -1);
  std::vector<bool> viewed(num, false), pinned(num, false);
  for (const Op& op : g.ops()) {
    for (TensorId t : op.inputs) {
      const size_t r = root(t);
      last_read[r] = std::max<int64_t>(last_read[r], op.id.value);
    }
    const OpSchema* schema = FindOpSchema(op.type);
    for (TensorId t : op.outputs) {
      if (g.tensor(t).alias_of && (!schema || schema->is_view())) viewed[root(t)] = true;
    }
  }
  for (TensorId t : g.outputs) pinned[root(t)] = true;
  for (const Tensor& t : g.tensors()) {
    if (!t.producer) pinned[root(t.id)] = true;
  }

  for (const Op& original : graph.ops()) {
    const std::string_view variant = InPlaceVariant(original.type);
    if (variant.empty() || original.inputs.empty() || original.outputs.size() != 1) continue;
    const Tensor& x = g.tensor(original.inputs[0]);
    const Tensor& out = g.tensor(original.outputs[0]);
    const size_t r = root(x.id);
    if (pinned[r] || viewed[r] || last_read[r] != original.id.value) continue;
    if (out.alias_of || out.shape != x.shape || out.dtype != x.dtype || !x.strides.empty()) continue;
    // The same tensor twice (x * x) is fine; another input in x's storage
    // (a view, excluded above, or an older version) is not.
    bool other_alias = false;
    for (size_t i = 1; i < original.inputs.size(); ++i) {
      other_alias |= original.inputs[i] != x.id && root(original.inputs[i]) == r;
    }
    if (other_alias) continue;

    Op& op = g.mutable_op(original.id);
    op.type = std::string(variant);
    Tensor& y = g.mutable_tensor(original.outputs[0]);
    const size_t y_root = root(y.id);  // y itself: its result owned its storage
    y.alias_of = x.id;
    last_read[r] = last_read[y_root];
    viewed[r] = viewed[r] || viewed[y_root];
    pinned[r] = pinned[r] || pinned[y_root];
    ++result.rewritten;
    result.bytes_reused += y.size_bytes();
  }
  return result;
}

}  // namespace memfit
