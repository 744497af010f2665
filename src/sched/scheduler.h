// Operator schedulers behind one entry point.
//
//   ScheduleResult r = Schedule(graph, {.scheduler = SchedulerKind::kAuto,
//                                       .time_limit_seconds = 5});
//
// A schedule is an order of the graph's ops (each exactly once) that keeps
// the constraints of dependencies.h; its memory is the peak of
// ComputeLiveness(graph, order). Every result passes CheckSchedule
// (schedule_check.h) and peaks no higher than program order.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "analysis/liveness.h"
#include "ir/graph.h"

namespace memfit::sched {

enum class SchedulerKind {
  kProgramOrder,  // the graph's own order
  kGreedy,        // memory-aware list scheduling (greedy.h), or program order where that is lower
  kExact,         // best-first search over the whole graph (exact_search.h), from the greedy order
  kPartitioned,   // split at cut points, pieces exact or greedy (partition.h)
  kAuto,          // the best of greedy and partitioned
};

std::string_view ToString(SchedulerKind kind);
std::optional<SchedulerKind> ParseSchedulerKind(std::string_view name);
std::ostream& operator<<(std::ostream& os, SchedulerKind kind);

struct ScheduleOptions {
  // Which scheduler runs.
  SchedulerKind scheduler = SchedulerKind::kAuto;
  // Wall-clock budget of the exact searches; past it they return the best
  // order found so far. List scheduling is not searched and not limited.
  double time_limit_seconds = 10.0;
  // The exact search gives up after storing this many frontier states
  // (each keeps a bit per op of its problem).
  int64_t max_states = 100'000;
  // Partitioned: pieces with more ops than this are not searched exactly.
  size_t max_exact_ops = 4096;
  // How memory is counted, as ComputeLiveness counts it.
  LivenessOptions liveness = {};
};

struct ScheduleResult {
  std::vector<OpId> order;
  // ComputeLiveness(graph, order, options.liveness).peak_bytes.
  int64_t peak_bytes = 0;
  // No order peaks lower (each op's storages and workspace, plus what is
  // live throughout).
  int64_t lower_bound_bytes = 0;
  // No valid order peaks lower than peak_bytes.
  bool proven_optimal = false;
  // What produced the order: "program-order", "greedy:least-growth",
  // "greedy:least-step", "exact", "partitioned".
  std::string scheduler;
  // Why the order is not the requested scheduler's own, and search
  // statistics; empty when there is nothing to say.
  std::string note;
  double seconds = 0.0;
  int64_t states = 0;  // frontier states of the exact searches
};

std::string ToString(const ScheduleResult& result);
std::ostream& operator<<(std::ostream& os, const ScheduleResult& result);

// Schedules `graph`, which must be valid (ir/validate.h: program order is a
// topological order). Throws memfit::Error for bad options (a negative or
// non-finite time limit, max_states < 1).
ScheduleResult Schedule(const Graph& graph, const ScheduleOptions& options = {});

}  // namespace memfit::sched
