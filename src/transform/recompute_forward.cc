#include "transform/recompute_forward.h"

#include <algorithm>
#include <functional>
#include <iterator>
#include <set>

#include <fmt/format.h>

#include "ir/registry.h"
#include "sched/storage_access.h"
#include "transform/rewriter.h"
#include "util/error.h"

namespace memfit {
namespace {

// The forward ops before `first` that could be made again before it (the
// rule of the header, without "the run reads it"), and what writes in place
// into each storage before it.
struct Candidates {
  std::vector<bool> ok;                    // by op
  std::vector<bool> banned;                // by storage root: overwritten by an op that is not ok
  std::vector<std::vector<OpId>> writers;  // by storage root: the ops that write into it in place
};

Candidates Recomputable(const Graph& graph, size_t first) {
  const auto accesses = sched::ComputeStorageAccesses(graph);
  Candidates c{std::vector<bool>(graph.num_ops(), false), std::vector<bool>(graph.num_tensors(), false),
               std::vector<std::vector<OpId>>(graph.num_tensors())};
  // A write into a storage the op does not create: in place (through any
  // view of it), or a mutated argument.
  for (size_t i = 0; i < first; ++i) {
    const Op& op = graph.ops()[i];
    for (const sched::StorageAccess& a : accesses[i]) {
      if (a.writes && graph.tensor(a.storage).producer != op.id) c.writers[a.storage.index()].push_back(op.id);
    }
  }
  // Vectors the step reads at or after `first` anyway (a BatchNorm's batch
  // statistics, which its backward reads): a copy reads them as they are.
  std::vector<bool> kept(graph.num_tensors(), false);
  auto keep = [&](TensorId t) {
    if (graph.tensor(t).shape.size() <= 1) kept[t.index()] = true;
  };
  for (size_t i = first; i < graph.num_ops(); ++i) std::for_each(graph.ops()[i].inputs.begin(), graph.ops()[i].inputs.end(), keep);
  std::for_each(graph.outputs.begin(), graph.outputs.end(), keep);
  for (bool changed = true; changed;) {
    std::vector<bool> made(graph.num_tensors(), false);  // sources, kept vectors and results of ok ops
    for (const Tensor& t : graph.tensors()) made[t.id.index()] = !t.producer || kept[t.id.index()];
    for (size_t i = 0; i < first; ++i) {
      const Op& op = graph.ops()[i];
      const OpSchema* schema = FindOpSchema(op.type);
      // A view made in the backward of what the forward made (autograd's
      // detach of a saved map, placed before the run once an earlier split
      // moves the ops it sat among) is copied like a forward op.
      const bool view = schema && !schema->views.empty() && !schema->inplace;
      bool can = (op.phase == Phase::kForward || view) && schema && !schema->random && schema->mutated_args.empty();
      for (TensorId t : op.inputs) can = can && made[t.index()] && !c.banned[graph.StorageRoot(t).index()];
      if (can && schema->inplace) {
        const auto& producer = graph.tensor(graph.StorageRoot(op.inputs.at(0))).producer;
        can = producer && c.ok[producer->index()];
      }
      c.ok[i] = can;
      if (can) {
        for (TensorId t : op.outputs) made[t.index()] = true;
      }
    }
    changed = false;
    for (size_t root = 0; root < graph.num_tensors(); ++root) {
      for (OpId w : c.writers[root]) {
        if (!c.ok[w.index()] && !c.banned[root]) c.banned[root] = changed = true;
      }
    }
  }
  return c;
}

}  // namespace

std::string ToString(const RecomputeRecord& record) {
  return fmt::format("{} forward ops ({} .. {}) again before {}", record.num_ops, record.first_op, record.last_op,
                     record.before_op);
}

std::optional<RecomputeResult> RecomputeForwardOf(const Graph& graph, std::vector<OpId> run,
                                                  const DimensionGraph* dims, int dim) {
  if (run.empty()) return std::nullopt;
  // Tensors of another batch dimension, and ops that reduce `dim` (the
  // header): never copied through.
  std::vector<bool> other_batch(graph.num_tensors(), false);
  std::vector<bool> reduces(graph.num_ops(), false);
  if (dims) {
    for (const ReductionSite& r : dims->dims.at(dim).reduced) reduces[r.op.index()] = true;
    for (const Tensor& t : graph.tensors()) {
      const std::vector<int>& axes = dims->dim_of.at(t.id.index());
      const bool carries = std::find(axes.begin(), axes.end(), dim) != axes.end();
      other_batch[t.id.index()] = !carries && std::any_of(axes.begin(), axes.end(), [&](int d) {
        return d >= 0 && dims->dims[d].kind == "batch";
      });
    }
  }
  std::sort(run.begin(), run.end());
  const size_t first = run.front().index();
  const Candidates c = Recomputable(graph, first);

  // What the run reads, back through recomputable producers. A tensor is
  // its storage as the run finds it: made by its producer and changed by
  // every write in place before the run (a mask filled through views of
  // it), all of them copied.
  std::vector<bool> outputs(graph.num_tensors(), false);
  for (TensorId t : graph.outputs) outputs[t.index()] = true;
  std::vector<bool> needed(graph.num_ops(), false);
  std::vector<TensorId> stack;
  for (OpId id : run) {
    for (TensorId t : graph.op(id).inputs) stack.push_back(t);
  }
  auto need = [&](OpId id) {
    if (needed[id.index()]) return;
    needed[id.index()] = true;
    for (TensorId in : graph.op(id).inputs) stack.push_back(in);
  };
  while (!stack.empty()) {
    const TensorId t = stack.back();
    stack.pop_back();
    const auto& producer = graph.tensor(t).producer;
    if (!producer || !c.ok[producer->index()] || needed[producer->index()] || other_batch[t.index()] ||
        reduces[producer->index()]) {
      continue;
    }
    const TensorId root = graph.StorageRoot(t);
    if (c.banned[root.index()]) continue;
    const Op& op = graph.op(*producer);
    if (std::any_of(op.outputs.begin(), op.outputs.end(), [&](TensorId o) { return outputs[o.index()]; })) continue;
    // A view of a source (a weight's transpose, detach) holds no memory of its own.
    if (!graph.tensor(root).producer) continue;
    need(*producer);
    need(*graph.tensor(root).producer);
    for (OpId w : c.writers[root.index()]) need(w);
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
  b.MapOutputs();

  RecomputeResult result{b.Take(), {}, first, copies};
  result.record = {static_cast<int>(copies.size()), graph.op(copies.front()).name, graph.op(copies.back()).name,
                   graph.op(run.front()).name};
  result.graph.metadata[fmt::format("fission.{}", RecordedFissions(graph).size())] =
      std::string(kRecomputeRecordPrefix) + ToString(result.record);
  return result;
}

std::optional<RecomputedRun> RecomputeBefore(const Graph& graph, const DimensionGraph& dims, int dim,
                                             const std::vector<OpId>& run) {
  std::optional<RecomputeResult> again = RecomputeForwardOf(graph, run, &dims, dim);
  if (!again) return std::nullopt;
  return RunWithCopies(std::move(*again), dims, dim);
}

RecomputedRuns RecomputeBeforeEach(const Graph& graph, const DimensionGraph& dims, int dim,
                                   const std::vector<std::vector<OpId>>& runs) {
  std::vector<std::vector<std::string>> names;
  for (const auto& run : runs) {
    names.emplace_back();
    for (OpId id : run) names.back().push_back(graph.op(id).name);
  }
  std::vector<size_t> latest_first(runs.size());
  for (size_t i = 0; i < runs.size(); ++i) latest_first[i] = i;
  auto first_op = [&](size_t i) { return *std::min_element(runs[i].begin(), runs[i].end()); };
  std::sort(latest_first.begin(), latest_first.end(), [&](size_t a, size_t b) { return first_op(b) < first_op(a); });

  RecomputedRuns r{graph, {}, -1, {}, 0, 0};
  const std::string& name = dims.dims.at(dim).name;
  for (size_t i : latest_first) {
    // Never through an op that reduces the dimension (a GNN's messages
    // summed into its nodes): copied, the nodes' ops after it would sit
    // between the split copies.
    const DimensionGraph now = r.copied == 0 ? dims : ComputeDimensions(r.graph);
    const std::optional<int> d = FindDimension(now, name);
    if (!d) Fail("recompute: dimension {} is gone after the copies", Quote(name));
    std::optional<RecomputeResult> again =
        RecomputeForwardOf(r.graph, OpsNamed(r.graph, names[i], "the copies"), &now, *d);
    if (!again) continue;
    // The copies join their run (the previous run's region would take them:
    // nothing stands between them and it).
    for (int k = 0; k < again->record.num_ops; ++k) {
      names[i].push_back(again->graph.ops()[again->first_copy + static_cast<size_t>(k)].name);
      r.copy_names.insert(names[i].back());
    }
    for (OpId id : again->originals) r.originals.insert(again->graph.op(id).name);
    r.graph = std::move(again->graph);
    ++r.copied;
    r.copies += again->record.num_ops;
  }
  r.dims = ComputeDimensions(r.graph);
  const std::optional<int> d = FindDimension(r.dims, name);
  if (!d) Fail("recompute: dimension {} is gone after the copies", Quote(name));
  r.dim = *d;
  // Each run with its copies, less the ops no run of the dimension holds
  // (a copy that does not touch it, a weight's view, stays whole before the
  // parts).
  std::vector<bool> splittable(r.graph.num_ops(), false);
  for (const auto& found : FissionRegions(r.graph, r.dims, r.dim)) {
    for (OpId id : found) splittable[id.index()] = true;
  }
  for (const auto& run : names) {
    std::vector<OpId> ops = OpsNamed(r.graph, run, "the copies");
    std::erase_if(ops, [&](OpId id) { return !splittable[id.index()]; });
    std::sort(ops.begin(), ops.end());
    if (!ops.empty()) r.runs.push_back(WithoutHeavySums(r.graph, r.dims, r.dim, ops));
  }
  return r;
}

RecomputedRun RunWithCopies(RecomputeResult copies, const DimensionGraph& dims, int dim) {
  DimensionGraph new_dims = ComputeDimensions(copies.graph);
  RecomputedRun r{std::move(copies), std::move(new_dims), -1, {}};
  const Graph& g = r.copies.graph;
  const std::string& name = dims.dims.at(dim).name;
  const std::optional<int> d = FindDimension(r.dims, name);
  if (!d) Fail("recompute: dimension {} is gone after the copies", Quote(name));
  r.dim = *d;
  // The copies sit right before the run's first op; the run of the result
  // that holds that op must hold copies too (those that do not touch the
  // dimension, a weight's view, stay whole before the parts).
  const size_t copies_from = r.copies.first_copy;
  const size_t before = copies_from + static_cast<size_t>(r.copies.record.num_ops);
  const RecomputeRecord& record = r.copies.record;
  auto is_copy = [&](OpId id) { return id.index() >= copies_from && id.index() < before; };
  const auto regions = FissionRegions(g, r.dims, r.dim);
  for (const auto& found : regions) {
    if (std::none_of(found.begin(), found.end(), [&](OpId id) { return id.index() == before; })) continue;
    std::vector<OpId> ops = found;
    if (std::none_of(found.begin(), found.end(), is_copy)) {
      // The run begins where a run before it closes (its first op reads
      // that run's sum over the dimension: VICReg's variance backward), and
      // that run took the copies. They read only sources and each other,
      // right before the run: they join it all the same.
      for (const auto& other : regions) std::copy_if(other.begin(), other.end(), std::back_inserter(ops), is_copy);
      if (ops.size() == found.size()) {
        Fail("recompute: the copies of {} .. {} cannot run on parts of {} with {}", Quote(record.first_op),
             Quote(record.last_op), name, Quote(record.before_op));
      }
      std::sort(ops.begin(), ops.end());
    }
    r.ops = WithoutHeavySums(g, r.dims, r.dim, std::move(ops));
    return r;
  }
  Fail("recompute: {} is in no run of {} after the copies", Quote(record.before_op), name);
}

namespace {

// The forward's runs of `dim` that hold ops `copied` says were copied, each
// up to the first op `is_copy` says is a copy (where the copies follow the
// forward at once, a GNN's last layer, the dimension's run goes on into
// them; a prefix of a run is convex too), the most of them first.
std::vector<std::vector<OpId>> ForwardRunsHolding(const Graph& graph, const DimensionGraph& dims, int dim,
                                                  const std::function<bool(OpId)>& copied,
                                                  const std::function<bool(OpId)>& is_copy) {
  std::vector<std::pair<size_t, std::vector<OpId>>> found;
  for (auto& r : FissionRegions(graph, dims, dim)) {
    if (graph.op(r.front()).phase != Phase::kForward) continue;
    r.erase(std::find_if(r.begin(), r.end(), is_copy), r.end());
    const auto originals = static_cast<size_t>(std::count_if(r.begin(), r.end(), copied));
    if (originals > 0) found.emplace_back(originals, std::move(r));
  }
  std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::vector<OpId>> runs;
  for (auto& [n, r] : found) runs.push_back(std::move(r));
  return runs;
}

}  // namespace

std::vector<std::vector<OpId>> ForwardRunsBefore(const RecomputedRun& run) {
  const std::vector<OpId>& copied = run.copies.originals;  // sorted
  return ForwardRunsHolding(
      run.copies.graph, run.dims, run.dim,
      [&](OpId id) { return std::binary_search(copied.begin(), copied.end(), id); },
      [&](OpId id) { return id.index() >= run.copies.first_copy; });
}

std::vector<std::vector<OpId>> ForwardRunsOfCopies(const RecomputedRuns& r) {
  return ForwardRunsHolding(
      r.graph, r.dims, r.dim, [&](OpId id) { return r.originals.count(r.graph.op(id).name) > 0; },
      [&](OpId id) { return r.copy_names.count(r.graph.op(id).name) > 0; });
}

FissionResult SplitWithForward(const RecomputedRun& run, const std::vector<std::vector<OpId>>& forward, int parts) {
  // The copies' run first: split first, the forward would rename a group
  // it slices the naming axis of (SimCLR's cat[0]).
  std::vector<std::vector<OpId>> runs{run.ops};
  runs.insert(runs.end(), forward.begin(), forward.end());
  return ApplyFissions(run.copies.graph, run.dims, run.dim, runs, parts);
}

FissionResult SplitEachBatch(const Graph& graph, const DimensionGraph& graph_dims,
                             const std::vector<std::string>& names, int parts) {
  FissionResult result{graph, {}};
  DimensionGraph after;  // of result.graph, once a split has changed it
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    const DimensionGraph& dims = i == 0 ? graph_dims : (after = ComputeDimensions(result.graph));
    const std::optional<int> d = FindDimension(dims, name);
    if (!d) Fail("fission: dimension {} is gone after a split", Quote(name));
    const auto runs = FissionRegions(result.graph, dims, *d);
    if (runs.empty()) Fail("fission: no run of {} to split after the others", Quote(name));
    const Graph& g = result.graph;
    const std::vector<OpId>& longest = runs.front();
    std::optional<RecomputedRun> again;
    for (const auto& run : runs) {
      if (std::none_of(run.begin(), run.end(), [&](OpId id) { return g.op(id).phase == Phase::kBackward; })) continue;
      try {
        // Nothing to copy where the run holds its forward (micro-batching).
        if ((again = RecomputeBefore(g, dims, *d, run))) break;
      } catch (const Error&) {
        // The copies do not join the run: the next run, or the longest.
      }
    }
    if (again) {
      const std::vector<std::vector<OpId>> forward = ForwardRunsBefore(*again);
      try {
        result = forward.empty() ? again->Split(parts) : SplitWithForward(*again, forward, parts);
      } catch (const Error&) {
        // The first split cut what tied the forward's ops in one dimension
        // (VICReg's two views, tied by the invariance term's backward).
        result = again->Split(parts);
      }
    } else {
      result = ApplyFission(g, dims, {WithoutHeavySums(g, dims, *d, longest), *d, parts});
    }
  }
  return result;
}

std::vector<int> BatchesWithRunsOfTheirOwn(const Graph& graph, const DimensionGraph& dims) {
  std::vector<int> found;
  std::set<std::vector<OpId>> seen;
  for (const Dimension& d : dims.dims) {
    if (d.kind != "batch") continue;
    const auto runs = FissionRegions(graph, dims, d.id);
    if (!runs.empty() && seen.insert(runs.front()).second) found.push_back(d.id);
  }
  return found;
}

}  // namespace memfit
