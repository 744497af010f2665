#include "optimize/search_trace.h"

#include <fmt/format.h>

#include "analysis/stats.h"

namespace memfit {

std::string_view ToString(SearchStage stage) {
  switch (stage) {
    case SearchStage::kReference: return "reference";
    case SearchStage::kSchedule: return "schedule";
    case SearchStage::kSearch: return "search";
    case SearchStage::kPlan: return "plan";
    case SearchStage::kPlacement: return "placement";
    case SearchStage::kBudget: return "budget";
    case SearchStage::kStop: return "stop";
    case SearchStage::kFission: return "fission";
    case SearchStage::kResult: return "result";
  }
  return "?";
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
    if (reference_latency_us > 0) figures += fmt::format(" ({:+.2f}%)", 100 * (*e.latency_us / reference_latency_us - 1));
  }
  if (!figures.empty()) line += ": " + figures;
  if (!e.outcome.empty()) line += "  " + e.outcome;
  return line;
}

}  // namespace memfit
