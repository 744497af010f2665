// The least memory any plan needs within a latency limit
// (optimize/latency_bound.h): its arithmetic on a hand-made step, and that
// no plan the optimizer finds is ever below it.
#include "optimize/latency_bound.h"

#include <gtest/gtest.h>

#include "autodiff/training_graph.h"
#include "ir/builder.h"
#include "models/zoo.h"
#include "optimize/optimizer.h"
#include "sim_fixtures.h"

namespace memfit {
namespace {

using testing::Peak;
using testing::RoundDevice;

// A forward of three relus whose results the "backward" (adds) reads in
// reverse, each f32[250] (1000 bytes):
//
//   op0 a1 = relu(x)       2 us        op4 u1 = add(a3, m)   3 us
//   op1 a2 = relu(a1)      2 us        op5 u2 = add(a2, u1)  3 us
//   op2 a3 = relu(a2)      2 us        op6 u3 = add(a1, u2)  3 us (output)
//   op3 m  = relu(a3)      2 us
//
// 17 us in all on RoundDevice. At op4 (the cut) a1, a2, a3, m and u1 are on
// the device unless a1 or a2 left: 5000 bytes; a3, m and u1 are op4's own.
Graph Ladder() {
  GraphBuilder g("ladder");
  const TensorId x = g.Input("x", {250});
  const TensorId a1 = g.Call("aten.relu", {x});
  const TensorId a2 = g.Call("aten.relu", {a1});
  const TensorId a3 = g.Call("aten.relu", {a2});
  const TensorId m = g.Call("aten.relu", {a3});
  const TensorId u1 = g.Call("aten.add.Tensor", {a3, m});
  const TensorId u2 = g.Call("aten.add.Tensor", {a2, u1});
  g.MarkOutput(g.Call("aten.add.Tensor", {a1, u2}));
  return g.Finish();
}

// A link that takes 4 us per 1000 bytes (half of RoundDevice's rate).
sim::DeviceProfile SlowLink() {
  sim::DeviceProfile d = RoundDevice();
  d.host_bandwidth_bytes_per_s = 0.25e9;
  return d;
}

TEST(LatencyBound, CountsWhatTheLinkMovesBeforeTheCut) {
  const Graph g = Ladder();
  const sim::Simulator simulator(g, SlowLink(), nullptr, Peak());
  // No slack at 17 us. op4 starts at 8 (9 us follow it): a1 (made at 2)
  // leaves over [2, 6], a2 (made at 4) has [6, 8] of its 4 us, half of it.
  // At op3 (11 us follow it, start at 6) only a1 leaves: 4000 - 1000; at
  // op5, a1 again: 4000 - 1000. op4 holds the most.
  const std::optional<LatencyBound> bound = MemoryBoundAtLatency(simulator, 17.0);
  ASSERT_TRUE(bound);
  EXPECT_EQ(g.op(bound->cut).name, g.ops()[4].name);
  EXPECT_EQ(bound->crossing_bytes, 5000);
  EXPECT_EQ(bound->swapped_bytes, 1500);
  EXPECT_EQ(bound->freed_bytes, 0);
  EXPECT_NEAR(bound->bytes, 3500, 1);
}

TEST(LatencyBound, SpendsTheSlackOnCopiesOrRecomputation) {
  const Graph g = Ladder();
  // With 2 us of slack the link has until 10 for a2: both leave, and at op4
  // only its own 3000 bytes remain, as at op5 and op6.
  {
    const sim::Simulator simulator(g, SlowLink(), nullptr, Peak());
    const std::optional<LatencyBound> bound = MemoryBoundAtLatency(simulator, 19.0);
    ASSERT_TRUE(bound);
    EXPECT_NEAR(bound->bytes, 3000, 1);
  }
  // Without a link to speak of (1 byte per us), the 2 us recompute one of
  // a1 or a2 (2 us each): 5000 - 1000 at op4, less the few bytes the link
  // moves by 10.
  sim::DeviceProfile no_link = RoundDevice();
  no_link.host_bandwidth_bytes_per_s = 1e6;
  const sim::Simulator simulator(g, no_link, nullptr, Peak());
  const std::optional<LatencyBound> bound = MemoryBoundAtLatency(simulator, 19.0);
  ASSERT_TRUE(bound);
  EXPECT_EQ(g.op(bound->cut).name, g.ops()[4].name);
  EXPECT_NEAR(bound->freed_bytes, 1000, 1);
  EXPECT_LE(bound->swapped_bytes, 8);
  EXPECT_NEAR(bound->bytes, 4000, 10);
}

// An op's whole working set is on the device in every plan, also where the
// program order holds less than at its peak. Here the peak is at op6 (a1..a5,
// m and s1: 7000 bytes), where a fast link with slack to spare takes all but
// op6's own 3000; the last op, a concatenation of three 1000-byte copies,
// holds 4000 of its own.
TEST(LatencyBound, CutsAtTheLargestWorkingSetToo) {
  GraphBuilder g("tail");
  TensorId a = g.Input("x", {250});
  std::vector<TensorId> kept;
  for (int i = 0; i < 5; ++i) kept.push_back(a = g.Call("aten.relu", {a}));
  TensorId s = g.Call("aten.relu", {a});
  for (int i = 4; i >= 0; --i) s = g.Call("aten.add.Tensor", {kept[i], s});
  g.MarkOutput(g.Call("aten.cat", {s, s, s}, {{"dim", int64_t{0}}}));
  const Graph graph = g.Finish();
  sim::DeviceProfile fast = RoundDevice();
  fast.host_bandwidth_bytes_per_s = 1e12;
  const sim::Simulator simulator(graph, fast, nullptr, Peak());
  const std::optional<LatencyBound> bound = MemoryBoundAtLatency(simulator, 1000.0, /*max_cuts=*/1);
  ASSERT_TRUE(bound);
  EXPECT_EQ(bound->cut.index(), graph.num_ops() - 1);
  EXPECT_EQ(bound->bytes, 4000);
}

TEST(LatencyBound, NoneWhenTheOpsAloneTakeLonger) {
  const Graph g = Ladder();
  const sim::Simulator simulator(g, SlowLink(), nullptr, Peak());
  EXPECT_FALSE(MemoryBoundAtLatency(simulator, 16.9));
}

// The bound is below every plan the optimizer finds within the limit, on
// real steps, with and without slack (on the CPU, where the host is the
// device's memory, no copy counts).
TEST(LatencyBound, NoPlanIsBelowIt) {
  ZooOptions small;
  small.batch = 4;
  small.image = 64;
  const std::vector<Graph> graphs = {BuildTrainingGraph(BuildZooModel("mlp", {}), TrainingOptions{}),
                                     BuildTrainingGraph(BuildZooModel("bert-tiny", {}), TrainingOptions{}),
                                     BuildTrainingGraph(BuildZooModel("resnet-18", small), TrainingOptions{})};
  for (const Graph& g : graphs) {
    for (const char* device : {"a100", "rtx3090", "cpu"}) {
      for (double ratio : {1.0, 1.05, 1.2}) {
        OptimizeOptions o;
        o.lat_limit_ratio = ratio;
        o.work_budget = 300;
        o.method = RematMethod::kHeuristic;  // the MLP's MILP takes seconds a limit
        const sim::DeviceProfile& d = sim::FindDevice(device);
        const OptimizeResult r = Optimize(g, d, nullptr, o);
        const std::optional<LatencyBound> bound = MemoryBoundAtLatency(sim::Simulator(g, d), r.latency_limit_us);
        ASSERT_TRUE(bound);
        EXPECT_LE(bound->bytes, r.optimized.peak_bytes) << g.name << " on " << device << " at " << ratio;
        EXPECT_GT(bound->bytes, 0);
        if (d.shared_host_memory) {
          EXPECT_EQ(bound->swapped_bytes, 0);  // the host is the device's memory
        }
      }
    }
  }
}

}  // namespace
}  // namespace memfit
