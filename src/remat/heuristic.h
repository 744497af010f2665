// The fast rematerialization + swapping heuristic for large graphs, and the
// checkpointing baselines users apply today.
//
// The heuristic replays the stages in order under a byte budget, knowing the
// whole future (a static plan, unlike DTR's runtime). Before a node runs its
// inputs are restored (swapped back in, or recomputed recursively from
// whatever is resident); after it runs, results with no later reader are
// freed. When memory would exceed the budget it evicts the resident result
// with the lowest
//
//     penalty / (bytes x time until its next use)
//
// (Belady's rule weighted by the price of getting it back), where the
// penalty is the cheaper of recomputing it (its cost plus that of its
// inputs that are no longer resident) and swapping it (the copy-stream
// stall expected when the round trip does not fit in the gap, plus a small
// bias that keeps the copy stream for the tensors that need it). Swapped
// results are prefetched just in time on the one copy stream (see Prefetch),
// and planned swaps (swap_plan.h) leave right after their last forward read.
//
// Memory at node level is an estimate (the simulator is the truth): the
// optimizer lowers the events, simulates them, and tightens the budget when
// the simulated peak is over (optimize/).
//
// The parts of the heuristic: reach.h (who reads each node, until when it
// can be recomputed and read), parts.h (the storages of a node, freed one by
// one), copy_stream.h (the one copy stream), eviction.h (prices and scores),
// baselines.h (checkpointing without a budget); heuristic.cc holds the
// stage loop.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "remat/eviction.h"
#include "remat/lower.h"
#include "remat/problem.h"
#include "util/deadline.h"

namespace memfit::remat {

struct HeuristicOptions {
  // Node-level memory the run keeps to (HeuristicResult::fits says whether
  // it could).
  int64_t budget_bytes = 0;
  // Drop results to recompute them (else only swaps make room).
  bool allow_recompute = true;
  // One-way host copy time per node (empty: no swapping).
  std::vector<double> copy_us;
  // With copy_us: evict to the host when memory runs short (else only the
  // planned swaps below go there).
  bool evict_to_host = true;
  // Planned swaps (swap_plan.h; empty: none): node v goes to the host right
  // after stage swap_after[v] reads (or computes) it and is prefetched back;
  // kNever: v is not planned.
  std::vector<uint32_t> swap_after;
  // Give up (HeuristicStatus::kTooMuchRecompute) once the recomputations
  // cost more than this: at a budget it cannot meet the heuristic would
  // otherwise thrash through millions of them.
  double max_recompute_us = std::numeric_limits<double>::infinity();
  // Give up (HeuristicStatus::kOutOfTime) once the wall clock passes this:
  // the optimizer's --time-budget reaches into every run.
  SteadyClock::time_point deadline = SteadyClock::time_point::max();
  // Issue a swap-in when the compute time left before the use is below
  // copy time x this.
  double prefetch_margin = 1.5;
  // Part of the copy time charged to every swap.
  double swap_bias = 0.05;
  EvictionScore score = EvictionScore::kNextUse;
  // Free each storage of a node after its last direct read (a later
  // recomputation of a reader that needs it then recomputes the node), not
  // the node as a whole after its last reader. Smaller on graphs whose
  // multi-output ops have outputs of very different lifetimes (convolution
  // backward: input gradient vs weight gradient), but it can trade memory for
  // hidden recomputation (a dropout's output vs its mask), so the optimizer
  // tries both.
  bool free_parts = true;
  // Let a node be dropped past the horizon an input cuts short (an ancestor
  // overwritten in place by an optimizer update: a weight gradient made from
  // the activations of an earlier layer) by holding those inputs resident
  // until it is last needed. Applied where the held inputs are at most half
  // its size; it holds them even where the node ends up kept, so the
  // optimizer tries both.
  bool hold_inputs = false;
  // Look after the readers already dropped: keep what a stage's
  // recomputations brought back until the stage is done, keep a result past
  // its direct reads while a dropped reader that reads it is still to be
  // recomputed, and price evicting such a result by when that recomputation
  // comes rather than by the last stage it may. On graphs of many long-range
  // edges (Checkmate's random layered graphs) this stops cascades of
  // recomputations; on the training graphs it costs memory the plain rule
  // uses better, so it is a variant of its own.
  bool foresee_reads = false;
  // Checkpointing (baselines.h; empty: none): flagged forward results are
  // dropped after their last forward read and recomputed on demand in the
  // backward pass.
  std::vector<uint8_t> drop_after_forward;
  // Tests: every memoized answer of the foresight (when a result is next
  // read) is checked against one worked out afresh, and a difference throws
  // std::logic_error. Slow: each check works its answer out from scratch.
  bool verify_memos = false;
};

// "next-use,parts,hold-inputs,planned-swaps": what sets a variant apart.
std::string VariantName(const HeuristicOptions& options);

// How a run ended.
enum class HeuristicStatus : uint8_t {
  kDone,               // every stage ran: `events` is a whole plan
  kOutOfTime,          // past HeuristicOptions::deadline
  kTooMuchRecompute,   // past HeuristicOptions::max_recompute_us
};
// "done", "out of time", "too much recomputation".
std::string_view ToString(HeuristicStatus status);

struct HeuristicResult {
  // Anything but kDone: the run gave up at this budget and `events` is
  // partial (do not lower it); `detail` says where.
  HeuristicStatus status = HeuristicStatus::kDone;
  std::string detail;
  std::vector<Event> events;
  bool fits = false;           // the node-level estimate stayed within the budget
  int64_t peak_estimate = 0;   // node-level peak
  double recompute_us = 0;
  size_t recomputations = 0;
  size_t swaps = 0;            // round trips to the host (swap-ins issued)

  bool done() const { return status == HeuristicStatus::kDone; }
};

// `problem` must pass Validate. Throws Error only for options that do not
// match the problem (a copy time or flag per node); a budget it cannot meet
// is a result (fits, status).
HeuristicResult RunHeuristic(const Problem& problem, const HeuristicOptions& options);

// The variants worth trying for recomputation, as the optimizer tries them
// (none wins everywhere): every eviction rule with nodes freed whole or by
// parts, and Belady's rule holding inputs. Budgets and limits are left to
// the caller.
std::vector<HeuristicOptions> RecomputeVariants();

// The smallest memory any sequence can reach when everything not in use can
// be dropped or swapped: the largest fixed + inputs (the parts of them it
// reads) + result + workspace of one node (a lower bound; the optimizer reports what it actually reaches),
// and that node (none when the fixed bytes alone are the bound).
struct MemoryFloor {
  int64_t bytes = 0;
  std::optional<uint32_t> node;
};
MemoryFloor LowestMemory(const Problem& problem);
inline int64_t MemoryLowerBound(const Problem& problem) { return LowestMemory(problem).bytes; }

}  // namespace memfit::remat
