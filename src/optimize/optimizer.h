// memfit's main job: given a training graph, a device and a limit, return
// the fastest plan that fits, and prove it fits.
//
// Pipeline (docs/optimize.md):
//  1. the unoptimized reference: program order, simulated;
//  2. schedules: program order, and (with `reorder`) the memory-aware
//     schedulers of sched/; a schedule that fits needs nothing else;
//  3. rematerialization and swapping on the node-level problem of each
//     schedule (remat/): the heuristic under a budget that is tightened
//     until the simulated peak fits; on small problems the Checkmate MILP,
//     warm-started from the heuristic, within the time budget; the
//     checkpointing baselines when asked for by name;
//  4. the fastest plan whose storages pack into the limit gets every storage
//     instance an offset in one arena (plan/), which the independent checker
//     verifies; when fragmentation keeps a faster plan out, the next fastest
//     are placed in turn and a search under a budget tightened by that
//     fragmentation looks for a faster one that packs;
//  5. the independent checker (plan/plan_check.h) verifies the plan kept;
//  6. the result: the Plan (plan/plan_json.h) and its figures.
// optimizer.cc's Optimize reads as these steps, one function each; the
// search's constants are named there.
// The simulator is the judge of every candidate's memory and time.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "plan/plan_json.h"
#include "sim/cost_model.h"
#include "optimize/search_trace.h"
#include "sim/device.h"
#include "util/error.h"

namespace memfit {

enum class RematMethod : uint8_t {
  kAuto,              // heuristic (+ swapping), MILP when the problem is small
  kHeuristic,         // heuristic only
  kMilp,              // the Checkmate MILP (warm-started from the heuristic)
  kCheckpointBlocks,  // baseline: keep block inputs, recompute blocks
  kSqrtN,             // baseline: Chen's sqrt(n) segments
};
std::string_view ToString(RematMethod method);
std::optional<RematMethod> ParseRematMethod(std::string_view name);

// What produced a candidate plan (optimizer.cc's Candidate::method). The
// printed name (OptimizeResult::method) is PlanLabel's: the method, after its
// schedule's name unless that is program order.
enum class PlanMethod : uint8_t {
  kAsScheduled,        // the schedule alone, every op once, nothing evicted
  kHeuristic,          // the remat heuristic, recomputation only
  kHeuristicSwap,      // the remat heuristic with swapping and recomputation
  kSwap,               // the remat heuristic, swapping only (--no-recompute)
  kSqrtN,              // baseline: Chen's sqrt(n) segments
  kCheckpointBlocks,   // baseline: keep block inputs, recompute blocks
  kMilp,               // the Checkmate MILP
};
// "as-scheduled", "heuristic", "heuristic+swap", "swap", "sqrt-n", "checkpoint-blocks", "milp".
std::string_view ToString(PlanMethod method);
// "heuristic+swap" (program order), "partitioned+heuristic", "partitioned"
// (kAsScheduled: the schedule's name alone).
std::string PlanLabel(PlanMethod method, std::string_view scheduler);

struct PlanFigures {
  double latency_us = 0;
  int64_t peak_bytes = 0;     // simulated, workspace included
  double recompute_us = 0;
  int64_t swap_bytes = 0;     // swapped out
};

struct OptimizeOptions {
  // Exactly one limit: bytes, a ratio of the unoptimized peak, or (with
  // lat_limit_ratio) the smallest memory whose latency stays within the
  // ratio of the unoptimized latency.
  std::optional<int64_t> mem_limit_bytes;
  std::optional<double> mem_limit_ratio;
  std::optional<double> lat_limit_ratio;
  RematMethod method = RematMethod::kAuto;
  bool allow_swap = true;
  bool allow_recompute = true;
  bool recompute_random = true;  // the executor replays RNG state
  bool reorder = true;           // try the memory-aware schedulers
  double time_budget_seconds = 10;
  // A command's budget covers what follows the search too: the latency
  // bound, writing PLAN.json or the report, and the last placement (given
  // its greedy planners even past the deadline). Its search stops this share
  // early, at most kFinishMaxSeconds: bert-base micro-batched at +5% on
  // rtx3090 spends 0.25 s in that placement and 0.2 s writing a 5 MB plan
  // (10.6 s for a 10 s budget before; vit-base 10.4 s, gpt-neo-1.3b 10.3 s).
  // Short budgets keep kFinishMinSeconds (at most half the budget) for it:
  // the finish does not shrink with the budget (bert-base bs32 seq512 at
  // 0.3 of its peak with a 1 s budget took 1.4-1.6 s, its x8 plan placed
  // and written after the deadline).
  static constexpr double kFinishShare = 0.1;
  static constexpr double kFinishMinSeconds = 0.5;
  static constexpr double kFinishMaxSeconds = 1.0;
  // The seconds a command whose whole budget is `command_seconds` gives its search.
  static double SearchSeconds(double command_seconds) {
    const double finish = std::max(kFinishShare * command_seconds, std::min(kFinishMinSeconds, command_seconds / 2));
    return command_seconds - std::min(finish, kFinishMaxSeconds);
  }
  // When the time budget started (absent: when Optimize is called); the CLI
  // starts it before loading the graph.
  std::optional<std::chrono::steady_clock::time_point> budget_start;
  // Deterministic search: when set, the searches are bounded by work instead
  // of the wall clock, and the plan does not depend on the machine's speed
  // or load (time_budget_seconds is then not kept). The unit is one run of
  // the remat heuristic; the scheduler is bounded by its frontier states,
  // the MILP by a node limit and the arena placement by
  // alloc::kDeterministicSearchNodes search nodes.
  std::optional<int64_t> work_budget;
  static constexpr int64_t kDefaultWorkBudget = 1000;
  // Under a latency limit every probe of the bisection over memory budgets
  // is a whole memory-limit search: the default budget is this many times
  // kDefaultWorkBudget (resnet-50 bs64 at lat <= 1.1 on rtx3090 converges
  // at about 2,000 runs; 1,000 stopped at 0.683 of the peak for 0.370).
  static constexpr int64_t kLatencyWorkBudgetFactor = 3;
  // The work budget of a deterministic search that names none.
  int64_t DefaultWorkBudget() const {
    return lat_limit_ratio ? kDefaultWorkBudget * kLatencyWorkBudgetFactor : kDefaultWorkBudget;
  }
  // Called with every decision of the search as it is made (--verbose).
  SearchObserver on_event;
  // The program-order figures that the ratios (and OptimizeResult::original)
  // refer to; absent: the graph's own. A search over transformed graphs
  // (fission) passes the untransformed graph's, so that every variant meets
  // the same limits.
  std::optional<PlanFigures> reference;
  // Under a latency limit: only a plan that needs less than this is of use
  // (a search over transformed graphs has a plan in hand that needs this
  // much). The bisection starts here instead of at the program order's
  // peak, and when no plan at this budget is within the latency limit,
  // Optimize throws NoSmallerPlan at once.
  std::optional<int64_t> below_bytes;
  // Write in-place ops out of place before planning (PlanOutOfPlace).
  // The graph given is rewritten once; the searches inside (the graph as
  // given, the fission variants, whose partial sums accumulate in place by
  // design) plan their graphs as made.
  bool out_of_place = true;
  // The MILP runs on problems of at most this many nodes (64 with
  // --deterministic, where CBC has no bound on its work but time).
  size_t milp_max_nodes = 120;
  int64_t alignment_bytes = 64;
};


// What Optimize throws under OptimizeOptions::below_bytes when no plan
// within the latency limit needs less: `runs` is the work it spent.
class NoSmallerPlan : public Error {
 public:
  NoSmallerPlan(const std::string& message, int64_t runs) : Error(message), runs(runs) {}
  int64_t runs = 0;
};

// What Optimize throws when no plan fits the limit and it bisected for the
// smallest memory it reaches: `reached_bytes` is that memory.
class NoPlanFits : public Error {
 public:
  NoPlanFits(const std::string& message, int64_t reached_bytes) : Error(message), reached_bytes(reached_bytes) {}
  int64_t reached_bytes = 0;
};

struct OptimizeResult {
  Plan plan;  // graph, steps, offsets, simulated figures
  PlanFigures original, optimized;
  int64_t limit_bytes = 0;
  double latency_limit_us = 0;  // lat_limit_ratio only
  int64_t weight_bytes = 0;     // parameters, buffers, optimizer state
  std::string method;           // what produced the plan: "program-order", "greedy+heuristic", ...
  std::string scheduler;
  bool milp_proven_optimal = false;
  double seconds = 0;
  size_t candidates = 0;        // plans simulated
  int64_t heuristic_runs = 0;   // the work spent, in OptimizeOptions::work_budget's unit
  size_t placements = 0;        // plans given offsets (more than 1: faster plans did not pack into the limit)
  int64_t search_budget_bytes = 0;  // the budget of the search that found the plan: the limit, or less after fragmentation
  double overhead() const { return original.latency_us > 0 ? optimized.latency_us / original.latency_us - 1 : 0; }
};

// Throws Error when the limit cannot be met; the message names the
// smallest memory memfit reaches for the graph (or, when plans fit by
// simulated peak but none packs into an arena under the limit, the smallest
// arena packed).
OptimizeResult Optimize(const Graph& graph, const sim::DeviceProfile& device, const sim::CostTable* costs,
                        const OptimizeOptions& options);

// Whether plan `a` beats plan `b`: faster under a memory limit; under a
// latency limit smaller, then faster.
bool BetterPlan(const OptimizeResult& a, const OptimizeResult& b, bool latency_limit);

// `plan` (Optimize, or the fission search) run on `graph` written out of
// place first (transform/out_of_place.h), with options.out_of_place off in
// every search inside and the limits still of `graph`'s program order:
//   - in-place ops whose input was copied first are always rewritten (that
//     never raises the peak of program order and drops the copies), and so
//     are dropout masks drawn in place;
//   - where other in-place ops remain (ReLU(inplace=True)), the graph with
//     them in place and the graph with them out of place each get half the
//     budget (time or work), and the better plan wins: out of place,
//     captured DenseNet-121 at 0.5 of its peak went from +32.5% to +9.5%,
//     but captured ResNet-18 at 0.55 from +16.5% to +46.1%. When neither
//     finds a plan, the error of the one that reached less memory is thrown
//     (NoPlanFits), else the first one's.
// A graph memfit split (fission records in its metadata) is planned as made:
// its partial sums accumulate in place by design.
OptimizeResult PlanOutOfPlace(const Graph& graph, const sim::DeviceProfile& device, const sim::CostTable* costs,
                              const OptimizeOptions& options,
                              const std::function<OptimizeResult(const Graph&, const OptimizeOptions&)>& plan);

// Throws Error for options that name no limit, two limits, or values out of
// range (Optimize checks them first; so does the fission search, before it
// transforms anything).
void CheckOptions(const OptimizeOptions& options);

// The smallest simulated peak the heuristic reaches (bisection over
// budgets between the lower bound and the unoptimized peak).
int64_t SmallestReachableBytes(const Graph& graph, const sim::DeviceProfile& device, const sim::CostTable* costs,
                               const OptimizeOptions& options);

}  // namespace memfit
