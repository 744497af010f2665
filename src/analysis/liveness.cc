#include "analysis/liveness.h"

#include <algorithm>

#include "ir/registry.h"
#include "util/error.h"

namespace memfit {

std::vector<OpId> ProgramOrder(const Graph& graph) {
  std::vector<OpId> order;
  order.reserve(graph.num_ops());
  for (const Op& op : graph.ops()) order.push_back(op.id);
  return order;
}

Liveness ComputeLiveness(const Graph& graph, const LivenessOptions& options) {
  return ComputeLiveness(graph, ProgramOrder(graph), options);
}

Liveness ComputeLiveness(const Graph& graph, const std::vector<OpId>& order, const LivenessOptions& options) {
  const int64_t steps = static_cast<int64_t>(order.size());
  if (order.size() != graph.num_ops()) Fail("the order has {} steps for {} ops", order.size(), graph.num_ops());
  constexpr int64_t kUnset = -1;
  std::vector<int64_t> start(graph.num_tensors(), kUnset), end(graph.num_tensors(), kUnset);
  std::vector<TensorId> root(graph.num_tensors());
  for (const Tensor& t : graph.tensors()) root[t.id.index()] = graph.StorageRoot(t.id);

  auto touch = [&](TensorId t, int64_t step) {
    const size_t r = root[t.index()].index();
    if (start[r] == kUnset || step < start[r]) start[r] = step;
    end[r] = std::max(end[r], step + 1);
  };
  std::vector<int64_t> workspace(order.size(), 0);
  for (int64_t step = 0; step < steps; ++step) {
    const Op& op = graph.op(order[step]);
    for (TensorId out : op.outputs) touch(out, step);
    for (TensorId in : op.inputs) touch(in, step);
    if (options.count_workspace) workspace[step] = ComputeOpCost(graph, op).workspace_bytes;
  }
  for (const Tensor& t : graph.tensors()) {
    const size_t r = root[t.id.index()].index();
    if (!t.producer && !t.alias_of) {
      // A source: it exists before the first step.
      const bool whole = options.sources_live_throughout && t.role != TensorRole::kInput;
      if (whole || start[r] != kUnset) start[r] = 0;
      if (whole) end[r] = steps;
    }
  }
  if (options.outputs_live_to_end) {
    for (TensorId out : graph.outputs) {
      const size_t r = root[out.index()].index();
      if (start[r] != kUnset) end[r] = steps;
    }
  }

  Liveness result;
  std::vector<int64_t> delta(order.size() + 1, 0);
  for (const Tensor& t : graph.tensors()) {
    const size_t i = t.id.index();
    if (root[i] != t.id || start[i] == kUnset) continue;
    result.storages.push_back({t.id, t.size_bytes(), start[i], end[i]});
    delta[start[i]] += t.size_bytes();
    delta[end[i]] -= t.size_bytes();
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
