// Checkmate and Moccasin graphs: small inline files with the expected graph
// worked out by hand, one clear error per malformed input, and every shared
// file of the rematerialization literature.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "analysis/liveness.h"
#include "importers/checkmate_import.h"
#include "io/graph_json.h"
#include "ir/validate.h"
#include "sim/cost_model.h"
#include "sim/device.h"
#include "test_util.h"
#include "util/error.h"

namespace memfit {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A forward pass a -> b and its backward b_bw -> a_bw, as Checkmate writes it
// (ids in topological order, links by id).
constexpr const char* kCheckmate = R"({
  "directed": true, "multigraph": false, "graph": {"name": "tiny"},
  "nodes": [
    {"id": 0, "name": "a", "backward": false, "cost_cpu": 5, "cost_ram": 100},
    {"id": 1, "name": "b", "backward": false, "cost_cpu": 7, "cost_ram": 200},
    {"id": 2, "name": "b_bw", "backward": true, "cost_cpu": 11, "cost_ram": 50},
    {"id": 3, "name": "a_bw", "backward": true, "cost_cpu": 13, "cost_ram": 80}],
  "links": [{"source": 0, "target": 1}, {"source": 1, "target": 2},
            {"source": 0, "target": 3}, {"source": 2, "target": 3}]})";

std::vector<TensorId> Ids(std::initializer_list<uint32_t> ids) {
  std::vector<TensorId> out;
  for (uint32_t i : ids) out.push_back(TensorId(i));
  return out;
}

double TimeUs(const Op& op) { return std::get<double>(op.attrs.at("time_us")); }

TEST(CheckmateImport, NodesBecomeOpaqueOpsInIdOrder) {
  const Graph g = ImportCheckmateJson(kCheckmate, "tiny.json");
  EXPECT_EQ(g.name, "tiny");
  EXPECT_EQ(g.metadata.at("importer"), "checkmate");
  ASSERT_EQ(g.num_ops(), 4u);
  ASSERT_EQ(g.num_tensors(), 4u);
  const std::vector<std::string> names = {"a", "b", "b_bw", "a_bw"};
  const std::vector<int64_t> bytes = {100, 200, 50, 80};
  const std::vector<double> times = {5, 7, 11, 13};
  for (size_t i = 0; i < 4; ++i) {
    const Op& op = g.ops()[i];
    EXPECT_EQ(op.name, names[i]);
    EXPECT_EQ(op.type, "checkmate.node");
    EXPECT_EQ(TimeUs(op), times[i]);
    EXPECT_EQ(std::get<int64_t>(op.attrs.at("node")), static_cast<int64_t>(i));
    const Tensor& out = g.tensor(op.outputs.at(0));
    EXPECT_EQ(out.dtype, DType::kU8);
    EXPECT_EQ(out.size_bytes(), bytes[i]);
    EXPECT_EQ(op.phase, i < 2 ? Phase::kForward : Phase::kBackward);
    EXPECT_EQ(out.role, i < 2 ? TensorRole::kActivation : TensorRole::kGradient);
  }
  EXPECT_TRUE(g.ops()[0].inputs.empty());
  EXPECT_EQ(g.ops()[1].inputs, Ids({0}));
  EXPECT_EQ(g.ops()[2].inputs, Ids({1}));
  EXPECT_EQ(g.ops()[3].inputs, Ids({0, 2}));
  EXPECT_EQ(g.outputs, Ids({3}));  // a_bw has no successor

  // a lives over steps 0-3, b over 1-2, b_bw over 2-3, a_bw at 3:
  // 100, 300, 350, 230 bytes; the peak is at step 2 ('b_bw').
  const Liveness l = ComputeLiveness(g);
  EXPECT_THAT(l.live_bytes, ElementsAre(100, 300, 350, 230));
  EXPECT_EQ(l.peak_step, 2);

  // The simulator takes cost_cpu as each op's measured latency.
  const auto latencies = sim::ComputeOpLatencies(g, sim::FindDevice("a100"), nullptr);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(latencies[i].source, sim::LatencySource::kMeasured);
    EXPECT_EQ(latencies[i].latency_us, times[i]);
  }

  // The graph saves and loads as ordinary memfit JSON.
  EXPECT_EQ(GraphToJson(GraphFromJson(GraphToJson(g), "tiny.json")), GraphToJson(g));
}

TEST(CheckmateImport, IdsNeedNotBeListedInOrder) {
  // Same graph, nodes listed backwards: the order is by id, not by position.
  const Graph g = ImportCheckmateJson(R"({"nodes": [
      {"id": 1, "name": "y", "backward": false, "cost_cpu": 1, "cost_ram": 8},
      {"id": 0, "name": "x", "backward": false, "cost_cpu": 1, "cost_ram": 0}],
    "links": [{"source": 0, "target": 1}]})",
                                      "two.json");
  ASSERT_EQ(g.num_ops(), 2u);
  EXPECT_EQ(g.ops()[0].name, "x");
  EXPECT_EQ(g.ops()[1].name, "y");
  EXPECT_EQ(g.name, "two");  // no graph.name: the file's stem
  // A node without memory is an empty u8[0] tensor.
  EXPECT_EQ(g.tensor(g.ops()[0].outputs[0]).shape, Shape{0});
}

// Moccasin's flavour: ids in "name", links keyed "0"/"1", graph.order.
TEST(CheckmateImport, MoccasinFollowsGraphOrderAndAddsParameters) {
  const Graph g = ImportCheckmateJson(R"({
    "graph": {"name": "random_layered_tiny", "order": [0, 3, 2, 1]},
    "nodes": [
      {"name": 0, "out_cost": 10, "duration": 0, "param_cost": 0},
      {"name": 1, "out_cost": 20, "duration": 4, "param_cost": 0},
      {"name": 2, "out_cost": 30, "duration": 5, "param_cost": 7},
      {"name": 3, "out_cost": 40, "duration": 6.5, "param_cost": 0}],
    "links": [{"0": 0, "1": 3}, {"0": 0, "1": 2}, {"0": 3, "1": 2}, {"0": 2, "1": 1}, {"0": 3, "1": 1}]})",
                                      "moc.json");
  EXPECT_EQ(g.metadata.at("importer"), "moccasin");
  ASSERT_EQ(g.num_ops(), 4u);
  EXPECT_EQ(g.ops()[0].name, "node0");
  EXPECT_EQ(g.ops()[1].name, "node3");
  EXPECT_EQ(g.ops()[2].name, "node2");
  EXPECT_EQ(g.ops()[3].name, "node1");
  EXPECT_EQ(TimeUs(g.ops()[1]), 6.5);
  for (const Op& op : g.ops()) EXPECT_EQ(op.phase, Phase::kForward);
  // node2 reads node0, node3 and its parameter (appended last).
  const Op& n2 = g.ops()[2];
  ASSERT_EQ(n2.inputs.size(), 3u);
  EXPECT_EQ(n2.inputs[0], g.ops()[0].outputs[0]);
  EXPECT_EQ(n2.inputs[1], g.ops()[1].outputs[0]);
  const Tensor& param = g.tensor(n2.inputs[2]);
  EXPECT_EQ(param.name, "node2.param");
  EXPECT_EQ(param.role, TensorRole::kParameter);
  EXPECT_EQ(param.size_bytes(), 7);
  EXPECT_EQ(g.outputs, std::vector<TensorId>{g.ops()[3].outputs[0]});
  // Steps: node0 10; node3 10+40; node2 10+40+30; node1 40+30+20; plus the
  // parameter's 7 throughout: 17, 57, 87, 97.
  EXPECT_THAT(ComputeLiveness(g).live_bytes, ElementsAre(17, 57, 87, 97));
}

// The message ImportCheckmateJson throws for `text` as bad.json, or "(no error)".
std::string ImportError(const std::string& text) {
  return testing::ErrorOf([&] { ImportCheckmateJson(text, "bad.json"); });
}

// A Checkmate file with one node replaced by `node` and links `links`.
std::string WithNode(const std::string& node, const std::string& links = R"([{"source": 0, "target": 1}])") {
  return R"({"nodes": [{"id": 0, "name": "a", "backward": false, "cost_cpu": 1, "cost_ram": 4}, )" + node +
         R"(], "links": )" + links + "}";
}

TEST(CheckmateImport, MalformedFilesGiveOneClearError) {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::string b = R"("id": 1, "name": "b", "backward": false)";
  const std::vector<Case> cases = {
      {"{\"nodes\": [", "bad.json: malformed JSON"},
      {"[1, 2]", "bad.json: not a Checkmate/Moccasin graph: expected a JSON object with 'nodes' and 'links'"},
      {R"({"nodes": [], "links": []})", "bad.json: nodes: is empty"},
      {R"({"nodes": {}, "links": []})", "bad.json: nodes: must be an array"},
      {WithNode("{" + b + R"(, "cost_cpu": 1})"), "bad.json: nodes[1]: missing field 'cost_ram'"},
      {WithNode("{" + b + R"(, "cost_cpu": 1, "cost_ram": -4})"),
       "bad.json: nodes[1].cost_ram: must be a non-negative number of bytes, got -4"},
      {WithNode("{" + b + R"(, "cost_cpu": 1, "cost_ram": 2.5})"),
       "bad.json: nodes[1].cost_ram: must be a whole number of bytes, got 2.5"},
      {WithNode("{" + b + R"(, "cost_cpu": 1, "cost_ram": "4"})"),
       "bad.json: nodes[1].cost_ram: must be a number of bytes, got \"4\""},
      {WithNode("{" + b + R"(, "cost_cpu": -1, "cost_ram": 4})"),
       "bad.json: nodes[1].cost_cpu: must be a non-negative number, got -1"},
      {WithNode(R"({"id": 1, "name": "b", "backward": 0, "cost_cpu": 1, "cost_ram": 4})"),
       "bad.json: nodes[1].backward: must be true or false, got 0"},
      {WithNode(R"({"id": 0, "name": "b", "backward": false, "cost_cpu": 1, "cost_ram": 4})"),
       "bad.json: nodes[1]: node id 0 is also the id of nodes[0]"},
      {WithNode(R"({"id": [1], "name": "b", "backward": false, "cost_cpu": 1, "cost_ram": 4})"),
       "bad.json: nodes[1].id: must be an integer or a string, got [1]"},
      {WithNode("{" + b + R"(, "cost_cpu": 1, "cost_ram": 4})", R"([{"source": 0, "target": 7}])"),
       "bad.json: links[0].target: unknown node 7"},
      {WithNode("{" + b + R"(, "cost_cpu": 1, "cost_ram": 4})", R"([{"source": 0}])"),
       "bad.json: links[0]: missing field 'target'"},
      {WithNode("{" + b + R"(, "cost_cpu": 1, "cost_ram": 4})", R"([{"source": 1, "target": 1}])"),
       "bad.json: links[0]: node 1 'b' links to itself (a cycle)"},
      {WithNode("{" + b + R"(, "cost_cpu": 1, "cost_ram": 4})", R"([{"source": 1, "target": 0}])"),
       "bad.json: links[0]: node 1 'b' -> node 0 'a' goes backwards in the order of node ids"},
      {WithNode("{" + b + R"(, "cost_cpu": 1, "cost_ram": 4})",
                R"([{"source": 0, "target": 1}, {"source": 1, "target": 0}])"),
       "bad.json: the graph has a cycle: 'a' -> 'b' -> 'a'"},
      {R"({"graph": {"order": [0, 0]}, "nodes": [{"name": 0, "out_cost": 1, "duration": 1}], "links": []})",
       "bad.json: graph.order[1]: node 0 'node0' appears twice"},
      {R"({"graph": {"order": [5]}, "nodes": [{"name": 0, "out_cost": 1, "duration": 1}], "links": []})",
       "bad.json: graph.order[0]: unknown node 5"},
      {R"({"graph": {"order": []}, "nodes": [{"name": 0, "out_cost": 1, "duration": 1}], "links": []})",
       "bad.json: graph.order: misses node 0 'node0' (nodes[0])"},
      {R"({"graph": {"order": [1, 0]}, "nodes": [{"name": 0, "out_cost": 1, "duration": 1},
          {"name": 1, "out_cost": 1, "duration": 1}], "links": [{"0": 0, "1": 1}]})",
       "bad.json: links[0]: node 0 'node0' -> node 1 'node1' goes backwards in the given graph.order"},
      {R"({"nodes": [{"name": 0, "out_cost": 1, "duration": 1, "param_cost": -2}], "links": []})",
       "bad.json: nodes[0].param_cost: must be a non-negative number of bytes, got -2"},
  };
  for (const Case& c : cases) EXPECT_THAT(ImportError(c.text), HasSubstr(c.message)) << c.text;
}

// Numbers beyond double, nesting and ids beyond int64 were exceptions that
// escaped nlohmann or recursed in dump().
TEST(CheckmateImport, OutOfRangeNumbersAndDeepNestingAreErrors) {
  const std::string b = R"("id": 1, "name": "b", "backward": false)";
  EXPECT_THAT(ImportError(WithNode("{" + b + R"(, "cost_cpu": 1e309, "cost_ram": 4})")),
              HasSubstr("bad.json: malformed JSON: number out of range at line 1"));
  EXPECT_THAT(ImportError(WithNode("{" + b + R"(, "cost_cpu": 1, "cost_ram": )" + std::string(400, '9') + "}")),
              HasSubstr("bad.json: malformed JSON: number out of range"));
  EXPECT_THAT(ImportError(WithNode("{" + b + R"(, "cost_cpu": 1, "cost_ram": 4, "x": )" + std::string(100000, '[') +
                                   std::string(100000, ']') + "}")),
              HasSubstr("bad.json: malformed JSON: nested deeper than 512 levels"));
  EXPECT_EQ(ImportError(WithNode(R"({"id": 9223372036854775808, "name": "b", "backward": false, "cost_cpu": 1,
                                     "cost_ram": 4})")),
            "bad.json: nodes[1].id: is too large");
  EXPECT_EQ(ImportError(WithNode("{" + b + R"(, "cost_cpu": 1, "cost_ram": 18446744073709551615})")),
            "bad.json: nodes[1].cost_ram: is larger than 2^56 bytes");
  EXPECT_EQ(ImportError(WithNode("{" + b + R"(, "cost_cpu": 1, "cost_ram": 4})", R"([{"source": [[0]], "target": 1}])")),
            "bad.json: links[0].source: unknown node an array of 1 elements");
  EXPECT_EQ(ImportError(WithNode(R"({"id": "a\nb", "name": "b\nc", "backward": false, "cost_cpu": 1, "cost_ram": 4})",
                                 R"([{"source": 0, "target": "a\nb"}, {"source": "a\nb", "target": "a\nb"}])")),
            "bad.json: links[1]: node \"a\\nb\" 'b\\nc' links to itself (a cycle)");
}

TEST(CheckmateImport, MissingFileNamesIt) {
  const std::string error = testing::ErrorOf([&] { ImportCheckmateFile("/nonexistent/graph.json"); });
  EXPECT_THAT(error, HasSubstr("/nonexistent/graph.json"));
}

// Every graph the rematerialization papers published imports, validates and
// keeps one op per node.
TEST(CheckmateImport, EverySharedGraphImports) {
  const std::string dir = testing::SharedDataPath("remat/checkmate");
  if (dir.empty()) GTEST_SKIP() << "shared data not present";
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  ASSERT_EQ(files.size(), 11u);
  for (const auto& file : files) {
    SCOPED_TRACE(file.filename().string());
    const Graph g = ImportCheckmateFile(file.string());
    Validate(g);
    const auto j = nlohmann::json::parse(testing::ReadAll(file.string()));
    EXPECT_EQ(g.num_ops(), j["nodes"].size());
    EXPECT_FALSE(g.outputs.empty());
    EXPECT_GT(ComputeLiveness(g).peak_bytes, 0);
    EXPECT_EQ(GraphFromJson(GraphToJson(g), file.string()).num_ops(), g.num_ops());
  }
}

}  // namespace
}  // namespace memfit
