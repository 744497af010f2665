#include "plan/memory_plan.h"

#include <fmt/format.h>

#include "check/plan_and_check.h"
#include "ir/registry.h"
#include "plan/plan_check.h"
#include "util/error.h"

namespace memfit {
namespace {

int64_t RoundUp(int64_t bytes, int64_t alignment) { return (bytes + alignment - 1) / alignment * alignment; }

}  // namespace

MemoryPlan PlanMemory(const Graph& graph, const std::vector<OpId>& order, const MemoryPlanOptions& options) {
  if (options.alignment_bytes < 1) Fail("alignment {} must be at least 1 byte", options.alignment_bytes);
  LivenessOptions liveness_options = options.liveness;
  liveness_options.count_workspace = false;  // workspaces become buffers below
  const Liveness liveness = ComputeLiveness(graph, order, liveness_options);

  MemoryPlan plan;
  plan.order = order;
  plan.alignment_bytes = options.alignment_bytes;
  alloc::Problem problem;
  for (const StorageLifetime& s : liveness.storages) {
    if (s.size_bytes == 0 || s.start >= s.end) continue;
    PlacedBuffer b;
    b.storage = s.storage;
    b.size_bytes = RoundUp(s.size_bytes, options.alignment_bytes);
    b.start = s.start;
    b.end = s.end;
    plan.buffers.push_back(b);
  }
  if (options.liveness.count_workspace) {
    for (size_t step = 0; step < order.size(); ++step) {
      const int64_t bytes = ComputeOpCost(graph, graph.op(order[step])).workspace_bytes;
      if (bytes == 0) continue;
      PlacedBuffer b;
      b.workspace_of = order[step];
      b.size_bytes = RoundUp(bytes, options.alignment_bytes);
      b.start = static_cast<int64_t>(step);
      b.end = b.start + 1;
      plan.buffers.push_back(b);
    }
  }
  problem.buffers.reserve(plan.buffers.size());
  for (const PlacedBuffer& b : plan.buffers) {
    alloc::Buffer buffer;
    buffer.id.name = b.storage ? fmt::format("t{}", b.storage->value) : fmt::format("ws{}", b.workspace_of->value);
    buffer.lifetime = {b.start, b.end};
    buffer.size_bytes = b.size_bytes;
    problem.buffers.push_back(std::move(buffer));
  }

  alloc::PlanOptions plan_options;
  plan_options.planner = options.planner;
  plan_options.objective = alloc::Objective::kMinimizeHeight;
  plan_options.alignment_bytes = options.alignment_bytes;
  plan_options.time_limit_seconds = options.time_limit_seconds;
  const alloc::PlanResult result = check::PlanAndCheck(problem, plan_options);
  if (result.status != alloc::PlanStatus::kSolved || !result.solution) {
    Fail("graph '{}': the {} planner found no placement ({})", graph.name, alloc::ToString(options.planner),
         alloc::ToString(result.status));
  }
  for (size_t i = 0; i < plan.buffers.size(); ++i) plan.buffers[i].offset_bytes = result.solution->offsets_bytes[i];
  plan.arena_bytes = result.solution->height_bytes;
  plan.lower_bound_bytes = result.lower_bound_bytes;
  plan.proven_optimal = result.proven_optimal;
  plan.planner = result.planner;
  plan.plan_seconds = result.seconds;

  const std::vector<std::string> problems = CheckMemoryPlan(graph, plan);
  if (!problems.empty()) {
    throw std::logic_error(fmt::format("memory plan of '{}' fails the checker: {}", graph.name, problems.front()));
  }
  return plan;
}

}  // namespace memfit
