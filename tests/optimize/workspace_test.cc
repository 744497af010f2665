// One source of truth for an op's workspace: a cost table's measured
// workspace_bytes where the table has the op, else the registry's estimate,
// counted alike by the simulator, liveness, the schedulers, remat's node
// problem, the placement (offsets) and the checker (analysis/liveness.h
// OpWorkspaceBytes, sim::Simulator::workspace_bytes()).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>

#include "analysis/liveness.h"
#include "ir/builder.h"
#include "ir/registry.h"
#include "optimize/optimizer.h"
#include "plan/plan_check.h"
#include "plan/plan_json.h"
#include "plan/placement.h"
#include "remat/graph_problem.h"
#include "sched/scheduler.h"
#include "sim/cost_model.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "test_util.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;

// x f32[256] (1 KiB, an input); q = neg(x); p = relu(x); out = p + q, each 1 KiB.
// Program order runs q first. The registry gives none of them a workspace;
// the cost table measures relu's at W = 1 MiB (as memfit.profile writes it).
constexpr int64_t kKiB = 1024;
constexpr int64_t kW = 1 << 20;

struct Branches {
  Graph graph;
  OpId q, p, add;
};

Branches TwoBranches() {
  GraphBuilder b("branches");
  const TensorId x = b.Input("x", {256});
  const TensorId q = b.Call("aten.neg", {x}, {}, "q");
  const TensorId p = b.Call("aten.relu", {x}, {}, "p");
  b.MarkOutput(b.Call("aten.add.Tensor", {p, q}, {}, "out"));
  return {b.Finish(), OpId(0), OpId(1), OpId(2)};
}

sim::CostTable ReluWorkspace(int64_t bytes) {
  return sim::CostTable::FromJson(
      R"({"format": "memfit.costs", "version": 1, "device": "a100", "entries": [
          {"op": "aten.relu", "input_shapes": [[256]], "dtype": "f32", "latency_us": 1, "workspace_bytes": )" +
          std::to_string(bytes) + "}]}");
}

TEST(Workspace, TheSimulatorsFiguresAreTheCostTablesElseTheRegistrys) {
  const Branches b = TwoBranches();
  for (const Op& op : b.graph.ops()) ASSERT_EQ(ComputeOpCost(b.graph, op).workspace_bytes, 0) << op.name;
  const sim::CostTable costs = ReluWorkspace(kW);
  const sim::Simulator measured(b.graph, sim::FindDevice("a100"), &costs);
  EXPECT_EQ(measured.workspace_bytes(), (std::vector<int64_t>{0, kW, 0}));
  const sim::Simulator registry(b.graph, sim::FindDevice("a100"));
  EXPECT_EQ(registry.workspace_bytes(), (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(OpWorkspaceBytes(b.graph, b.graph.op(b.p), measured.workspace_bytes()), kW);
  EXPECT_EQ(OpWorkspaceBytes(b.graph, b.graph.op(b.p)), 0);
}

// Program order (q, p, add): p runs while x and q are live: x + q + p + W.
// p first (p, q, add): x + p + W at p, x + p + q after: 2 KiB + W. Without the
// measured figure both orders peak at 3 KiB (p, q and out, or x, p and q).
TEST(Workspace, TheSchedulerSeesTheMeasuredWorkspace) {
  const Branches b = TwoBranches();
  const sim::CostTable costs = ReluWorkspace(kW);
  const sim::Simulator simulator(b.graph, sim::FindDevice("a100"), &costs);
  LivenessOptions measured;
  measured.workspace_bytes = simulator.workspace_bytes();
  EXPECT_EQ(ComputeLiveness(b.graph, measured).peak_bytes, 3 * kKiB + kW);
  EXPECT_EQ(ComputeLiveness(b.graph).peak_bytes, 3 * kKiB);

  for (sched::SchedulerKind kind : {sched::SchedulerKind::kExact, sched::SchedulerKind::kAuto}) {
    sched::ScheduleOptions so;
    so.scheduler = kind;
    so.liveness = measured;
    const sched::ScheduleResult r = sched::Schedule(b.graph, so);
    EXPECT_EQ(r.order, (std::vector<OpId>{b.p, b.q, b.add})) << r.scheduler;
    EXPECT_EQ(r.peak_bytes, 2 * kKiB + kW) << r.scheduler;
    so.liveness = {};
    EXPECT_EQ(sched::Schedule(b.graph, so).peak_bytes, 3 * kKiB);
  }
  // remat's node problem carries it too.
  const remat::GraphProblem gp = remat::BuildGraphProblem(
      b.graph, ProgramOrder(b.graph), sim::LatenciesUs(simulator.op_latencies()), {.workspace_bytes = measured.workspace_bytes});
  EXPECT_EQ(gp.problem.nodes[gp.node_of_op[b.p.index()]].workspace_bytes, kW);
}

// Under a limit of 2 KiB + W + 512 only the order that runs p first fits:
// the optimizer finds it (its scheduler sees W), the arena holds W for p's
// step, the plan records the figures and passes the checker, also read back.
TEST(Workspace, TheOptimizedPlanAndItsArenaHoldTheMeasuredWorkspace) {
  const Branches b = TwoBranches();
  const sim::CostTable costs = ReluWorkspace(kW);
  OptimizeOptions o;
  o.mem_limit_bytes = 2 * kKiB + kW + 512;
  o.work_budget = 50;
  const OptimizeResult r = Optimize(b.graph, sim::FindDevice("a100"), &costs, o);
  EXPECT_EQ(r.original.peak_bytes, 3 * kKiB + kW);
  EXPECT_EQ(r.optimized.peak_bytes, 2 * kKiB + kW);
  const Placement& placed = r.plan.placement;
  EXPECT_EQ(placed.order, (std::vector<OpId>{b.p, b.q, b.add}));
  EXPECT_EQ(placed.workspace_bytes, (std::vector<int64_t>{0, kW, 0}));
  int workspaces = 0;
  for (const PlacedBuffer& buffer : placed.buffers) {
    if (!buffer.workspace_of) continue;
    ++workspaces;
    EXPECT_EQ(*buffer.workspace_of, b.p);
    EXPECT_EQ(buffer.size_bytes, kW);
  }
  EXPECT_EQ(workspaces, 1);
  EXPECT_GE(placed.arena_bytes, 2 * kKiB + kW);
  EXPECT_LE(placed.arena_bytes, *o.mem_limit_bytes);
  EXPECT_THAT(CheckPlacement(b.graph, r.plan.steps, placed), ::testing::IsEmpty());
  const Plan again = PlanFromJson(PlanToJson(r.plan), "p.json");
  EXPECT_EQ(again.placement.workspace_bytes, placed.workspace_bytes);
  // Without a cost table the same limit is far more than the step needs.
  const OptimizeResult plain = Optimize(b.graph, sim::FindDevice("a100"), nullptr, o);
  EXPECT_EQ(plain.optimized.peak_bytes, 3 * kKiB);
  EXPECT_TRUE(plain.plan.placement.workspace_bytes.empty());
}

// A measured workspace smaller than the registry's estimate: a 3x3
// convolution of x f32[1,1,4,4] whose registry workspace is 576 B (one
// im2col buffer) measured at 100 B. The placement sizes its buffer by the
// measurement (128 B, aligned); the checker accepts it by the plan's figures
// and, told nothing, would ask for the registry's 576.
TEST(Workspace, APlacementSizedByASmallerMeasurementPassesTheChecker) {
  GraphBuilder b("conv");
  const TensorId x = b.Input("x", {1, 1, 4, 4});
  const TensorId w = b.Parameter("w", {1, 1, 3, 3});
  // Stride, dilation and groups at their defaults (1), no bias.
  b.MarkOutput(b.Call("aten.convolution", {x, w}, {{"padding", std::vector<int64_t>{1, 1}}}));
  const Graph g = b.Finish();
  ASSERT_EQ(ComputeOpCost(g, g.ops()[0]).workspace_bytes, 576);
  const sim::CostTable costs = sim::CostTable::FromJson(
      R"({"format": "memfit.costs", "version": 1, "device": "a100", "entries": [
          {"op": "aten.convolution", "input_shapes": [[1, 1, 4, 4], [1, 1, 3, 3]], "dtype": "f32",
           "latency_us": 5, "workspace_bytes": 100}]})");
  const sim::Simulator simulator(g, sim::FindDevice("a100"), &costs);
  PlacementOptions po;
  po.simulator = &simulator;
  Plan plan{g, StepsFromOrder(g, ProgramOrder(g)), PlaceSteps(g, ProgramOrder(g), po), std::nullopt};
  EXPECT_EQ(plan.placement.workspace_bytes, std::vector<int64_t>{100});
  const auto workspace = std::find_if(plan.placement.buffers.begin(), plan.placement.buffers.end(),
                                      [](const PlacedBuffer& buffer) { return buffer.workspace_of.has_value(); });
  ASSERT_NE(workspace, plan.placement.buffers.end());
  EXPECT_EQ(workspace->size_bytes, 128);
  EXPECT_THAT(CheckPlacement(g, plan.steps, plan.placement), ::testing::IsEmpty());
  EXPECT_EQ(PlanFromJson(PlanToJson(plan), "p.json").placement.workspace_bytes, std::vector<int64_t>{100});
  Placement told_nothing = plan.placement;
  told_nothing.workspace_bytes.clear();
  EXPECT_THAT(CheckPlacement(g, plan.steps, told_nothing),
              ::testing::Contains(HasSubstr("workspace of op 'convolution' needs 576 bytes, its buffer has 128")));
  // Figures that do not fit the graph are an error naming the field.
  nlohmann::json j = nlohmann::json::parse(PlanToJson(plan));
  j["workspace_bytes"] = {100, 0};
  EXPECT_THAT(testing::ErrorOf([&] { PlanFromJson(j.dump(), "p.json"); }),
              HasSubstr("p.json: workspace_bytes: has 2 figures; the graph has 1 ops"));
  j["workspace_bytes"] = {-1};
  EXPECT_THAT(testing::ErrorOf([&] { PlanFromJson(j.dump(), "p.json"); }),
              HasSubstr("p.json: workspace_bytes[0]: must be from 0 to"));
}

}  // namespace
}  // namespace memfit
