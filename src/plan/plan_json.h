// PLAN.json: the whole plan (Plan) as data. It holds the graph, the steps with their
// simulated times, every storage instance's buffer in the arena, and the
// figures the planner and simulator computed, so that `memfit simulate`, the
// checker and the PyTorch executor can all replay it. docs/plan-format.md
// describes every field.
//
//   {"format": "memfit.plan", "version": 2,
//    "graph": {...memfit.graph...},
//    "steps": [{"kind": "compute", "op": 0, "start_us": 0, "end_us": 5.2},
//              {"kind": "free", "storage": 5, "start_us": 5.2, "end_us": 5.2}, ...],
//    "buffers": [{"storage": 5, "offset": 0, "size": 4096, "start": 0, "end": 3},
//                {"workspace_of": 7, "offset": 4096, "size": 256, "start": 9, "end": 10}],
//    "alignment": 64, "arena_bytes": ..., "lower_bound_bytes": ..., "proven_optimal": true,
//    "planner": "best-fit", "simulated": {"device": "a100", "latency_ms": ..., "peak_bytes": ...},
//    "workspace_bytes": [0, 576, ...]}   (only when not the registry's: Placement::workspace_bytes)
//
// Version 2 counts buffer lifetimes in step indices and may list a storage
// once per stay on the device. Version 1 (one buffer per storage, lifetimes
// in positions of the op order, compute and free steps only) is still read
// and converted.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "ir/graph.h"
#include "plan/placement.h"
#include "plan/steps.h"

namespace memfit {

struct SimulatedFigures {
  std::string device;
  double latency_ms = 0;
  int64_t peak_bytes = 0;
};

// The whole plan: what PLAN.json holds.
struct Plan {
  Graph graph;
  Steps steps;
  Placement placement;  // placement.order: the compute steps' ops in order
  std::optional<SimulatedFigures> simulated;
};

// Writes version 2. The steps carry placement.step_times when it has one per step.
// `decisions`, when not null, is written as the "decisions" field: the
// decision trace of the search that made the plan (optimize/search_trace.h),
// which the readers below accept and ignore (`memfit report` draws it).
std::string PlanToJson(const Plan& plan, const nlohmann::ordered_json& decisions = nullptr);
// Parses and checks a plan: the graph validates, steps and buffers name
// existing ops and tensors, and CheckPlacement finds no problem (which
// includes CheckSteps). Errors name `source` and the JSON path.
Plan PlanFromJson(std::string_view text, std::string_view source = "<string>");
// Parses only the graph and the steps, and checks the steps (CheckSteps);
// buffers, times and figures are ignored (the placement is empty but for
// its order). For placing steps anew: `memfit plan PLAN.json`.
Plan PlanStepsFromJson(std::string_view text, std::string_view source = "<string>");
// True when `text` looks like a plan file rather than a graph file: it has a
// "format" field whose value is "memfit.plan".
bool LooksLikePlan(std::string_view text);

}  // namespace memfit
