#include "plan/placement.h"

#include <fmt/format.h>

#include <algorithm>
#include <span>
#include <stdexcept>

#include "analysis/storage_table.h"
#include "check/plan_and_check.h"
#include "ir/registry.h"
#include "plan/plan_check.h"
#include "sim/device.h"
#include "util/checked_math.h"
#include "util/error.h"

namespace memfit {
namespace {


// One stay of a storage on the device, or one op step's workspace.
struct Instance {
  std::optional<TensorId> storage;
  std::optional<OpId> workspace_of;
  int64_t bytes = 0;
  int64_t start = 0;        // the allocating step (0 for sources)
  int64_t released_at = 0;  // the releasing step; the step count when never released
  double release_us = 0;    // when the memory really comes back
};

// Pipeline step 1: replays well-formed `steps` (CheckSteps found nothing).
// `workspace`: each op's by op id (OpWorkspaceBytes); empty: none counted.
std::vector<Instance> ReplaySteps(const Graph& graph, const Steps& steps, const std::vector<StepTime>& times,
                                  std::span<const int64_t> workspace) {
  const int64_t n = static_cast<int64_t>(steps.steps.size());
  constexpr size_t kNone = SIZE_MAX;
  std::vector<size_t> open(graph.num_tensors(), kNone);  // by storage root: its instance on the device
  std::vector<Instance> instances;
  const StorageTable table(graph);
  auto root = [&](TensorId t) { return table.root(t); };
  auto begin = [&](TensorId r, int64_t step) {
    Instance inst;
    inst.storage = r;
    inst.bytes = graph.tensor(r).size_bytes();
    inst.start = step;
    inst.released_at = n;
    open[r.index()] = instances.size();
    instances.push_back(inst);
  };
  auto touch = [&](TensorId r, double until_us) {
    Instance& inst = instances[open[r.index()]];
    inst.release_us = std::max(inst.release_us, until_us);
  };

  // The storages resident at start are on the device before the first step.
  for (const StorageInfo& s : table.storages()) {
    if (s.resident_at_start()) begin(s.root, 0);
  }

  double compute_end_us = 0;  // end of the latest compute step so far
  for (int64_t i = 0; i < n; ++i) {
    const Step& step = steps.steps[i];
    const StepTime& time = times[i];
    if (IsOpStep(step.kind)) {
      const Op& op = graph.op(*step.op);
      for (TensorId t : op.inputs) touch(root(t), time.end_us);
      for (TensorId t : op.outputs) {
        if (open[root(t).index()] == kNone) begin(root(t), i);
        touch(root(t), time.end_us);
      }
      const int64_t workspace_bytes = workspace.empty() ? 0 : workspace[op.id.index()];
      if (workspace_bytes > 0) {
        Instance ws;
        ws.workspace_of = op.id;
        ws.bytes = workspace_bytes;
        ws.start = ws.released_at = i;
        ws.release_us = time.end_us;
        instances.push_back(ws);
      }
      compute_end_us = time.end_us;
      continue;
    }
    const TensorId r = root(*step.storage);
    switch (step.kind) {
      case StepKind::kSwapIn:
        begin(r, i);
        touch(r, time.end_us);
        break;
      case StepKind::kSwapOut:
      case StepKind::kFree:
        if (open[r.index()] == kNone) break;  // freeing a host copy
        // A swap-out's bytes come back when its copy ends; a free is ordered
        // after the compute step issued before it.
        touch(r, step.kind == StepKind::kSwapOut ? time.end_us : compute_end_us);
        instances[open[r.index()]].released_at = i;
        open[r.index()] = kNone;
        break;
      default:
        break;
    }
  }
  return instances;
}

// Pipeline step 2: one past the last step that must still see `inst`'s bytes
// reserved: its releasing step, and every later allocating step that starts
// before the release. Every step starts no earlier than the latest op step
// issued before it, so past an op step starting at or after the release no
// later step can start before it.
int64_t ReservedEnd(const Instance& inst, const Steps& steps, const std::vector<StepTime>& times) {
  const int64_t n = static_cast<int64_t>(steps.steps.size());
  if (inst.released_at >= n) return n;
  int64_t end = inst.released_at + 1;
  for (int64_t j = inst.released_at + 1; j < n; ++j) {
    const StepKind kind = steps.steps[j].kind;
    if (times[j].start_us < inst.release_us) {
      if (IsOpStep(kind) || kind == StepKind::kSwapIn) end = j + 1;
    } else if (IsOpStep(kind)) {
      break;
    }
  }
  return end;
}

}  // namespace

std::string ToString(const PlacedBuffer& buffer) {
  const std::string what = buffer.storage        ? fmt::format("t{}", buffer.storage->value)
                           : buffer.workspace_of ? fmt::format("workspace of op{}", buffer.workspace_of->value)
                                                 : std::string("(no storage)");
  return fmt::format("{} [{}, {}) steps [{}, {})", what, buffer.offset_bytes, buffer.offset_bytes + buffer.size_bytes,
                     buffer.start, buffer.end);
}

std::ostream& operator<<(std::ostream& os, const PlacedBuffer& buffer) { return os << ToString(buffer); }

std::string ToString(const Placement& placement) {
  std::string out = fmt::format("arena {} bytes (lower bound {}{}), {} buffers, {}\n", placement.arena_bytes,
                                placement.lower_bound_bytes, placement.proven_optimal ? ", proven optimal" : "",
                                placement.buffers.size(), placement.planner.empty() ? "no planner" : placement.planner);
  for (const PlacedBuffer& b : placement.buffers) out += fmt::format("  {}\n", ToString(b));
  return out;
}

std::ostream& operator<<(std::ostream& os, const Placement& placement) { return os << ToString(placement); }

std::vector<StepTime> StepTimes(const sim::Simulator& simulator, const Steps& steps) {
  sim::SimOptions options;
  options.record_timeline = true;
  const sim::SimResult result = simulator.Run(steps, options);
  std::vector<StepTime> times;
  times.reserve(result.timeline.size());
  for (const sim::TimelineEntry& e : result.timeline) times.push_back({e.start_us, e.end_us});
  return times;
}

Placement PlaceSteps(const Graph& graph, const std::vector<OpId>& order, const PlacementOptions& options) {
  return PlaceSteps(graph, StepsFromOrder(graph, order), options);
}

Placement PlaceSteps(const Graph& graph, const Steps& steps, const PlacementOptions& options) {
  if (options.alignment_bytes < 1) Fail("alignment {} must be at least 1 byte", options.alignment_bytes);
  if (const auto problems = CheckSteps(graph, steps, 1); !problems.empty()) {
    Fail("graph '{}': {}", graph.name, problems.front());
  }
  std::optional<sim::Simulator> own_simulator;
  const sim::Simulator* simulator = options.simulator;
  if (!simulator) simulator = &own_simulator.emplace(graph, sim::FindDevice("a100"));
  if (simulator->graph().num_ops() != graph.num_ops() || simulator->graph().num_tensors() != graph.num_tensors()) {
    throw std::logic_error(fmt::format("PlaceSteps: the simulator is for graph '{}', not '{}'",
                                       simulator->graph().name, graph.name));
  }

  Placement plan;
  plan.alignment_bytes = options.alignment_bytes;
  plan.step_times = StepTimes(*simulator, steps);
  for (const Step& s : steps.steps) {
    if (s.kind == StepKind::kCompute) plan.order.push_back(*s.op);
  }
  // A storage swapped out while the compute stream runs ahead can still be
  // reserved (its copy not done) when its next instance begins: one buffer
  // then holds both, with the stretch between them reserved.
  std::vector<size_t> last_buffer(graph.num_tensors(), SIZE_MAX);
  int64_t total_bytes = 0;  // Of the buffers so far: PlanOffsets() needs the sum to fit in int64_t.
  // The simulator's workspace figures (a cost table's where it has them), so
  // that the arena holds what the simulated peak counts; recorded in the plan
  // when they are not the registry's, for the checker and PLAN.json.
  std::span<const int64_t> workspace;
  if (options.count_workspace) {
    workspace = simulator->workspace_bytes();
    const bool registry = std::ranges::all_of(graph.ops(), [&](const Op& op) {
      return workspace[op.id.index()] == OpWorkspaceBytes(graph, op);
    });
    if (!registry) plan.workspace_bytes.assign(workspace.begin(), workspace.end());
  }
  for (const Instance& inst : ReplaySteps(graph, steps, plan.step_times, workspace)) {
    if (inst.bytes == 0) continue;
    if (!inst.workspace_of && last_buffer[inst.storage->index()] != SIZE_MAX) {
      PlacedBuffer& prev = plan.buffers[last_buffer[inst.storage->index()]];
      if (prev.end > inst.start) {
        prev.end = std::max(prev.end, ReservedEnd(inst, steps, plan.step_times));
        continue;
      }
    }
    if (!inst.workspace_of) last_buffer[inst.storage->index()] = plan.buffers.size();
    PlacedBuffer b;
    b.storage = inst.storage;
    b.workspace_of = inst.workspace_of;
    const std::optional<int64_t> rounded = CheckedAlignUp(inst.bytes, options.alignment_bytes);
    if (!rounded) {
      Fail("graph '{}': {} of {} bytes rounded up to the alignment {} overflows a 64-bit byte count", graph.name,
           inst.storage ? fmt::format("tensor '{}'", graph.tensor(*inst.storage).name)
                        : fmt::format("the workspace of op '{}'", graph.op(*inst.workspace_of).name),
           inst.bytes, options.alignment_bytes);
    }
    b.size_bytes = *rounded;
    const std::optional<int64_t> total = CheckedAdd(total_bytes, b.size_bytes);
    if (!total) {
      Fail("graph '{}': the buffer sizes rounded up to the alignment {} sum past 2^63 - 1 bytes", graph.name,
           options.alignment_bytes);
    }
    total_bytes = *total;
    b.start = inst.start;
    b.end = ReservedEnd(inst, steps, plan.step_times);
    plan.buffers.push_back(b);
  }
  // Deterministic order: storages by first step then id, workspaces after.
  std::stable_sort(plan.buffers.begin(), plan.buffers.end(), [](const PlacedBuffer& a, const PlacedBuffer& b) {
    if (a.workspace_of.has_value() != b.workspace_of.has_value()) return b.workspace_of.has_value();
    if (a.start != b.start) return a.start < b.start;
    return a.storage ? a.storage->value < b.storage->value : a.workspace_of->value < b.workspace_of->value;
  });

  alloc::Problem problem;
  problem.buffers.reserve(plan.buffers.size());
  for (const PlacedBuffer& b : plan.buffers) {
    alloc::Buffer buffer;
    buffer.id.name = b.storage ? fmt::format("t{}@{}", b.storage->value, b.start)
                               : fmt::format("ws{}@{}", b.workspace_of->value, b.start);
    buffer.lifetime = {b.start, b.end};
    buffer.size_bytes = b.size_bytes;
    problem.buffers.push_back(std::move(buffer));
  }
  alloc::PlanOptions plan_options;
  plan_options.planner = options.planner;
  plan_options.objective = alloc::Objective::kMinimizeHeight;
  plan_options.alignment_bytes = options.alignment_bytes;
  plan_options.time_limit_seconds = options.time_limit_seconds;
  plan_options.exact.max_nodes = options.max_search_nodes;
  plan_options.deterministic = options.deterministic;
  plan_options.finish_first_heuristic = options.finish_first_heuristic;
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

  const std::vector<std::string> problems = CheckPlacement(graph, steps, plan);
  if (!problems.empty()) {
    throw std::logic_error(fmt::format("placement of '{}' fails the checker: {}", graph.name, problems.front()));
  }
  return plan;
}

}  // namespace memfit
