#include "sched/storage_access.h"

#include <algorithm>

#include "ir/registry.h"

namespace memfit::sched {
namespace {

// True when output `index` of `op` writes the storage it lives in.
bool WritesOutput(const Graph& graph, const Op& op, const OpSchema* schema, size_t index) {
  if (!graph.tensor(op.outputs[index]).alias_of) return true;  // new storage
  if (!schema) return true;                                    // opaque alias: assume an update
  return schema->inplace && index == 0;
}

}  // namespace

std::vector<std::vector<StorageAccess>> ComputeStorageAccesses(const Graph& graph) {
  std::vector<std::vector<StorageAccess>> accesses(graph.num_ops());
  for (const Op& op : graph.ops()) {
    auto& list = accesses[op.id.index()];
    const OpSchema* schema = FindOpSchema(op.type);
    for (TensorId in : op.inputs) list.push_back({graph.StorageRoot(in), false});
    for (size_t i : MutatedInputs(graph, op)) list.push_back({graph.StorageRoot(op.inputs[i]), true});
    for (size_t i = 0; i < op.outputs.size(); ++i) {
      list.push_back({graph.StorageRoot(op.outputs[i]), WritesOutput(graph, op, schema, i)});
    }
    // One entry per storage; a write wins over a read.
    std::sort(list.begin(), list.end(), [](const StorageAccess& a, const StorageAccess& b) {
      return a.storage != b.storage ? a.storage < b.storage : a.writes > b.writes;
    });
    list.erase(std::unique(list.begin(), list.end(),
                           [](const StorageAccess& a, const StorageAccess& b) { return a.storage == b.storage; }),
               list.end());
  }
  return accesses;
}

}  // namespace memfit::sched
