#include "ir/graph.h"

#include <cassert>

namespace memfit {

TensorId Graph::AddTensor(Tensor tensor) {
  tensor.id = TensorId(static_cast<uint32_t>(tensors_.size()));
  tensors_.push_back(std::move(tensor));
  return tensors_.back().id;
}

OpId Graph::AddOp(Op op) {
  op.id = OpId(static_cast<uint32_t>(ops_.size()));
  for (TensorId out : op.outputs) {
    if (contains(out)) tensors_[out.index()].producer = op.id;
  }
  ops_.push_back(std::move(op));
  return ops_.back().id;
}

TensorId Graph::StorageRoot(TensorId id) const {
  // Validated graphs have acyclic alias chains; the bound guards others.
  for (size_t hops = 0; hops <= tensors_.size(); ++hops) {
    const Tensor& t = tensor(id);
    if (!t.alias_of || !contains(*t.alias_of)) return id;
    id = *t.alias_of;
  }
  return id;
}

std::vector<std::vector<OpId>> ComputeConsumers(const Graph& graph) {
  std::vector<std::vector<OpId>> consumers(graph.num_tensors());
  for (const Op& op : graph.ops()) {
    for (TensorId in : op.inputs) {
      if (!graph.contains(in)) continue;
      auto& list = consumers[in.index()];
      if (list.empty() || list.back() != op.id) list.push_back(op.id);
    }
  }
  return consumers;
}

}  // namespace memfit
