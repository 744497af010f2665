// The independent checker of Steps and their Placement.
//
// It shares no code with the planner or with analysis/liveness. It replays
// the steps itself: every op is computed exactly once by a compute step,
// recomputed only after that, reads only storages on the device at that
// step; swap_out takes a storage on the device, swap_in one on the host, free
// one on either; graph outputs are on the device after the last step.
// Sources (all but inputs no op touches) are on the device before step 0.
// Op steps keep what program order (the graph's op order) fixes beyond data
// flow: each sees every storage after the same in-place updates as in
// program order (a recompute what its op saw), and random ops draw in
// program order.
//
// From the replay it derives every storage instance (each stay on the
// device) and each op step's workspace, and when its memory really comes
// back, from the plan's step times (the simulator's timeline, taken as
// given): no earlier than the end of every step that touched it, for a
// swap-out the end of its copy, for a free the end of the compute step issued
// before it. An instance must be reserved from its allocating step through
// its releasing step and through every later compute, recompute or swap_in
// step that starts before that time. It then checks that every instance has
// one buffer of its storage, large enough, covering those steps (workspace
// buffers are checked when the plan has any), that offsets are aligned and
// inside the arena, and that no two buffers reserved at one step overlap in
// memory. Problems name the step and the tensor or op.
#pragma once

#include <string>
#include <vector>

#include "ir/graph.h"
#include "plan/placement.h"
#include "plan/steps.h"

namespace memfit {

// Problems of the steps alone (at most `max_problems`); empty when they are
// well formed.
std::vector<std::string> CheckSteps(const Graph& graph, const Steps& steps, size_t max_problems = 20);

// Every problem of `plan` for `steps` (at most `max_problems`), the steps'
// own problems first; empty when the plan is sound.
std::vector<std::string> CheckPlacement(const Graph& graph, const Steps& steps, const Placement& plan,
                                        size_t max_problems = 20);
// The same for plan.order run as StepsFromOrder(graph, plan.order).
std::vector<std::string> CheckPlacement(const Graph& graph, const Placement& plan, size_t max_problems = 20);

}  // namespace memfit
