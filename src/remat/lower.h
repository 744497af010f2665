// From a remat solution (node events) to the steps the simulator replays.
//
// A solution is a list of events over the nodes of a GraphProblem: kEval
// computes a node (its first evaluation) or recomputes it (a later one);
// kSwapIn brings a node's result back from host memory. Lowering turns them
// into Steps steps and derives every release itself, per storage: an
// instance of a storage (from the event that creates it to the node's next
// event) ends after its last read in that window; it is then freed, or
// swapped out when the node's next event is a swap-in that will be read.
// A swap-in creates only the storages read before the node's next event.
// Graph outputs stay to the end; fixed storages are never released.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "plan/steps.h"
#include "remat/graph_problem.h"

namespace memfit::remat {

enum class EventKind : uint8_t { kEval, kSwapIn };

struct Event {
  EventKind kind = EventKind::kEval;
  uint32_t node = 0;
  bool operator==(const Event&) const = default;
};

// Events that evaluate `sequence` (problem.h) in order.
std::vector<Event> EventsFromSequence(std::span<const uint32_t> sequence);
// The evaluations only (a sequence Evaluate can check).
std::vector<uint32_t> EvalSequence(std::span<const Event> events);

// Checks the events at node level: the evaluations form a valid sequence
// (Evaluate), and every swap-in restores a node evaluated before it.
// Returns "" when valid, else why not.
std::string CheckEvents(const Problem& problem, std::span<const Event> events);

Steps LowerToSteps(const Graph& graph, const GraphProblem& gp, std::span<const Event> events);

}  // namespace memfit::remat
