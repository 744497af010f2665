// The data a report draws, as one JSON object: the summary, memory over time
// by role (and the program order's, and a compared plan's), the arena's
// rectangles, the two streams' steps, the decisions and the search trace.
// The page (html_page.h) holds it verbatim; its script (page/report.js)
// turns it into charts. docs/report.md describes the fields.
//
// Everything is re-simulated on the report's device: the simulator is the
// single source of truth for memory and time. Arena rectangles come from the
// plan's buffers as placed (step indices).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "plan/plan_json.h"
#include "report/measured.h"
#include "report/solve_info.h"
#include "sim/cost_model.h"
#include "sim/device.h"

namespace memfit::report {

// One plan to draw.
struct ReportPlan {
  std::string label;  // shown in titles: the file it came from
  Plan plan;      // graph, steps, placed buffers
  SolveInfo solve;    // what the optimizer knew (may be empty)
};

struct ReportOptions {
  sim::DeviceProfile device;
  const sim::CostTable* costs = nullptr;  // may be null
  sim::LatencyOptions latency;
  const ReportPlan* compare = nullptr;    // a second plan, drawn against the first
  const MeasuredSeries* measured = nullptr;  // a real run's bytes per step (measured.h), may be null
  std::string measured_source;               // its file, for errors
};

nlohmann::ordered_json ReportData(const ReportPlan& plan, const ReportOptions& options);

}  // namespace memfit::report
