// What a plan does differently from running the program once in order, read
// off its steps: each recompute, each swap out and back in, and the ops run
// out of program order (the fewest ops whose moves turn program order into
// the plan's: those off a longest increasing run of op ids). Each decision
// names the step it happens at, so that the report links it to its place in
// the charts. A fissioned graph (transform/fission.h) gets one decision per
// recorded fission, at the first step of its part 0.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "plan/steps.h"
#include "sim/simulator.h"

namespace memfit::report {

enum class DecisionKind : uint8_t { kRecompute, kSwap, kReorder, kFission };
// "recompute", "swap", "reorder", "fission".
std::string_view ToString(DecisionKind kind);

struct Decision {
  DecisionKind kind = DecisionKind::kRecompute;
  size_t step = 0;                  // where it happens (recompute, swap out, the op run early)
  std::optional<size_t> until_step; // swap: the swap-in (none: never back); recompute: the first reader
  std::optional<OpId> op;           // recompute, reorder
  std::optional<TensorId> storage;  // swap
  int64_t bytes = 0;                // recompute: its outputs' storages; swap: the storage
  std::string why;                  // one line
};

// The part index of an op that fission created as part k of an original op
// (named "<original>.part<k>", transform/fission.cc), or -1; always -1 in a
// graph that records no fission.
std::vector<int> FissionParts(const Graph& graph);

// The decisions of `steps`, in step order (fissions first). `timeline` (one entry per step)
// gives the times quoted in `why`.
std::vector<Decision> PlanDecisions(const Graph& graph, const Steps& steps,
                                    const std::vector<sim::TimelineEntry>& timeline);

}  // namespace memfit::report
