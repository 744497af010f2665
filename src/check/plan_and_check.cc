#include "check/plan_and_check.h"

#include <stdexcept>
#include <string>

namespace memfit::check {

AllocationCheckOptions CheckOptionsFor(const alloc::PlanOptions& options) {
  AllocationCheckOptions check;
  check.alignment_bytes = options.alignment_bytes;
  check.enforce_capacity = options.objective == alloc::Objective::kFitCapacity;
  return check;
}

alloc::PlanResult PlanAndCheck(const alloc::Problem& problem, const alloc::PlanOptions& options) {
  alloc::PlanResult result = alloc::PlanOffsets(problem, options);
  if (!result.solution) return result;
  const std::vector<Violation> violations =
      CheckAllocation(problem, *result.solution, CheckOptionsFor(options));
  if (!violations.empty()) {
    std::string message = "planner '" + result.planner + "' produced an invalid placement:";
    for (const Violation& v : violations) message += "\n  " + ToString(v);
    throw std::logic_error(message);
  }
  return result;
}

}  // namespace memfit::check
