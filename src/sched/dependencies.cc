#include "sched/dependencies.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "ir/registry.h"
#include "sched/storage_access.h"

namespace memfit::sched {
namespace {

using Edge = std::pair<uint32_t, uint32_t>;  // {from, to} op indices

// CSR rows of `edges`: per target op its sources (predecessor lists) or per
// source op its targets (successor lists); each row sorted, no duplicates.
void BuildRows(const std::vector<Edge>& edges, size_t num_ops, bool by_target, std::vector<uint32_t>& begin,
               std::vector<OpId>& items) {
  std::vector<uint32_t> count(num_ops + 1, 0);
  for (const auto& [from, to] : edges) ++count[(by_target ? to : from) + 1];
  for (size_t i = 0; i < num_ops; ++i) count[i + 1] += count[i];
  std::vector<OpId> raw(edges.size());
  std::vector<uint32_t> next(count.begin(), count.end() - 1);
  for (const auto& [from, to] : edges) raw[next[by_target ? to : from]++] = OpId(by_target ? from : to);
  begin.assign(num_ops + 1, 0);
  items.clear();
  items.reserve(raw.size());
  for (size_t i = 0; i < num_ops; ++i) {
    auto first = raw.begin() + count[i], last = raw.begin() + count[i + 1];
    std::sort(first, last);
    items.insert(items.end(), first, std::unique(first, last));
    begin[i + 1] = static_cast<uint32_t>(items.size());
  }
}

// An optimizer op that updates in place a tensor from before the step that
// the forward or backward pass reads (a parameter), and reads only tensors
// as they were before the step (AdamW's decay param.mul_(1 - lr * wd)): no
// data orders it after the backward pass. An update that reads the step's
// results (SGD's param.add_(momentum_buffer), the buffer updated from the
// gradient) is ordered by them. `read_by_step`: by storage root, read by a
// forward or backward op.
bool DecaysAParameter(const Graph& graph, const Op& op, const std::vector<bool>& read_by_step) {
  if (op.phase != Phase::kOptimizer || op.inputs.empty()) return false;
  const OpSchema* schema = FindOpSchema(op.type);
  if (!schema || !schema->inplace || !read_by_step[graph.StorageRoot(op.inputs[0]).index()]) return false;
  return std::all_of(op.inputs.begin(), op.inputs.end(), [&](TensorId in) { return !graph.tensor(in).producer; });
}

}  // namespace

Dependencies ComputeDependencies(const Graph& graph) {
  const size_t n = graph.num_ops();
  std::vector<Edge> edges;
  std::vector<bool> read_by_step(graph.num_tensors(), false);
  for (const Op& op : graph.ops()) {
    if (op.phase == Phase::kOptimizer) continue;
    for (TensorId in : op.inputs) read_by_step[graph.StorageRoot(in).index()] = true;
  }
  std::optional<OpId> last_backward, last_random;
  for (const Op& op : graph.ops()) {
    for (TensorId in : op.inputs) {
      const auto& producer = graph.tensor(in).producer;
      if (producer && *producer != op.id) edges.push_back({producer->value, op.id.value});
    }
    // Random ops draw from one generator, in turn.
    if (IsRandomOp(op.type)) {
      if (last_random) edges.push_back({last_random->value, op.id.value});
      last_random = op.id;
    }
    // Such an update keeps its place after the backward ops before it: moved
    // into the forward or backward pass (a parameter's bias is last read by
    // its forward op), it would forbid remat to recompute any op that reads
    // the tensor after it (remat/graph_problem.cc: recompute_until).
    if (op.phase == Phase::kBackward) last_backward = op.id;
    if (last_backward && DecaysAParameter(graph, op, read_by_step)) edges.push_back({last_backward->value, op.id.value});
  }

  // Touches of every storage in program order; storages that only their
  // creator writes need no hazard edges (data edges already order them).
  const auto accesses = ComputeStorageAccesses(graph);
  std::vector<std::vector<std::pair<OpId, bool>>> touches(graph.num_tensors());
  std::vector<bool> updated(graph.num_tensors(), false);
  for (const Op& op : graph.ops()) {
    for (const StorageAccess& a : accesses[op.id.index()]) {
      touches[a.storage.index()].push_back({op.id, a.writes});
      if (a.writes && graph.tensor(a.storage).producer != op.id) updated[a.storage.index()] = true;
    }
  }
  std::vector<OpId> reads_since_write;
  for (size_t s = 0; s < touches.size(); ++s) {
    if (!updated[s]) continue;
    std::optional<OpId> last_write;
    reads_since_write.clear();
    for (const auto& [op, writes] : touches[s]) {
      if (last_write) edges.push_back({last_write->value, op.value});
      if (!writes) {
        reads_since_write.push_back(op);
        continue;
      }
      for (OpId read : reads_since_write) edges.push_back({read.value, op.value});
      reads_since_write.clear();
      last_write = op;
    }
  }

  Dependencies deps;
  BuildRows(edges, n, /*by_target=*/true, deps.pred_begin, deps.preds);
  BuildRows(edges, n, /*by_target=*/false, deps.succ_begin, deps.succs);
  return deps;
}

}  // namespace memfit::sched
