// `memfit import` end to end: the built binary on models written to disk.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "io/graph_json.h"
#include "onnx_test_models.h"
#include "test_util.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;
using testing::ExpectUserError;
using testing::RunCli;
using testing::TempDir;

// Writes `model` as stem.onnx in `dir`, imports it with `flags` into
// stem.json and loads that graph.
Graph ImportWithCli(const TempDir& dir, const std::string& stem, const testing::OnnxModel& model,
                    const std::string& flags) {
  const std::string out = dir.File(stem + ".json");
  const auto r = RunCli("import " + dir.Write(stem + ".onnx", model.Bytes()) + " " + flags + " -o " + out);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("wrote " + out));
  return LoadGraph(out);
}

TEST(ImportCli, ForwardGraph) {
  TempDir dir;
  const Graph g = ImportWithCli(dir, "mlp", testing::Mlp(), "--batch 8");
  ASSERT_EQ(g.outputs.size(), 1u);
  EXPECT_EQ(g.tensor(g.outputs[0]).shape, (Shape{8, 10}));
}

TEST(ImportCli, TrainingGraphWithAdam) {
  TempDir dir;
  const Graph g = ImportWithCli(dir, "cnn", testing::SmallCnn(), "--train --optimizer adam");
  bool has_state = false;
  for (const Tensor& t : g.tensors()) has_state |= t.role == TensorRole::kOptimizerState;
  EXPECT_TRUE(has_state);
}

TEST(ImportCli, UserErrorsAreOneLine) {
  TempDir dir;
  const std::string model = dir.Write("mlp.onnx", testing::Mlp().Bytes());
  ExpectUserError(RunCli("import " + model + " -o " + dir.File("o.json")), "pass --batch N");
  const std::string bytes = testing::Mlp().Bytes();
  const std::string cut = dir.Write("cut.onnx", bytes.substr(0, bytes.size() / 3));
  ExpectUserError(RunCli("import " + cut + " --batch 2 -o " + dir.File("o.json")), "cut.onnx: not a valid ONNX model");
  ExpectUserError(RunCli("import " + model + " --batch 2 --train --optimizer lion -o " + dir.File("o.json")),
                  "--optimizer");
  testing::OnnxModel m = testing::Mlp(2);
  m.Node("Foo", {"y"}, {"z"});
  const std::string bad = dir.Write("foo.onnx", m.Bytes());
  ExpectUserError(RunCli("import " + bad + " -o " + dir.File("o.json")), "unsupported ONNX ops: Foo (1 node)");
  EXPECT_FALSE(std::filesystem::exists(dir.File("o.json")));
}

// A Reshape whose target extents multiply past int64 (found by the fuzzer:
// the product overflowed, undefined behaviour) cannot match the input.
TEST(ImportCli, ReshapeTargetWhoseProductOverflowsIsRefused) {
  TempDir dir;
  const std::string model =
      std::string(MEMFIT_SOURCE_DIR) + "/fuzz/regressions/onnx/reshape-target-product-overflow.onnx";
  ExpectUserError(RunCli("import " + model + " -o " + dir.File("o.json")), "cannot reshape");
  EXPECT_FALSE(std::filesystem::exists(dir.File("o.json")));
}

// Aborted in protobuf (Add with one input) or broke the one-line message (a
// newline in an op type).
TEST(ImportCli, MalformedNodesAreOneLine) {
  TempDir dir;
  // Writes the model `stem` (x [2, 3] -> one node `type` -> y) as stem.onnx
  // and imports it.
  auto import_one_node = [&](const std::string& stem, const std::string& type,
                             std::initializer_list<std::string> inputs, const std::string& name) {
    testing::OnnxModel m(stem);
    m.Input("x", {2, 3});
    m.Node(type, inputs, {"y"}, name);
    m.Output("y");
    const std::string path = dir.Write(stem + ".onnx", m.Bytes());
    return std::pair{path, RunCli("import " + path + " -o " + dir.File("o.json"))};
  };
  const auto [add_path, add] = import_one_node("add", "Add", {"x"}, "plus");
  ExpectUserError(add, add_path + ": node 'plus' (Add): input 1 is missing");
  const auto [gather_path, gather] = import_one_node("gather", "Gather", {}, "");
  ExpectUserError(gather, gather_path + ": node #0 (Gather): input 0 is missing");
  const auto [nl_path, nl] = import_one_node("nl", "Re\nlu", {"x"}, "");
  ExpectUserError(nl, "unsupported ONNX ops: Re\\nlu (1 node)");
  EXPECT_FALSE(std::filesystem::exists(dir.File("o.json")));
}

// A name that is not UTF-8 (protobuf does not check ONNX's strings) aborted
// the process when the graph was written as JSON.
TEST(ImportCli, NamesThatAreNotUtf8AreWritten) {
  TempDir dir;
  testing::OnnxModel m("bytes");
  m.Input("x", {2, 3});
  m.Node("Relu", {"x"}, {"y\xff"}, "r\xff");
  m.Output("y\xff");
  const std::string path = dir.Write("bytes.onnx", m.Bytes());
  const auto r = RunCli("import " + path + " -o " + dir.File("o.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(RunCli("validate " + dir.File("o.json")).exit_code, 0);
}

}  // namespace
}  // namespace memfit
