// A measured memory series to draw over the simulated curve (`memfit report
// --measured MEASURED.json`): the live bytes a real run of the plan held after
// each of its steps, as `python3 -m memfit.report PLAN --html` measures them
// with the executor (docs/report.md):
//
//   {"format": "memfit.measured", "version": 1, "label": "executor (tracked storages)",
//    "bytes_after_step": [1048576, 2097152, ...]}
//
// One entry per plan step. The page draws entry i at the simulated start of
// step i (where the simulator allocates a compute step's outputs and releases
// a freed storage), so the two curves share the time axis step for step (a
// real run's wall-clock times are not the simulator's).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "sim/simulator.h"

namespace memfit::report {

struct MeasuredSeries {
  std::string label;
  std::vector<int64_t> bytes_after_step;
};

// Parses MEASURED.json; errors name the file and the field.
MeasuredSeries MeasuredFromJson(std::string_view text, const std::string& source);

// {"label", "time_us", "total"} for the page: entry i at the latest start of steps 0..i
// (the timeline's two streams overlap; the line needs times in order).
// Fails (naming `source`) unless there is one entry per step.
nlohmann::ordered_json MeasuredCurve(const MeasuredSeries& measured, const std::vector<sim::TimelineEntry>& timeline,
                                     const std::string& source);

}  // namespace memfit::report
