// The checked planning entry point: alloc::PlanOffsets() followed by the
// independent checker. Every placement that leaves memfit (CLI output,
// benchmarks, plans) comes through here.
#pragma once

#include "alloc/planner.h"
#include "alloc/problem.h"
#include "check/allocation_check.h"

namespace memfit::check {

// Plans `problem` and checks the result. A placement that fails the checker
// is a bug in a planner: it throws std::logic_error listing the violations.
alloc::PlanResult PlanAndCheck(const alloc::Problem& problem, const alloc::PlanOptions& options);

// The checker options that match a planning run.
AllocationCheckOptions CheckOptionsFor(const alloc::PlanOptions& options);

}  // namespace memfit::check
