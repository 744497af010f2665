// Placement: every storage *instance* of Steps gets a byte offset in one
// arena (static memory planning).
//
// Steps (plan/steps.h) may hold a storage on the device several times:
// computed, freed and recomputed, or swapped out and back in. Each stay on
// the device is an instance and gets its own buffer, which may sit at a
// different offset from the storage's other instances. Lifetimes are
// half-open intervals of step indices [start, end).
//
// Pipeline:
//  1. Replay the steps: an instance starts at the step that allocates it
//     (the compute or recompute creating it, the swap_in; sources at step 0)
//     and is held through the step that releases it (free, swap_out), or to
//     the end. Each op step with workspace gets a workspace instance.
//  2. Stretch every lifetime to the asynchronous release. The simulator's
//     timeline says when memory really comes back: a swap-out's when its copy
//     ends (or its last reader, if later), a free's at the end of the compute
//     step issued before it. A later step that allocates (compute, recompute,
//     swap_in) but starts before that time may not reuse the bytes, so the
//     instance stays reserved through it. Then the arena is valid for the
//     two-stream execution the simulator models, not only for a sequential
//     one. Sizes round up to the alignment.
//  3. The offset planners of alloc/ place the buffers (check::PlanAndCheck
//     runs the alloc-level checker).
//  4. CheckPlacement (plan_check.h) re-derives all of it on its own and
//     checks the placement again.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "alloc/planner.h"
#include "analysis/liveness.h"
#include "ir/graph.h"
#include "plan/steps.h"
#include "sim/simulator.h"

namespace memfit {

struct PlacementOptions {
  // Which offset planner runs (auto: greedy heuristics, then exact search).
  alloc::PlannerKind planner = alloc::PlannerKind::kAuto;
  // Wall-clock budget of the searching planners, seconds (huge: none).
  double time_limit_seconds = 5.0;
  // Node budget of the exact offset search (alloc::ExactOptions::max_nodes,
  // all probes together); absent: the deadline only.
  std::optional<int64_t> max_search_nodes;
  // No wall clock (alloc::PlanOptions::deterministic): the placement, and so
  // the plan, depends on the inputs only; plan_seconds is still measured.
  bool deterministic = false;
  // Never stack buffers past the time limit (alloc::PlanOptions::
  // finish_first_heuristic): the placement is a real one, however late.
  bool finish_first_heuristic = false;
  // Every offset and every buffer size is a multiple of this.
  int64_t alignment_bytes = 64;
  // Give each op step's workspace (scratch) its own buffer, of the
  // simulator's figure (sim::Simulator::workspace_bytes(): a cost table's
  // measured workspace where it has the op, else the registry's estimate).
  bool count_workspace = true;
  // Times the steps (its device and op costs decide when copies end). Null:
  // the a100 profile with roofline latencies. Must be for the same graph.
  const sim::Simulator* simulator = nullptr;
};

// Where one storage instance (or an op step's workspace) lives.
struct PlacedBuffer {
  // The storage's owning tensor (its root); for a workspace buffer, unset
  // and `workspace_of` set.
  std::optional<TensorId> storage;
  std::optional<OpId> workspace_of;
  int64_t offset_bytes = 0;
  int64_t size_bytes = 0;  // rounded up to the alignment
  int64_t start = 0;       // first step reserved
  int64_t end = 0;         // one past the last step reserved
  bool operator==(const PlacedBuffer&) const = default;
};

// "t5 [0, 4096) steps [0, 3)", "workspace of op7 [4096, 4352) steps [9, 10)".
std::string ToString(const PlacedBuffer& buffer);
std::ostream& operator<<(std::ostream& os, const PlacedBuffer& buffer);

// When a step runs in the simulated two-stream execution.
struct StepTime {
  double start_us = 0;
  double end_us = 0;
  bool operator==(const StepTime&) const = default;
};

// Where every storage instance of some Steps lives: PlaceSteps' result, the
// "buffers" of PLAN.json.
struct Placement {
  std::vector<OpId> order;  // the ops of the compute steps, in step order
  std::vector<PlacedBuffer> buffers;  // instances by first step, then storage id; workspaces after
  // One per step: the simulator's timeline the lifetimes were stretched to.
  std::vector<StepTime> step_times;
  int64_t alignment_bytes = 64;
  int64_t arena_bytes = 0;        // height of the placement
  int64_t lower_bound_bytes = 0;  // largest sum of (aligned) bytes reserved at one step
  bool proven_optimal = false;
  std::string planner;
  double plan_seconds = 0;
  // Each op's workspace by op id, when the buffers were sized by figures
  // other than the registry's estimates (a cost table's measurements):
  // CheckPlacement checks against these. Empty: the registry's.
  std::vector<int64_t> workspace_bytes;
};

// "arena 8192 bytes (lower bound 8192, proven optimal), 3 buffers, best-fit",
// then one buffer per line.
std::string ToString(const Placement& placement);
std::ostream& operator<<(std::ostream& os, const Placement& placement);

// Plans offsets for `graph` run as `steps`. Throws Error when the steps are
// malformed (CheckSteps, plan_check.h), a size rounded up to the alignment
// (or the sum of sizes) overflows int64_t, or the planner finds no placement
// within its time limit.
Placement PlaceSteps(const Graph& graph, const Steps& steps, const PlacementOptions& options = {});
// PlaceSteps(graph, StepsFromOrder(graph, order), options): every op
// once, each storage freed after its last use.
Placement PlaceSteps(const Graph& graph, const std::vector<OpId>& order, const PlacementOptions& options = {});

// The simulator's timeline of `steps` as StepTimes.
std::vector<StepTime> StepTimes(const sim::Simulator& simulator, const Steps& steps);

}  // namespace memfit
