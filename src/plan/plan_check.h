// The independent checker of memory plans.
//
// It shares no code with the planners or with analysis/liveness: it derives
// each storage's live steps from the graph and the order itself (a storage is
// live from the first step that touches any of its aliases to the last;
// sources other than data inputs, and graph outputs, live throughout), and
// then checks that every storage has a buffer large enough that covers its
// live steps, that offsets are aligned and inside the arena, and that no two
// buffers live at the same step overlap in memory.
#pragma once

#include <string>
#include <vector>

#include "ir/graph.h"
#include "plan/memory_plan.h"

namespace memfit {

// Every problem found (at most `max_problems`), each naming the tensors or
// ops involved; empty when the plan is sound.
std::vector<std::string> CheckMemoryPlan(const Graph& graph, const MemoryPlan& plan, size_t max_problems = 20);

}  // namespace memfit
