#include "report/solve_info.h"

#include <nlohmann/json.hpp>

#include "util/json.h"

namespace memfit::report {

TraceEvent ToTraceEvent(const SearchEvent& e) {
  TraceEvent t;
  t.seconds = e.seconds;
  t.stage = std::string(ToString(e.stage));
  t.schedule = e.schedule;
  t.method = e.method;
  t.outcome = e.outcome;
  if (e.budget_bytes > 0) t.budget_bytes = e.budget_bytes;
  if (e.peak_bytes) (e.stage == SearchStage::kPlacement ? t.arena_bytes : t.peak_bytes) = *e.peak_bytes;
  if (e.latency_us) t.latency_ms = *e.latency_us * 1e-3;
  return t;
}

SolveInfo SolveInfoFromJson(std::string_view text, std::string_view source) {
  const std::string name(source);
  const JsonValue value = ParseJson(text, name);
  const JsonNode root(value, name);
  if (!root.IsObject()) {
    root.Fail(root.IsArray() ? "expected the output of one `memfit optimize --json` run (this is a --pareto sweep)"
                             : "expected the object `memfit optimize --json` prints");
  }
  if (!root.Has("method") || !root.Has("limit_bytes")) {
    root.Fail("not the output of `memfit optimize --json` (no 'method' or 'limit_bytes')");
  }
  auto positive_int = [](const JsonNode& n) {
    const int64_t v = n.Int();
    if (v < 0) n.Fail("expected a byte count of at least 0");
    return v;
  };
  auto seconds_of = [](const JsonNode& n) {
    const double v = n.Number();
    if (!(v >= 0 && v <= 1e9)) n.Fail("expected seconds in [0, 1e9]");
    return v;
  };
  SolveInfo info;
  info.method = root.Get("method").String();
  if (auto s = root.Find("scheduler")) info.scheduler = s->String();
  info.limit_bytes = positive_int(root.Get("limit_bytes"));
  if (auto l = root.Find("latency_limit_ms")) info.latency_limit_ms = seconds_of(*l);
  if (auto s = root.Find("seconds")) info.seconds = seconds_of(*s);
  if (auto trace = root.Find("trace")) {
    for (const SearchEvent& e : DecisionTraceFromJson(*trace).events) info.trace.push_back(ToTraceEvent(e));
  }
  return info;
}

SolveInfo SolveInfoFromPlanJson(std::string_view text, std::string_view source) {
  const std::string name(source);
  const JsonValue value = ParseJson(text, name);
  const JsonNode root(value, name);
  SolveInfo info;
  const std::optional<JsonNode> decisions = root.IsObject() ? root.Find("decisions") : std::nullopt;
  if (!decisions) return info;
  const DecisionTrace trace = DecisionTraceFromJson(*decisions);
  for (const SearchEvent& e : trace.events) {
    info.trace.push_back(ToTraceEvent(e));
    if (e.stage != SearchStage::kResult) continue;
    info.method = e.method;
    info.scheduler = e.schedule;
    if (e.budget_bytes > 0) info.limit_bytes = e.budget_bytes;
    if (e.seconds > 0) info.seconds = e.seconds;
  }
  return info;
}

}  // namespace memfit::report
