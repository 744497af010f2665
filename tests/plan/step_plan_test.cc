// Memory plans of step plans with recompute, swap_out and swap_in: one buffer
// per storage instance, stretched to the two-stream timeline, checked,
// round-tripped through PLAN.json and simulated.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "autodiff/training_graph.h"
#include "ir/builder.h"
#include "models/zoo.h"
#include "plan/placement.h"
#include "plan/plan_check.h"
#include "plan/plan_json.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "sim_fixtures.h"
#include "test_util.h"
#include "util/error.h"

namespace memfit {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;

constexpr int64_t kMiB = 1 << 20;

// x -> a = relu(x) -> b = relu(a) -> c = relu(b) -> d = relu(c); the output
// e = a + d reads a again at the end. Every tensor is [512, 512] f32 = 1 MiB.
struct Skip {
  Graph graph;
  TensorId x, a, b, c, d, e;
  OpId op_a{0}, op_b{1}, op_c{2}, op_d{3}, op_e{4};
};

// testing::MakeSkipChain under this file's names (its e is d here, its d e).
Skip MakeSkip() {
  testing::SkipChain ch = testing::MakeSkipChain("skip", {512, 512}, "aten.add");
  Skip s;
  s.graph = std::move(ch.graph);
  s.x = ch.x;
  s.a = ch.a;
  s.b = ch.b;
  s.c = ch.c;
  s.d = ch.e;
  s.e = ch.d;
  return s;
}

// a is swapped out over the gap. On the a100 a relu of 1 MiB takes ~6 us
// and the 1 MiB copy ~41 us, so the copy started at step 3 is still reading a
// when steps 4 and 6 start (they allocate c and d): a's first instance stays
// reserved over [0, 7), not [0, 4). Live MiB per step: x a b | a b c | a c d
// | a' d e: at most 3 MiB, and 3 MiB is reachable (equal sizes).
Steps SwapPlan(const Skip& s) {
  return {{Step::Compute(s.op_a), Step::Compute(s.op_b), Step::Free(s.x), Step::SwapOut(s.a),
           Step::Compute(s.op_c), Step::Free(s.b), Step::Compute(s.op_d), Step::Free(s.c), Step::SwapIn(s.a),
           Step::Compute(s.op_e), Step::Free(s.a), Step::Free(s.d)}};
}

// a is freed after b and recomputed from x (kept until then) before e.
// Live MiB per step: x a b | x b c | x c d | x d a' | a' d e: 3 MiB.
Steps RecomputePlan(const Skip& s) {
  return {{Step::Compute(s.op_a), Step::Compute(s.op_b), Step::Free(s.a), Step::Compute(s.op_c), Step::Free(s.b),
           Step::Compute(s.op_d), Step::Free(s.c), Step::Recompute(s.op_a), Step::Free(s.x), Step::Compute(s.op_e),
           Step::Free(s.a), Step::Free(s.d)}};
}

std::vector<const PlacedBuffer*> BuffersOf(const Placement& plan, TensorId storage) {
  std::vector<const PlacedBuffer*> out;
  for (const PlacedBuffer& b : plan.buffers) {
    if (b.storage == storage) out.push_back(&b);
  }
  return out;
}

class StepPlanTest : public ::testing::TestWithParam<alloc::PlannerKind> {
 protected:
  PlacementOptions Options() const {
    PlacementOptions o;
    o.planner = GetParam();
    return o;
  }
  // The skip graph's steps placed: the checker finds nothing, the lower
  // bound is 3 MiB (three 1 MiB storages at once), which the exact planner
  // reaches.
  Placement PlaceSkip(const Skip& s, const Steps& steps) const {
    Placement plan = PlaceSteps(s.graph, steps, Options());
    EXPECT_THAT(CheckPlacement(s.graph, steps, plan), ::testing::IsEmpty());
    EXPECT_EQ(plan.lower_bound_bytes, 3 * kMiB);
    if (GetParam() == alloc::PlannerKind::kAuto) {
      EXPECT_EQ(plan.arena_bytes, 3 * kMiB);
    }
    return plan;
  }
};

TEST_P(StepPlanTest, SwapGetsTwoInstancesHeldUntilTheCopyEnds) {
  const Skip s = MakeSkip();
  const Steps steps = SwapPlan(s);
  const Placement plan = PlaceSkip(s, steps);
  const auto a = BuffersOf(plan, s.a);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0]->start, 0);
  EXPECT_GE(a[0]->end, 5);  // past step 4, which starts while the copy runs
  EXPECT_LE(a[0]->end, 8);  // but not past the swap-in, which waits for the copy
  EXPECT_EQ(a[1]->start, 8);
  EXPECT_EQ(a[1]->end, 11);
  EXPECT_EQ(plan.step_times.size(), steps.steps.size());
  const sim::SimResult r = sim::Simulate(s.graph, steps, sim::FindDevice("a100"));
  EXPECT_LE(r.peak_bytes, plan.arena_bytes);
  EXPECT_EQ(r.swap_in_bytes, kMiB);
}

TEST_P(StepPlanTest, RecomputeGetsTwoInstances) {
  const Skip s = MakeSkip();
  const Steps steps = RecomputePlan(s);
  const Placement plan = PlaceSkip(s, steps);
  // Steps [0, 3) before it is freed, [7, 11) once recomputed.
  std::vector<std::pair<int64_t, int64_t>> stays;
  for (const PlacedBuffer* b : BuffersOf(plan, s.a)) stays.emplace_back(b->start, b->end);
  EXPECT_EQ(stays, (std::vector<std::pair<int64_t, int64_t>>{{0, 3}, {7, 11}}));
  EXPECT_EQ(plan.order, (std::vector<OpId>{s.op_a, s.op_b, s.op_c, s.op_d, s.op_e}));
  EXPECT_LE(sim::Simulate(s.graph, steps, sim::FindDevice("a100")).peak_bytes, plan.arena_bytes);
}

INSTANTIATE_TEST_SUITE_P(Planners, StepPlanTest,
                         ::testing::Values(alloc::PlannerKind::kAuto, alloc::PlannerKind::kBestFit,
                                           alloc::PlannerKind::kNaive),
                         [](const auto& info) {
                           std::string name(alloc::ToString(info.param));
                           std::erase(name, '-');
                           return name;
                         });

TEST(StepPlanCheck, CatchesOverlappingInstances) {
  const Skip s = MakeSkip();
  const Steps steps = SwapPlan(s);
  Placement plan = PlaceSteps(s.graph, steps);
  // a's second instance and d are both reserved at steps 8-10.
  PlacedBuffer* a2 = nullptr;
  const PlacedBuffer* d = nullptr;
  for (PlacedBuffer& b : plan.buffers) {
    if (b.storage == s.a && b.start == 8) a2 = &b;
    if (b.storage == s.d) d = &b;
  }
  ASSERT_TRUE(a2 && d);
  a2->offset_bytes = d->offset_bytes;
  EXPECT_THAT(CheckPlacement(s.graph, steps, plan), Contains(HasSubstr("overlap in memory")));
}

TEST(StepPlanCheck, CatchesABufferReleasedBeforeItsSwapOutCopyEnds) {
  const Skip s = MakeSkip();
  const Steps steps = SwapPlan(s);
  Placement plan = PlaceSteps(s.graph, steps);
  // Sequentially a's bytes are free after step 3; under the two streams the
  // copy still reads them while step 4 writes c.
  for (PlacedBuffer& b : plan.buffers) {
    if (b.storage == s.a && b.start == 0) b.end = 4;
  }
  EXPECT_THAT(CheckPlacement(s.graph, steps, plan),
              Contains(AllOf(HasSubstr(fmt::format("storage '{}'", s.graph.tensor(s.a).name)),
                             HasSubstr("released at step 3"),
                             HasSubstr("its buffer covers [0, 4)"))));
}

TEST(StepPlanCheck, CatchesMalformedSteps) {
  const Skip s = MakeSkip();
  // a freed at step 2 and never brought back: e reads it at step 9.
  Steps freed = RecomputePlan(s);
  freed.steps[7] = Step::Free(s.x);
  freed.steps[8] = Step::Free(s.b);  // b was freed already at step 4
  const auto problems = CheckSteps(s.graph, freed);
  EXPECT_THAT(problems, Contains(AllOf(HasSubstr("step 9 (compute op4"), HasSubstr("was freed at step 2"))));
  EXPECT_THAT(problems, Contains(HasSubstr("step 8 (free")));
  EXPECT_THROW(PlaceSteps(s.graph, freed), Error);

  Steps twice = SwapPlan(s);
  twice.steps.push_back(Step::Compute(s.op_e));
  EXPECT_THAT(CheckSteps(s.graph, twice), Contains(HasSubstr("is computed twice (first at step 9)")));

  Steps early = RecomputePlan(s);
  early.steps.insert(early.steps.begin(), Step::Recompute(s.op_a));
  EXPECT_THAT(CheckSteps(s.graph, early), Contains(HasSubstr("recompute of op")));

  Steps missing = SwapPlan(s);
  missing.steps.erase(missing.steps.begin() + 8);  // no swap-in: e reads a host-only storage
  EXPECT_THAT(CheckSteps(s.graph, missing), Contains(HasSubstr("is on the host (swapped out at step 3)")));

  Steps no_out = SwapPlan(s);
  no_out.steps.push_back(Step::SwapOut(s.e));
  EXPECT_THAT(CheckSteps(s.graph, no_out), Contains(HasSubstr("graph output")));
}

TEST(StepPlanCheck, CatchesABadTimeline) {
  const Skip s = MakeSkip();
  const Steps steps = SwapPlan(s);
  Placement plan = PlaceSteps(s.graph, steps);
  Placement short_times = plan;
  short_times.step_times.pop_back();
  EXPECT_THAT(CheckPlacement(s.graph, steps, short_times), Contains(HasSubstr("step times for")));
  plan.step_times[5].start_us = 0;  // before the compute step 4 issued before it
  EXPECT_THAT(CheckPlacement(s.graph, steps, plan), Contains(HasSubstr("before the compute step issued")));
}

TEST(StepPlanJson, RoundTripsAndChecksOnLoad) {
  const Skip s = MakeSkip();
  Plan file;
  file.graph = s.graph;
  file.steps = SwapPlan(s);
  file.placement = PlaceSteps(file.graph, file.steps);
  file.simulated = SimulatedFigures{"a100", 0.1, 3 * kMiB};
  const std::string text = PlanToJson(file);
  EXPECT_THAT(text, HasSubstr("\"version\": 2"));
  EXPECT_THAT(text, HasSubstr("\"start_us\""));
  const Plan back = PlanFromJson(text, "p.json");
  EXPECT_EQ(back.steps, file.steps);
  EXPECT_EQ(back.placement.step_times, file.placement.step_times);
  EXPECT_EQ(back.placement.buffers.size(), file.placement.buffers.size());
  EXPECT_EQ(PlanToJson(back), text);

  // Steps only: enough to place anew.
  const Plan steps_only = PlanStepsFromJson(text, "p.json");
  EXPECT_EQ(steps_only.steps, file.steps);
  EXPECT_TRUE(steps_only.placement.buffers.empty());

  Plan overlapping = file;
  for (PlacedBuffer& b : overlapping.placement.buffers) b.offset_bytes = 0;
  EXPECT_THROW(PlanFromJson(PlanToJson(overlapping), "bad.json"), Error);
  Plan bad_steps = file;
  bad_steps.steps.steps.push_back(Step::Compute(s.op_a));
  bad_steps.placement.step_times.push_back({});
  const std::string error = testing::ErrorOf([&] { PlanFromJson(PlanToJson(bad_steps), "bad.json"); });
  EXPECT_THAT(error, HasSubstr("bad.json: the steps are malformed: step 12"));
}

TEST(StepPlanJson, ReadsVersion1) {
  // A version 1 file of the chain x -> a -> b: lifetimes in op positions.
  GraphBuilder b("chain");
  const TensorId x = b.Input("x", {16});
  const TensorId a = b.Call("aten.relu", {x});
  b.MarkOutput(b.Call("aten.relu", {a}));
  Plan file;
  file.graph = b.Finish();
  file.steps = ProgramOrderSteps(file.graph);  // compute, free x, compute, free a
  const std::string graph_json = PlanToJson(file);
  nlohmann::json j = nlohmann::json::parse(graph_json);
  j["version"] = 1;
  for (auto& step : j["steps"]) {
    step.erase("start_us");
    step.erase("end_us");
  }
  // Positions: x [0, 1), a [0, 2), the output [1, 2); x and the output share bytes.
  j["buffers"] = nlohmann::json::array({{{"storage", 0}, {"offset", 0}, {"size", 64}, {"start", 0}, {"end", 1}},
                                         {{"storage", 1}, {"offset", 64}, {"size", 64}, {"start", 0}, {"end", 2}},
                                         {{"storage", 2}, {"offset", 0}, {"size", 64}, {"start", 1}, {"end", 2}}});
  j["alignment"] = 64;
  j["arena_bytes"] = 128;
  const Plan back = PlanFromJson(j.dump(), "v1.json");
  ASSERT_EQ(back.placement.buffers.size(), 3u);
  EXPECT_EQ(back.placement.buffers[0].end, 2);  // through the free step of x
  EXPECT_EQ(back.placement.buffers[2].start, 2);
  EXPECT_EQ(back.placement.buffers[2].end, 4);
  EXPECT_EQ(back.placement.step_times.size(), 4u);
}

// Program order of a training graph with the first `count` forward
// activations read in the backward swapped out after their last forward use
// and back in before their first backward use.
Steps WithSwaps(const Graph& g, size_t count) {
  const Steps base = ProgramOrderSteps(g);
  std::vector<int64_t> last_fwd(g.num_tensors(), -1), first_bwd(g.num_tensors(), -1);
  std::vector<bool> output(g.num_tensors(), false);
  for (TensorId t : g.outputs) output[g.StorageRoot(t).index()] = true;
  for (size_t i = 0; i < base.steps.size(); ++i) {
    if (!base.steps[i].op) continue;
    const Op& op = g.op(*base.steps[i].op);
    for (const auto* list : {&op.inputs, &op.outputs}) {
      for (TensorId t : *list) {
        const size_t r = g.StorageRoot(t).index();
        if (op.phase == Phase::kForward) last_fwd[r] = static_cast<int64_t>(i);
        if (op.phase != Phase::kForward && first_bwd[r] < 0) first_bwd[r] = static_cast<int64_t>(i);
      }
    }
  }
  std::vector<std::vector<Step>> before(base.steps.size() + 1), after(base.steps.size());
  size_t swapped = 0;
  for (const Tensor& t : g.tensors()) {
    const size_t r = t.id.index();
    if (swapped == count || t.alias_of || !t.producer || output[r] || last_fwd[r] < 0 || first_bwd[r] < 0) continue;
    if (g.op(*t.producer).phase != Phase::kForward || first_bwd[r] <= last_fwd[r] + 1) continue;
    after[last_fwd[r]].push_back(Step::SwapOut(t.id));
    before[first_bwd[r]].push_back(Step::SwapIn(t.id));
    ++swapped;
  }
  Steps plan;
  for (size_t i = 0; i < base.steps.size(); ++i) {
    for (const Step& s : before[i]) plan.steps.push_back(s);
    plan.steps.push_back(base.steps[i]);
    for (const Step& s : after[i]) plan.steps.push_back(s);
  }
  return plan;
}

TEST(StepPlanZoo, MlpTrainingWithSwapsIsPlannedCheckedAndSimulated) {
  ZooOptions o;
  o.batch = 8;
  const Graph g = BuildTrainingGraph(BuildZooModel("mlp", o));
  const Steps steps = WithSwaps(g, 3);
  ASSERT_THAT(CheckSteps(g, steps), ::testing::IsEmpty());
  const sim::Simulator simulator(g, sim::FindDevice("h100"));
  PlacementOptions options;
  options.simulator = &simulator;
  Plan file;
  file.graph = g;
  file.steps = steps;
  file.placement = PlaceSteps(g, steps, options);
  EXPECT_THAT(CheckPlacement(g, steps, file.placement), ::testing::IsEmpty());
  const sim::SimResult r = simulator.Run(steps);
  EXPECT_GT(r.swap_in_bytes, 0);
  EXPECT_LE(r.peak_bytes, file.placement.arena_bytes);
  EXPECT_GE(file.placement.arena_bytes, file.placement.lower_bound_bytes);
  const Plan back = PlanFromJson(PlanToJson(file), "mlp.json");
  EXPECT_EQ(back.steps, steps);
}

TEST(StepPlanCli, PlacesAStepFileAndSimulatesIt) {
  testing::TempDir dir;
  const Skip s = MakeSkip();
  Plan file;
  file.graph = s.graph;
  file.steps = SwapPlan(s);
  nlohmann::json j = nlohmann::json::parse(PlanToJson(file));  // no memory: steps only
  j.erase("buffers");
  const std::string steps_path = dir.Write("steps.json", j.dump());
  auto r = testing::RunCli("plan " + steps_path + " --json -o " + dir.File("p.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"steps\": 12"));
  EXPECT_THAT(r.out, HasSubstr(fmt::format("\"arena_bytes\": {}", 3 * kMiB)));
  r = testing::RunCli("simulate " + dir.File("p.json") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"arena_valid\": true"));
  EXPECT_THAT(r.out, HasSubstr("\"swap_in_bytes\": 1048576"));

  j["steps"].push_back({{"kind", "compute"}, {"op", 0}});
  r = testing::RunCli("plan " + dir.Write("twice.json", j.dump()));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("twice.json: the steps are malformed: step 12 (compute op0"));
}

}  // namespace
}  // namespace memfit
