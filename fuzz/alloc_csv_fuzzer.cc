// MiniMalloc CSV (alloc/csv.h): ParseProblemCsv, then plan the problem with
// a small budget (time and search nodes) through check::PlanAndCheck, whose
// checker throws std::logic_error on an invalid placement (a finding). A
// solution's CSV must parse back with the same offsets pinned.
#include <optional>
#include <string>

#include "alloc/csv.h"
#include "alloc/planner.h"
#include "check/plan_and_check.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace memfit;
  std::optional<alloc::Problem> problem;
  if (!fuzz::Accepts([&] { problem = alloc::ParseProblemCsv(fuzz::AsText(data, size), "fuzz.csv"); })) return 0;
  alloc::PlanOptions options;
  options.planner = alloc::PlannerKind::kAuto;
  options.objective = alloc::Objective::kMinimizeHeight;
  options.alignment_bytes = 1;
  options.time_limit_seconds = 0.02;
  options.exact.max_nodes = 2000;
  std::optional<alloc::PlanResult> result;
  if (!fuzz::Accepts([&] { result = check::PlanAndCheck(*problem, options); })) return 0;
  if (!result->solution) return 0;
  const std::string solved = alloc::FormatSolutionCsv(*problem, *result->solution);
  alloc::Problem pinned;
  try {
    pinned = alloc::ParseProblemCsv(solved, "solution.csv");
  } catch (const Error& error) {
    fuzz::Finding("a solution CSV does not parse back", error.what());
  }
  if (pinned.buffers.size() != problem->buffers.size()) fuzz::Finding("a solution CSV lost buffers");
  for (size_t i = 0; i < pinned.buffers.size(); ++i) {
    if (pinned.buffers[i].fixed_offset_bytes != result->solution->offsets_bytes[i]) {
      fuzz::Finding("a solution CSV does not pin the offsets it was given");
    }
  }
  return 0;
}
