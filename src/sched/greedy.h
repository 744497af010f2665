// Memory-aware list scheduling.
//
// Repeatedly runs the ready op (all predecessors done) that the rule ranks
// first, ties broken by program-order position. "Growth" is the bytes an op
// allocates (storages it touches first) minus the bytes freed after it
// (storages it touches last); "step" is the bytes it allocates plus its
// workspace, the transient rise while it runs. A priority queue with lazy
// re-scoring: an op's rank only changes when one of its storages is
// allocated or reaches its last toucher, so the whole run is
// O((ops + touches) log ops).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sched/problem.h"

namespace memfit::sched {

enum class GreedyRule {
  kLeastGrowth,  // least growth, then least step
  kLeastStep,    // least step, then least growth
};

std::string_view ToString(GreedyRule rule);

// A valid order of `problem` (local op indices).
std::vector<uint32_t> GreedyOrder(const Problem& problem, GreedyRule rule);

struct ListSchedule {
  std::vector<uint32_t> order;  // local op indices
  int64_t peak_bytes = 0;
  std::string name;  // "program-order", "greedy:least-growth", "greedy:least-step"
};

// Program order and the order of each greedy rule, in that order.
std::vector<ListSchedule> ListSchedules(const Problem& problem);
// The lowest-peaking of ListSchedules (the first on ties): never worse than
// program order, so no caller has to check.
ListSchedule BestListSchedule(const Problem& problem);

}  // namespace memfit::sched
