// SimOptions::record_memory: every device allocation and release, per
// storage, in the order the peak sweep visits them.
#include <gtest/gtest.h>

#include "ir/builder.h"
#include "plan/steps.h"
#include "sim/simulator.h"

namespace memfit::sim {
namespace {

// x -> a=relu(x) -> b=relu(a) -> d=add(a, b); f32[250] each (1000 bytes).
// 1000 bytes/us of memory bandwidth: a relu takes 2 us, the add 3 us.
TEST(SimulatorMemory, ChangesPerStorageInSweepOrder) {
  GraphBuilder g("chain");
  const TensorId x = g.Input("x", {250});
  const TensorId a = g.Call("aten.relu", {x});
  const TensorId b = g.Call("aten.relu", {a});
  const TensorId d = g.Call("aten.add.Tensor", {a, b});
  g.MarkOutput(d);
  const Graph graph = g.Finish();
  DeviceProfile device;
  device.name = "round";
  device.peak_f32_flops_per_s = device.peak_f16_flops_per_s = device.peak_bf16_flops_per_s = 1e30;
  device.peak_f64_flops_per_s = 1e30;
  device.memory_bandwidth_bytes_per_s = 1e9;
  device.host_bandwidth_bytes_per_s = 0.5e9;
  device.launch_overhead_us = 0;
  LatencyOptions peak;
  peak.compute_efficiency = peak.memory_efficiency = peak.host_link_efficiency = 1.0;
  // op0 [0,2]; free x @2; op1 [2,4]; op2 [4,7]; free a, b @7.
  const Steps plan = ProgramOrderSteps(graph);
  const SimResult without = Simulate(graph, plan, device, nullptr, peak);
  EXPECT_TRUE(without.memory.empty());
  const SimResult r = Simulate(graph, plan, device, nullptr, peak, {.record_memory = true});
  struct Want {
    double time;
    int64_t delta;
    TensorId storage;
    bool initial;
  };
  const std::vector<Want> want = {{0, 1000, x, true},  {0, 1000, a, false}, {2, -1000, x, false},
                                  {2, 1000, b, false}, {4, 1000, d, false}, {7, -1000, a, false},
                                  {7, -1000, b, false}};
  ASSERT_EQ(r.memory.size(), want.size());
  int64_t live = 0, peak_bytes = 0;
  for (size_t k = 0; k < want.size(); ++k) {
    SCOPED_TRACE(k);
    const MemoryChange& c = r.memory[k];
    EXPECT_DOUBLE_EQ(c.time_us, want[k].time);
    EXPECT_EQ(c.delta_bytes, want[k].delta);
    EXPECT_EQ(c.storage, want[k].storage);
    EXPECT_EQ(c.step.has_value(), !want[k].initial);
    EXPECT_FALSE(c.workspace_of.has_value());
    EXPECT_FALSE(c.transient);
    live += c.delta_bytes;
    peak_bytes = std::max(peak_bytes, live);
  }
  EXPECT_EQ(peak_bytes, r.peak_bytes);
  EXPECT_EQ(r.memory[1].step, 0u);
  EXPECT_EQ(r.memory[2].step, 1u);  // the free of x
}

}  // namespace
}  // namespace memfit::sim
