// Tests of the device profiles, the latency model and the two-stream
// simulator, with the expected microseconds and bytes worked out by hand.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "analysis/liveness.h"
#include "autodiff/training_graph.h"
#include "conv_attrs.h"
#include "ir/builder.h"
#include "models/zoo.h"
#include "plan/steps.h"
#include "sim/cost_model.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "sim_fixtures.h"
#include "test_util.h"
#include "util/error.h"

namespace memfit::sim {
namespace {

using ::testing::HasSubstr;

using testing::Peak;
using testing::RoundDevice;
using testing::SwapRoundTrip;

TEST(Device, BuiltinsAndLookup) {
  std::vector<std::string> names;
  for (const DeviceProfile& d : BuiltinDevices()) {
    names.push_back(d.name);
    EXPECT_GT(d.peak_f32_flops_per_s, 0) << d.name;
    EXPECT_GE(d.peak_f16_flops_per_s, d.peak_f32_flops_per_s) << d.name;
    EXPECT_GT(d.memory_bandwidth_bytes_per_s, d.host_bandwidth_bytes_per_s) << d.name;
    EXPECT_GT(d.memory_bytes, 0) << d.name;
  }
  EXPECT_THAT(names, ::testing::ElementsAre("a100", "cpu", "h100", "h200", "rtx3090", "v100"));
  EXPECT_EQ(BuiltinDeviceNames(), "a100, cpu, h100, h200, rtx3090, v100");
  EXPECT_EQ(FindDevice("a100").peak_f32_flops_per_s, 19.5e12);
  EXPECT_EQ(FindDevice("a100").PeakFlopsPerS(DType::kBF16), 312e12);
  EXPECT_EQ(FindDevice("h200").memory_bandwidth_bytes_per_s, 4.8e12);
  const std::string error = testing::ErrorOf([&] { FindDevice("b200"); });
  EXPECT_THAT(error, HasSubstr("unknown device 'b200'"));
  EXPECT_THAT(error, HasSubstr("a100, cpu, h100, h200, rtx3090, v100"));
}

TEST(Device, JsonRoundTripAndErrors) {
  const DeviceProfile& a100 = FindDevice("a100");
  const DeviceProfile back = DeviceFromJson(DeviceToJson(a100), "a100.json");
  EXPECT_EQ(back.name, "a100");
  EXPECT_DOUBLE_EQ(back.peak_f16_flops_per_s, a100.peak_f16_flops_per_s);
  EXPECT_DOUBLE_EQ(back.memory_bandwidth_bytes_per_s, a100.memory_bandwidth_bytes_per_s);
  EXPECT_EQ(back.memory_bytes, a100.memory_bytes);

  EXPECT_THAT([] { DeviceFromJson(R"({"name": "x"})", "dev.json"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("dev.json: top level: missing field 'peak_tflops'")));
  EXPECT_THAT(
      [] {
        DeviceFromJson(R"({"name": "x", "peak_tflops": {"f32": 1}, "memory_bandwidth_gb_per_s": -1,
                           "host_bandwidth_gb_per_s": 1, "launch_overhead_us": 0, "memory_gib": 1})",
                       "dev.json");
      },
      ::testing::ThrowsMessage<Error>(HasSubstr("dev.json: memory_bandwidth_gb_per_s: must be positive (got -1)")));
  EXPECT_THAT([] { DeviceFromJson(R"({"name": "x", "bandwidth": 1})", "dev.json"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("unknown field 'bandwidth'")));
}

// mm of two f32 [1024, 1024] matrices on an A100 at peak:
//   flops = 2 x 1024^3 = 2147483648; / 19.5e12 FLOP/s = 110.127 us
//   bytes = 3 x 4 MiB = 12582912;     / 2039e9 B/s    =   6.171 us
//   compute-bound: 110.127 + 5 us launch = 115.127 us.
// relu of one of them: 8 MiB moved / 2039e9 = 4.114 us (memory-bound; its
// 1M flops take 0.054 us) + 5 = 9.114 us. The transpose is a view: 0.
TEST(Latency, RooflineOnA100) {
  GraphBuilder b("mm");
  const TensorId x = b.Input("x", {1024, 1024});
  const TensorId w = b.Parameter("w", {1024, 1024});
  const TensorId wt = b.Call("aten.t", {w});
  const TensorId y = b.Call("aten.mm", {x, wt});
  b.MarkOutput(b.Call("aten.relu", {y}));
  const Graph g = b.Finish();
  const std::vector<OpLatency> l = ComputeOpLatencies(g, FindDevice("a100"), nullptr, Peak());
  ASSERT_EQ(l.size(), 3u);
  EXPECT_EQ(l[0].source, LatencySource::kView);
  EXPECT_EQ(l[0].latency_us, 0);
  EXPECT_NEAR(l[1].latency_us, 2147483648.0 / 19.5e12 * 1e6 + 5, 1e-9);
  EXPECT_NEAR(l[1].latency_us, 115.127, 1e-3);
  EXPECT_FALSE(l[1].memory_bound);
  EXPECT_NEAR(l[2].latency_us, 9.114, 1e-3);
  EXPECT_TRUE(l[2].memory_bound);

  // With the default efficiencies (0.7 compute, 0.8 memory):
  // 110.127 / 0.7 + 5 = 162.324 us and 4.114 / 0.8 + 5 = 10.143 us.
  const std::vector<OpLatency> d = ComputeOpLatencies(g, FindDevice("a100"), nullptr);
  EXPECT_NEAR(d[1].latency_us, 162.324, 1e-3);
  EXPECT_NEAR(d[2].latency_us, 10.143, 1e-3);

  // In f16 the mm is 2147483648 / 312e12 = 6.883 us of math against 6 MiB
  // (6291456 B / 2039e9 = 3.086 us): 6.883 + 5 = 11.883 us.
  GraphBuilder h("mm16", DType::kF16);
  const TensorId a = h.Input("a", {1024, 1024});
  const TensorId c = h.Parameter("c", {1024, 1024});
  h.MarkOutput(h.Call("aten.mm", {a, c}));
  const Graph g16 = h.Finish();
  EXPECT_NEAR(ComputeOpLatencies(g16, FindDevice("a100"), nullptr, Peak())[0].latency_us, 11.883, 1e-3);
}

TEST(Latency, CostTableOverridesMatchingOps) {
  GraphBuilder b("mm");
  const TensorId x = b.Input("x", {64, 128});
  const TensorId w = b.Parameter("w", {128, 32});
  const TensorId y = b.Call("aten.mm", {x, w});
  const TensorId z = b.Call("aten.mm", {y, b.Parameter("v", {32, 32})});
  b.MarkOutput(b.Call("aten.relu", {z}));
  const Graph g = b.Finish();
  const CostTable costs = CostTable::FromJson(R"({
    "format": "memfit.costs", "version": 1, "device": "a100",
    "entries": [
      {"op": "aten.mm", "overload": "default", "input_shapes": [[64, 128], [128, 32]], "dtype": "f32",
       "latency_us": 42.5},
      {"op": "aten.mm", "input_shapes": [[64, 32], [32, 32]], "dtype": "f16", "latency_us": 1000},
      {"op": "aten.relu", "input_shapes": [[64, 32]], "dtype": "f32", "latency_us": 7, "samples": 3}
    ]})",
                                              "costs.json");
  EXPECT_EQ(costs.size(), 3u);
  const std::vector<OpLatency> l = ComputeOpLatencies(g, FindDevice("a100"), &costs);
  EXPECT_EQ(l[0].source, LatencySource::kMeasured);
  EXPECT_EQ(l[0].latency_us, 42.5);
  EXPECT_EQ(l[1].source, LatencySource::kRoofline);  // the table has it in f16 only
  EXPECT_EQ(l[2].source, LatencySource::kMeasured);
  EXPECT_EQ(l[2].latency_us, 7);
  // The simulator uses them: 42.5 + roofline + 7 on the compute stream.
  const SimResult r = Simulate(g, ProgramOrderSteps(g), FindDevice("a100"), &costs);
  EXPECT_NEAR(r.latency_us, 42.5 + l[1].latency_us + 7, 1e-9);
}

// A cost table's measured workspace_bytes replaces the registry's estimate
// in the simulator (memfit.profile measures oneDNN's scratch on the CPU).
// A 3x3 convolution of x f32[1,1,4,4] (64 B) with w f32[1,1,3,3] (36 B),
// padding 1, makes y f32[1,1,4,4] (64 B); the registry's workspace is one
// sample's im2col buffer: 1 x 9 x 16 x 4 = 576 B. Peak during the op:
// x + w + y + workspace.
TEST(Latency, CostTableWorkspaceReplacesTheRegistrys) {
  GraphBuilder b("conv");
  const TensorId x = b.Input("x", {1, 1, 4, 4});
  const TensorId w = b.Parameter("w", {1, 1, 3, 3});
  b.MarkOutput(b.Call("aten.convolution", {x, w}, testing::ConvAttrs(1, 1)));
  const Graph g = b.Finish();
  const Steps plan = ProgramOrderSteps(g);
  EXPECT_EQ(Simulate(g, plan, RoundDevice(), nullptr, Peak()).peak_bytes, 64 + 36 + 64 + 576);
  const std::string entry = R"({"format": "memfit.costs", "version": 1, "device": "cpu", "entries": [
      {"op": "aten.convolution", "input_shapes": [[1, 1, 4, 4], [1, 1, 3, 3]], "dtype": "f32", "latency_us": 5)";
  const CostTable measured = CostTable::FromJson(entry + R"(, "workspace_bytes": 1000}]})");
  const SimResult r = Simulate(g, plan, RoundDevice(), &measured, Peak());
  EXPECT_EQ(r.peak_bytes, 64 + 36 + 64 + 1000);
  EXPECT_DOUBLE_EQ(r.latency_us, 5);
  // A measured zero is a measurement: no workspace.
  const CostTable none = CostTable::FromJson(entry + R"(, "workspace_bytes": 0}]})");
  EXPECT_EQ(Simulate(g, plan, RoundDevice(), &none, Peak()).peak_bytes, 64 + 36 + 64);
  // An entry without the field keeps the registry's estimate.
  const CostTable latency_only = CostTable::FromJson(entry + "}]}");
  EXPECT_FALSE(latency_only.FindWorkspace(g, g.ops()[0]).has_value());
  EXPECT_EQ(Simulate(g, plan, RoundDevice(), &latency_only, Peak()).peak_bytes, 64 + 36 + 64 + 576);
  EXPECT_THAT(testing::ErrorOf([&] { CostTable::FromJson(entry + R"(, "workspace_bytes": -1}]})", "c.json"); }),
              HasSubstr("c.json: entries[0].workspace_bytes: must be an integer from 0 to"));
  EXPECT_THAT(testing::ErrorOf([&] { CostTable::FromJson(entry + R"(, "workspace_bytes": 1e30}]})", "c.json"); }),
              HasSubstr("c.json: entries[0].workspace_bytes:"));
}

TEST(Latency, MalformedCostTablesNameFileAndEntry) {
  auto error_of = [](const std::string& text) {
    try {
      CostTable::FromJson(text, "costs.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(error_of("{"), HasSubstr("costs.json: malformed JSON: parse error at line 1, column 2"));
  EXPECT_THAT(error_of("[]"), HasSubstr("costs.json: top level: expected an object, got []"));
  EXPECT_THAT(error_of(R"({"entries": 3})"), HasSubstr("costs.json: entries: expected an array, got 3"));
  const std::string ok = R"({"op": "aten.relu", "input_shapes": [[2]], "dtype": "f32", "latency_us": 1})";
  EXPECT_THAT(error_of(R"({"entries": [)" + ok + R"(, {"op": "aten.relu", "input_shapes": [[2]], "dtype": "f32"}]})"),
              HasSubstr("costs.json: entries[1]: missing field 'latency_us'"));
  EXPECT_THAT(error_of(R"({"entries": [{"op": "aten.relu", "input_shapes": [[2]], "dtype": "f32",
                                        "latency_us": -1}]})"),
              HasSubstr("entries[0].latency_us: must be a non-negative number, got -1"));
  EXPECT_THAT(error_of(R"({"entries": [{"op": "aten.relu", "input_shapes": [[-2]], "dtype": "f32",
                                        "latency_us": 1}]})"),
              HasSubstr("entries[0].input_shapes[0]: must be an array of non-negative integers, got [-2]"));
  EXPECT_THAT(error_of(R"({"entries": [{"op": "aten.relu", "input_shapes": [[2]], "dtype": "f8",
                                        "latency_us": 1}]})"),
              HasSubstr("entries[0].dtype: unknown dtype 'f8'"));
  EXPECT_THAT(error_of(R"({"entries": [{"input_shapes": [[2]], "dtype": "f32", "latency_us": 1}]})"),
              HasSubstr("entries[0]: missing field 'op'"));
  EXPECT_THAT(error_of(R"({"entries": [)" + ok + "," + ok + "]}"),
              HasSubstr("costs.json: entries[1]: same op, overload, input_shapes and dtype as entries[0]"));
  EXPECT_THAT(error_of(R"({"entries": [{"op": "aten.relu", "input_shapes": [[2]], "dtype": "f32",
                                        "latency_us": 1, "ms": 2}]})"),
              HasSubstr("entries[0]: unknown field 'ms'"));
}

// x -> a=relu(x) -> b=relu(a) -> c=relu(b) -> e=relu(c) -> d=add(a, e).
// Every tensor is f32[250] = 1000 bytes. On RoundDevice a relu moves 2000 B
// (2 us), the add 3000 B (3 us), a host copy of 1000 B takes 2 us.
using Chain = testing::SkipChain;
Chain MakeChain() { return testing::MakeSkipChain("chain", {250}); }

// Program order with frees at last use: 4 x 2 us + 3 us = 11 us. Live
// bytes: x,a = 2000 during op0; a,b,c during op2 = 3000 (the peak).
TEST(Simulator, ProgramOrderChain) {
  const Chain ch = MakeChain();
  const Steps plan = ProgramOrderSteps(ch.graph);
  EXPECT_EQ(ToString(plan.steps[1]), "free t0");  // x after op0
  const SimResult r = Simulate(ch.graph, plan, RoundDevice(), nullptr, Peak(), {.record_timeline = true});
  EXPECT_DOUBLE_EQ(r.latency_us, 11);
  EXPECT_EQ(r.peak_bytes, 3000);
  EXPECT_DOUBLE_EQ(r.compute_busy_us, 11);
  EXPECT_DOUBLE_EQ(r.copy_busy_us, 0);
  EXPECT_EQ(r.peak_bytes, ComputeLiveness(ch.graph).peak_bytes);
  ASSERT_EQ(r.timeline.size(), plan.steps.size());
  EXPECT_EQ(r.timeline[0].live_bytes_after, 2000);  // x, a
  EXPECT_EQ(r.timeline[1].live_bytes_after, 1000);  // a
}

TEST(Simulator, SwapOverlapsCompute) {
  const Chain ch = MakeChain();
  const Steps plan = SwapRoundTrip(ch);
  const SimResult r = Simulate(ch.graph, plan, RoundDevice(), nullptr, Peak(), {.record_timeline = true});
  struct Want {
    Stream stream;
    double start, end;
    int64_t live;
  };
  const std::vector<Want> want = {
      {Stream::kCompute, 0, 2, 2000}, {Stream::kNone, 2, 2, 1000},    {Stream::kCompute, 2, 4, 2000},
      {Stream::kCopy, 2, 4, 1000},    {Stream::kCompute, 4, 6, 2000}, {Stream::kNone, 6, 6, 1000},
      {Stream::kCopy, 6, 8, 2000},    {Stream::kCompute, 6, 8, 3000}, {Stream::kNone, 8, 8, 2000},
      {Stream::kCompute, 8, 11, 3000}};
  ASSERT_EQ(r.timeline.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i) + ": " + ToString(plan.steps[i]));
    EXPECT_EQ(r.timeline[i].stream, want[i].stream);
    EXPECT_DOUBLE_EQ(r.timeline[i].start_us, want[i].start);
    EXPECT_DOUBLE_EQ(r.timeline[i].end_us, want[i].end);
    EXPECT_EQ(r.timeline[i].live_bytes_after, want[i].live);
  }
  EXPECT_DOUBLE_EQ(r.latency_us, 11);
  EXPECT_EQ(r.peak_bytes, 3000);
  EXPECT_DOUBLE_EQ(r.copy_busy_us, 4);
  EXPECT_EQ(r.swap_out_bytes, 1000);
  EXPECT_EQ(r.swap_in_bytes, 1000);
}

// On a device whose host memory is its own (cpu), the same plan frees
// nothing by swapping: a stays counted from its swap-out to its swap-in,
// so op2 holds a, b, c (3000) where the GPU's plan held 2000. Times and
// copy volumes are unchanged (the copies still run).
TEST(Simulator, SwapsFreeNothingWhereHostMemoryIsShared) {
  const Chain ch = MakeChain();
  const Steps plan = SwapRoundTrip(ch);
  DeviceProfile shared = RoundDevice();
  shared.shared_host_memory = true;
  const SimResult r = Simulate(ch.graph, plan, shared, nullptr, Peak(), {.record_timeline = true});
  const std::vector<int64_t> live = {2000, 1000, 2000, 2000, 3000, 2000, 2000, 3000, 2000, 3000};
  ASSERT_EQ(r.timeline.size(), live.size());
  for (size_t i = 0; i < live.size(); ++i) EXPECT_EQ(r.timeline[i].live_bytes_after, live[i]) << "step " << i;
  EXPECT_DOUBLE_EQ(r.latency_us, 11);
  EXPECT_EQ(r.swap_out_bytes, 1000);
  // Swapped out and dropped on the host: released at the free, not before.
  Steps drop;
  drop.steps = {Step::Compute(OpId(0)), Step::Free(ch.x), Step::Compute(OpId(1)), Step::Compute(OpId(2)),
                Step::SwapOut(ch.b),    Step::Free(ch.b)};
  const SimResult d = Simulate(ch.graph, drop, shared, nullptr, Peak(), {.record_timeline = true});
  EXPECT_EQ(d.timeline[3].live_bytes_after, 3000);  // a, b, c
  EXPECT_EQ(d.timeline[4].live_bytes_after, 3000);  // b on the "host" is still in the one memory
  EXPECT_EQ(d.timeline[5].live_bytes_after, 2000);  // a, c
  const SimResult gpu = Simulate(ch.graph, drop, RoundDevice(), nullptr, Peak(), {.record_timeline = true});
  EXPECT_EQ(gpu.timeline[4].live_bytes_after, 2000);  // where the host is apart, the swap-out frees b
}

TEST(Device, CpuHostMemoryIsShared) {
  EXPECT_TRUE(FindDevice("cpu").shared_host_memory);
  EXPECT_FALSE(FindDevice("a100").shared_host_memory);
  EXPECT_TRUE(DeviceFromJson(DeviceToJson(FindDevice("cpu")), "cpu.json").shared_host_memory);
  EXPECT_FALSE(DeviceFromJson(DeviceToJson(FindDevice("a100")), "a100.json").shared_host_memory);
  EXPECT_THAT(ToString(FindDevice("cpu")), HasSubstr("host memory shared (no swaps)"));
  EXPECT_THAT(
      [] {
        DeviceFromJson(R"({"name": "x", "peak_tflops": {"f32": 1}, "memory_bandwidth_gb_per_s": 1,
                           "host_bandwidth_gb_per_s": 1, "launch_overhead_us": 0, "memory_gib": 1,
                           "shared_host_memory": "yes"})",
                       "dev.json");
      },
      ::testing::ThrowsMessage<Error>(HasSubstr("dev.json: shared_host_memory")));
}

// A swap-in writes into memory, so it waits for the compute step issued
// before it (here op3, [6, 8]): the memory freed after that step is then
// free for it. Issued one op late, it runs [8, 10] and op4 waits: [10, 13].
// c, freed at 8, is gone before a lands (e, a: 2000 at 8; e, a, d: 3000).
TEST(Simulator, SwapInWaitsForTheComputeBeforeIt) {
  const Chain ch = MakeChain();
  Steps plan;
  plan.steps = {Step::Compute(OpId(0)), Step::Free(ch.x), Step::Compute(OpId(1)), Step::SwapOut(ch.a),
                Step::Compute(OpId(2)), Step::Free(ch.b), Step::Compute(OpId(3)), Step::SwapIn(ch.a),
                Step::Free(ch.c),       Step::Compute(OpId(4))};
  const SimResult r = Simulate(ch.graph, plan, RoundDevice(), nullptr, Peak(), {.record_timeline = true});
  EXPECT_DOUBLE_EQ(r.timeline[7].start_us, 8);
  EXPECT_DOUBLE_EQ(r.timeline[7].end_us, 10);
  EXPECT_DOUBLE_EQ(r.timeline[9].start_us, 10);
  EXPECT_DOUBLE_EQ(r.latency_us, 13);
  EXPECT_EQ(r.peak_bytes, 3000);
}

// With a host link of 250 B/us each copy takes 4 us: the swap-out runs
// [2, 6], so a is still on the device during op2 (a, b, c: 3000 at 4);
// the swap-in runs [6, 10] and op4 waits for it: [10, 13].
TEST(Simulator, SlowSwapInStallsCompute) {
  const Chain ch = MakeChain();
  DeviceProfile slow = RoundDevice();
  slow.host_bandwidth_bytes_per_s = 0.25e9;
  Steps plan;
  plan.steps = {Step::Compute(OpId(0)), Step::Free(ch.x), Step::Compute(OpId(1)), Step::SwapOut(ch.a),
                Step::Compute(OpId(2)), Step::Free(ch.b), Step::SwapIn(ch.a),     Step::Compute(OpId(3)),
                Step::Free(ch.c),       Step::Compute(OpId(4))};
  const SimResult r = Simulate(ch.graph, plan, slow, nullptr, Peak(), {.record_timeline = true});
  EXPECT_DOUBLE_EQ(r.timeline[3].start_us, 2);
  EXPECT_DOUBLE_EQ(r.timeline[3].end_us, 6);
  EXPECT_DOUBLE_EQ(r.timeline[6].start_us, 6);
  EXPECT_DOUBLE_EQ(r.timeline[6].end_us, 10);
  EXPECT_DOUBLE_EQ(r.timeline[9].start_us, 10);
  EXPECT_DOUBLE_EQ(r.latency_us, 13);
  EXPECT_EQ(r.peak_bytes, 3000);
  EXPECT_DOUBLE_EQ(r.compute_busy_us, 11);
  EXPECT_DOUBLE_EQ(r.copy_busy_us, 8);
}

TEST(Simulator, RecomputeRecreatesOutputs) {
  const Chain ch = MakeChain();
  Steps plan;
  plan.steps = {Step::Compute(OpId(0)), Step::Compute(OpId(1)),   Step::Free(ch.a),    Step::Compute(OpId(2)),
                Step::Free(ch.b),       Step::Compute(OpId(3)),   Step::Free(ch.c),    Step::Recompute(OpId(0)),
                Step::Free(ch.x),       Step::Compute(OpId(4))};
  const SimResult r = Simulate(ch.graph, plan, RoundDevice(), nullptr, Peak());
  EXPECT_DOUBLE_EQ(r.latency_us, 13);
  EXPECT_DOUBLE_EQ(r.recompute_us, 2);
  EXPECT_EQ(r.peak_bytes, 3000);
}

TEST(Simulator, InvalidPlansNameTheStep) {
  const Chain ch = MakeChain();
  auto error_of = [&](std::vector<Step> steps) {
    try {
      Simulate(ch.graph, Steps{std::move(steps)}, RoundDevice());
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(error_of({Step::Compute(OpId(1))}), HasSubstr("plan step 0 (compute op1 'relu_1'): reads storage t1"));
  EXPECT_THAT(error_of({Step::Compute(OpId(0)), Step::SwapOut(ch.a), Step::Compute(OpId(1))}),
              HasSubstr("plan step 2 (compute op1"));
  EXPECT_THAT(error_of({Step::SwapIn(ch.x)}), HasSubstr("not on the host"));
  EXPECT_THAT(error_of({Step::Free(ch.a)}), HasSubstr("plan step 0 (free t1"));
  EXPECT_THAT(error_of({Step::Compute(OpId(99))}), HasSubstr("no op op99"));
  EXPECT_THAT(error_of({Step{StepKind::kSwapOut, std::nullopt, std::nullopt}}), HasSubstr("names no storage"));
}

TEST(Steps, PrintsItself) {
  const Chain ch = MakeChain();
  const Steps plan = ProgramOrderSteps(ch.graph);
  EXPECT_EQ(ToString(Step::SwapIn(TensorId(3))), "swap_in t3");
  EXPECT_EQ(ToString(Step::Recompute(OpId(2)), ch.graph), "recompute op2 'relu_2'");
  EXPECT_EQ(ParseStepKind("swap_out"), StepKind::kSwapOut);
  EXPECT_FALSE(ParseStepKind("spill").has_value());
  std::ostringstream os;
  os << plan;
  EXPECT_THAT(os.str(), HasSubstr("0: compute op0\n1: free t0\n"));
  EXPECT_THAT(ToString(plan, ch.graph), HasSubstr("compute op4 'add'"));
}

// The simulator's peak for program order is ComputeLiveness's, workspace
// included, on real training graphs; with no copies the latency is the sum
// of the op latencies.
struct ZooCase {
  std::string model;
  OptimizerKind optimizer;
};
void PrintTo(const ZooCase& c, std::ostream* os) { *os << c.model << " " << c.optimizer; }
class ZooParity : public ::testing::TestWithParam<ZooCase> {};

TEST_P(ZooParity, PeakEqualsLiveness) {
  ZooOptions zoo;
  zoo.batch = 2;
  zoo.seq = 32;
  zoo.image = GetParam().model == "mlp" ? 0 : 64;
  TrainingOptions train;
  train.optimizer = GetParam().optimizer;
  const Graph g = BuildTrainingGraph(BuildZooModel(GetParam().model, zoo), train);
  for (const char* device : {"a100", "cpu"}) {
    const Simulator sim(g, FindDevice(device));
    const SimResult r = sim.Run(ProgramOrderSteps(g));
    EXPECT_EQ(r.peak_bytes, ComputeLiveness(g).peak_bytes) << device;
    double sum = 0;
    for (const OpLatency& l : sim.op_latencies()) sum += l.latency_us;
    EXPECT_NEAR(r.latency_us, sum, 1e-6 * sum) << device;
    EXPECT_DOUBLE_EQ(r.compute_busy_us, r.latency_us) << device;
  }
}

INSTANTIATE_TEST_SUITE_P(Zoo, ZooParity,
                         ::testing::Values(ZooCase{"mlp", OptimizerKind::kSgd}, ZooCase{"bert-tiny", OptimizerKind::kAdam},
                                           ZooCase{"gpt2-small", OptimizerKind::kSgd},
                                           ZooCase{"resnet-18", OptimizerKind::kAdam},
                                           ZooCase{"vit-tiny", OptimizerKind::kSgd},
                                           ZooCase{"mobilenet-v2", OptimizerKind::kSgd},
                                           ZooCase{"densenet121", OptimizerKind::kSgd},
                                           ZooCase{"unet", OptimizerKind::kAdam}),
                         [](const auto& info) {
                           return testing::TestName(info.param.model + "_" + std::string(ToString(info.param.optimizer)));
                         });

// An input nobody reads is not on the device (as ComputeLiveness counts it):
// the peak is x and relu(x), 2 x 1000 bytes.
TEST(Simulator, UnusedInputIsNotResident) {
  GraphBuilder b("unused");
  b.Input("unused", {1000});  // 4000 bytes nobody reads
  const TensorId x = b.Input("x", {250});
  b.MarkOutput(b.Call("aten.relu", {x}));
  const Graph g = b.Finish();
  const SimResult r = Simulate(g, ProgramOrderSteps(g), RoundDevice(), nullptr, Peak());
  EXPECT_EQ(r.peak_bytes, 2000);
  EXPECT_EQ(r.peak_bytes, ComputeLiveness(g).peak_bytes);
}

}  // namespace
}  // namespace memfit::sim

namespace memfit::sim {
namespace {

std::string DeviceError(const std::string& text) {
  return testing::ErrorOf([&] { DeviceFromJson(text, "dev.json"); });
}

std::string DeviceWith(const std::string& field, const std::string& raw) {
  std::string text = R"({"name": "x", "peak_tflops": {"f32": 1}, "memory_bandwidth_gb_per_s": 100,
                         "host_bandwidth_gb_per_s": 10, "launch_overhead_us": 1, "memory_gib": 4})";
  const size_t at = text.find("\"" + field + "\": ") + field.size() + 4;
  text.replace(at, text.find_first_of(",}", at) - at, raw);
  return text;
}

TEST(Device, OutOfRangeAndMistypedFieldsAreErrors) {
  EXPECT_EQ(DeviceError(DeviceWith("f32", "1")), "(no error)");
  // 1e309 aborted as nlohmann's out_of_range.
  EXPECT_THAT(DeviceError(DeviceWith("memory_gib", "1e309")),
              HasSubstr("dev.json: malformed JSON: number out of range at line 2"));
  // Finite, but the bytes do not fit in int64.
  EXPECT_THAT(DeviceError(DeviceWith("memory_gib", "1e300")), HasSubstr("dev.json: memory_gib: is too large"));
  EXPECT_THAT(DeviceError(DeviceWith("f32", "1e300")), HasSubstr("dev.json: top level: a rate is too large"));
  EXPECT_EQ(DeviceError(DeviceWith("launch_overhead_us", "-1")),
            "dev.json: launch_overhead_us: must be a non-negative number (got -1)");
  EXPECT_EQ(DeviceError(DeviceWith("f32", "\"fast\"")), "dev.json: peak_tflops.f32: expected a number, got \"fast\"");
  EXPECT_EQ(DeviceError(DeviceWith("name", "[" + std::string(600, '[') + std::string(601, ']'))),
            "dev.json: malformed JSON: nested deeper than 512 levels at line 1, column 521");
  EXPECT_EQ(DeviceError(R"({"name": "x", "version": 2})"), "dev.json: version: unsupported version 2 (expected 1)");
}

TEST(Latency, CostTableNumbersOutOfRange) {
  const auto error_of = [](const std::string& text) {
    try {
      CostTable::FromJson(text, "costs.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(error_of(R"({"entries": [{"op": "aten.relu", "input_shapes": [[2]], "dtype": "f32", "latency_us": 1e999}]})"),
              HasSubstr("costs.json: malformed JSON: number out of range"));
  EXPECT_EQ(error_of(R"({"entries": [{"op": "aten.relu", "input_shapes": [[18446744073709551615]], "dtype": "f32",
                                      "latency_us": 1}]})"),
            "costs.json: entries[0].input_shapes[0][0]: integer is too large: 18446744073709551615");
  EXPECT_EQ(error_of(R"({"entries": [{"op": "aten.relu", "input_shapes": [[2]], "dtype": "f32", "latency_us": 1,
                                      "samples": 2.5}]})"),
            "costs.json: entries[0].samples: expected an integer, got 2.5");
  EXPECT_EQ(error_of(R"({"entries": [{"op": "aten.relu", "input_shapes": [[2]], "dtype": "f32", "latency_us": 1e16}]})"),
            "costs.json: entries[0].latency_us: 1e+16 us is more than the 1e+15 us memfit can time");
}

}  // namespace
}  // namespace memfit::sim

namespace memfit::sim {
namespace {

// Huge measured times are finite one by one but not in sum: the plan
// checker aborted on a timeline step ending at inf, DTR's integer
// nanoseconds wrapped to INT64_MIN.
TEST(Latency, TotalsBeyondWhatTimelinesCanHoldAreErrors) {
  GraphBuilder b("slow");
  TensorId x = b.Input("x", {2});
  for (int i = 0; i < 2; ++i) {
    x = b.CallOpaque("ext.slow", {x}, {{{2}, DType::kF32}}, {{std::string(kTimeUsAttr), 1e308}})[0];
  }
  b.MarkOutput(x);
  const Graph g = b.Finish();
  EXPECT_THAT([&] { ComputeOpLatencies(g, FindDevice("a100"), nullptr); },
              ::testing::ThrowsMessage<Error>(HasSubstr("graph 'slow': its ops take inf us in all on a100")));
  GraphBuilder c("fine");
  TensorId y = c.Input("y", {2});
  c.MarkOutput(c.CallOpaque("ext.slow", {y}, {{{2}, DType::kF32}}, {{std::string(kTimeUsAttr), 1e15}})[0]);
  EXPECT_NO_THROW(ComputeOpLatencies(c.Finish(), FindDevice("a100"), nullptr));
}

}  // namespace
}  // namespace memfit::sim
