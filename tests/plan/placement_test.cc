#include "plan/placement.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <sstream>

#include "autodiff/training_graph.h"
#include "ir/builder.h"
#include "models/zoo.h"
#include "plan/plan_check.h"
#include "plan/plan_json.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "test_util.h"
#include "util/error.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;

// A chain x -> relu -> relu -> relu of [16] f32 tensors (64 bytes each):
//
//   step:    0        1        2
//   x      [=================]   input: live from 0 to its last use (0)
//   a      [========]            relu(x), read at step 1
//   b               [========]   relu(a), read at step 2
//   c                        [=] relu(b), a graph output: live to the end
//
// x is read only at step 0, so x and b can share bytes; at most two 64-byte
// tensors are live at once: lower bound 128 bytes.
Graph Chain() {
  GraphBuilder b("chain");
  TensorId x = b.Input("x", {16});
  TensorId a = b.Call("aten.relu", {x});
  TensorId c = b.Call("aten.relu", {b.Call("aten.relu", {a})});
  b.MarkOutput(c);
  return b.Finish();
}

TEST(Placement, ChainReachesTheLowerBound) {
  const Graph g = Chain();
  const Placement plan = PlaceSteps(g, ProgramOrder(g));
  EXPECT_EQ(plan.lower_bound_bytes, 128);
  EXPECT_EQ(plan.arena_bytes, 128);
  EXPECT_EQ(plan.buffers.size(), 4u);
  EXPECT_TRUE(CheckPlacement(g, plan).empty());
}

TEST(Placement, PrintsItself) {
  Placement p;
  p.arena_bytes = 4352;
  p.lower_bound_bytes = 4096;
  p.planner = "best-fit";
  p.buffers.push_back({TensorId(5), std::nullopt, 0, 4096, 0, 3});
  p.buffers.push_back({std::nullopt, OpId(7), 4096, 256, 9, 10});
  EXPECT_EQ(ToString(p.buffers[0]), "t5 [0, 4096) steps [0, 3)");
  std::ostringstream os;
  os << p;
  EXPECT_EQ(os.str(),
            "arena 4352 bytes (lower bound 4096), 2 buffers, best-fit\n"
            "  t5 [0, 4096) steps [0, 3)\n"
            "  workspace of op7 [4096, 4352) steps [9, 10)\n");
}

TEST(Placement, CheckerCatchesOverlapsMisalignmentAndMissingStorages) {
  const Graph g = Chain();
  Placement plan = PlaceSteps(g, ProgramOrder(g));
  // Put every buffer at offset 0: a and b are both live at step 1.
  Placement overlapping = plan;
  for (PlacedBuffer& b : overlapping.buffers) b.offset_bytes = 0;
  EXPECT_THAT(CheckPlacement(g, overlapping), ::testing::Contains(HasSubstr("overlap in memory")));

  Placement misaligned = plan;
  misaligned.buffers[0].offset_bytes += 8;
  misaligned.arena_bytes += 64;
  EXPECT_THAT(CheckPlacement(g, misaligned), ::testing::Contains(HasSubstr("is not a multiple of 64")));

  Placement missing = plan;
  missing.buffers.pop_back();
  EXPECT_THAT(CheckPlacement(g, missing), ::testing::Contains(HasSubstr("has no buffer")));

  Placement short_lived = plan;
  for (PlacedBuffer& b : short_lived.buffers) b.end = b.start + 1;
  EXPECT_THAT(CheckPlacement(g, short_lived), ::testing::Contains(HasSubstr("but its buffer covers")));

  Placement outside = plan;
  outside.arena_bytes = 64;
  EXPECT_THAT(CheckPlacement(g, outside), ::testing::Contains(HasSubstr("outside the arena")));
}

TEST(Placement, ZooTrainingGraphsArePlannedAtTheLowerBoundAndSimulateToTheArena) {
  for (const char* name : {"mlp", "bert-tiny", "gpt2-small", "vit-tiny"}) {
    ZooOptions o;
    o.batch = 2;
    o.seq = 16;
    o.image = name == std::string("vit-tiny") ? 32 : 0;
    const Graph g = BuildTrainingGraph(BuildZooModel(name, o));
    const Placement plan = PlaceSteps(g, ProgramOrder(g));
    EXPECT_TRUE(CheckPlacement(g, plan).empty()) << name;
    EXPECT_EQ(plan.arena_bytes, plan.lower_bound_bytes) << name;
    // The simulator's peak of program order is the lower bound, up to the
    // rounding of sizes to the alignment.
    const sim::SimResult r = sim::Simulator(g, sim::FindDevice("a100")).Run(StepsFromOrder(g, plan.order));
    EXPECT_LE(r.peak_bytes, plan.arena_bytes) << name;
    EXPECT_GE(r.peak_bytes + static_cast<int64_t>(plan.buffers.size()) * 64, plan.arena_bytes) << name;
  }
}

TEST(PlanJson, RoundTripAndChecksOnLoad) {
  Plan file;
  file.graph = Chain();
  file.placement = PlaceSteps(file.graph, ProgramOrder(file.graph));
  file.steps = StepsFromOrder(file.graph, file.placement.order);
  file.simulated = SimulatedFigures{"a100", 0.5, 128};
  const std::string text = PlanToJson(file);
  EXPECT_TRUE(LooksLikePlan(text));
  const Plan back = PlanFromJson(text, "p.json");
  EXPECT_EQ(back.placement.arena_bytes, 128);
  EXPECT_EQ(back.placement.order, file.placement.order);
  EXPECT_EQ(back.steps.steps, file.steps.steps);
  EXPECT_EQ(PlanToJson(back), text);

  // A tampered plan fails the checker on load.
  Plan bad = file;
  for (PlacedBuffer& b : bad.placement.buffers) b.offset_bytes = 0;
  const std::string error = testing::ErrorOf([&] { PlanFromJson(PlanToJson(bad), "bad.json"); });
  EXPECT_THAT(error, HasSubstr("bad.json: the plan fails the checker"));
  EXPECT_THROW(PlanFromJson("{\"format\": \"memfit.plan\", \"version\": 1}", "x.json"), Error);
}

TEST(PlanCli, PlanThenSimulateThePlan) {
  testing::TempDir dir;
  const std::string g = testing::ZooGraph(dir, "g.json", "mlp --batch 8 --train");
  auto r = testing::RunCli("plan " + g + " --json -o " + dir.File("p.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"arena_bytes\""));
  r = testing::RunCli("simulate " + dir.File("p.json") + " --device a100 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"peak_bytes\""));
  r = testing::RunCli("plan " + g + " --planner magic");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown planner 'magic'"));
}

// Issue 15: huge alignments and time limits, node budgets, determinism.
TEST(PlanCli, HugeAlignmentsAndTimeLimitsAreHandled) {
  testing::TempDir dir;
  const std::string g = testing::ZooGraph(dir, "g.json", "mlp --batch 8 --train");
  // 2^63 - 1 used to abort: the sizes cannot be rounded up to it.
  auto r = testing::RunCli("plan " + g + " --alignment 9223372036854775807");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("alignment 9223372036854775807"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  // 2^62: every size rounds to 2^62, and two of them sum past INT64_MAX.
  r = testing::RunCli("plan " + g + " --alignment 4611686018427387904");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("sum past 2^63 - 1 bytes"));
  // A huge time limit is no deadline: the same arena as the default.
  r = testing::RunCli("plan " + g + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto by_default = nlohmann::json::parse(r.out);
  for (const char* limit : {"1e12", "inf"}) {
    r = testing::RunCli("plan " + g + " --json --time-limit " + limit);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out)["arena_bytes"], by_default["arena_bytes"]) << limit;
  }
  r = testing::RunCli("plan " + g + " --time-limit nan");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = testing::RunCli("plan " + g + " --max-nodes -1");
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

TEST(PlanCli, DeterministicRunsWriteIdenticalPlans) {
  testing::TempDir dir;
  const std::string g = testing::ZooGraph(dir, "g.json", "mlp --batch 8 --train");
  std::string outputs[2];
  std::string plans[2];
  for (int run = 0; run < 2; ++run) {
    const std::string plan = dir.File("p" + std::to_string(run) + ".json");
    const auto r = testing::RunCli("plan " + g + " --deterministic --max-nodes 20000 --json -o " + plan);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    outputs[run] = r.out;
    std::ifstream in(plan);
    plans[run] = std::string(std::istreambuf_iterator<char>(in), {});
  }
  EXPECT_FALSE(plans[0].empty());
  EXPECT_EQ(plans[0], plans[1]);
  EXPECT_EQ(outputs[0], outputs[1]);
  EXPECT_THAT(outputs[0], ::testing::Not(HasSubstr("seconds")));
}

}  // namespace
}  // namespace memfit
