// What `memfit optimize` tried and why it kept or dropped each plan, as data.
//
// The optimizer reports every decision to OptimizeOptions::on_event as it
// happens: the CLI's --verbose prints them (progress on long searches), and
// --json --verbose keeps them for a report to draw.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

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

}  // namespace memfit
