#include "optimize/latency_bound.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "analysis/liveness.h"
#include "analysis/storage_table.h"
#include "sched/dependencies.h"
#include "sim/cost_model.h"

namespace memfit {
namespace {

// The grid over r (recomputation time) the bound is taken on: in each cell
// the swapped bytes are taken at the cell's start (they shrink as r grows)
// and the freed bytes at its end (they grow), so the cell's figure is above
// every point in it.
constexpr int kCells = 64;

// A copy to the host: it may start at `release_us`, it takes `copy_us`.
struct Copy {
  double release_us;
  double copy_us;
  int64_t bytes;
};

// A storage-making op whose storages crossing the cut may be dropped and
// made again after it.
struct Recompute {
  double cost_us;
  int64_t bytes;
};

// Bytes a link that never idles while a copy waits moves by `deadline_us`
// (copies sorted by release; one at a time, a copy cut off by the deadline
// counts in part). Every link schedule moves at most this much.
int64_t MovedBy(const std::vector<Copy>& copies, double deadline_us) {
  double moved = 0;
  double free_at = 0;
  for (const Copy& c : copies) {
    const double start = std::max(free_at, c.release_us);
    if (start >= deadline_us) break;
    const double end = start + c.copy_us;
    moved += end <= deadline_us ? static_cast<double>(c.bytes)
                                : static_cast<double>(c.bytes) * (deadline_us - start) / c.copy_us;
    free_at = end;
  }
  return static_cast<int64_t>(std::ceil(moved));  // rounded up: the bound stays below
}

// Bytes a fractional knapsack of `ops` (sorted by cost per byte) frees
// within `budget_us`.
int64_t FreedWithin(const std::vector<Recompute>& ops, double budget_us) {
  double freed = 0;
  for (const Recompute& r : ops) {
    if (r.cost_us <= budget_us) {
      freed += static_cast<double>(r.bytes);
      budget_us -= r.cost_us;
    } else {
      freed += static_cast<double>(r.bytes) * budget_us / r.cost_us;
      break;
    }
  }
  return static_cast<int64_t>(std::ceil(freed));  // rounded up: the bound stays below
}

// The knapsack's items: each op that makes storages crossing the cut, its
// value those storages' bytes, its cost what making them again takes at
// the least. Run again after the cut, the op needs its inputs there; an
// input that does not cross the cut (a BatchNorm's output, which only the
// ReLU after it reads) is either kept across it, which frees its bytes the
// less, or made again first, which costs its own op's latency. Both are
// shared out among the items that read the input (an input two of them
// read is kept or made once). The item's best ratio of bytes to time over
// those choices, with its full bytes, is above every choice: the knapsack
// stays an upper bound on what recomputation frees. Inputs of inputs are
// taken as free. (A plan may also copy such an input to the host and back:
// the link then moves its bytes in place of a crossing storage's, as if it
// were kept, or in time the link would have idled: those inputs join the
// copies the link is counted for, `link_only`.)
std::vector<Recompute> RecomputeCosts(const Graph& graph, const StorageTable& table, const std::vector<double>& latency,
                                      const std::vector<uint8_t>& crossing, const std::vector<int64_t>& freed_by,
                                      std::vector<uint32_t>& link_only) {
  constexpr size_t kMaxChoices = 8;  // 2^8 ways to make an op's inputs; more: inputs taken as free
  const size_t n = graph.num_ops();
  auto inputs_to_make = [&](size_t op) {
    std::vector<uint32_t> inputs;
    for (TensorId t : graph.ops()[op].inputs) {
      const uint32_t si = table.index_of(t);
      if (crossing[si] || table.storage(si).source || table.storage(si).size_bytes == 0) continue;
      if (std::find(inputs.begin(), inputs.end(), si) == inputs.end()) inputs.push_back(si);
    }
    return inputs;
  };
  std::vector<std::vector<uint32_t>> inputs_of(n);  // of the items, the ops with freed_by > 0
  std::vector<int> readers(table.num_storages(), 0);  // items that read each such input
  for (size_t op = 0; op < n; ++op) {
    if (freed_by[op] == 0) continue;
    inputs_of[op] = inputs_to_make(op);
    for (uint32_t si : inputs_of[op]) {
      if (readers[si]++ == 0) link_only.push_back(si);
    }
  }
  std::vector<Recompute> items;
  for (size_t op = 0; op < n; ++op) {
    if (freed_by[op] == 0) continue;
    const std::vector<uint32_t>& inputs = inputs_of[op];
    const double bytes = static_cast<double>(freed_by[op]);
    double best_ratio = latency[op] > 0 ? bytes / latency[op] : HUGE_VAL;
    if (!inputs.empty() && inputs.size() <= kMaxChoices) {
      best_ratio = 0;
      for (uint32_t made = 0; made < (1u << inputs.size()); ++made) {  // bit set: made again, else kept
        double value = bytes;
        double cost = latency[op];
        for (size_t k = 0; k < inputs.size(); ++k) {
          const StorageInfo& in = table.storage(inputs[k]);
          if (made >> k & 1) {
            cost += latency[in.writers.front().index()] / readers[inputs[k]];
          } else {
            value -= static_cast<double>(in.size_bytes) / readers[inputs[k]];
          }
        }
        if (value > 0) best_ratio = std::max(best_ratio, cost > 0 ? value / cost : HUGE_VAL);
      }
    }
    items.push_back({best_ratio == HUGE_VAL ? 0.0 : bytes / best_ratio, freed_by[op]});
  }
  return items;
}

// Ops reachable from `from` over the edges `next(op)` gives (from itself
// included).
template <typename Next>
std::vector<uint8_t> Reach(size_t num_ops, OpId from, Next next) {
  std::vector<uint8_t> seen(num_ops, 0);
  std::vector<OpId> stack = {from};
  seen[from.index()] = 1;
  while (!stack.empty()) {
    const OpId op = stack.back();
    stack.pop_back();
    for (OpId o : next(op)) {
      if (!seen[o.index()]) {
        seen[o.index()] = 1;
        stack.push_back(o);
      }
    }
  }
  return seen;
}

}  // namespace

std::optional<LatencyBound> MemoryBoundAtLatency(const sim::Simulator& simulator, double limit_us, size_t max_cuts) {
  const Graph& graph = simulator.graph();
  const size_t n = graph.num_ops();
  const std::vector<double> latency = sim::LatenciesUs(simulator.op_latencies());
  const double slack_us = limit_us - std::accumulate(latency.begin(), latency.end(), 0.0);
  if (slack_us < 0) return std::nullopt;
  if (n == 0) return std::nullopt;  // no op to cut at (and nothing to bound)

  // What runs before what in every schedule (data, in-place writes, random
  // draws: sched/dependencies.h).
  const sched::Dependencies deps = sched::ComputeDependencies(graph);
  // The earliest an op can end on one compute stream: the longest path of
  // latencies to it (every edge goes forward in program order).
  std::vector<double> earliest_end(n, 0);
  for (size_t i = 0; i < n; ++i) {
    double start = 0;
    for (OpId p : deps.predecessors(OpId(static_cast<uint32_t>(i)))) start = std::max(start, earliest_end[p.index()]);
    earliest_end[i] = start + latency[i];
  }
  const StorageTable table(graph);

  // The cuts: the ops where the program order holds the most, and those
  // whose own storages (and workspace) are the largest: the whole working
  // set of an op is on the device in every plan, and where the program
  // order's peak is elsewhere (VGG16's first convolution's backward, 0.83
  // of the peak, at the end of the step) it is the bound.
  LivenessOptions live_options;
  live_options.workspace_bytes = simulator.workspace_bytes();
  const Liveness liveness = ComputeLiveness(graph, live_options);
  std::vector<int64_t> own = simulator.workspace_bytes();
  for (const StorageInfo& s : table.storages()) {
    for (OpId op : s.touchers) own[op.index()] += s.size_bytes;
  }
  std::vector<size_t> cuts;
  auto add_most = [&](const std::vector<int64_t>& held) {
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return held[a] > held[b]; });
    order.resize(std::min(order.size(), max_cuts));
    cuts.insert(cuts.end(), order.begin(), order.end());
  };
  add_most(liveness.live_bytes);
  add_most(own);
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());

  std::optional<LatencyBound> best;
  for (size_t cut_index : cuts) {
    const OpId cut(static_cast<uint32_t>(cut_index));
    const std::vector<uint8_t> before = Reach(n, cut, [&](OpId op) { return deps.predecessors(op); });
    const std::vector<uint8_t> after = Reach(n, cut, [&](OpId op) { return deps.successors(op); });
    double after_us = 0;  // the cut and what follows it
    for (size_t i = 0; i < n; ++i) {
      if (after[i]) after_us += latency[i];
    }

    LatencyBound bound;
    bound.cut = cut;
    bound.crossing_bytes = simulator.workspace_bytes()[cut_index];
    std::vector<Copy> copies;
    std::vector<Recompute> recomputes;
    std::vector<int64_t> freed_by(n, 0);  // storages crossing the cut each op makes
    std::vector<uint8_t> crossing(table.num_storages(), 0);
    int64_t droppable = 0;  // crossing storages the cut does not touch
    for (size_t si = 0; si < table.num_storages(); ++si) {
      const StorageInfo& s = table.storage(si);
      if (s.size_bytes == 0) continue;
      // A source is made by no op; any other storage by its first writer.
      const size_t maker = s.source ? n : s.writers.front().index();
      const bool made_before = s.source ? s.resident_at_start() : before[maker] != 0;
      if (!made_before) continue;
      const bool touched_by_cut = std::find(s.touchers.begin(), s.touchers.end(), cut) != s.touchers.end();
      const bool needed_after =
          s.pinned_to_end() || std::any_of(s.touchers.begin(), s.touchers.end(), [&](OpId o) { return after[o.index()]; });
      if (!needed_after) continue;
      bound.crossing_bytes += s.size_bytes;
      crossing[si] = 1;
      if (touched_by_cut) continue;
      droppable += s.size_bytes;
      copies.push_back({s.source ? 0.0 : earliest_end[maker], simulator.copy_us(s.root), s.size_bytes});
      if (!s.source) freed_by[maker] += s.size_bytes;
    }
    std::vector<uint32_t> link_only;
    recomputes = RecomputeCosts(graph, table, latency, crossing, freed_by, link_only);
    for (uint32_t si : link_only) {
      const StorageInfo& s = table.storage(si);
      copies.push_back({earliest_end[s.writers.front().index()], simulator.copy_us(s.root), s.size_bytes});
    }
    if (simulator.device().shared_host_memory) copies.clear();  // the host is the device's memory: a copy frees nothing
    std::sort(copies.begin(), copies.end(), [](const Copy& a, const Copy& b) { return a.release_us < b.release_us; });
    std::sort(recomputes.begin(), recomputes.end(), [](const Recompute& a, const Recompute& b) {
      return a.cost_us * static_cast<double>(b.bytes) < b.cost_us * static_cast<double>(a.bytes);
    });

    // The latest the cut can start with r spent recomputing: limit - r - after_us.
    int64_t most_dropped = -1;
    for (int cell = 0; cell < (slack_us > 0 ? kCells : 1); ++cell) {
      const double r0 = slack_us * cell / kCells;
      const double r1 = slack_us * (cell + 1) / kCells;
      const int64_t swapped = MovedBy(copies, limit_us - r0 - after_us);
      const int64_t freed = FreedWithin(recomputes, r1);
      const int64_t dropped = std::min(droppable, swapped + freed);
      if (dropped > most_dropped) {
        most_dropped = dropped;
        bound.swapped_bytes = swapped;
        bound.freed_bytes = std::min(freed, droppable);
        bound.recompute_us = r1;
      }
    }
    bound.bytes = bound.crossing_bytes - most_dropped;
    if (!best || bound.bytes > best->bytes) best = bound;
  }
  return best;
}

}  // namespace memfit
