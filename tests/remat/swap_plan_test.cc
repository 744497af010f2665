// Planned swapping (remat/swap_plan.h): which forward results make a round
// trip to the host, and the heuristic carrying the plan out.
#include <gtest/gtest.h>

#include <algorithm>
#include <span>
#include <string>

#include "analysis/liveness.h"
#include "autodiff/training_graph.h"
#include "models/zoo.h"
#include "remat/graph_problem.h"
#include "remat/heuristic.h"
#include "remat/lower.h"
#include "remat/swap_plan.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "util/error.h"

namespace memfit::remat {
namespace {

Node Make(std::string name, double cost, int64_t bytes, std::vector<uint32_t> inputs, bool backward) {
  Node n;
  n.name = std::move(name);
  n.cost_us = cost;
  n.bytes = bytes;
  n.inputs = std::move(inputs);
  n.backward = backward;
  return n;
}

// Which nodes a plan swaps, one flag each.
std::vector<uint8_t> Swapped(const Problem& p, std::span<const double> copy_us, const SwapPlanOptions& options = {}) {
  std::vector<uint8_t> flags;
  for (uint32_t stage : PlanSwaps(p, copy_us, options)) flags.push_back(stage != kNever);
  return flags;
}

// Three forward nodes and their backward mirrors, 100 us each:
//
//   stage   0    1    2  | 3    4    5
//   node    f0   f1   f2 | b2   b1   b0
//   reads   -    f0   f1 | f2   f1,b2 f0,b1
//   time    0   100  200 |300  400  500   (backward starts at 300)
//
// f0 is idle from the end of stage 1 (200) to stage 5 (500); f1 from 300 to
// 400; f2 has no idle stretch before the backward pass.
Problem Mirror() {
  Problem p;
  p.nodes.push_back(Make("f0", 100, 10, {}, false));
  p.nodes.push_back(Make("f1", 100, 10, {0}, false));
  p.nodes.push_back(Make("f2", 100, 10, {1}, false));
  p.nodes.push_back(Make("b2", 100, 1, {2}, true));
  p.nodes.push_back(Make("b1", 100, 1, {1, 3}, true));
  p.nodes.push_back(Make("b0", 100, 1, {0, 4}, true));
  Validate(p);
  return p;
}

TEST(PlanSwaps, OnlyRoundTripsThatFitTheIdleStretch) {
  const Problem p = Mirror();
  // f0's swap-out runs [200, 250) and its swap-in [450, 500): it fits. f1
  // could leave only at 300, when the backward pass begins.
  EXPECT_EQ(Swapped(p, std::vector<double>(6, 50.0)), (std::vector<uint8_t>{1, 0, 0, 0, 0, 0}));
  // A 150 us copy of f0 would end at 350, after the forward pass.
  EXPECT_EQ(Swapped(p, std::vector<double>(6, 150.0)), (std::vector<uint8_t>(6, 0)));
  // The copy stream may spend only 10% of the forward pass (30 us) on swap-outs.
  EXPECT_EQ(Swapped(p, std::vector<double>(6, 50.0), {.copy_fraction = 0.1}), (std::vector<uint8_t>(6, 0)));
}

TEST(PlanSwaps, SwapInsShareTheCopyStreamAndTheDearestGoFirst) {
  //   stage  0      1      2      3       | 4      5
  //   node   x      y      f      z       | g      h
  //   reads  -      -      x,y    f       | z      x,y,g
  //   time   0     100    200    300..700 | 700    800
  // x and y are idle from 300 to 800. With 60 us copies both swap-outs fit
  // before 700 (x [300, 360), y [360, 420)), but only one swap-in fits
  // between 700 and h's read at 800.
  Problem p;
  p.nodes.push_back(Make("x", 100, 10, {}, false));
  p.nodes.push_back(Make("y", 100, 5, {}, false));  // dearer to recompute per byte
  p.nodes.push_back(Make("f", 100, 1, {0, 1}, false));
  p.nodes.push_back(Make("z", 400, 1, {2}, false));
  p.nodes.push_back(Make("g", 100, 1, {3}, true));
  p.nodes.push_back(Make("h", 100, 1, {0, 1, 4}, true));
  Validate(p);
  const std::vector<double> copy(6, 60.0);
  EXPECT_EQ(Swapped(p, copy), (std::vector<uint8_t>{0, 1, 0, 0, 0, 0}));
  EXPECT_EQ(Swapped(p, copy, {.priority = SwapPriority::kEarliest}), (std::vector<uint8_t>{1, 0, 0, 0, 0, 0}));
  // A longer g moves h to 900: both swap-ins fit in [780, 900).
  p.nodes[4].cost_us = 200;
  EXPECT_EQ(Swapped(p, copy), (std::vector<uint8_t>{1, 1, 0, 0, 0, 0}));
}

// A step micro-batched in two parts (fission): each part's forward, then
// its backward. Each part's results go out in its own forward and come back
// in its own backward; a result read by the second part's backward only
// after the first part's is not a candidate (its round trip would cross the
// second part's swap-outs).
//
//   stage  0    1    2  | 3    4  | 5    6    7  | 8    9
//   node   f0   f1   f2 | b1   b0 | g0   g1   g2 | c1   c0
//   reads  -    f0   f1 | f2,f1 f0,b1| -   g0   g1 | g2,g1 g0,c1,x
//   time   0   100  200 |300  400 |500  600  700 |800  900
TEST(PlanSwaps, EachMicroBatchSwapsInItsOwnStretch) {
  Problem p;
  p.nodes.push_back(Make("f0", 100, 10, {}, false));
  p.nodes.push_back(Make("f1", 100, 10, {0}, false));
  p.nodes.push_back(Make("f2", 100, 10, {1}, false));
  p.nodes.push_back(Make("b1", 100, 1, {2, 1}, true));
  p.nodes.push_back(Make("b0", 100, 1, {0, 3}, true));
  p.nodes.push_back(Make("g0", 100, 10, {}, false));
  p.nodes.push_back(Make("g1", 100, 10, {5}, false));
  p.nodes.push_back(Make("g2", 100, 10, {6}, false));
  p.nodes.push_back(Make("c1", 100, 1, {7, 6}, true));
  p.nodes.push_back(Make("c0", 100, 1, {5, 8}, true));
  Validate(p);
  // f0 out [200, 250) and in [350, 400); g0 out [700, 750) and in
  // [850, 900): one round trip in each part. The single-pass rule (every
  // swap-out before the first backward node) would have taken f0 only.
  EXPECT_EQ(Swapped(p, std::vector<double>(10, 50.0)), (std::vector<uint8_t>{1, 0, 0, 0, 0, 1, 0, 0, 0, 0}));
  // Over the whole step (per_part off) everything from b1 on is the
  // backward pass: only f0 goes.
  EXPECT_EQ(Swapped(p, std::vector<double>(10, 50.0), {.per_part = false}),
            (std::vector<uint8_t>{1, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
  // f0 read again by the second part's backward: its stretch crosses g0's
  // swap-out, and it is left alone.
  p.nodes[9].inputs.push_back(0);
  p.nodes[4].inputs = {3};
  EXPECT_EQ(Swapped(p, std::vector<double>(10, 50.0)), (std::vector<uint8_t>{0, 0, 0, 0, 0, 1, 0, 0, 0, 0}));
}

TEST(PlanSwaps, NoBackwardPassNoSwaps) {
  Problem p;
  p.nodes.push_back(Make("a", 100, 10, {}, false));
  p.nodes.push_back(Make("b", 100, 10, {0}, false));
  EXPECT_EQ(Swapped(p, std::vector<double>(2, 1.0)), (std::vector<uint8_t>(2, 0)));
  EXPECT_THROW(PlanSwaps(p, std::vector<double>(1, 1.0)), Error);
}

// A planned swap-out keeps its device copy until the copy ends, as in the
// simulator. In Mirror with f0 planned: f0 leaves after stage 1 and its
// 50 us copy runs [200, 250), so during f2 (stage 2, from 200) the device
// holds f0, f1 and f2: 30 bytes, not 20. By stage 3 (300) it is gone.
TEST(HeuristicSwaps, PlannedSwapOutHoldsItsDeviceCopyUntilTheCopyEnds) {
  const Problem p = Mirror();
  HeuristicOptions o;
  o.copy_us = std::vector<double>(6, 50.0);
  o.evict_to_host = false;
  o.swap_after = {1, kNever, kNever, kNever, kNever, kNever};  // f0 after f1 reads it
  o.budget_bytes = 1000;
  const HeuristicResult h = RunHeuristic(p, o);
  ASSERT_EQ(CheckEvents(p, h.events), "");
  EXPECT_EQ(h.swaps, 1u);
  EXPECT_EQ(h.peak_estimate, 30);
}

// A prefetch that needs room drops residents needed later only when
// recomputing them costs less than the copy it hides (50 us here):
//
//   stage  0   1   2   | 3   4   5      6
//   node   x   r   y   | z   g   h      k
//   reads  -   -   x   | y   z   x,g    r,h
//   bytes  10  10  1   | 4   3   1      1
//
// x is swapped out after y; at stage 4 its prefetch (due: its 50 us copy,
// with the 1.5 margin, must start before h) needs x + g on top of r and z:
// 27 > 25. Dropping r would free the room; at stage 5, after z is gone,
// there is room without it.
TEST(HeuristicSwaps, PrefetchDropsOnlyWhatIsCheaperThanTheStallItHides) {
  auto run = [](double r_cost) {
    Problem p;
    p.nodes.push_back(Make("x", 100, 10, {}, false));
    p.nodes.push_back(Make("r", r_cost, 10, {}, false));
    p.nodes.push_back(Make("y", 100, 1, {0}, false));
    p.nodes.push_back(Make("z", 100, 4, {2}, true));
    p.nodes.push_back(Make("g", 100, 3, {3}, true));
    p.nodes.push_back(Make("h", 100, 1, {0, 4}, true));
    p.nodes.push_back(Make("k", 100, 1, {1, 5}, true));
    Validate(p);
    HeuristicOptions o;
    o.copy_us = std::vector<double>(p.size(), 50.0);
    o.evict_to_host = false;
    o.swap_after = {2, kNever, kNever, kNever, kNever, kNever, kNever};  // x after y reads it
    o.budget_bytes = 25;
    const HeuristicResult h = RunHeuristic(p, o);
    EXPECT_EQ(CheckEvents(p, h.events), "");
    EXPECT_TRUE(h.fits);
    EXPECT_EQ(h.swaps, 1u);
    return h.recomputations;
  };
  EXPECT_EQ(run(10), 1u);    // r costs 10 us to recompute: dropped for the early prefetch
  EXPECT_EQ(run(1000), 0u);  // 1000 us: the prefetch waits a stage instead
}

// On a real training step: planned swaps alone (no recomputation) lower the
// peak with the copies hidden behind compute, and planned swaps plus
// recomputation fit a budget that recomputation alone fits only slower.
class ZooSwaps : public ::testing::TestWithParam<std::string> {};

TEST_P(ZooSwaps, PlannedSwapsHideTheirCopies) {
  ZooOptions zoo;
  zoo.batch = 32;
  zoo.image = 64;
  const Graph graph = BuildTrainingGraph(BuildZooModel(GetParam(), zoo), TrainingOptions{});
  const sim::Simulator simulator(graph, sim::FindDevice("a100"));
  const GraphProblem gp = BuildGraphProblem(graph, ProgramOrder(graph), sim::LatenciesUs(simulator.op_latencies()));
  const sim::SimResult original = simulator.Run(ProgramOrderSteps(graph));
  std::vector<double> copy_us;
  for (const Node& node : gp.problem.nodes) copy_us.push_back(sim::HostCopyUs(node.bytes, simulator.device()));

  HeuristicOptions o;
  o.allow_recompute = false;
  o.copy_us = copy_us;
  o.evict_to_host = false;
  o.swap_after = PlanSwaps(gp.problem, copy_us);
  ASSERT_GT(std::count_if(o.swap_after.begin(), o.swap_after.end(), [](uint32_t s) { return s != kNever; }), 0);
  o.budget_bytes = original.peak_bytes;
  const HeuristicResult h = RunHeuristic(gp.problem, o);
  ASSERT_EQ(CheckEvents(gp.problem, h.events), "");
  const sim::SimResult r = simulator.Run(LowerToSteps(graph, gp, h.events));
  EXPECT_GT(r.swap_out_bytes, 0);
  EXPECT_EQ(r.recompute_us, 0);
  EXPECT_LT(r.peak_bytes, original.peak_bytes * 95 / 100);
  EXPECT_LT(r.latency_us, original.latency_us * 1.01);
}

INSTANTIATE_TEST_SUITE_P(Models, ZooSwaps, ::testing::Values("resnet-18", "vit-tiny"));

}  // namespace
}  // namespace memfit::remat
