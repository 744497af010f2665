// PlanOffsets(): validates the problem, then runs a numbered pipeline:
//   1. lower bound (and the proof of infeasibility it may give);
//   2. the requested heuristic(s);
//   3. for exact/auto, the exact search: at the capacity when fitting, or
//      by bisection between the lower bound and the best height found when
//      minimizing; all under one deadline.
#include "alloc/planner.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>

#include "alloc/exact_search.h"
#include "alloc/greedy.h"
#include "util/checked_math.h"
#include "util/deadline.h"
#include "util/enum_names.h"
#include "util/error.h"

namespace memfit::alloc {
namespace {

using Clock = std::chrono::steady_clock;

void Validate(const Problem& problem, const PlanOptions& options) {
  if (options.alignment_bytes < 1) Fail("alignment must be >= 1, got {}", options.alignment_bytes);
  if (std::isnan(options.time_limit_seconds) || options.time_limit_seconds < 0) {
    Fail("time limit must be >= 0 seconds, got {}", options.time_limit_seconds);
  }
  if (options.exact.max_nodes && *options.exact.max_nodes < 0) {
    Fail("node limit must be >= 0, got {}", *options.exact.max_nodes);
  }
  if (options.objective == Objective::kFitCapacity && !problem.capacity_bytes) {
    Fail("fitting within a capacity needs a capacity (the problem has none)");
  }
  if (problem.capacity_bytes && *problem.capacity_bytes < 0) {
    Fail("capacity must be >= 0, got {}", *problem.capacity_bytes);
  }
  int64_t total_bytes = 0;
  for (const Buffer& b : problem.buffers) {
    if (b.size_bytes < 0) Fail("buffer {}: negative size {}", b.id.name, b.size_bytes);
    if (b.lifetime.lower >= b.lifetime.upper) {
      Fail("buffer {}: empty lifetime {}", b.id.name, ToString(b.lifetime));
    }
    if (!CheckedSub(b.lifetime.upper, b.lifetime.lower)) {
      Fail("buffer {}: lifetime {} is longer than a 64-bit integer holds", b.id.name,
           ToString(b.lifetime));
    }
    if (b.alignment_bytes && *b.alignment_bytes < 1) {
      Fail("buffer {}: alignment must be >= 1, got {}", b.id.name, *b.alignment_bytes);
    }
    if (b.fixed_offset_bytes && *b.fixed_offset_bytes < 0) {
      Fail("buffer {}: negative fixed offset {}", b.id.name, *b.fixed_offset_bytes);
    }
    if (b.fixed_offset_bytes && !CheckedAdd(*b.fixed_offset_bytes, b.size_bytes)) {
      Fail("buffer {}: fixed offset {} + size {} overflows a 64-bit byte count", b.id.name,
           *b.fixed_offset_bytes, b.size_bytes);
    }
    const std::optional<int64_t> sum = CheckedAdd(total_bytes, b.size_bytes);
    if (!sum) Fail("buffer {}: the sizes of the buffers sum past 2^63 - 1 bytes", b.id.name);
    total_bytes = *sum;
  }
  if (const auto clash = FindFixedClash(problem)) {
    const Buffer& a = problem.buffers[clash->first];
    const Buffer& b = problem.buffers[clash->second];
    Fail("buffers {} and {} are both alive in {} but fixed at overlapping bytes [{}, {}) and [{}, {})",
         a.id.name, b.id.name,
         ToString(Lifetime{std::max(a.lifetime.lower, b.lifetime.lower),
                           std::min(a.lifetime.upper, b.lifetime.upper)}),
         *a.fixed_offset_bytes, *a.fixed_offset_bytes + a.size_bytes, *b.fixed_offset_bytes,
         *b.fixed_offset_bytes + b.size_bytes);
  }
}

// The share of the search's time (or node budget) that the first probe of
// a minimization, at the lower bound, may take.
constexpr double kFirstProbeShare = 0.75;

// The share of the time limit after which auto starts no more heuristics.
constexpr double kHeuristicsShare = 0.25;

// No placement was found whose tops all fit in int64_t: offsets saturated
// (util/checked_math.h), most likely through a huge alignment.
[[noreturn]] void FailUnrepresentable(const Problem& problem, const PlanOptions& options) {
  Fail("no placement of the {} buffers was found below 2^63 - 1 bytes (alignment {}): the "
       "offsets overflow a 64-bit byte count",
       problem.buffers.size(), options.alignment_bytes);
}

struct Candidate {
  std::string planner;
  std::vector<int64_t> offsets;
  int64_t height = 0;
};

Candidate RunHeuristic(PlannerKind kind, const Problem& problem, int64_t alignment,
                       Deadline deadline) {
  std::vector<int64_t> offsets;
  switch (kind) {
    case PlannerKind::kNaive: offsets = PlanNaive(problem, alignment); break;
    case PlannerKind::kGreedySize: offsets = PlanGreedyBySize(problem, alignment, deadline); break;
    case PlannerKind::kGreedyBreadth:
      offsets = PlanGreedyByBreadth(problem, alignment, deadline);
      break;
    case PlannerKind::kBestFit: offsets = PlanBestFit(problem, alignment, deadline); break;
    case PlannerKind::kExact:
    case PlannerKind::kAuto: break;
  }
  const int64_t height = HeightOf(problem, offsets);
  return {std::string(ToString(kind)), std::move(offsets), height};
}

}  // namespace

constexpr EnumName<PlannerKind> kPlannerKindNames[] = {
    {PlannerKind::kNaive, "naive"}, {PlannerKind::kGreedySize, "greedy-size"},
    {PlannerKind::kGreedyBreadth, "greedy-breadth"}, {PlannerKind::kBestFit, "best-fit"},
    {PlannerKind::kExact, "exact"}, {PlannerKind::kAuto, "auto"}};

std::string_view ToString(PlannerKind kind) { return NameOf(kPlannerKindNames, kind); }

constexpr EnumName<Objective> kObjectiveNames[] = {
    {Objective::kFitCapacity, "fit-capacity"}, {Objective::kMinimizeHeight, "minimize-height"}};

std::string_view ToString(Objective objective) { return NameOf(kObjectiveNames, objective); }

constexpr EnumName<PlanStatus> kPlanStatusNames[] = {
    {PlanStatus::kSolved, "solved"}, {PlanStatus::kInfeasible, "infeasible"}, {PlanStatus::kTimeout, "timeout"},
    {PlanStatus::kNotFound, "not_found"}};

std::string_view ToString(PlanStatus status) { return NameOf(kPlanStatusNames, status); }

std::optional<PlannerKind> ParsePlannerKind(std::string_view name) {
  return ValueNamed(kPlannerKindNames, name);
}

std::ostream& operator<<(std::ostream& os, PlannerKind kind) { return os << ToString(kind); }
std::ostream& operator<<(std::ostream& os, Objective o) { return os << ToString(o); }
std::ostream& operator<<(std::ostream& os, PlanStatus s) { return os << ToString(s); }

std::string ToString(const PlanResult& r) {
  return fmt::format(
      "PlanResult{{status={}, height_bytes={}, lower_bound_bytes={}, proven_optimal={}, "
      "planner={}, seconds={:.3f}, search_nodes={}}}",
      ToString(r.status), r.solution ? std::to_string(r.solution->height_bytes) : "none",
      r.lower_bound_bytes, r.proven_optimal, r.planner, r.seconds, r.search_nodes);
}

std::ostream& operator<<(std::ostream& os, const PlanResult& r) { return os << ToString(r); }

PlanResult PlanOffsets(const Problem& problem, const PlanOptions& options) {
  Validate(problem, options);
  const auto start = Clock::now();
  // Deterministic runs never read the clock for a decision: no deadline,
  // and the search stops at its node budget instead.
  const Deadline deadline = options.deterministic
                                ? Deadline::max()
                                : DeadlineAfter(options.time_limit_seconds, "time limit", start);
  std::optional<int64_t> node_budget = options.exact.max_nodes;  // For all probes together.
  if (options.deterministic && !node_budget) node_budget = kDeterministicSearchNodes;
  const bool fitting = options.objective == Objective::kFitCapacity;
  const int64_t capacity = fitting ? *problem.capacity_bytes : 0;

  PlanResult result;
  result.planner = std::string(ToString(options.planner));
  auto finish = [&](PlanStatus status, const Candidate* best) {
    result.status = status;
    if (best) {
      result.solution = Solution{best->offsets, best->height};
      result.planner = best->planner;
      result.proven_optimal = result.proven_optimal || best->height == result.lower_bound_bytes;
    }
    result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return result;
  };

  // 1. Lower bound.
  result.lower_bound_bytes = LowerBound(problem);
  if (fitting && result.lower_bound_bytes > capacity) return finish(PlanStatus::kInfeasible, nullptr);

  // 2. Heuristics.
  std::vector<PlannerKind> heuristics;
  if (options.planner == PlannerKind::kAuto) {
    // Breadth first: on the real traces of the bench it is the best of the
    // three (pangu_2.6B, Y_1: at the lower bound), and on large problems
    // the others may get no time.
    heuristics = {PlannerKind::kGreedyBreadth, PlannerKind::kBestFit, PlannerKind::kGreedySize};
  } else if (options.planner != PlannerKind::kExact) {
    heuristics = {options.planner};
  }
  std::optional<Candidate> best;
  // Past this point the heuristics of auto stop, to leave the search time.
  const Deadline heuristics_deadline =
      options.deterministic ? Deadline::max()
                            : DeadlineAfter(options.time_limit_seconds * kHeuristicsShare, "time limit", start);
  for (PlannerKind kind : heuristics) {
    // The first heuristic always runs (it stacks what it has no time for);
    // the others only when they are of use and, with auto, when they are
    // likely to end within their share of the budget (they cost about the
    // same: their gap placement is quadratic).
    if (best) {
      if (best->height == result.lower_bound_bytes) break;
      if (fitting && best->height <= capacity) break;
      const auto now = Clock::now();
      if (now > deadline || (options.planner == PlannerKind::kAuto && now + (now - start) > heuristics_deadline)) {
        break;
      }
    }
    const bool finish = !best && options.finish_first_heuristic;
    Candidate c = RunHeuristic(kind, problem, options.alignment_bytes, finish ? Deadline::max() : deadline);
    if (!best || c.height < best->height) best = std::move(c);
  }
  const bool searching =
      options.planner == PlannerKind::kExact || options.planner == PlannerKind::kAuto;
  if (!searching) {
    if (best->height == kSaturatedBytes) FailUnrepresentable(problem, options);
    if (fitting && best->height > capacity) return finish(PlanStatus::kNotFound, nullptr);
    return finish(PlanStatus::kSolved, &*best);
  }
  if (best && best->height == result.lower_bound_bytes) return finish(PlanStatus::kSolved, &*best);
  if (fitting && best && best->height <= capacity && best->height < kSaturatedBytes) {
    return finish(PlanStatus::kSolved, &*best);
  }

  // 3. Exact search.
  ExactSolver solver(problem, options.alignment_bytes, options.exact, deadline);
  // `share`: of the time and nodes left, what this probe may take.
  auto solve = [&](int64_t cap, double share = 1.0) {
    std::optional<int64_t> max_nodes;
    if (node_budget) {
      max_nodes = std::max<int64_t>(0, *node_budget - result.search_nodes);
      if (share < 1.0) max_nodes = static_cast<int64_t>(static_cast<double>(*max_nodes) * share);
    }
    Deadline probe_deadline = deadline;
    if (share < 1.0 && deadline != Deadline::max()) {
      const auto now = Clock::now();
      if (now < deadline) {
        probe_deadline = now + std::chrono::duration_cast<Clock::duration>((deadline - now) * share);
      }
    }
    ExactResult r = solver.Solve(cap, max_nodes, probe_deadline);
    result.search_nodes += r.nodes;
    return r;
  };
  if (fitting) {
    ExactResult r = solve(capacity);
    if (r.outcome == ExactOutcome::kInfeasible) return finish(PlanStatus::kInfeasible, nullptr);
    if (r.outcome == ExactOutcome::kTimeout) return finish(PlanStatus::kTimeout, nullptr);
    Candidate c{"exact", std::move(r.offsets), 0};
    c.height = HeightOf(problem, c.offsets);
    return finish(PlanStatus::kSolved, &c);
  }
  // Minimizing: without a heuristic start, the naive placement bounds it.
  if (!best) best = RunHeuristic(PlannerKind::kBestFit, problem, options.alignment_bytes,
                                  options.finish_first_heuristic ? Deadline::max() : deadline);
  int64_t low = result.lower_bound_bytes;  // Everything below is infeasible.
  int64_t undecided_below = low;  // A probe below this timed out.
  bool proven = true;
  // Try the lower bound first (often tight), then bisect. The lower bound
  // gets kFirstProbeShare of the time (and nodes): when it is not reached in
  // time, a height between it and the best found, which a dive with some
  // slack often reaches at once, gets the rest.
  int64_t probe = low;
  bool first = true;
  while (std::max(low, undecided_below) < best->height) {
    ExactResult r = solve(probe, first ? kFirstProbeShare : 1.0);
    const bool was_first = first;
    first = false;
    if (r.outcome == ExactOutcome::kTimeout) {
      proven = false;
      if (!was_first) break;
      undecided_below = probe + 1;
      if (undecided_below >= best->height) break;
      probe = undecided_below + (best->height - 1 - undecided_below) / 4;
      continue;
    }
    if (r.outcome == ExactOutcome::kFound) {
      Candidate c{"exact", std::move(r.offsets), 0};
      c.height = HeightOf(problem, c.offsets);
      best = std::move(c);
    } else {
      low = probe + 1;
    }
    const int64_t from = std::max(low, undecided_below);
    probe = from + (best->height - 1 - from) / 2;
  }
  if (best->height == kSaturatedBytes) FailUnrepresentable(problem, options);
  result.proven_optimal = proven;
  return finish(PlanStatus::kSolved, &*best);
}

}  // namespace memfit::alloc
