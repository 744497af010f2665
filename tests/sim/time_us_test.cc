// An opaque op's "time_us" attribute is its measured latency (what the
// Checkmate and DTR importers write); registered ops ignore it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "ir/builder.h"
#include "plan/steps.h"
#include "sim/cost_model.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "util/error.h"

namespace memfit::sim {
namespace {

using ::testing::HasSubstr;

// x -> opaque "ext.a" (time_us = `a_time`) -> aten.relu (time_us 99, ignored).
Graph TwoOps(AttrValue a_time) {
  GraphBuilder b("g");
  const TensorId x = b.Input("x", {256});
  const TensorId y = b.CallOpaque("ext.a", {x}, {TensorType{{256}, DType::kF32}}, {{"time_us", a_time}})[0];
  b.MarkOutput(b.Call("aten.relu", {y}, {}));
  Graph g = b.Finish();
  g.mutable_op(OpId(1)).attrs["time_us"] = 99.0;
  return g;
}

TEST(TimeUs, OpaqueOpsUseTheirMeasuredTime) {
  const DeviceProfile a100 = FindDevice("a100");
  for (const AttrValue& t : {AttrValue(12.5), AttrValue(int64_t{12})}) {
    const Graph g = TwoOps(t);
    const std::vector<OpLatency> l = ComputeOpLatencies(g, a100, nullptr);
    EXPECT_EQ(l[0].source, LatencySource::kMeasured);
    EXPECT_EQ(l[0].latency_us, std::holds_alternative<double>(t) ? 12.5 : 12.0);
    // aten.relu keeps its roofline estimate: its attributes are ATen arguments.
    EXPECT_EQ(l[1].source, LatencySource::kRoofline);
    EXPECT_NE(l[1].latency_us, 99.0);
    // The simulator's compute stream runs both back to back.
    const SimResult r = Simulate(g, ProgramOrderSteps(g), a100, nullptr);
    EXPECT_NEAR(r.latency_us, l[0].latency_us + l[1].latency_us, 1e-9);
  }
}

TEST(TimeUs, TakesPrecedenceOverTheCostTable) {
  const Graph g = TwoOps(3.0);
  CostTable costs;
  costs.Add({"ext.a", "", {{256}}, DType::kF32, 1000.0, std::nullopt});
  EXPECT_EQ(ComputeOpLatencies(g, FindDevice("a100"), &costs)[0].latency_us, 3.0);
}

TEST(TimeUs, InvalidValuesNameTheOp) {
  auto error_of = [](AttrValue t) {
    try {
      ComputeOpLatencies(TwoOps(t), FindDevice("a100"), nullptr);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_THAT(error_of(-1.0), HasSubstr("op 'ext.a' (ext.a): attribute time_us must be a finite non-negative number"));
  EXPECT_THAT(error_of(std::string("fast")), HasSubstr("op 'ext.a' (ext.a): attribute time_us must be a number"));
}

}  // namespace
}  // namespace memfit::sim
