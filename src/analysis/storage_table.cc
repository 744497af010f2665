#include "analysis/storage_table.h"

namespace memfit {

StorageTable::StorageTable(const Graph& graph) {
  const size_t n = graph.num_tensors();
  std::vector<TensorId> root(n);
  for (const Tensor& t : graph.tensors()) root[t.id.index()] = graph.StorageRoot(t.id);
  index_of_.assign(n, 0);
  for (const Tensor& t : graph.tensors()) {
    if (root[t.id.index()] != t.id) continue;
    index_of_[t.id.index()] = static_cast<uint32_t>(storages_.size());
    StorageInfo& s = storages_.emplace_back();
    s.root = t.id;
    s.size_bytes = t.size_bytes();
    s.source = !t.producer && !t.alias_of;
    s.persistent = s.source && t.role != TensorRole::kInput;
  }
  for (const Tensor& t : graph.tensors()) index_of_[t.id.index()] = index_of_[root[t.id.index()].index()];
  for (TensorId out : graph.outputs) {
    if (graph.contains(out)) storages_[index_of_[out.index()]].output = true;
  }
  // Ops run in program order, so appending an op only when it is not the
  // last one listed keeps every list in program order without duplicates.
  auto add = [](std::vector<OpId>& list, OpId op) {
    if (list.empty() || list.back() != op) list.push_back(op);
  };
  for (const Op& op : graph.ops()) {
    for (TensorId in : op.inputs) {
      StorageInfo& s = storages_[index_of_[in.index()]];
      add(s.readers, op.id);
      add(s.touchers, op.id);
    }
    for (TensorId out : op.outputs) {
      StorageInfo& s = storages_[index_of_[out.index()]];
      add(s.writers, op.id);
      add(s.touchers, op.id);
    }
  }
}

}  // namespace memfit
