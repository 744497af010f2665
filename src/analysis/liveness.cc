#include "analysis/liveness.h"

#include <algorithm>

#include "analysis/storage_table.h"
#include "ir/registry.h"
#include "util/error.h"

namespace memfit {

std::vector<OpId> ProgramOrder(const Graph& graph) {
  std::vector<OpId> order;
  order.reserve(graph.num_ops());
  for (const Op& op : graph.ops()) order.push_back(op.id);
  return order;
}

int64_t OpWorkspaceBytes(const Graph& graph, const Op& op, std::span<const int64_t> given) {
  if (given.empty()) return ComputeOpCost(graph, op).workspace_bytes;
  if (given.size() != graph.num_ops()) Fail("internal: {} workspace figures for {} ops", given.size(), graph.num_ops());
  return given[op.id.index()];
}

Liveness ComputeLiveness(const Graph& graph, const LivenessOptions& options) {
  return ComputeLiveness(graph, ProgramOrder(graph), options);
}

Liveness ComputeLiveness(const Graph& graph, const std::vector<OpId>& order, const LivenessOptions& options) {
  const int64_t steps = static_cast<int64_t>(order.size());
  if (order.size() != graph.num_ops()) Fail("the order has {} steps for {} ops", order.size(), graph.num_ops());
  constexpr int64_t kUnset = -1;
  const StorageTable table(graph);
  const size_t num_storages = table.num_storages();
  std::vector<int64_t> start(num_storages, kUnset), end(num_storages, kUnset);
  auto touch = [&](TensorId t, int64_t step) {
    const size_t s = table.index_of(t);
    if (start[s] == kUnset || step < start[s]) start[s] = step;
    end[s] = std::max(end[s], step + 1);
  };
  std::vector<int64_t> workspace(order.size(), 0);
  for (int64_t step = 0; step < steps; ++step) {
    const Op& op = graph.op(order[step]);
    for (TensorId out : op.outputs) touch(out, step);
    for (TensorId in : op.inputs) touch(in, step);
    if (options.count_workspace) workspace[step] = OpWorkspaceBytes(graph, op, options.workspace_bytes);
  }
  for (size_t s = 0; s < num_storages; ++s) {
    const StorageInfo& info = table.storage(s);
    if (info.source) {
      // A source exists before the first step; a persistent one (unless the
      // options say otherwise) lives over every step.
      const bool whole = options.sources_live_throughout && info.persistent;
      if (whole || start[s] != kUnset) start[s] = 0;
      if (whole) end[s] = steps;
    }
    if (options.outputs_live_to_end && info.output && start[s] != kUnset) end[s] = steps;
  }

  Liveness result;
  std::vector<int64_t> delta(order.size() + 1, 0);
  for (size_t s = 0; s < num_storages; ++s) {
    if (start[s] == kUnset) continue;
    const StorageInfo& info = table.storage(s);
    result.storages.push_back({info.root, info.size_bytes, start[s], end[s]});
    delta[start[s]] += info.size_bytes;
    delta[end[s]] -= info.size_bytes;
  }
  result.live_bytes.resize(order.size());
  int64_t live = 0;
  for (int64_t step = 0; step < steps; ++step) {
    live += delta[step];
    result.live_bytes[step] = live + workspace[step];
    if (result.live_bytes[step] > result.peak_bytes) {
      result.peak_bytes = result.live_bytes[step];
      result.peak_step = step;
    }
  }
  return result;
}

}  // namespace memfit
