// Static memory planning of a graph: every storage gets a byte offset in one
// arena for a given operator order.
//
// Pipeline: (1) liveness of the order (analysis/liveness.h) gives each
// storage a half-open step interval; each op's workspace becomes a buffer
// live for its one step; sizes round up to the alignment; (2) the offset
// planners of alloc/ place the buffers (check::PlanAndCheck runs the
// alloc-level checker); (3) CheckMemoryPlan (plan_check.h) re-derives the
// lifetimes from the graph on its own and checks the placement again.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "alloc/planner.h"
#include "analysis/liveness.h"
#include "ir/graph.h"

namespace memfit {

struct MemoryPlanOptions {
  // Which offset planner runs (auto: greedy heuristics, then exact search).
  alloc::PlannerKind planner = alloc::PlannerKind::kAuto;
  // Wall-clock budget of the searching planners, seconds.
  double time_limit_seconds = 5.0;
  // Every offset and every buffer size is a multiple of this.
  int64_t alignment_bytes = 64;
  // Which storages live over the whole step, and whether workspace counts.
  LivenessOptions liveness;
};

// Where one storage (or an op's workspace) lives.
struct PlacedBuffer {
  // The storage's owning tensor; for a workspace buffer, unset and `op` set.
  std::optional<TensorId> storage;
  std::optional<OpId> workspace_of;
  int64_t offset_bytes = 0;
  int64_t size_bytes = 0;  // rounded up to the alignment
  int64_t start = 0;       // first step live
  int64_t end = 0;         // one past the last step live
};

struct MemoryPlan {
  std::vector<OpId> order;
  std::vector<PlacedBuffer> buffers;
  int64_t alignment_bytes = 64;
  int64_t arena_bytes = 0;        // height of the placement
  int64_t lower_bound_bytes = 0;  // largest sum of (aligned) bytes live at one step
  bool proven_optimal = false;
  std::string planner;
  double plan_seconds = 0;
};

// Plans offsets for `graph` run in `order`. Throws Error when the planner
// finds no placement within its time limit.
MemoryPlan PlanMemory(const Graph& graph, const std::vector<OpId>& order, const MemoryPlanOptions& options = {});

}  // namespace memfit
