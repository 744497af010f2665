#include "sched/scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <utility>

#include "sched/dependencies.h"
#include "sched/exact_search.h"
#include "sched/greedy.h"
#include "sched/partition.h"
#include "sched/problem.h"
#include "sched/schedule_check.h"
#include "util/deadline.h"
#include "util/error.h"

namespace memfit::sched {
namespace {

using Clock = std::chrono::steady_clock;

// The kinds by name; ToString and ParseSchedulerKind both read it.
constexpr std::pair<SchedulerKind, std::string_view> kNames[] = {
    {SchedulerKind::kProgramOrder, "program-order"}, {SchedulerKind::kGreedy, "greedy"},
    {SchedulerKind::kExact, "exact"},                {SchedulerKind::kPartitioned, "partitioned"},
    {SchedulerKind::kAuto, "auto"},
};

std::vector<OpId> GlobalOrder(const Problem& problem, const std::vector<uint32_t>& local) {
  std::vector<OpId> order;
  order.reserve(local.size());
  for (uint32_t op : local) order.push_back(problem.ops[op].id);
  return order;
}

// The chosen order and how it came about; peak_bytes as the model counts it.
struct Outcome {
  std::vector<OpId> order;
  int64_t peak_bytes = 0;
  bool proven_optimal = false;
  std::string scheduler;
  std::string note;
  int64_t states = 0;
};

Outcome RunGreedy(const Problem& whole) {
  const std::vector<ListSchedule> schedules = ListSchedules(whole);
  const ListSchedule& best = *std::ranges::min_element(schedules, {}, &ListSchedule::peak_bytes);
  Outcome outcome{GlobalOrder(whole, best.order), best.peak_bytes, false, best.name, "", 0};
  if (best.name == "program-order") {
    outcome.note = fmt::format("greedy peaks no lower than program order ({} and {} bytes vs {}); kept program order",
                               schedules[1].peak_bytes, schedules[2].peak_bytes, schedules[0].peak_bytes);
  }
  return outcome;
}

Outcome RunExact(const Problem& whole, const ScheduleOptions& options, Clock::time_point deadline) {
  ListSchedule best = BestListSchedule(whole);
  ExactSearchResult exact = SolveExact(whole, best.order, best.peak_bytes, {options.max_states, deadline});
  const bool improved = exact.peak_bytes < best.peak_bytes;
  Outcome outcome{GlobalOrder(whole, exact.order), exact.peak_bytes, exact.proven_optimal,
                  improved ? "exact" : best.name, "", exact.states};
  outcome.note = fmt::format("exact search: {} states, {}", exact.states,
                             exact.proven_optimal ? "complete" : "stopped at its time or state limit");
  if (!improved) outcome.note += fmt::format("; kept the {} order", best.name);
  return outcome;
}

Outcome RunPartitioned(const MemoryModel& model, const Dependencies& deps, const ScheduleOptions& options,
                       Clock::time_point deadline) {
  PartitionOptions partition{options.max_exact_ops, {options.max_states, deadline}};
  PartitionResult r = SchedulePartitioned(model, deps, partition);
  return {std::move(r.order), r.peak_bytes, r.proven_optimal, "partitioned",
          fmt::format("{} pieces (largest {} ops), {} searched exactly, {} states", r.pieces, r.largest_piece_ops,
                      r.searched_pieces, r.states),
          r.states};
}

}  // namespace

std::string_view ToString(SchedulerKind kind) {
  for (const auto& [k, name] : kNames) {
    if (k == kind) return name;
  }
  return "unknown";
}

std::optional<SchedulerKind> ParseSchedulerKind(std::string_view name) {
  for (const auto& [kind, n] : kNames) {
    if (n == name) return kind;
  }
  return std::nullopt;
}

std::ostream& operator<<(std::ostream& os, SchedulerKind kind) { return os << ToString(kind); }

std::string ToString(const ScheduleResult& r) {
  std::string s = fmt::format("{}: peak {} bytes (lower bound {}){}, {} ops in {:.3f} s", r.scheduler, r.peak_bytes,
                              r.lower_bound_bytes, r.proven_optimal ? ", proven optimal" : "", r.order.size(),
                              r.seconds);
  if (!r.note.empty()) s += "; " + r.note;
  return s;
}

std::ostream& operator<<(std::ostream& os, const ScheduleResult& r) { return os << ToString(r); }

ScheduleResult Schedule(const Graph& graph, const ScheduleOptions& options) {
  if (!std::isfinite(options.time_limit_seconds) || options.time_limit_seconds < 0) {
    Fail("schedule time_limit_seconds must be finite and >= 0, got {}", options.time_limit_seconds);
  }
  if (options.max_states < 1) Fail("schedule max_states must be >= 1, got {}", options.max_states);
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = DeadlineAfter(options.time_limit_seconds, "schedule time limit", start);

  const MemoryModel model(graph, options.liveness);
  const Dependencies deps = ComputeDependencies(graph);
  const Problem whole = BuildWholeProblem(model, deps);
  Outcome outcome;
  switch (options.scheduler) {
    case SchedulerKind::kProgramOrder:
      outcome = {ProgramOrder(graph), PeakBytes(whole, IdentityOrder(whole)), false, "program-order", "", 0};
      break;
    case SchedulerKind::kGreedy:
      outcome = RunGreedy(whole);
      break;
    case SchedulerKind::kExact:
      outcome = RunExact(whole, options, deadline);
      break;
    case SchedulerKind::kPartitioned:
      outcome = RunPartitioned(model, deps, options, deadline);
      break;
    case SchedulerKind::kAuto: {
      Outcome greedy = RunGreedy(whole);
      outcome = RunPartitioned(model, deps, options, deadline);
      if (greedy.peak_bytes < outcome.peak_bytes) {
        greedy.note = fmt::format("below partitioned ({} bytes: {})", outcome.peak_bytes, outcome.note);
        outcome = std::move(greedy);
      }
      break;
    }
  }

  ScheduleResult result;
  result.order = std::move(outcome.order);
  result.peak_bytes = ComputeLiveness(graph, result.order, options.liveness).peak_bytes;
  result.lower_bound_bytes = LowerBound(whole);
  result.proven_optimal = outcome.proven_optimal || result.peak_bytes <= result.lower_bound_bytes;
  result.scheduler = std::move(outcome.scheduler);
  result.note = std::move(outcome.note);
  result.states = outcome.states;
  // Internal invariants: the schedulers' own accounting is ComputeLiveness's,
  // and their orders are valid.
  if (result.peak_bytes != outcome.peak_bytes) {
    throw std::logic_error(fmt::format("scheduler {} counted a peak of {} bytes, ComputeLiveness {}", result.scheduler,
                                       outcome.peak_bytes, result.peak_bytes));
  }
  if (const auto problems = CheckSchedule(graph, result.order); !problems.empty()) {
    throw std::logic_error(fmt::format("scheduler {} produced an invalid order: {}", result.scheduler, problems[0]));
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace memfit::sched
