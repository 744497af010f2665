#include "io/graph_json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "ir/builder.h"
#include "ir/registry.h"
#include "test_util.h"
#include "util/error.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

// x[4, 8] -> t(w) -> mm -> relu -> sum: a tiny valid graph.
Graph SmallGraph() {
  GraphBuilder b("small");
  b.mutable_graph().metadata["model"] = "test";
  TensorId x = b.Input("x", {4, 8});
  TensorId w = b.Parameter("w", {16, 8});
  TensorId y = b.Call("aten.mm", {x, b.Call("aten.t", {w})});
  TensorId r = b.Call("aten.relu", {y});
  TensorId s = b.Call("aten.sum", {r}, {{"dtype", std::monostate{}}, {"scale", 0.5}, {"list", std::vector<double>{1.0, 2.5}}});
  b.MarkOutput(s);
  return b.Finish();
}

void ExpectSameGraph(const Graph& a, const Graph& b) {
  ASSERT_EQ(a.num_tensors(), b.num_tensors());
  ASSERT_EQ(a.num_ops(), b.num_ops());
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.metadata, b.metadata);
  EXPECT_EQ(a.outputs, b.outputs);
  for (size_t i = 0; i < a.num_tensors(); ++i) {
    const Tensor& x = a.tensors()[i];
    const Tensor& y = b.tensors()[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.shape, y.shape);
    EXPECT_EQ(x.dtype, y.dtype);
    EXPECT_EQ(x.role, y.role);
    EXPECT_EQ(x.alias_of, y.alias_of);
    EXPECT_EQ(x.producer, y.producer);
    EXPECT_EQ(x.strides, y.strides);
    EXPECT_EQ(x.storage_offset, y.storage_offset);
    EXPECT_EQ(x.values, y.values);
  }
  for (size_t i = 0; i < a.num_ops(); ++i) {
    const Op& x = a.ops()[i];
    const Op& y = b.ops()[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.type, y.type);
    EXPECT_EQ(x.overload, y.overload);
    EXPECT_EQ(x.inputs, y.inputs);
    EXPECT_EQ(x.outputs, y.outputs);
    EXPECT_EQ(x.attrs, y.attrs) << x.name;
    EXPECT_EQ(x.phase, y.phase);
  }
}

TEST(GraphJson, RoundTripIsLossless) {
  Graph g = SmallGraph();
  g.mutable_tensor(TensorId(0)).strides = {8, 1};
  const std::string text = GraphToJson(g);
  const Graph back = GraphFromJson(text);
  ExpectSameGraph(g, back);
  EXPECT_EQ(GraphToJson(back), text);  // byte-identical second save
}

// An integer source's known values (an ONNX import's folded index grid)
// are written and read back.
TEST(GraphJson, KnownValuesRoundTrip) {
  GraphBuilder b("values");
  TensorId idx = b.Source("idx", {2, 2}, DType::kI64, TensorRole::kBuffer);
  b.mutable_graph().mutable_tensor(idx).values = {0, 1, 1, 3};
  TensorId x = b.Input("x", {4, 4});
  b.MarkOutput(b.Call("aten.index.Tensor", {x, b.Call("aten.select.int", {idx}, {{"dim", int64_t{1}}, {"index", int64_t{0}}})}));
  const Graph g = b.Finish();
  const std::string text = GraphToJson(g);
  EXPECT_THAT(text, HasSubstr("\"values\""));
  const Graph back = GraphFromJson(text, "values.json");
  ExpectSameGraph(g, back);
  EXPECT_EQ(back.tensor(idx).values, (std::vector<int64_t>{0, 1, 1, 3}));
}

TEST(GraphJson, NonFiniteAndIntegralDoublesSurvive) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {2});
  b.CallOpaque("my.op", {x}, {{{2}, DType::kF32}},
               {{"inf", std::numeric_limits<double>::infinity()}, {"one", 1.0}, {"ints", std::vector<int64_t>{}},
                {"floats", std::vector<double>{1.0, 2.0}}});
  const Graph g = b.Finish();
  ExpectSameGraph(g, GraphFromJson(GraphToJson(g)));
}

TEST(GraphJson, SaveIsAtomicAndLoadReadsBack) {
  testing::TempDir dir;
  const Graph g = SmallGraph();
  SaveGraph(g, dir.File("g.json"));
  ExpectSameGraph(g, LoadGraph(dir.File("g.json")));
  // No temporary files are left behind.
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) files += entry.is_regular_file();
  EXPECT_EQ(files, 1);
  EXPECT_THROW(SaveGraph(g, dir.File("missing-dir/g.json")), Error);
  EXPECT_FALSE(std::filesystem::exists(dir.File("missing-dir")));
}

// Version 2 writes the registry's flags per op (only those set).
TEST(GraphJson, WritesTheRegistrysOpFlags) {
  GraphBuilder b("g");
  const TensorId images = b.Input("images", {4, 3});
  const TensorId scale = b.Parameter("scale", {3});
  b.Call("aten.relu", {images});
  b.Call("aten.t", {images});
  b.Call("aten.mul_.Tensor", {scale, scale});
  b.CallMulti("aten.native_dropout", {images}, {{"p", 0.1}, {"train", true}});
  const TensorId stats = b.Buffer("stats", {3}), var = b.Buffer("var", {3});
  b.CallMulti("aten.native_batch_norm", {images, scale, scale, stats, var},
              {{"training", true}, {"momentum", 0.1}, {"eps", 1e-5}});
  const json j = json::parse(GraphToJson(b.Finish()));
  EXPECT_EQ(j["version"], 2);
  EXPECT_FALSE(j["ops"][0].contains("flags"));
  EXPECT_EQ(j["ops"][1]["flags"], json::parse(R"({"view": true})"));
  EXPECT_EQ(j["ops"][2]["flags"], json::parse(R"({"inplace": true})"));
  EXPECT_EQ(j["ops"][3]["flags"], json::parse(R"({"random": true})"));
  EXPECT_EQ(j["ops"][4]["flags"], json::parse(R"({"mutates": [3, 4]})"));
}

// A version 1 file (before op flags) still loads, as the same graph.
TEST(GraphJson, LoadsVersionOne) {
  const Graph g = SmallGraph();
  json j = json::parse(GraphToJson(g));
  j["version"] = 1;
  for (json& op : j["ops"]) op.erase("flags");
  ExpectSameGraph(g, GraphFromJson(j.dump(), "old.json"));
  // The old text, as version 1 wrote it (t is a view: no flags then).
  const std::string old_text = R"({"format": "memfit.graph", "version": 1, "name": "v1", "metadata": {},
    "tensors": [{"id": 0, "name": "w", "shape": [16, 8], "dtype": "f32", "role": "parameter"},
                {"id": 1, "name": "t", "shape": [8, 16], "dtype": "f32", "role": "activation", "alias_of": 0}],
    "ops": [{"id": 0, "name": "t", "type": "aten.t", "phase": "forward", "inputs": [0], "outputs": [1]}],
    "outputs": [1]})";
  const Graph old = GraphFromJson(old_text, "v1.json");
  EXPECT_EQ(old.num_ops(), 1u);
  EXPECT_EQ(old.StorageRoot(TensorId(1)), TensorId(0));
  // Saved again, it is version 2 with the flags.
  const json again = json::parse(GraphToJson(old));
  EXPECT_EQ(again["version"], 2);
  EXPECT_EQ(again["ops"][0]["flags"], json::parse(R"({"view": true})"));
}

// Each malformed input gives its own clear error.
struct Malformed {
  std::string label;
  std::function<std::string()> make;  // the file contents
  std::string fragment;                // expected in the message
};
void PrintTo(const Malformed& m, std::ostream* os) { *os << m.label; }

std::string Mutated(const std::function<void(json&)>& mutate) {
  json j = json::parse(GraphToJson(SmallGraph()));
  mutate(j);
  return j.dump();
}

// The mutated graph with the string value "@RAW@" replaced by `raw` text
// (numbers and nesting json cannot hold).
std::string MutatedRaw(const std::function<void(json&)>& mutate, const std::string& raw) {
  std::string text = Mutated(mutate);
  text.replace(text.find("\"@RAW@\""), 7, raw);
  return text;
}

// Flags in a file are read for form only: the registry decides (an older
// memfit may have listed fewer).
TEST(GraphJson, FlagsInAFileDoNotOverrideTheRegistry) {
  const std::string text = Mutated([](json& j) { j["ops"][2]["flags"] = {{"random", true}}; });
  const Graph g = GraphFromJson(text, "g.json");
  EXPECT_FALSE(ComputeOpFlags(g, g.op(OpId(2))).random);
}

class MalformedGraphTest : public ::testing::TestWithParam<Malformed> {};

TEST_P(MalformedGraphTest, GivesOneClearError) {
  const Malformed& m = GetParam();
  const std::string error = testing::ErrorOf([&] { GraphFromJson(m.make(), "bad.json"); });
  EXPECT_THAT(error, HasSubstr("bad.json"));
  EXPECT_THAT(error, HasSubstr(m.fragment)) << m.label;
}

std::vector<Malformed> MalformedCases() {
  const std::string valid = GraphToJson(SmallGraph());
  return {
      {"empty", [] { return std::string(); }, "malformed JSON"},
      {"truncated", [valid] { return valid.substr(0, valid.size() / 2); }, "malformed JSON"},
      {"not an object", [] { return std::string("[1, 2, 3]"); }, "expected an object"},
      {"wrong format", [] { return Mutated([](json& j) { j["format"] = "onnx"; }); }, "expected \"memfit.graph\""},
      {"future version", [] { return Mutated([](json& j) { j["version"] = 99; }); }, "unsupported version 99"},
      {"version zero", [] { return Mutated([](json& j) { j["version"] = 0; }); }, "unsupported version 0"},
      {"flags in version 1", [] {
         return Mutated([](json& j) { j["version"] = 1; j["ops"][0]["flags"] = {{"view", true}}; });
       }, "ops[0]: unknown field 'flags'"},
      {"unknown flag", [] { return Mutated([](json& j) { j["ops"][1]["flags"] = {{"pure", true}}; }); },
       "ops[1].flags: unknown field 'pure'"},
      {"flag not a bool", [] { return Mutated([](json& j) { j["ops"][1]["flags"] = {{"random", 1}}; }); },
       "ops[1].flags.random"},
      {"mutated input out of range", [] { return Mutated([](json& j) { j["ops"][1]["flags"] = {{"mutates", {5}}}; }); },
       "ops[1].flags.mutates[0]: input index 5 is out of range (the op has 2 inputs)"},
      {"unknown top field", [] { return Mutated([](json& j) { j["extra"] = 1; }); }, "unknown field 'extra'"},
      // Known values: only on an integer or bool source, one per element, in range.
      {"values of a float", [] { return Mutated([](json& j) { j["tensors"][0]["values"] = std::vector<int>(32, 1); }); },
       "has values: only an integer or bool source that is not a view may"},
      {"values miscounted", [] {
         return Mutated([](json& j) { j["tensors"][0]["dtype"] = "i64"; j["tensors"][0]["values"] = {1, 2}; });
       }, "has 2 values for 32 elements"},
      {"values out of range", [] {
         return Mutated([](json& j) {
           j["tensors"][0]["dtype"] = "i8";
           std::vector<int> v(32, 0);
           v[3] = 300;
           j["tensors"][0]["values"] = v;
         });
       }, "has the value 300, out of range for i8"},
      {"unknown tensor field", [] { return Mutated([](json& j) { j["tensors"][0]["colour"] = "red"; }); },
       "tensors[0]: unknown field 'colour'"},
      {"missing field", [] { return Mutated([](json& j) { j["ops"][1].erase("type"); }); }, "ops[1]: missing field 'type'"},
      {"bad dtype", [] { return Mutated([](json& j) { j["tensors"][1]["dtype"] = "f128"; }); }, "unknown dtype 'f128'"},
      {"bad role", [] { return Mutated([](json& j) { j["tensors"][1]["role"] = "weights"; }); }, "unknown role 'weights'"},
      {"input id out of range", [] { return Mutated([](json& j) { j["ops"][1]["inputs"][0] = 1000; }); },
       "ops[1].inputs[0]: tensor id 1000 is out of range"},
      {"negative dim", [] { return Mutated([](json& j) { j["tensors"][0]["shape"][0] = -4; }); }, "negative dimension"},
      {"float in shape", [] { return Mutated([](json& j) { j["tensors"][0]["shape"][0] = 4.5; }); }, "expected an integer"},
      {"huge integer", [] { return Mutated([](json& j) { j["tensors"][0]["shape"][0] = 18446744073709551615ull; }); },
       "integer is too large"},
      {"overflowing size", [] {
         return Mutated([](json& j) { j["tensors"][0]["shape"] = {1 << 30, 1 << 30, 1 << 30}; });
       }, "is too large"},
      {"shape mismatch", [] { return Mutated([](json& j) { j["tensors"][3]["shape"] = {4, 17}; }); },
       "the registry infers f32[4, 16]"},
      {"cycle", [] {
         // op 1 (mm) reads relu's output (t4), which relu computes from mm.
         return Mutated([](json& j) { j["ops"][1]["inputs"][0] = 4; });
       }, "cycle"},
      {"produced twice", [] { return Mutated([](json& j) { j["ops"][2]["outputs"][0] = 3; }); }, "produced twice"},
      {"activation without producer", [] { return Mutated([](json& j) { j["ops"][3]["inputs"][0] = 3; j["ops"][2]["outputs"] = json::array(); }); },
       "no op produces it"},
      {"wrong id", [] { return Mutated([](json& j) { j["tensors"][2]["id"] = 7; }); }, "ids must equal their position"},
      {"alias cycle", [] {
         return Mutated([](json& j) { j["tensors"][0]["alias_of"] = 1; j["tensors"][1]["alias_of"] = 0; });
       }, "alias cycle"},
      {"bad attribute", [] { return Mutated([](json& j) { j["ops"][1]["attrs"] = {{"x", {{"a", 1}}}}; }); },
       "ops[1].attrs.x"},
      {"duplicate op name", [] { return Mutated([](json& j) { j["ops"][2]["name"] = j["ops"][1]["name"]; }); },
       "used twice"},
      {"wrong arity", [] { return Mutated([](json& j) { j["ops"][1]["inputs"].push_back(0); }); },
       "expects 2 tensor inputs, got 3"},
      // Numbers beyond double escaped as nlohmann's out_of_range and aborted.
      {"number beyond double", [] { return MutatedRaw([](json& j) { j["tensors"][0]["shape"][0] = "@RAW@"; }, "1e309"); },
       "bad.json: malformed JSON: number out of range at line 1"},
      {"400-digit integer", [] {
         return MutatedRaw([](json& j) { j["ops"][0]["attrs"] = {{"x", "@RAW@"}}; }, std::string(400, '9'));
       }, "malformed JSON: number out of range"},
      {"deep nesting", [] {
         return MutatedRaw([](json& j) { j["name"] = "@RAW@"; }, std::string(100000, '[') + std::string(100000, ']'));
       }, "malformed JSON: nested deeper than 512 levels"},
      {"nested attribute", [] { return Mutated([](json& j) { j["ops"][1]["attrs"] = {{"x", {{1, {2}}}}}; }); },
       "ops[1].attrs.x[0]: list attributes hold numbers only"},
      {"name with a newline", [] { return Mutated([](json& j) { j["ops"][2]["name"] = "a\nb"; j["ops"][3]["name"] = "a\nb"; }); },
       "op name 'a\\nb' is used twice"},
      {"a plan", [] { return Mutated([](json& j) { j["format"] = "memfit.plan"; }); },
       "format: this is a plan (memfit.plan), not a graph"},
      // Aliasing that the commands after validate used to reject (tensors:
      // x 0, w 1, t(w) 2 = view of w, mm 3, relu 4, sum 5).
      {"alias of a later tensor", [] { return Mutated([](json& j) { j["tensors"][3]["alias_of"] = 4; }); },
       "tensor 'mm' (t3) aliases tensor 'relu' (t4), which comes after it"},
      {"view of another storage", [] { return Mutated([](json& j) { j["tensors"][2]["alias_of"] = 0; }); },
       "op 't' (aten.t): output tensor 't' (t2) aliases tensor 'x' (t0), whose storage none of the op's inputs has"},
      {"alias of an input's storage by a fresh op", [] { return Mutated([](json& j) { j["tensors"][4]["alias_of"] = 3; }); },
       "op 'relu' (aten.relu): output tensor 'relu' (t4) has alias_of, but aten.relu gives it storage of its own"},
      {"source aliasing produced storage", [] {
         return Mutated([](json& j) {
           j["tensors"].push_back({{"name", "p"}, {"shape", {4, 16}}, {"dtype", "f32"}, {"role", "parameter"}, {"alias_of", 3}});
         });
       }, "tensor 'p' (t6) exists before the step (no op produces it) but aliases tensor 'mm' (t3), whose storage op 'mm' produces"},
  };
}

INSTANTIATE_TEST_SUITE_P(Cases, MalformedGraphTest, ::testing::ValuesIn(MalformedCases()),
                         [](const auto& info) { return testing::TestName(info.param.label); });

TEST(GraphJson, MissingFileNamesThePath) {
  const std::string error = testing::ErrorOf([&] { LoadGraph("/nonexistent/graph.json"); });
  EXPECT_THAT(error, HasSubstr("/nonexistent/graph.json"));
}

}  // namespace
}  // namespace memfit
