// PLAN.json: a plan as data. It holds the graph, the step order, every
// buffer's offset in the arena, and the figures the planner and simulator
// computed, so that `memfit simulate`, the checker and the PyTorch executor
// can all replay it.
//
//   {"format": "memfit.plan", "version": 1,
//    "graph": {...memfit.graph...},
//    "steps": [{"kind": "compute", "op": 0}, {"kind": "free", "storage": 5}, ...],
//    "buffers": [{"storage": 5, "offset": 0, "size": 4096, "start": 0, "end": 3},
//                {"workspace_of": 7, "offset": 4096, "size": 256, "start": 7, "end": 8}],
//    "alignment": 64, "arena_bytes": ..., "lower_bound_bytes": ..., "proven_optimal": true,
//    "planner": "best-fit", "simulated": {"device": "a100", "latency_ms": ..., "peak_bytes": ...}}
#pragma once

#include <optional>
#include <string>

#include "ir/graph.h"
#include "plan/memory_plan.h"
#include "sim/plan.h"

namespace memfit {

struct SimulatedFigures {
  std::string device;
  double latency_ms = 0;
  int64_t peak_bytes = 0;
};

struct PlanFile {
  Graph graph;
  sim::Plan steps;
  MemoryPlan memory;  // memory.order: the compute steps' ops in order
  std::optional<SimulatedFigures> simulated;
};

std::string PlanToJson(const PlanFile& plan);
// Parses and checks a plan: the graph validates, steps and buffers name
// existing ops and tensors, and CheckMemoryPlan finds no problem. Errors
// name `source` and the JSON path.
PlanFile PlanFromJson(std::string_view text, std::string_view source = "<string>");
// True when `text` looks like a plan file rather than a graph file.
bool LooksLikePlan(std::string_view text);

}  // namespace memfit
