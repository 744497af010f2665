// Offset planners behind one entry point.
//
//   PlanResult r = PlanOffsets(problem, {.planner = PlannerKind::kAuto,
//                                 .objective = Objective::kFitCapacity});
//
// PlanOffsets() never returns an unchecked placement of its own making wrong on
// purpose, but the independent validator lives in check/ (which depends on
// this module); callers that write or return plans go through
// check::PlanAndCheck (check/plan_and_check.h), which runs PlanOffsets() and then
// the checker.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "alloc/problem.h"

namespace memfit::alloc {

enum class PlannerKind {
  kNaive,          // bump allocation, no reuse: the sum of all sizes
  kGreedySize,     // Pisarchyk & Lee greedy by size (as in AITemplate)
  kGreedyBreadth,  // Pisarchyk & Lee greedy by breadth
  kBestFit,        // TFLite/XLA: long-lived first, then size descending, best gap
  kExact,          // branch-and-bound search (exact_search.h) with a deadline
  kAuto,           // the greedy planners, then the exact search until the deadline
};

enum class Objective {
  kFitCapacity,     // any placement with height <= Problem::capacity_bytes
  kMinimizeHeight,  // the lowest height the planner can find (capacity ignored)
};

enum class PlanStatus {
  kSolved,      // a placement is returned (and fits the capacity when fitting)
  kInfeasible,  // proven: no placement fits the capacity
  kTimeout,     // the search ran out of time (or nodes) before deciding
  kNotFound,    // a heuristic found no placement that fits; proves nothing
};

std::string_view ToString(PlannerKind kind);
std::string_view ToString(Objective objective);
std::string_view ToString(PlanStatus status);
std::optional<PlannerKind> ParsePlannerKind(std::string_view name);
std::ostream& operator<<(std::ostream& os, PlannerKind kind);
std::ostream& operator<<(std::ostream& os, Objective objective);
std::ostream& operator<<(std::ostream& os, PlanStatus status);

// Switches of the exact search; every one of them keeps the search exact and
// exists so that tests can run under all combinations.
struct ExactOptions {
  // Prune a branch when some section's floor plus the sizes of the unplaced
  // buffers live there exceeds the capacity.
  bool section_inference = true;
  // Raise a section's floor to the lowest offset any of its unplaced buffers
  // can still take.
  bool unallocated_floor = true;
  // Skip placements that leave a gap into which an unplaced buffer fits.
  bool dominance = true;
  // Stop trying candidates after a failed one that overlaps no unplaced
  // buffer (it cannot have been the cause).
  bool hatless = true;
  // Solve the two sides of a time point that no unplaced buffer crosses as
  // independent problems.
  bool decomposition = true;
  // Round-robin over several static buffer orders with a doubling node
  // limit (false: one order, no node limit).
  bool restarts = true;
  // Give up (status kTimeout) after this many search nodes; absent: no limit
  // other than the deadline. SolveExact: per search; PlanOffsets(): for all of its
  // searches together (the probes of the bisection share it).
  std::optional<int64_t> max_nodes;
};

// The exact search's node budget of a deterministic PlanOffsets() without
// ExactOptions::max_nodes.
inline constexpr int64_t kDeterministicSearchNodes = 1'000'000;

struct PlanOptions {
  // Which planner runs.
  PlannerKind planner = PlannerKind::kAuto;
  // Fit within Problem::capacity_bytes (required then) or minimize the height.
  Objective objective = Objective::kMinimizeHeight;
  // Offsets are multiples of this unless a Buffer sets its own; 64 bytes
  // suits accelerators; MiniMalloc's CSV puzzles are meant for 1.
  int64_t alignment_bytes = 64;
  // Wall-clock budget in seconds: the exact search stops at it; the greedy
  // planners, past it, stack the buffers they have not placed yet on top.
  // Budgets of kNoDeadlineSeconds (util/deadline.h) or more: no deadline.
  double time_limit_seconds = 10.0;
  // Decide nothing by the clock: time_limit_seconds is ignored and the
  // exact search stops after exact.max_nodes nodes (kDeterministicSearchNodes
  // when unset), so that the placement depends on the problem and the
  // options only, not on the machine or its load.
  bool deterministic = false;
  // The first greedy planner places every buffer even past the deadline
  // (no stacking): for callers that keep the placement whatever it costs in
  // time (the optimizer's plan), where a stacked arena would be a wrong
  // figure. Its gap placement is quadratic at worst: seconds on 100k buffers.
  bool finish_first_heuristic = false;
  // Switches of the exact search.
  ExactOptions exact;
};

struct PlanResult {
  PlanStatus status = PlanStatus::kTimeout;
  // Present when status is kSolved.
  std::optional<Solution> solution;
  int64_t lower_bound_bytes = 0;
  // The height is proven minimal (equal to the lower bound, or the search
  // proved that nothing lower fits).
  bool proven_optimal = false;
  // The planner that produced the placement ("best-fit", "exact", ...).
  std::string planner;
  double seconds = 0.0;
  int64_t search_nodes = 0;
};

std::string ToString(const PlanResult& result);
std::ostream& operator<<(std::ostream& os, const PlanResult& result);

// Validates the problem and plans it. Throws memfit::Error for a negative
// size, an empty lifetime, an alignment < 1, a missing capacity when
// fitting, a NaN or negative time limit, sizes that sum past INT64_MAX, two
// fixed buffers alive together at overlapping bytes (naming both), and when
// no placement was found whose offsets fit in int64_t (huge alignments).
PlanResult PlanOffsets(const Problem& problem, const PlanOptions& options);

}  // namespace memfit::alloc
