// Runs `memfit simulate` on a zoo graph and on broken inputs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "sim/device.h"
#include "test_util.h"

namespace memfit::sim {
namespace {

using ::testing::HasSubstr;
using memfit::testing::RunCli;
using memfit::testing::TempDir;
using memfit::testing::ZooGraph;

// Every command with --device lists the built-in devices from the device
// table, not from a copy in its help text.
TEST(SimulateCli, DeviceHelpListsTheBuiltinDevices) {
  for (const char* command : {"simulate", "optimize", "plan", "report", "dtr"}) {
    const auto r = RunCli(std::string(command) + " --help");
    EXPECT_EQ(r.exit_code, 0) << command;
    EXPECT_THAT(r.out, HasSubstr(BuiltinDeviceNames())) << command;
  }
}

TEST(SimulateCli, JsonTimelineAndErrors) {
  TempDir dir;
  const std::string graph = ZooGraph(dir, "g.json", "mlp --batch 4 --train");

  const auto text = RunCli("simulate " + graph + " --device h100");
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("latency_ms:"));
  EXPECT_THAT(text.out, HasSubstr("peak_bytes:"));

  const auto json = RunCli("simulate " + graph + " --device a100 --json --timeline");
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const nlohmann::json j = nlohmann::json::parse(json.out);
  EXPECT_GT(j["latency_ms"].get<double>(), 0);
  EXPECT_GT(j["peak_bytes"].get<int64_t>(), 0);
  ASSERT_TRUE(j["timeline"].is_array());
  EXPECT_EQ(j["timeline"].size(), j["steps"].get<size_t>());
  EXPECT_EQ(j["timeline"][0]["stream"], "compute");

  const auto stats = nlohmann::json::parse(RunCli("stats " + graph + " --json").out);
  EXPECT_EQ(j["peak_bytes"], stats["peak_bytes"]);

  const auto bad_device = RunCli("simulate " + graph + " --device tpu");
  EXPECT_EQ(bad_device.exit_code, 2);
  EXPECT_THAT(bad_device.err, HasSubstr("unknown device 'tpu' (known: a100, cpu, h100, h200, rtx3090, v100"));

  const std::string costs = dir.Write("costs.json", R"({"entries": [{"op": "aten.mm", "latency_us": 3}]})");
  const auto bad_costs = RunCli("simulate " + graph + " --costs " + costs);
  EXPECT_EQ(bad_costs.exit_code, 2);
  EXPECT_THAT(bad_costs.err, HasSubstr(costs + ": entries[0]: missing field 'input_shapes'"));

  const std::string device = dir.Write("dev.json", R"({"name": "toy", "peak_tflops": {"f32": 1},
      "memory_bandwidth_gb_per_s": 100, "host_bandwidth_gb_per_s": 10, "launch_overhead_us": 1, "memory_gib": 4})");
  const auto custom = RunCli("simulate " + graph + " --device " + device + " --json");
  ASSERT_EQ(custom.exit_code, 0) << custom.err;
  EXPECT_EQ(nlohmann::json::parse(custom.out)["device"], "toy");
}

}  // namespace
}  // namespace memfit::sim
