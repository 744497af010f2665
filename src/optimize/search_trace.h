// What `memfit optimize` tried and why it kept or dropped each plan, as data.
//
// The optimizer reports every decision to OptimizeOptions::on_event as it
// happens. The CLI collects them in a DecisionTrace: --verbose prints each as
// one readable line on stderr, PLAN.json keeps them as "decisions" (and
// `optimize --json --verbose` as "trace"), and `memfit report` draws them.
// `memfit plan --verbose` records its placement in the same form.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/json.h"

namespace memfit {

enum class SearchStage : uint8_t {
  kReference,  // the unoptimized program order, simulated
  kSchedule,   // a schedule prepared, simulated as it is
  kSearch,     // a search for plans under a memory budget begins
  kPlan,       // one plan simulated (a heuristic run, a baseline, the MILP)
  kPlacement,  // a plan given arena offsets
  kBudget,     // the budget changed (tightened after fragmentation, a bisection step)
  kStop,       // the time (or work) budget ran out
  kFission,    // a fissioned variant of the graph tried (transform/fission.h)
  kResult,     // the plan kept
};
std::string_view ToString(SearchStage stage);
std::optional<SearchStage> ParseSearchStage(std::string_view name);

struct SearchEvent {
  double seconds = 0;  // since the budget started
  SearchStage stage = SearchStage::kReference;
  std::string schedule;  // "program-order", "partitioned", ...
  std::string method;    // "heuristic[next-use,parts]", "milp", "sqrt-n", ...
  int64_t budget_bytes = 0;             // the memory budget the step worked under (0: none)
  std::optional<int64_t> peak_bytes;    // simulated peak (kPlacement: the arena)
  std::optional<double> latency_us;     // simulated latency
  std::string outcome;                  // "fits", "over the budget", "packed", "kept", ...
};

// One readable line: "  1.23 s  plan      program-order  heuristic[next-use]  budget 1.2 GiB: peak 1.1 GiB, 12.3 ms (+3.1%)  fits".
std::string ToString(const SearchEvent& event, double reference_latency_us = 0);

using SearchObserver = std::function<void(const SearchEvent&)>;

// The decisions of one run, in the order they were made.
struct DecisionTrace {
  std::vector<SearchEvent> events;
  // The unoptimized latency the lines quote overheads against: the first
  // kReference event's (0: none yet).
  double reference_latency_us = 0;

  void Add(const SearchEvent& event);
  // The events' lines (ToString), each ending in a newline.
  std::string ToText() const;
};

// The header --verbose prints before the first line: what the columns are.
std::string_view DecisionTraceLegend();

// The events as a JSON array: {"seconds", "stage", "schedule", "method",
// "budget_bytes", "peak_bytes" (kPlacement: "arena_bytes"), "latency_ms",
// "outcome"}, empty fields left out. Without `with_seconds` (deterministic
// runs, whose output must not depend on the machine) "seconds" is left out.
nlohmann::ordered_json ToJson(const DecisionTrace& trace, bool with_seconds = true);
// Reads what ToJson wrote; `array` names its place in errors
// (util/json.h's JsonNode). Fields it does not know are ignored.
DecisionTrace DecisionTraceFromJson(const JsonNode& array);

}  // namespace memfit
