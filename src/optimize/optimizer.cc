#include "optimize/optimizer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <limits>
#include <numeric>
#include <ostream>

#include <fmt/format.h>

#include "analysis/liveness.h"
#include "analysis/stats.h"
#include "plan/placement.h"
#include "plan/plan_check.h"
#include "remat/graph_problem.h"
#include "remat/baselines.h"
#include "remat/heuristic.h"
#include "remat/lower.h"
#include "remat/milp.h"
#include "remat/swap_plan.h"
#include "sched/scheduler.h"
#include "sim/simulator.h"
#include "transform/fission.h"
#include "transform/out_of_place.h"
#include "optimize/latency_search.h"
#include "optimize/search_trace.h"
#include "util/deadline.h"
#include "util/enum_names.h"
#include "util/error.h"

namespace memfit {

constexpr EnumName<RematMethod> kRematMethodNames[] = {
    {RematMethod::kAuto, "auto"}, {RematMethod::kHeuristic, "heuristic"}, {RematMethod::kMilp, "milp"},
    {RematMethod::kCheckpointBlocks, "checkpoint-blocks"}, {RematMethod::kSqrtN, "sqrt-n"}};

std::string_view ToString(RematMethod method) { return NameOf(kRematMethodNames, method); }

std::optional<RematMethod> ParseRematMethod(std::string_view name) {
  return ValueNamed(kRematMethodNames, name);
}

constexpr EnumName<PlanMethod> kPlanMethodNames[] = {
    {PlanMethod::kAsScheduled, "as-scheduled"}, {PlanMethod::kHeuristic, "heuristic"},
    {PlanMethod::kHeuristicSwap, "heuristic+swap"}, {PlanMethod::kSwap, "swap"}, {PlanMethod::kSqrtN, "sqrt-n"},
    {PlanMethod::kCheckpointBlocks, "checkpoint-blocks"}, {PlanMethod::kMilp, "milp"}};

std::string_view ToString(PlanMethod method) { return NameOf(kPlanMethodNames, method); }

std::string PlanLabel(PlanMethod method, std::string_view scheduler) {
  if (method == PlanMethod::kAsScheduled) return std::string(scheduler);
  if (scheduler == "program-order") return std::string(ToString(method));
  return fmt::format("{}+{}", scheduler, ToString(method));
}

namespace {

using Clock = SteadyClock;

// Memory and latency limit ratios above this are refused (no graph's limit
// is a million times its peak).
constexpr double kMaxRatio = 1e6;
// The least time an arena placement gets, even past the time budget.
constexpr double kMinPlacementSeconds = 0.2;
// A time limit that never binds (the searches are bounded by work).
constexpr double kNoTimeLimit = 1e9;
// Deterministic mode's bound of the MILP: CBC's branch-and-bound nodes,
// fewer the larger the problem, since a node's LP grows with the square of
// the problem's nodes (Checkmate's R and S): kDeterministicMilpNodeWork / n^2
// of them, at least kDeterministicMilpMinNodes, at most
// kDeterministicMilpNodes. A 56-node problem (a small decoder imported from
// ONNX, 7,228 columns) took 0.75 s a node after 2 s at the root, and with
// 2,000 nodes a search at an unreachable limit ran past 15 minutes; now 6
// nodes, some seconds a solve (a 16-node problem: 78 nodes, 0.06 s each).
constexpr int64_t kDeterministicMilpNodes = 2000;
constexpr int64_t kDeterministicMilpMinNodes = 1;
constexpr int64_t kDeterministicMilpNodeWork = 20000;
// ... and the largest problem it runs on there (--method auto): CBC's work
// at the root (cuts, the feasibility pump) has no bound but time. segnet
// bs32 (114 nodes, 17,079 columns after preprocessing) spent 30 to 205 s in
// each solve even with 50 nodes, and a latency limit's bisection asks for
// several: --deterministic ran for hours. A 56-node problem still spent 8
// to 19 s in each solve, most of it at the root, and a search at an
// unreachable limit asks for some twenty: 286 s for a 60-op graph.
constexpr size_t kDeterministicMilpMaxNodes = 40;

// The memory-aware scheduler gets at most kSchedulerMaxSeconds, and at most
// kSchedulerShare of the time budget (step 2 of the pipeline, optimizer.h).
constexpr double kSchedulerMaxSeconds = 2.0;
constexpr double kSchedulerShare = 0.2;
// A heuristic plan that recomputes more than this many times the step's
// compute is past anything worth keeping (the baselines cost about 30%).
constexpr double kMaxRecomputeOfStep = 2;
// Recomputations and copies only add to a schedule's compute: a plan within
// this relative tolerance of the step's bare compute time cannot be beaten.
constexpr double kUnbeatableTolerance = 1e-12;

// The heuristic's internal budget (Search::Heuristic). The heuristic works
// on node sizes and cannot see every free the simulator sees, so its
// simulated peak differs from its own budget; the search adjusts that
// internal budget around the budget it must meet:
//  - tightening: at most kMaxTightenings runs, each lowering the internal
//    budget by the simulated peak's excess over the budget, at least by the
//    step budget / kTightenStepDivisor (1/256 of it), and by that step when
//    the heuristic found no plan at all;
constexpr int kMaxTightenings = 12;
constexpr int64_t kTightenStepDivisor = 256;
//  - loosening (a looser internal budget that still fits recomputes less):
//    the first try is budget / kFirstLoosenDivisor (an eighth) above, each
//    next one 1.5 times the last (up += up / kLoosenGrowthDivisor), past
//    kMaxLoosenFactor times the budget no more; then at most
//    kLoosenBisections bisection steps between the loosest internal budget
//    known to fit and one known not to.
constexpr int64_t kFirstLoosenDivisor = 8;
constexpr int64_t kLoosenGrowthDivisor = 2;  // up += up / 2: 1.5 times
constexpr int64_t kMaxLoosenFactor = 4;
constexpr int kLoosenBisections = 6;
// The MILP gets kMilpShareOfLeft of the time left (at least kMilpMinSeconds),
// and runs only when more than kMilpMinSeconds are left.
constexpr double kMilpShareOfLeft = 0.8;
constexpr double kMilpMinSeconds = 0.5;
// Bisections over budgets (the smallest memory reached; a latency limit's
// is latency_search.h) stop within kBisectToleranceDivisor of the upper end.
// Step 4, the placement: at most kPlacementsPerSearch plans placed per
// search and kSearches searches (the first, then each after tightening the
// budget by the fragmentation seen). Each placement gets kPlacementShareOfLeft
// of the time left, clamped to [kMinPlacementSeconds, max(kPlacementMaxSeconds,
// kPlacementShareOfBudget of the time budget)].
constexpr size_t kPlacementsPerSearch = 4;
constexpr int kSearches = 4;
constexpr double kPlacementShareOfLeft = 0.25;
constexpr double kPlacementMaxSeconds = 5.0;
constexpr double kPlacementShareOfBudget = 0.1;
// Under a latency limit the memory is the plan's simulated peak and the
// arena is reported beside it: a deterministic placement stops its exact
// search after this many nodes (instead of alloc::kDeterministicSearchNodes),
// about the 5 s a timed placement gets at most. A million nodes took 43 s
// for a bert-base bs32 plan at +10% whose greedy arena was 3.29 KiB over
// its peak, and 140 s more than 20,000 nodes on vit-base (arena 0.5% over
// its peak, not 1.9%).
constexpr int64_t kLatencyLimitPlacementNodes = 100'000;
// A memory limit given as a ratio is clamped to this many bytes before it is
// converted (a ratio far above 1 is no limit at all, and a double past
// int64_t's range does not convert).
constexpr double kMaxRatioLimitBytes = 0x1p62;

constexpr remat::SwapPriority kPriorities[] = {remat::SwapPriority::kCostPerByte, remat::SwapPriority::kEarliest};

bool IsBaseline(RematMethod method) {
  return method == RematMethod::kCheckpointBlocks || method == RematMethod::kSqrtN;
}

// A plan found by the search, with the simulator's verdict on it.
struct Candidate {
  Steps steps;
  sim::SimResult sim;
  PlanMethod method = PlanMethod::kAsScheduled;
  std::string scheduler;
  bool proven_optimal = false;
  // The printed name: "partitioned+heuristic+swap", "sqrt-n", ...
  std::string label() const { return PlanLabel(method, scheduler); }
  // "partitioned+heuristic: 412 steps, peak 1.2 GiB, 12.345 ms".
  std::string ToString() const {
    return fmt::format("{}: {} steps, peak {}, {:.3f} ms{}", label(), steps.steps.size(), FormatBytes(sim.peak_bytes),
                       sim.latency_ms(), proven_optimal ? " (proven optimal)" : "");
  }
  friend std::ostream& operator<<(std::ostream& os, const Candidate& c) { return os << c.ToString(); }
};

// One schedule's node-level problem with what the searches share.
struct Prepared {
  std::string scheduler;
  std::vector<OpId> order;
  remat::GraphProblem gp;
  std::vector<double> copy_us;  // per node, one way
  // Planned swaps (remat/swap_plan.h): per part, then over the whole step,
  // each in kPriorities' order, without repeats.
  std::vector<std::vector<uint32_t>> planned_swaps;
};

// The options as `device` allows them: no swaps where the host memory is the
// device's own (a swap would free nothing).
OptimizeOptions ForDevice(OptimizeOptions options, const sim::DeviceProfile& device) {
  if (device.shared_host_memory) options.allow_swap = false;
  return options;
}

class Search {
 public:
  Search(const Graph& graph, const sim::DeviceProfile& device, const sim::CostTable* costs,
         const OptimizeOptions& options)
      : graph_(graph),
        options_(ForDevice(options, device)),
        simulator_(graph, device, costs),
        latencies_(sim::LatenciesUs(simulator_.op_latencies())),
        step_us_(std::accumulate(latencies_.begin(), latencies_.end(), 0.0)),
        start_(options.budget_start.value_or(Clock::now())),
        deadline_(DeadlineAfter(options.time_budget_seconds, "time budget", start_)) {}

  const sim::Simulator& simulator() const { return simulator_; }
  const OptimizeOptions& options() const { return options_; }
  size_t simulated() const { return simulated_; }
  int64_t runs() const { return runs_; }
  double Elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  double Left() const { return SecondsLeft(deadline_); }
  // The budget (time, or work when deterministic) is spent: every search
  // stops at its next check and keeps what it found.
  bool OutOfTime() const {
    const bool out = options_.work_budget ? runs_ >= *options_.work_budget : Clock::now() > deadline_;
    if (out && !stop_reported_) {
      stop_reported_ = true;
      Emit({0, SearchStage::kStop, "", "", 0, {}, {},
            options_.work_budget ? fmt::format("the work budget ({} heuristic runs) is spent", *options_.work_budget)
                                 : fmt::format("the time budget ({} s) is spent", options_.time_budget_seconds)});
    }
    return out;
  }
  bool deterministic() const { return options_.work_budget.has_value(); }
  // The deadline of a search that must stop with the budget (none when the
  // budget is work).
  Clock::time_point deadline() const { return deterministic() ? Clock::time_point::max() : deadline_; }
  // Reports a decision to OptimizeOptions::on_event (stamped with the time).
  void Emit(SearchEvent event) const {
    if (!options_.on_event) return;
    event.seconds = Elapsed();
    options_.on_event(event);
  }
  // A plan simulated under `budget`: whether it fits, or why there is none.
  void EmitPlan(const Prepared& p, std::string method, int64_t budget, int64_t internal_budget,
                const std::optional<Candidate>& c, std::string_view failure = {}) const {
    if (!options_.on_event) return;
    SearchEvent e{0, SearchStage::kPlan, p.scheduler, std::move(method), internal_budget, {}, {}, {}};
    if (c) {
      e.peak_bytes = c->sim.peak_bytes;
      e.latency_us = c->sim.latency_us;
      // A heuristic run works under its own internal budget; its plan is
      // judged against the search's.
      const std::string of = internal_budget > 0 && internal_budget != budget
                                 ? fmt::format(" of the search ({})", FormatBytes(budget))
                                 : "";
      e.outcome = c->sim.peak_bytes <= budget
                      ? "fits" + (of.empty() ? "" : " the budget" + of)
                      : fmt::format("over the budget{} by {}", of, FormatBytes(c->sim.peak_bytes - budget));
    } else {
      e.outcome = fmt::format("no plan: {}", failure.empty() ? "none found" : failure);
    }
    Emit(std::move(e));
  }

  // One run of the remat heuristic: the unit of the work budget.
  remat::HeuristicResult RunHeuristic(const remat::Problem& problem, const remat::HeuristicOptions& ho) {
    ++runs_;
    return remat::RunHeuristic(problem, ho);
  }

  // The smallest memory any schedule's node problem allows, and the op that
  // needs it (remat/heuristic.h); never above `peak`.
  struct Floor {
    int64_t bytes = 0;
    std::string op;  // empty: the fixed bytes, or `peak`
  };
  Floor LowerBound(int64_t peak) {
    Floor lower{peak, ""};
    for (const Prepared& p : Schedules()) {
      const remat::MemoryFloor f = remat::LowestMemory(p.gp.problem);
      if (f.bytes < lower.bytes) lower = {f.bytes, f.node ? p.gp.problem.nodes[*f.node].name : ""};
    }
    return lower;
  }
  // Persistent sources (parameters, buffers, optimizer state).
  int64_t WeightBytes() { return Schedules().front().gp.problem.fixed_bytes; }
  // The remat method of later searches (the schedules stay).
  void set_method(RematMethod method) { options_.method = method; }

  sim::SimResult Simulate(const Steps& plan) {
    ++simulated_;
    sim::SimResult result = simulator_.Run(plan);
    least_peak_ = std::min(least_peak_, result.peak_bytes);
    return result;
  }
  // The smallest simulated peak of any plan so far (each is a plan, over its
  // budget or not): what a failed search reached.
  int64_t least_peak() const { return least_peak_; }
  // From now on, the fastest plan made that needs no more than `bytes`,
  // whatever budget it was made under (within()).
  void KeepWithin(int64_t bytes) { within_bytes_ = bytes; }
  std::optional<Candidate>& within() { return within_; }

  // The schedules to try: program order first, then the schedulers'.
  const std::vector<Prepared>& Schedules() {
    if (!schedules_.empty()) return schedules_;
    // Every count of memory sees the simulator's workspace figures (a cost
    // table's measurements where it has them), as the simulated peak does.
    remat::GraphProblemOptions gpo{.recompute_random = options_.recompute_random,
                                   .workspace_bytes = simulator_.workspace_bytes()};
    auto add = [&](std::string name, std::vector<OpId> order) {
      for (const Prepared& p : schedules_) {
        if (p.order != order) continue;
        Emit({0, SearchStage::kSchedule, name, "", 0, {}, {}, fmt::format("dropped: the same order as {}", p.scheduler)});
        return;
      }
      Prepared p{std::move(name), std::move(order), {}, {}, {}};
      p.gp = remat::BuildGraphProblem(graph_, p.order, latencies_, gpo);
      p.copy_us.resize(p.gp.problem.size());
      for (size_t v = 0; v < p.copy_us.size(); ++v) {
        p.copy_us[v] = sim::HostCopyUs(p.gp.problem.nodes[v].bytes, simulator_.device());
      }
      // Per part and over the whole step (they differ only on a
      // micro-batched step, and neither wins everywhere: per part, vit-base
      // x8 at +10% needs 0.156 of its peak where the whole step's plan
      // needs 0.194; unet x4 at +5% goes the other way).
      for (const bool per_part : {true, false}) {
        for (const remat::SwapPriority priority : kPriorities) {
          if (!options_.allow_swap) break;
          std::vector<uint32_t> planned =
              remat::PlanSwaps(p.gp.problem, p.copy_us, {.priority = priority, .per_part = per_part});
          if (std::find(p.planned_swaps.begin(), p.planned_swaps.end(), planned) == p.planned_swaps.end()) {
            p.planned_swaps.push_back(std::move(planned));
          }
        }
      }
      Emit({0, SearchStage::kSchedule, p.scheduler, "", 0, {}, {},
            fmt::format("prepared: {} nodes for remat, parameters and state {} (no plan needs less){}",
                        p.gp.problem.size(), FormatBytes(p.gp.problem.fixed_bytes),
                        p.planned_swaps.empty() ? "" : fmt::format(", {} swap plans", p.planned_swaps.size()))});
      schedules_.push_back(std::move(p));
    };
    add("program-order", ProgramOrder(graph_));
    // The baselines are what users apply to their program as written.
    if (options_.reorder && !IsBaseline(options_.method)) {
      sched::ScheduleOptions so;
      so.scheduler = sched::SchedulerKind::kAuto;
      so.liveness.workspace_bytes = simulator_.workspace_bytes();
      // Deterministic: bounded by ScheduleOptions::max_states alone.
      so.time_limit_seconds = deterministic() ? kNoTimeLimit
                                              : std::min({kSchedulerMaxSeconds,
                                                          kSchedulerShare * options_.time_budget_seconds, Left()});
      sched::ScheduleResult r = sched::Schedule(graph_, so);
      add(r.scheduler, std::move(r.order));
    }
    return schedules_;
  }

  // Every plan found whose simulated peak is at most `budget`, fastest
  // first (the arena may not pack the fastest: see Optimize). With
  // `enough_us`, the search stops at the first plan that fits and is at
  // least that fast (a latency limit's probe asks only whether one exists).
  std::vector<Candidate> Fit(int64_t budget, std::optional<double> enough_us = std::nullopt) {
    Emit({0, SearchStage::kSearch, "", "", budget, {}, {}, "plans under this budget"});
    std::vector<Candidate> fitting;
    bool enough = false;
    auto consider = [&](Candidate c) {
      if (c.sim.peak_bytes > budget) return;
      enough = enough || (enough_us && c.sim.latency_us <= *enough_us);
      fitting.push_back(std::move(c));
    };
    auto done = [&] { return enough || OutOfTime(); };
    const bool baseline = IsBaseline(options_.method);
    // Every schedule as it is first (one simulation each): a schedule that
    // fits needs nothing else. The others are searched lowest peak first,
    // the likeliest to fit soonest when time is short.
    std::vector<std::pair<int64_t, const Prepared*>> searched;
    for (const Prepared& p : Schedules()) {
      Steps plain = StepsFromOrder(graph_, p.order);
      Candidate c{plain, Simulate(plain), PlanMethod::kAsScheduled, p.scheduler, false};
      EmitPlan(p, "as scheduled", budget, 0, c);
      if (c.sim.peak_bytes <= budget && !baseline) {
        consider(std::move(c));
      } else {
        searched.emplace_back(c.sim.peak_bytes, &p);
      }
    }
    std::stable_sort(searched.begin(), searched.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    // Recomputations and copies only add to a schedule's compute: once a
    // schedule fits at the step's bare compute time, nothing is faster.
    const bool unbeatable = std::any_of(fitting.begin(), fitting.end(), [&](const Candidate& c) {
      return c.sim.latency_us <= step_us_ * (1 + kUnbeatableTolerance);
    });
    if (unbeatable || enough) searched.clear();
    for (const auto& [unused, prepared] : searched) {
      if (done()) break;
      const Prepared& p = *prepared;
      switch (options_.method) {
        case RematMethod::kCheckpointBlocks:
        case RematMethod::kSqrtN: {
          const auto which = options_.method == RematMethod::kSqrtN ? remat::Baseline::kSqrtN
                                                                     : remat::Baseline::kCheckpointBlocks;
          if (auto b = Baseline(p, which, budget)) consider(*b);
          break;
        }
        default: {
          std::optional<Candidate> recompute_only;
          auto recompute = [&] {
            if (!options_.allow_recompute) return;
            for (const remat::HeuristicOptions& variant : remat::RecomputeVariants()) {
              if (done()) break;
              std::optional<Candidate> c = Heuristic(p, budget, Limited(variant), PlanMethod::kHeuristic, enough_us);
              if (!c) continue;
              if (!recompute_only || c->sim.latency_us < recompute_only->sim.latency_us) recompute_only = c;
              consider(std::move(*c));
            }
          };
          auto swap = [&] {
            if (!options_.allow_swap) return;
            const PlanMethod name = options_.allow_recompute ? PlanMethod::kHeuristicSwap : PlanMethod::kSwap;
            for (const bool parts : {false, true}) {
              if (done()) break;
              // Swaps chosen when memory runs short.
              remat::HeuristicOptions lazy = Variant(remat::EvictionScore::kNextUse, parts);
              lazy.copy_us = p.copy_us;
              if (auto c = Heuristic(p, budget, lazy, name, enough_us)) consider(*c);
              // Swaps planned over the forward results' idle stretches, with
              // recomputation for the rest (remat/swap_plan.h).
              for (const std::vector<uint32_t>& swaps : p.planned_swaps) {
                if (done()) break;
                remat::HeuristicOptions planned = Variant(remat::EvictionScore::kNextUse, parts);
                planned.copy_us = p.copy_us;
                planned.evict_to_host = false;
                planned.swap_after = swaps;
                if (auto c = Heuristic(p, budget, planned, name, enough_us)) consider(*c);
              }
            }
          };
          // A latency limit's probe stops at its first plan within the
          // limit, and where the device has a host link that is, as a rule,
          // a plan that swaps (each MAGIS workload on rtx3090 keeps one): the
          // swapping variants go first there. vit-base at +10%, default time
          // budget: 0.161-0.165 of the peak in three runs, 0.166-0.173
          // before; of the deterministic figures only gpt-neo-1.3b's at +5%
          // moved (0.134 to 0.133). The recompute-only variants still run
          // after them: a swapping plan that fits the budget may be slower
          // than the limit where a recompute-only one is not (VGG16 bs32 at
          // +10%: 0.307 of the peak; 0.323 when they were skipped there).
          if (enough_us) {
            swap();
            recompute();
          } else {
            recompute();
            swap();
          }
          // The checkpointing baselines are candidates too: on graphs where
          // the budgeted heuristic thrashes (long recomputation chains at low
          // budgets) a regular checkpoint pattern can be both smaller and
          // faster.
          if (options_.method == RematMethod::kAuto && options_.allow_recompute) {
            for (remat::Baseline which : {remat::Baseline::kSqrtN, remat::Baseline::kCheckpointBlocks}) {
              if (done()) break;
              if (auto b = Baseline(p, which, budget)) consider(*b);
            }
          }
          const size_t milp_max_nodes =
              deterministic() ? std::min(options_.milp_max_nodes, kDeterministicMilpMaxNodes) : options_.milp_max_nodes;
          const bool milp = options_.method == RematMethod::kMilp ||
                            (options_.method == RematMethod::kAuto && p.gp.problem.size() <= milp_max_nodes);
          if (milp && options_.allow_recompute && !enough &&
              (deterministic() ? !OutOfTime() : Left() > kMilpMinSeconds)) {
            // Only a plan faster than the fastest in hand is of use, and under a
            // latency limit one within it (the sequence's compute is part of the
            // step's latency). Without a plan in hand CBC otherwise searches the
            // whole budget where no plan within the limit exists (a SimCLR step
            // at +10% on the CPU: 3.5 s per probe at its floor, 8.9 s in all).
            std::optional<double> cutoff_us = enough_us;
            for (const Candidate& c : fitting) cutoff_us = std::min(cutoff_us.value_or(c.sim.latency_us), c.sim.latency_us);
            if (auto c = Milp(p, budget, recompute_only, cutoff_us)) consider(*c);
          }
        }
      }
    }
    std::stable_sort(fitting.begin(), fitting.end(),
                     [](const Candidate& a, const Candidate& b) { return a.sim.latency_us < b.sim.latency_us; });
    return fitting;
  }

 private:
  std::optional<Candidate> Lowered(const Prepared& p, const std::vector<remat::Event>& events, PlanMethod method) {
    if (std::string why = remat::CheckEvents(p.gp.problem, events); !why.empty()) {
      Fail("internal: {} produced an invalid plan: {}", ToString(method), why);
    }
    Steps steps = remat::LowerToSteps(graph_, p.gp, events);
    sim::SimResult r = Simulate(steps);
    Candidate c{std::move(steps), r, method, p.scheduler, false};
    if (within_bytes_ && r.peak_bytes <= *within_bytes_ && (!within_ || r.latency_us < within_->sim.latency_us)) {
      within_ = c;
    }
    return c;
  }

  remat::HeuristicOptions Variant(remat::EvictionScore score, bool free_parts) const {
    remat::HeuristicOptions ho;
    ho.score = score;
    ho.free_parts = free_parts;
    return Limited(ho);
  }
  // The user's switches and the recomputation cap applied to a variant.
  remat::HeuristicOptions Limited(remat::HeuristicOptions ho) const {
    ho.allow_recompute = options_.allow_recompute;
    ho.max_recompute_us = kMaxRecomputeOfStep * step_us_;
    ho.deadline = deadline();
    return ho;
  }

  // The fastest plan of one heuristic variant under `budget`: the internal
  // (node-level) budget tightened until the simulated peak fits, then
  // loosened while it still fits and gets faster (unless the plan is already
  // within `enough_us`).
  std::optional<Candidate> Heuristic(const Prepared& p, int64_t budget, remat::HeuristicOptions ho,
                                     PlanMethod name, std::optional<double> enough_us = std::nullopt) {
    remat::HeuristicStatus status = remat::HeuristicStatus::kDone;  // of the last attempt
    auto attempt = [&](int64_t b) -> std::optional<Candidate> {
      ho.budget_bytes = b;
      const std::string method = fmt::format("{}[{}]", ToString(name), remat::VariantName(ho));
      const remat::HeuristicResult h = RunHeuristic(p.gp.problem, ho);
      status = h.status;
      if (!h.done()) {  // it gave up at this budget
        EmitPlan(p, method, budget, b, std::nullopt, h.detail);
        return std::nullopt;
      }
      std::optional<Candidate> c = Lowered(p, h.events, name);
      EmitPlan(p, method, budget, b, c);
      return c;
    };
    std::optional<Candidate> best;
    int64_t b = budget;
    // 1. Tighten the internal budget until the simulated peak fits.
    const int64_t step = std::max<int64_t>(budget / kTightenStepDivisor, 1);
    for (int i = 0; i < kMaxTightenings && b > p.gp.problem.fixed_bytes && !OutOfTime(); ++i) {
      std::optional<Candidate> c = attempt(b);
      // Past the recomputation cap here, a tighter internal budget only
      // recomputes more: the variant has no plan under this budget.
      if (status == remat::HeuristicStatus::kTooMuchRecompute) return std::nullopt;
      if (!c) {
        b -= step;
        continue;
      }
      if (c->sim.peak_bytes <= budget) {
        best = std::move(c);
        break;
      }
      b -= std::max(c->sim.peak_bytes - budget, step);
    }
    if (!best || (enough_us && best->sim.latency_us <= *enough_us)) return best;
    // 2. Loosen it while it still fits. The node-level estimate is
    // conservative (it cannot see that a later eviction frees memory back to
    // the victim's last read): a looser internal budget may still fit and
    // recompute less. Bisect between the loosest internal budget known to
    // fit and one known not to.
    int64_t fits = b, over = -1;
    // Plans at `at`: true (and `fits` moves there, the faster plan kept) when
    // the plan fits the limit, else `over` moves there.
    auto probe = [&](int64_t at) {
      std::optional<Candidate> c = attempt(at);
      if (!c || c->sim.peak_bytes > budget) {
        over = at;
        return false;
      }
      fits = at;
      if (c->sim.latency_us < best->sim.latency_us) best = std::move(c);
      return true;
    };
    for (int64_t up = std::max(budget, b) + std::max<int64_t>(budget / kFirstLoosenDivisor, step);
         over < 0 && !OutOfTime(); up += up / kLoosenGrowthDivisor) {
      if (probe(up) && up > kMaxLoosenFactor * budget) break;
    }
    for (int i = 0; i < kLoosenBisections && over > fits + step && !OutOfTime(); ++i) {
      probe(fits + (over - fits) / 2);
    }
    return best;
  }

  std::optional<Candidate> Baseline(const Prepared& p, remat::Baseline which, int64_t budget) {
    const PlanMethod method = which == remat::Baseline::kSqrtN ? PlanMethod::kSqrtN : PlanMethod::kCheckpointBlocks;
    std::optional<Candidate> c = Lowered(p, remat::RunBaseline(p.gp.problem, which).events, method);
    EmitPlan(p, std::string(ToString(which)), budget, 0, c);
    return c;
  }

  std::optional<Candidate> Milp(const Prepared& p, int64_t budget, const std::optional<Candidate>& warm,
                                std::optional<double> cutoff_us) {
    remat::MilpOptions mo;
    mo.budget_bytes = budget;
    mo.cutoff_us = cutoff_us;
    if (deterministic()) {
      mo.time_limit_seconds = kNoTimeLimit;
      const auto n = static_cast<int64_t>(p.gp.problem.size());
      mo.max_nodes = std::clamp<int64_t>(kDeterministicMilpNodeWork / std::max<int64_t>(n * n, 1),
                                         kDeterministicMilpMinNodes, kDeterministicMilpNodes);
    } else {
      mo.time_limit_seconds = std::max(kMilpMinSeconds, kMilpShareOfLeft * Left());
    }
    if (warm) mo.warm_start = WarmStart(p, budget);
    remat::MilpResult r = remat::SolveCheckmateMilp(p.gp.problem, mo);
    const std::string method = fmt::format("milp ({})", remat::ToString(r.status));
    if (r.sequence.empty()) {
      EmitPlan(p, method, budget, budget, std::nullopt, r.detail);
      return std::nullopt;
    }
    std::optional<Candidate> c = Lowered(p, remat::EventsFromSequence(r.sequence), PlanMethod::kMilp);
    if (c) c->proven_optimal = r.status == remat::MilpResult::Status::kOptimal;
    EmitPlan(p, method, budget, budget, c);
    return c;
  }

  // A recompute-only heuristic sequence whose node-level peak fits `budget`
  // (empty if none): the MILP's warm start.
  std::vector<uint32_t> WarmStart(const Prepared& p, int64_t budget) {
    remat::HeuristicOptions ho;
    ho.budget_bytes = budget;
    ho.free_parts = false;  // the MILP, like Evaluate, keeps nodes whole
    ho.deadline = deadline();
    const remat::HeuristicResult h = RunHeuristic(p.gp.problem, ho);
    if (!h.done()) return {};
    std::vector<uint32_t> seq = remat::EvalSequence(h.events);
    const remat::Evaluation ev = remat::Evaluate(p.gp.problem, seq);
    if (ev.valid && ev.peak_bytes <= budget) return seq;
    return {};
  }

  const Graph& graph_;
  OptimizeOptions options_;
  sim::Simulator simulator_;
  std::vector<double> latencies_;
  double step_us_;  // the sum of latencies_
  Clock::time_point start_;
  Clock::time_point deadline_;  // start_ + the time budget
  std::vector<Prepared> schedules_;
  size_t simulated_ = 0;
  int64_t least_peak_ = std::numeric_limits<int64_t>::max();
  std::optional<int64_t> within_bytes_;  // KeepWithin
  std::optional<Candidate> within_;
  int64_t runs_ = 0;  // of the remat heuristic
  mutable bool stop_reported_ = false;
};

PlanFigures Figures(const sim::SimResult& r) {
  return {r.latency_us, r.peak_bytes, r.recompute_us, r.swap_out_bytes};
}

// The smallest budget in [lo, hi] at which `fits` holds (fits(hi) is known
// true), to within 0.5% of hi, or the smallest found when `search` runs out
// of time first.
template <typename Fits>
int64_t Bisect(const Search& search, int64_t lo, int64_t hi, Fits fits) {
  const int64_t tolerance = std::max<int64_t>(hi / kBisectToleranceDivisor, 1);
  while (hi - lo > tolerance && !search.OutOfTime()) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (fits(mid)) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return hi;
}

struct Reachable {
  int64_t bytes = 0;      // the smallest simulated peak found
  bool complete = false;  // the bisection finished (false: the time budget ran out first)
};

// The smallest simulated peak `search` reaches without the MILP, by
// bisection between the lower bound and the unoptimized peak, within what is
// left of the time budget.
Reachable SmallestReachable(Search& search, int64_t peak) {
  const RematMethod method = search.options().method;
  if (method == RematMethod::kAuto || method == RematMethod::kMilp) search.set_method(RematMethod::kHeuristic);
  const int64_t lower = search.LowerBound(peak).bytes;
  if (lower >= peak) return {peak, true};
  const int64_t bytes = Bisect(search, lower, peak, [&](int64_t b) {
    const bool fits = !search.Fit(b).empty();
    search.Emit({0, SearchStage::kBudget, "", "", b, {}, {},
                 fits ? "bisection for the smallest memory: fits" : "bisection for the smallest memory: no plan"});
    return fits;
  });
  return {bytes, !search.OutOfTime()};
}

}  // namespace

void CheckOptions(const OptimizeOptions& options) {
  const int limits = options.mem_limit_bytes.has_value() + options.mem_limit_ratio.has_value() +
                     options.lat_limit_ratio.has_value();
  if (limits != 1) Fail("give exactly one of a memory limit, a memory limit ratio or a latency limit ratio");
  if (options.mem_limit_ratio && !(*options.mem_limit_ratio > 0 && *options.mem_limit_ratio <= kMaxRatio)) {
    Fail("memory limit ratio {} is out of range: it must be in (0, {}]", *options.mem_limit_ratio, kMaxRatio);
  }
  if (options.lat_limit_ratio && !(*options.lat_limit_ratio >= 1 && *options.lat_limit_ratio <= kMaxRatio)) {
    Fail("latency limit ratio {} is out of range: it must be in [1, {}]", *options.lat_limit_ratio, kMaxRatio);
  }
  if (!(options.time_budget_seconds > 0)) Fail("time budget {} s must be positive", options.time_budget_seconds);
  if (options.work_budget && *options.work_budget < 1) Fail("work budget {} must be at least 1", *options.work_budget);
  if (options.mem_limit_bytes && *options.mem_limit_bytes <= 0) Fail("memory limit must be positive");
}

namespace {

// Steps 2-3: the limit (result.limit_bytes, and result.latency_limit_us
// under a latency limit), and the plans that fit it (Search::Fit: every
// schedule, then rematerialization and swapping on each), fastest first.
// Under a latency limit: one, the smallest within the latency limit, found by
// a gallop down from the upper end, then bisection over memory budgets.
// Under a latency limit, `fastest` is set to the fastest plan any probe made
// (within the limit or not): what an error says when none is within it.
std::vector<Candidate> FitTheLimit(Search& search, const OptimizeOptions& options,
                                   const sim::SimResult& program_order, OptimizeResult& result,
                                   std::optional<PlanFigures>& fastest) {
  const PlanFigures& original = result.original;
  if (!options.lat_limit_ratio) {
    result.limit_bytes =
        options.mem_limit_bytes
            ? *options.mem_limit_bytes
            : static_cast<int64_t>(
                  std::min(std::floor(*options.mem_limit_ratio * original.peak_bytes), kMaxRatioLimitBytes));
    std::vector<Candidate> fitting = search.Fit(result.limit_bytes);
    // The search is not monotone in its budget: where nothing fits the
    // limit, a search under a tighter budget may make a plan that does (a
    // vit-base step micro-batched x8, swapping only: no plan under 1.72 GiB
    // went below 1.76 GiB, one under 1.17 GiB needed 1.14 GiB). Before the
    // limit is called unreachable, budgets between it and the lower bound
    // are tried, a quarter, a half and three quarters of the way down.
    const int64_t lower = search.LowerBound(program_order.peak_bytes).bytes;
    for (int quarter = 1; quarter <= 3 && lower < result.limit_bytes && fitting.empty() && !search.OutOfTime();
         ++quarter) {
      const int64_t budget = result.limit_bytes - (result.limit_bytes - lower) / 4 * quarter;
      fitting = search.Fit(budget);
      search.Emit({0, SearchStage::kBudget, "", "", budget, {}, {},
                   fitting.empty() ? "below the limit: no plan either" : "below the limit: plans fit"});
    }
    return fitting;
  }
  std::vector<Candidate> fitting;
  result.latency_limit_us = original.latency_us * *options.lat_limit_ratio;
  const int64_t lower = search.LowerBound(program_order.peak_bytes).bytes;
  auto probe = [&](int64_t b) {
    std::vector<Candidate> found = search.Fit(b, result.latency_limit_us);
    LatencyProbe p;
    if (!found.empty()) p.latency_us = found.front().sim.latency_us;
    if (!found.empty() && (!fastest || *p.latency_us < fastest->latency_us)) fastest = Figures(found.front().sim);
    p.within = p.latency_us && *p.latency_us <= result.latency_limit_us;
    search.Emit({0, SearchStage::kBudget, "", "", b, {}, p.latency_us,
                 p.within ? "bisection: a plan fits within the latency limit"
                          : "bisection: no plan fits within the latency limit"});
    if (p.within && (fitting.empty() || found.front().sim.peak_bytes < fitting.front().sim.peak_bytes)) {
      fitting = {std::move(found.front())};
    }
    return p;
  };
  // The program as written is a plan: when it is within the limit (a
  // fissioned graph often is), no plan needs more than its peak.
  int64_t upper = program_order.latency_us <= result.latency_limit_us
                      ? program_order.peak_bytes
                      : std::max(original.peak_bytes, program_order.peak_bytes);
  const bool capped = options.below_bytes && *options.below_bytes < upper;
  if (capped) upper = *options.below_bytes;
  const LatencyProbe at_upper = probe(upper);
  if (!at_upper.within && capped) {
    throw NoSmallerPlan(fmt::format("no plan within the latency limit needs less than {}", FormatBytes(upper)),
                        search.runs());
  }
  if (lower < upper) {
    SearchLatencyLimit(lower, upper, at_upper.within ? at_upper.latency_us : std::nullopt, result.latency_limit_us,
                       [&] { return search.OutOfTime(); }, probe);
  }
  // Each probe stopped at its first plan within the limit: the plan kept is
  // the fastest that needs no more than the least found, when the budget
  // leaves time to search for it.
  if (!fitting.empty() && !search.OutOfTime()) {
    std::vector<Candidate> fastest = search.Fit(fitting.front().sim.peak_bytes);
    if (!fastest.empty() && fastest.front().sim.latency_us < fitting.front().sim.latency_us) {
      fitting = {std::move(fastest.front())};
    }
  }
  result.limit_bytes = fitting.empty() ? original.peak_bytes : fitting.front().sim.peak_bytes;
  return fitting;
}

// "memory limit 1 GiB (... bytes, 0.50 of the unoptimized peak 2 GiB) cannot be met for 'g' on a100".
std::string LimitNotMet(const Graph& graph, const sim::DeviceProfile& device, const OptimizeResult& result) {
  return fmt::format("memory limit {} ({} bytes, {:.2f} of the unoptimized peak {}) cannot be met for '{}' on {}",
                     FormatBytes(result.limit_bytes), result.limit_bytes,
                     static_cast<double>(result.limit_bytes) / result.original.peak_bytes,
                     FormatBytes(result.original.peak_bytes), graph.name, device.name);
}

// `bytes` as a fraction of the unoptimized peak, printed so that it does
// not read as the limit's own fraction.
std::string RatioOfPeak(int64_t bytes, const OptimizeResult& result) {
  const double peak = static_cast<double>(result.original.peak_bytes);
  return FormatRatioBeside(static_cast<double>(bytes) / peak, static_cast<double>(result.limit_bytes) / peak);
}

// No plan is within the latency limit (a checkpointing baseline that
// recomputes more than the limit allows: --method sqrt-n on ResNet-50 is
// +28%): the fastest plan made, not a memory limit, which there is none of.
[[noreturn]] void FailLatency(const Graph& graph, const sim::DeviceProfile& device, const OptimizeOptions& options,
                              const OptimizeResult& result, const PlanFigures& fastest) {
  const PlanFigures& original = result.original;
  Fail("latency limit {:.3f} ms ({:.2f} of the unoptimized {:.3f} ms) cannot be met for '{}' on {}{}: the fastest "
       "plan memfit made takes {:.3f} ms ({}) and needs {} ({} bytes, {:.2f} of the peak)",
       result.latency_limit_us / 1000, *options.lat_limit_ratio, original.latency_us / 1000, graph.name, device.name,
       options.method == RematMethod::kAuto ? "" : fmt::format(" with --method {}", ToString(options.method)),
       fastest.latency_us / 1000, FormatChange(fastest.latency_us / original.latency_us - 1), FormatBytes(fastest.peak_bytes),
       fastest.peak_bytes, static_cast<double>(fastest.peak_bytes) / original.peak_bytes);
}

// No plan fits the limit: an error naming why, or the smallest memory
// memfit reaches.
[[noreturn]] void FailNoPlan(Search& search, const Graph& graph, const sim::DeviceProfile& device,
                             const OptimizeOptions& options, const sim::SimResult& program_order,
                             const OptimizeResult& result) {
  const std::string limit = LimitNotMet(graph, device, result);
  if (result.limit_bytes < result.weight_bytes) {
    Fail("{}: the parameters, buffers and optimizer state alone take {} ({} bytes)", limit,
         FormatBytes(result.weight_bytes), result.weight_bytes);
  }
  const int64_t original_peak = result.original.peak_bytes;
  if (search.OutOfTime()) {
    const int64_t least = search.least_peak();
    // What the plans made so far needed is no floor: where the heuristics
    // gave up at every budget tried, it is the program order's peak.
    Fail("{}: no plan that fits was found within the {}{} (a larger {} may find one)", limit,
         options.work_budget ? fmt::format("work budget of {} heuristic runs", *options.work_budget)
                             : std::string("time budget"),
         least < std::numeric_limits<int64_t>::max()
             ? fmt::format("; the smallest plan it made in that budget needs {} ({} bytes, {}), "
                           "which is not the smallest memory memfit reaches",
                           FormatBytes(least), least, RatioOfPeak(least, result))
             : "",
         options.work_budget ? "--work-budget" : "--time-budget");
  }
  Reachable reachable = SmallestReachable(search, std::max(original_peak, program_order.peak_bytes));
  // The plans the search made at the limit may need less than the bisection,
  // which only has what that search left of the budget, reached.
  reachable.bytes = std::min(reachable.bytes, search.least_peak());
  const bool work = options.work_budget.has_value();
  // At (or within 1/kAtTheFloorDivisor of) what one op needs at once, no search
  // reaches less: say which op, the one fission would have to split.
  constexpr int64_t kAtTheFloorDivisor = 100;  // 1%
  const auto floor = search.LowerBound(original_peak);
  const std::string at_the_floor =
      !floor.op.empty() && floor.bytes <= reachable.bytes &&
              reachable.bytes <= floor.bytes + floor.bytes / kAtTheFloorDivisor
          ? fmt::format("; op '{}' alone needs {} ({} bytes) with its inputs, result and workspace, so no plan of "
                        "this graph as given needs less",
                        floor.op, FormatBytes(floor.bytes), floor.bytes)
          : "";
  throw NoPlanFits(
      fmt::format("{}: the smallest memory memfit {} is {} ({} bytes, {}){}{}", limit,
                  reachable.complete ? "reaches" : work ? "reached within the work budget" : "reached within the time budget",
                  FormatBytes(reachable.bytes), reachable.bytes, RatioOfPeak(reachable.bytes, result),
                  reachable.complete ? "" : work ? " (a larger --work-budget may reach less)" : " (a larger --time-budget may reach less)",
                  at_the_floor),
      reachable.bytes);
}

// The plan kept, with its offsets.
struct Kept {
  Candidate candidate;
  Placement placement;
  size_t fitting = 0;  // plans that fit the last search's budget
};

// Step 4: offsets for every storage instance. A plan whose simulated peak
// fits may still not pack into the limit (fragmentation). The fastest plans
// are placed in turn until one packs; while a faster one did not, the budget
// is tightened by its smallest overflow and the search runs again, and a
// faster plan that packs replaces the one kept. (Under a latency limit the
// memory is the result, not a limit: the first placement is kept.)
Kept PlaceTheFastest(Search& search, const Graph& graph, const sim::DeviceProfile& device,
                     const OptimizeOptions& options, std::vector<Candidate> fitting, OptimizeResult& result) {
  PlacementOptions po;
  po.alignment_bytes = options.alignment_bytes;
  po.simulator = &search.simulator();
  po.deterministic = search.deterministic();  // bounded by search nodes, not time
  if (options.lat_limit_ratio && po.deterministic) po.max_search_nodes = kLatencyLimitPlacementNodes;
  // The placement is kept and printed: past the time budget too, a real one
  // (a stacked arena of a 53k-op graph read 138 GiB for a 9 GiB plan).
  po.finish_first_heuristic = true;
  std::optional<Candidate> best;
  Placement placement;
  int64_t budget = result.limit_bytes;
  int64_t smallest_arena = std::numeric_limits<int64_t>::max();
  int64_t smallest_bound = std::numeric_limits<int64_t>::max();  // of those arenas' lower bounds
  for (int round = 0; round < kSearches && !fitting.empty(); ++round) {
    const Candidate* previous = nullptr;
    size_t placed = 0;
    // Of the plans that did not pack, the least fragmentation (arena over
    // simulated peak): a plan that fragments as much packs when its peak is
    // that much under the limit.
    int64_t fragmentation = std::numeric_limits<int64_t>::max();
    for (Candidate& c : fitting) {
      if (placed == kPlacementsPerSearch || (best && c.sim.latency_us >= best->sim.latency_us)) break;
      // Past the time budget, a plan already placed is kept.
      if (best && search.OutOfTime()) break;
      // The same figures from another variant are, as a rule, the same plan.
      if (previous && previous->sim.latency_us == c.sim.latency_us && previous->sim.peak_bytes == c.sim.peak_bytes) {
        continue;
      }
      previous = &c;
      ++placed;
      // A share of what is left, bounded by a share of the budget (and
      // kPlacementMaxSeconds at least): tight plans (the MILP's) may need the
      // exact search's seconds to pack. Past the time budget, the placement
      // gets kMinPlacementSeconds (its greedy planners).
      po.time_limit_seconds =
          std::clamp(kPlacementShareOfLeft * search.Left(), kMinPlacementSeconds,
                     std::max(kPlacementMaxSeconds, kPlacementShareOfBudget * options.time_budget_seconds));
      Placement m = PlaceSteps(graph, c.steps, po);
      ++result.placements;
      search.Emit({0, SearchStage::kPlacement, c.scheduler, c.label(), result.limit_bytes, m.arena_bytes,
                   c.sim.latency_us,
                   m.arena_bytes <= result.limit_bytes
                       ? "packed"
                       : fmt::format("does not pack: over the limit by {} (fragmentation)",
                                     FormatBytes(m.arena_bytes - result.limit_bytes))});
      if (m.arena_bytes <= result.limit_bytes || options.lat_limit_ratio) {
        best = std::move(c);
        placement = std::move(m);
        result.search_budget_bytes = budget;
        break;
      }
      smallest_arena = std::min(smallest_arena, m.arena_bytes);
      smallest_bound = std::min(smallest_bound, m.lower_bound_bytes);
      fragmentation = std::min(fragmentation, m.arena_bytes - c.sim.peak_bytes);
    }
    // Done when the fastest plan placed packed.
    if (fragmentation == std::numeric_limits<int64_t>::max()) break;
    if (search.OutOfTime()) break;
    // The fragmentation seen at a looser budget tends to understate the
    // next one's, so each round tightens by one more multiple of it: a
    // Checkmate random graph (n500) at 0.5 of its peak, 64-byte aligned,
    // fragments by 7.41, 7.49, 7.97 KiB in turn, and tightening by one
    // multiple each time left every arena 53 B to 629 B over the limit.
    budget = std::min(budget - 1, result.limit_bytes - fragmentation * (round + 1));
    search.Emit({0, SearchStage::kBudget, "", "", budget, {}, {},
                 fmt::format("tightened by {} times the least fragmentation seen ({})", round + 1,
                             FormatBytes(fragmentation))});
    fitting = search.Fit(budget);
  }
  if (!best) {
    // Every arena's lower bound over the limit: the sizes rounded up to the
    // alignment alone pass it (many small storages), whatever the offsets.
    const std::string why =
        smallest_bound > result.limit_bytes
            ? fmt::format("their storages rounded up to the {}-byte alignment need {} at one step at least",
                          options.alignment_bytes, FormatBytes(smallest_bound))
            : std::string("their storages do not pack into it (fragmentation)");
    Fail("{}: plans fit it by simulated peak, but {}; the smallest arena memfit packed is {} ({} bytes, {})",
         LimitNotMet(graph, device, result), why, FormatBytes(smallest_arena), smallest_arena,
         RatioOfPeak(smallest_arena, result));
  }
  return {std::move(*best), std::move(placement), fitting.size()};
}

}  // namespace

int64_t SmallestReachableBytes(const Graph& graph, const sim::DeviceProfile& device, const sim::CostTable* costs,
                               const OptimizeOptions& options) {
  Search search(graph, device, costs, options);
  return SmallestReachable(search, search.Simulate(ProgramOrderSteps(graph)).peak_bytes).bytes;
}

bool BetterPlan(const OptimizeResult& a, const OptimizeResult& b, bool latency_limit) {
  if (latency_limit && a.optimized.peak_bytes != b.optimized.peak_bytes) {
    return a.optimized.peak_bytes < b.optimized.peak_bytes;
  }
  return a.optimized.latency_us < b.optimized.latency_us;
}

OptimizeResult PlanOutOfPlace(const Graph& graph, const sim::DeviceProfile& device, const sim::CostTable* costs,
                              const OptimizeOptions& options,
                              const std::function<OptimizeResult(const Graph&, const OptimizeOptions&)>& plan) {
  OptimizeOptions o = options;
  o.out_of_place = false;
  o.budget_start = options.budget_start.value_or(Clock::now());
  if (!RecordedFissions(graph).empty()) return plan(graph, o);
  OutOfPlaceResult copied = WriteOutOfPlace(graph, /*only_copied=*/true);
  const Graph& kept = copied.rewritten > 0 ? copied.graph : graph;
  OutOfPlaceResult all = WriteOutOfPlace(kept, /*only_copied=*/false);
  if (copied.rewritten == 0 && all.rewritten == 0) return plan(graph, o);
  if (!o.reference) {
    const sim::SimResult given = sim::Simulate(graph, ProgramOrderSteps(graph), device, costs);
    o.reference = PlanFigures{given.latency_us, given.peak_bytes, given.recompute_us, given.swap_out_bytes};
  }
  if (all.rewritten == 0) return plan(kept, o);
  // Both graphs, half the budget each (the second gets what the first left).
  const auto start = *o.budget_start;
  OptimizeOptions first = o, second = o;
  first.time_budget_seconds = options.time_budget_seconds / 2;
  if (options.work_budget) first.work_budget = second.work_budget = std::max<int64_t>(1, *options.work_budget / 2);
  std::optional<OptimizeResult> in_place, out_of_place;
  // Where neither fits, the failure that reached less memory is the one to
  // tell (rethrown as it was thrown: a NoPlanFits stays one).
  std::exception_ptr failure;
  std::optional<int64_t> failure_reached;
  auto attempt = [&](const Graph& g, const OptimizeOptions& half, std::optional<OptimizeResult>& result) {
    try {
      result = plan(g, half);
    } catch (const NoPlanFits& e) {
      if (!failure || (failure_reached && e.reached_bytes < *failure_reached)) {
        failure = std::current_exception();
        failure_reached = e.reached_bytes;
      }
    } catch (const Error&) {
      if (!failure) failure = std::current_exception();
    }
  };
  attempt(kept, first, in_place);
  second.budget_start = Clock::now();
  second.time_budget_seconds =
      std::max(kMinPlacementSeconds, options.time_budget_seconds - std::chrono::duration<double>(Clock::now() - start).count());
  attempt(all.graph, second, out_of_place);
  if (in_place && out_of_place) {
    return BetterPlan(*out_of_place, *in_place, options.lat_limit_ratio.has_value()) ? std::move(*out_of_place)
                                                                                      : std::move(*in_place);
  }
  if (in_place) return std::move(*in_place);
  if (out_of_place) return std::move(*out_of_place);
  std::rethrow_exception(failure);
}

// The pipeline of optimizer.h, one numbered step each.
OptimizeResult Optimize(const Graph& graph, const sim::DeviceProfile& device, const sim::CostTable* costs,
                        const OptimizeOptions& options) {
  CheckOptions(options);
  if (options.out_of_place) {
    return PlanOutOfPlace(graph, device, costs, options,
                          [&](const Graph& g, const OptimizeOptions& o) { return Optimize(g, device, costs, o); });
  }
  const auto start = Clock::now();
  Search search(graph, device, costs, options);
  OptimizeResult result;

  // 1. The reference: the program as written, simulated.
  const sim::SimResult program_order = search.Simulate(ProgramOrderSteps(graph));
  search.Emit({0, SearchStage::kReference, "program-order", "", 0, program_order.peak_bytes, program_order.latency_us,
               "the program as written: every op once, in order, nothing evicted"});
  result.weight_bytes = search.WeightBytes();  // prepares the schedules (step 2)
  // What the limits are ratios of (and the upper end of the bisections).
  result.original = options.reference.value_or(Figures(program_order));

  // 2.-3. The limit, and the plans that fit it, fastest first.
  std::optional<PlanFigures> fastest;
  std::vector<Candidate> fitting = FitTheLimit(search, options, program_order, result, fastest);
  if (fitting.empty() && options.lat_limit_ratio && fastest) FailLatency(graph, device, options, result, *fastest);
  if (fitting.empty() && !options.lat_limit_ratio) {
    // The search is not monotone upward either: the bisection for the
    // smallest memory that the error names may make a plan under a looser
    // budget that needs less than the limit (a captured GRU seq2seq: at its
    // limit, 577.76 KiB, every heuristic gave up on its recomputation; under
    // 582.84 KiB one needed 575.14 KiB). The fastest such plan is the plan.
    search.KeepWithin(result.limit_bytes);
    try {
      FailNoPlan(search, graph, device, options, program_order, result);
    } catch (const NoPlanFits&) {
      if (!search.within()) throw;
      fitting.push_back(std::move(*search.within()));
    }
  }
  if (fitting.empty()) FailNoPlan(search, graph, device, options, program_order, result);

  // 4. Offsets for the fastest plan that packs into the limit.
  Kept kept = PlaceTheFastest(search, graph, device, options, std::move(fitting), result);
  const Candidate& best = kept.candidate;

  // 5. The independent checker verifies the plan kept.
  if (std::vector<std::string> problems = CheckPlacement(graph, best.steps, kept.placement); !problems.empty()) {
    Fail("internal: the checker rejected the optimized plan: {}", problems.front());
  }
  search.Emit({0, SearchStage::kResult, best.scheduler, best.label(), result.limit_bytes, best.sim.peak_bytes,
               best.sim.latency_us,
               options.lat_limit_ratio
                   ? "kept: the smallest plan within the latency limit"
                   : fmt::format("kept: the fastest plan that packs into the limit ({} plan{} the search's "
                                 "budget{})",
                                 kept.fitting, kept.fitting == 1 ? " fits" : "s fit",
                                 result.placements > 1
                                     ? fmt::format("; {} placements, the faster plans did not pack", result.placements)
                                     : "")});

  // 6. The result: the plan file and its figures.
  result.optimized = Figures(best.sim);
  result.method = best.label();
  result.scheduler = best.scheduler;
  result.milp_proven_optimal = best.proven_optimal;
  result.candidates = search.simulated();
  result.heuristic_runs = search.runs();
  result.plan.graph = graph;
  result.plan.steps = std::move(kept.candidate.steps);
  result.plan.placement = std::move(kept.placement);
  result.plan.simulated = SimulatedFigures{device.name, best.sim.latency_ms(), best.sim.peak_bytes};
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace memfit

