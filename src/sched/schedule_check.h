// The independent checker of schedules.
//
// A schedule is valid when it runs every op of the graph exactly once, every
// op after the producers of its inputs, and every op touching a storage that
// is updated in place sees the same writes of it before it as in program
// order (see dependencies.h for why). The check counts writes per storage
// while replaying the order; it shares no code with ComputeDependencies, so
// a bug there cannot hide here.
#pragma once

#include <string>
#include <vector>

#include "ir/graph.h"

namespace memfit::sched {

// Problems of `order` as a schedule of `graph`, one line each naming the ops
// (at most a few dozen, then a count of the rest); empty when valid.
std::vector<std::string> CheckSchedule(const Graph& graph, const std::vector<OpId>& order);

}  // namespace memfit::sched
