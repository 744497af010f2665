// `memfit import` on Checkmate graphs and DTR logs: the written graph, the
// one-line summary, and one-line errors with exit status 2.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/graph_json.h"
#include "test_util.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;
using testing::ExpectUserError;
using testing::RunCli;
using testing::TempDir;

constexpr const char* kChain = R"({"graph": {"name": "chain"},
  "nodes": [{"id": 0, "name": "a", "backward": false, "cost_cpu": 3, "cost_ram": 1000},
            {"id": 1, "name": "b", "backward": true, "cost_cpu": 4, "cost_ram": 500}],
  "links": [{"source": 0, "target": 1}]})";

TEST(ImportCli, CheckmateGraph) {
  TempDir dir;
  const std::string out = dir.File("chain.memfit.json");
  const auto r = RunCli("import " + dir.Write("chain.json", kChain) + " -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("2 ops, 2 tensors"));
  const Graph g = LoadGraph(out);
  EXPECT_EQ(g.name, "chain");
  EXPECT_EQ(g.ops()[1].type, "checkmate.node");
  EXPECT_EQ(RunCli("validate " + out).exit_code, 0);
  // The simulator takes the imported times as measured: 3 + 4 us, and the
  // peak holds both tensors (1500 B).
  const auto sim = RunCli("simulate --json " + out);
  ASSERT_EQ(sim.exit_code, 0) << sim.err;
  const auto j = nlohmann::json::parse(sim.out);
  EXPECT_EQ(j["measured_ops"].get<int64_t>(), 2);
  EXPECT_NEAR(j["latency_ms"].get<double>(), 0.007, 1e-12);
  EXPECT_EQ(j["peak_bytes"].get<int64_t>(), 1500);
}

TEST(ImportCli, DtrLog) {
  TempDir dir;
  const std::string log = dir.Write("t.log", R"({"INSTRUCTION":"CONSTANT","NAME":"w"}
{"INSTRUCTION":"MEMORY","NAME":"w","MEMORY":"16"}
{"INSTRUCTION":"CALL","NAME":"mm","ARGS":["w"],"RESULT":["y"],"TIME":"2000"}
{"INSTRUCTION":"MEMORY","NAME":"y","MEMORY":"64"}
{"INSTRUCTION":"ALIAS","NAME":"y","ALIAS":"-1"}
)");
  const auto r = RunCli("import " + log + " -o " + dir.File("t.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("1 ops, 2 tensors"));
  EXPECT_EQ(LoadGraph(dir.File("t.json")).num_ops(), 1u);
}

TEST(ImportCli, SharedCheckmateFile) {
  const std::string file = testing::SharedDataPath("remat/checkmate/VGG16_256_224x224_train.json");
  if (file.empty()) GTEST_SKIP() << "shared data not present";
  TempDir dir;
  const auto r = RunCli("import " + file + " -o " + dir.File("vgg16.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("45 ops, 45 tensors"));
  EXPECT_EQ(LoadGraph(dir.File("vgg16.json")).num_ops(), 45u);
}

TEST(ImportCli, UserErrors) {
  TempDir dir;
  const std::string chain = dir.Write("chain.json", kChain);
  ExpectUserError(RunCli("import " + chain + " --batch 4 -o " + dir.File("o.json")),
                  "--batch applies to ONNX models only");
  ExpectUserError(RunCli("import " + chain + " --train -o " + dir.File("o.json")), "--train applies to ONNX");
  ExpectUserError(RunCli("import " + dir.Write("bad.json", R"({"nodes": [{"id": 0}], "links": []})") + " -o " +
                         dir.File("o.json")),
                  "bad.json: nodes[0]: missing field 'name'");
  ExpectUserError(RunCli("import " + dir.Write("bad.log", "{\"INSTRUCTION\":\"RELEASE\",\"NAME\":\"x\"}\n") +
                         " -o " + dir.File("o.json")),
                  "bad.log:1");
  ExpectUserError(RunCli("import " + dir.File("missing.json") + " -o " + dir.File("o.json")), "missing.json");
  EXPECT_FALSE(std::filesystem::exists(dir.File("o.json")));
}

}  // namespace
}  // namespace memfit
