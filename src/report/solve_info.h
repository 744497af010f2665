// What the optimizer knew about a plan and PLAN.json does not keep: the
// limit it worked under, the method that produced the plan, how long it
// searched and every decision of its search (optimize/search_trace.h). It
// comes from Optimize() directly or from the output of
// `memfit optimize --json --verbose` (its "trace").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "optimize/search_trace.h"

namespace memfit::report {

// One event of the search, as the report shows it.
struct TraceEvent {
  double seconds = 0;
  std::string stage, schedule, method, outcome;
  std::optional<int64_t> budget_bytes;
  std::optional<int64_t> peak_bytes;   // simulated peak
  std::optional<int64_t> arena_bytes;  // a placement's arena
  std::optional<double> latency_ms;
};

struct SolveInfo {
  std::optional<int64_t> limit_bytes;
  std::optional<double> latency_limit_ms;
  std::string method;
  std::string scheduler;
  std::optional<double> seconds;  // the whole search
  std::vector<TraceEvent> trace;
};

TraceEvent ToTraceEvent(const SearchEvent& event);

// Reads the output of `memfit optimize --json` (with --verbose, also its
// "trace"). Fields it does not use are ignored; those it uses are checked,
// and an error names `source` and the JSON path. A --pareto output (an
// array) is an error.
SolveInfo SolveInfoFromJson(std::string_view text, std::string_view source);

// What a PLAN.json written by `memfit optimize` keeps of its search: its
// "decisions" (optimize/search_trace.h) as the trace, and from the last
// "result" event the method, schedule and limit. Empty when the plan has no
// decisions (plans from `memfit plan` or older files).
SolveInfo SolveInfoFromPlanJson(std::string_view text, std::string_view source);

}  // namespace memfit::report
