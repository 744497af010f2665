#include "transform/recompute_forward.h"

#include <algorithm>

#include <fmt/format.h>

#include "ir/registry.h"
#include "sched/storage_access.h"
#include "transform/rewriter.h"
#include "util/error.h"

namespace memfit {
namespace {

// Forward ops before `first` (by op) that could be made again before it:
// the rule of the header, without "the run reads it".
std::vector<bool> Recomputable(const Graph& graph, size_t first) {
  const auto accesses = sched::ComputeStorageAccesses(graph);
  // A write into a storage the op does not create (in place, or a mutated
  // argument), by storage root, for ops before the run.
  auto overwrites = [&](const Op& op, auto&& each) {
    for (const sched::StorageAccess& a : accesses[op.id.index()]) {
      if (a.writes && graph.tensor(a.storage).producer != op.id) each(a.storage);
    }
  };
  std::vector<bool> banned(graph.num_tensors(), false);  // by root: overwritten by an op not recomputed
  std::vector<bool> ok(graph.num_ops(), false);
  for (bool changed = true; changed;) {
    std::vector<bool> made(graph.num_tensors(), false);  // sources and results of recomputable ops
    for (const Tensor& t : graph.tensors()) made[t.id.index()] = !t.producer;
    for (size_t i = 0; i < first; ++i) {
      const Op& op = graph.ops()[i];
      const OpSchema* schema = FindOpSchema(op.type);
      bool can = op.phase == Phase::kForward && schema && !schema->random && schema->mutated_args.empty();
      for (TensorId t : op.inputs) can = can && made[t.index()] && !banned[graph.StorageRoot(t).index()];
      if (can && schema->inplace) {
        const TensorId root = graph.StorageRoot(op.inputs.at(0));
        const auto& producer = graph.tensor(root).producer;
        can = producer && ok[producer->index()];
      }
      ok[i] = can;
      if (can) {
        for (TensorId t : op.outputs) made[t.index()] = true;
      }
    }
    changed = false;
    for (size_t i = 0; i < first; ++i) {
      if (ok[i]) continue;
      overwrites(graph.ops()[i], [&](TensorId root) {
        if (!banned[root.index()]) banned[root.index()] = changed = true;
      });
    }
  }
  return ok;
}

}  // namespace

std::string ToString(const RecomputeRecord& record) {
  return fmt::format("{} forward ops ({} .. {}) again before {}", record.num_ops, record.first_op, record.last_op,
                     record.before_op);
}

std::optional<RecomputeResult> RecomputeForwardOf(const Graph& graph, std::vector<OpId> run) {
  if (run.empty()) return std::nullopt;
  std::sort(run.begin(), run.end());
  const size_t first = run.front().index();
  const std::vector<bool> ok = Recomputable(graph, first);

  // What the run reads, back through recomputable producers.
  std::vector<bool> outputs(graph.num_tensors(), false);
  for (TensorId t : graph.outputs) outputs[t.index()] = true;
  std::vector<bool> needed(graph.num_ops(), false);
  std::vector<TensorId> stack;
  for (OpId id : run) {
    for (TensorId t : graph.op(id).inputs) stack.push_back(t);
  }
  while (!stack.empty()) {
    const TensorId t = stack.back();
    stack.pop_back();
    const auto& producer = graph.tensor(t).producer;
    if (!producer || !ok[producer->index()] || needed[producer->index()]) continue;
    const Op& op = graph.op(*producer);
    if (std::any_of(op.outputs.begin(), op.outputs.end(), [&](TensorId o) { return outputs[o.index()]; })) continue;
    // A view of a source (a weight's transpose, detach) holds no memory of its own.
    if (std::all_of(op.outputs.begin(), op.outputs.end(),
                    [&](TensorId o) { return !graph.tensor(graph.StorageRoot(o)).producer; })) {
      continue;
    }
    needed[producer->index()] = true;
    for (TensorId in : op.inputs) stack.push_back(in);
  }
  std::vector<OpId> copies;
  for (size_t i = 0; i < first; ++i) {
    if (needed[i]) copies.push_back(graph.ops()[i].id);
  }
  if (copies.empty()) return std::nullopt;

  Rewriter b(graph);
  for (const Op& op : graph.ops()) {
    if (op.id.index() == first) {
      for (OpId id : copies) b.CopyAgain(graph.op(id), ".recompute", Phase::kBackward);
    }
    b.CopyOp(op);
  }
  b.out().outputs.resize(graph.outputs.size());
  for (size_t i = 0; i < graph.outputs.size(); ++i) b.MapOutput(i, graph.outputs[i]);

  RecomputeResult result{b.Take(), {}};
  result.record = {static_cast<int>(copies.size()), graph.op(copies.front()).name, graph.op(copies.back()).name,
                   graph.op(run.front()).name};
  result.graph.metadata[fmt::format("fission.{}", RecordedFissions(graph).size())] =
      "recompute: " + ToString(result.record);
  return result;
}

std::optional<FissionResult> RecomputeAndSplit(const Graph& graph, const DimensionGraph& dims, int dim,
                                               const std::vector<OpId>& run, int parts) {
  std::optional<RecomputeResult> again = RecomputeForwardOf(graph, run);
  if (!again) return std::nullopt;
  const Graph& g = again->graph;
  const DimensionGraph new_dims = ComputeDimensions(g);
  const std::string& name = dims.dims.at(dim).name;
  const auto d = std::find_if(new_dims.dims.begin(), new_dims.dims.end(),
                              [&](const Dimension& x) { return x.name == name; });
  if (d == new_dims.dims.end()) Fail("recompute: dimension {} is gone after the copies", Quote(name));
  // The copies sit right before the run's first op; the run of the result
  // that holds that op must hold copies too (those that do not touch the
  // dimension, a weight's view, stay whole before the parts).
  size_t before = 0;
  while (g.ops()[before].name != again->record.before_op) ++before;
  const size_t copies_from = before - static_cast<size_t>(again->record.num_ops);
  for (const auto& found : FissionRegions(g, new_dims, d->id)) {
    bool has_run = false, has_copy = false;
    for (OpId id : found) {
      has_run = has_run || id.index() == before;
      has_copy = has_copy || (id.index() >= copies_from && id.index() < before);
    }
    if (!has_run) continue;
    if (!has_copy) {
      Fail("recompute: the copies of {} .. {} cannot run on parts of {} with {}", Quote(again->record.first_op),
           Quote(again->record.last_op), name, Quote(again->record.before_op));
    }
    return ApplyFission(g, new_dims, {WithoutHeavySums(g, new_dims, d->id, found), d->id, parts});
  }
  Fail("recompute: {} is in no run of {} after the copies", Quote(again->record.before_op), name);
}

}  // namespace memfit
