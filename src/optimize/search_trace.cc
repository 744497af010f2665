#include "optimize/search_trace.h"

#include <fmt/format.h>

#include "analysis/stats.h"
#include "util/enum_names.h"

namespace memfit {

constexpr EnumName<SearchStage> kSearchStageNames[] = {
    {SearchStage::kReference, "reference"}, {SearchStage::kSchedule, "schedule"}, {SearchStage::kSearch, "search"},
    {SearchStage::kPlan, "plan"}, {SearchStage::kPlacement, "placement"}, {SearchStage::kBudget, "budget"},
    {SearchStage::kStop, "stop"}, {SearchStage::kFission, "fission"}, {SearchStage::kResult, "result"}};

std::string_view ToString(SearchStage stage) { return NameOf(kSearchStageNames, stage); }

std::optional<SearchStage> ParseSearchStage(std::string_view name) {
  return ValueNamed(kSearchStageNames, name);
}

std::string ToString(const SearchEvent& e, double reference_latency_us) {
  std::string line = fmt::format("{:7.2f} s  {:<9}", e.seconds, ToString(e.stage));
  if (!e.schedule.empty()) line += fmt::format("  {}", e.schedule);
  if (!e.method.empty()) line += fmt::format("  {}", e.method);
  if (e.budget_bytes > 0) line += fmt::format("  budget {}", FormatBytes(e.budget_bytes));
  std::string figures;
  if (e.peak_bytes) figures += fmt::format("{} {}", e.stage == SearchStage::kPlacement ? "arena" : "peak",
                                           FormatBytes(*e.peak_bytes));
  if (e.latency_us) {
    figures += fmt::format("{}{:.3f} ms", figures.empty() ? "" : ", ", *e.latency_us * 1e-3);
    if (reference_latency_us > 0) figures += fmt::format(" ({})", FormatChange(*e.latency_us / reference_latency_us - 1));
  }
  if (!figures.empty()) line += ": " + figures;
  if (!e.outcome.empty()) line += "  " + e.outcome;
  return line;
}

void DecisionTrace::Add(const SearchEvent& event) {
  if (event.stage == SearchStage::kReference && event.latency_us && reference_latency_us == 0) {
    reference_latency_us = *event.latency_us;
  }
  events.push_back(event);
}

std::string DecisionTrace::ToText() const {
  std::string text;
  for (const SearchEvent& e : events) text += ToString(e, reference_latency_us) + "\n";
  return text;
}

std::string_view DecisionTraceLegend() {
  return "Each line is one decision: seconds since the start, stage (reference: the program as written; schedule: an\n"
         "op order prepared; search: a search for plans under a memory budget begins; plan: one plan simulated;\n"
         "placement: a plan given arena offsets; budget: the budget changed; fission: a split graph tried; stop: the\n"
         "time or work budget ran out; result: the plan kept), the schedule, the method (heuristic[eviction score,\n"
         "options]), the budget it worked under (a heuristic run's own, tightened until the simulated peak fits the\n"
         "search's), the simulated peak (or arena) and latency against the program as written, and the outcome.\n";
}

nlohmann::ordered_json ToJson(const DecisionTrace& trace, bool with_seconds) {
  nlohmann::ordered_json events = nlohmann::ordered_json::array();
  for (const SearchEvent& e : trace.events) {
    nlohmann::ordered_json j;
    if (with_seconds) j["seconds"] = e.seconds;
    j["stage"] = std::string(ToString(e.stage));
    if (!e.schedule.empty()) j["schedule"] = e.schedule;
    if (!e.method.empty()) j["method"] = e.method;
    if (e.budget_bytes > 0) j["budget_bytes"] = e.budget_bytes;
    if (e.peak_bytes) j[e.stage == SearchStage::kPlacement ? "arena_bytes" : "peak_bytes"] = *e.peak_bytes;
    if (e.latency_us) j["latency_ms"] = *e.latency_us * 1e-3;
    j["outcome"] = e.outcome;
    events.push_back(std::move(j));
  }
  return events;
}

DecisionTrace DecisionTraceFromJson(const JsonNode& array) {
  auto bytes = [](const JsonNode& n) {
    const int64_t v = n.Int();
    if (v < 0) n.Fail("expected a byte count of at least 0");
    return v;
  };
  auto nonnegative = [](const JsonNode& n, std::string_view what) {
    const double v = n.Number();
    if (!(v >= 0 && v <= 1e9)) n.Fail(fmt::format("expected {} in [0, 1e9]", what));
    return v;
  };
  DecisionTrace trace;
  for (const JsonNode& j : array.Elements()) {
    SearchEvent e;
    if (auto v = j.Find("seconds")) e.seconds = nonnegative(*v, "seconds");
    const JsonNode stage = j.Get("stage");
    const std::optional<SearchStage> s = ParseSearchStage(stage.String());
    if (!s) stage.Fail(fmt::format("unknown stage '{}'", stage.String()));
    e.stage = *s;
    if (auto v = j.Find("schedule")) e.schedule = v->String();
    if (auto v = j.Find("method")) e.method = v->String();
    if (auto v = j.Find("outcome")) e.outcome = v->String();
    if (auto v = j.Find("budget_bytes")) e.budget_bytes = bytes(*v);
    if (auto v = j.Find(e.stage == SearchStage::kPlacement ? "arena_bytes" : "peak_bytes")) e.peak_bytes = bytes(*v);
    if (auto v = j.Find("latency_ms")) e.latency_us = nonnegative(*v, "milliseconds") * 1e3;
    trace.Add(e);
  }
  return trace;
}

}  // namespace memfit
