// DTR operator logs as static graphs: a small log with every instruction
// kind and the expected graph worked out by hand, malformed logs, and the two
// shared traces of the DTR paper.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "analysis/liveness.h"
#include "dtr/simulator.h"
#include "importers/dtr_import.h"
#include "ir/validate.h"
#include "sim/cost_model.h"
#include "sim/device.h"
#include "test_util.h"
#include "util/error.h"

namespace memfit {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// w (16 B) is a weight; y = mm(w) owns 64 B; v is a view of y; y2 is a second
// name for y, which relu_ then mutates (copy-on-write); after BACKWARD, g = grad(y2, v)
// owns 32 B and is never released.
constexpr const char* kLog = R"({"INSTRUCTION":"ANNOTATE","ANNOTATION":"START"}
{"INSTRUCTION":"CONSTANT","NAME":"w"}
{"INSTRUCTION":"MEMORY","NAME":"w","MEMORY":"16"}
{"INSTRUCTION":"CALL","NAME":"mm","ARGS":["w"],"RESULT":["y"],"TIME":"2000"}
{"INSTRUCTION":"MEMORY","NAME":"y","MEMORY":"64"}
{"INSTRUCTION":"ALIAS","NAME":"y","ALIAS":"-1"}
{"INSTRUCTION":"CALL","NAME":"view","ARGS":["y"],"RESULT":["v"],"TIME":"500"}
{"INSTRUCTION":"MEMORY","NAME":"v","MEMORY":"64"}
{"INSTRUCTION":"ALIAS","NAME":"v","ALIAS":"0"}
{"INSTRUCTION":"COPY","DST":"y2","SRC":"y"}
{"INSTRUCTION":"RELEASE","NAME":"y"}
{"INSTRUCTION":"MUTATE","NAME":"relu_","ARGS":["y2"],"MUTATE":[0],"TIME":"1500"}
{"INSTRUCTION":"ANNOTATE","ANNOTATION":"BACKWARD"}
{"INSTRUCTION":"CALL","NAME":"grad","ARGS":["y2","v"],"RESULT":["g"],"TIME":"3000"}
{"INSTRUCTION":"MEMORY","NAME":"g","MEMORY":"32"}
{"INSTRUCTION":"ALIAS","NAME":"g","ALIAS":"-1"}
{"INSTRUCTION":"RELEASE","NAME":"v"}
{"INSTRUCTION":"RELEASE","NAME":"y2"}
)";

TEST(DtrImport, EveryInstructionKind) {
  const Graph g = ImportDtrTrace(dtr::ParseTrace(kLog, "tiny.log"));
  EXPECT_EQ(g.name, "tiny");
  EXPECT_EQ(g.metadata.at("importer"), "dtr");
  // Tensors: w, y, v, y2 (relu_'s result), g.
  ASSERT_EQ(g.num_tensors(), 5u);
  const Tensor& w = g.tensors()[0];
  EXPECT_EQ(w.name, "w");
  EXPECT_EQ(w.role, TensorRole::kParameter);
  EXPECT_EQ(w.size_bytes(), 16);
  EXPECT_FALSE(w.producer);
  ASSERT_EQ(g.num_ops(), 4u);
  const std::vector<std::string> types = {"dtr.mm", "dtr.view", "dtr.relu_", "dtr.grad"};
  const std::vector<double> times = {2.0, 0.5, 1.5, 3.0};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(g.ops()[i].type, types[i]);
    EXPECT_EQ(std::get<double>(g.ops()[i].attrs.at("time_us")), times[i]);
    EXPECT_EQ(g.ops()[i].phase, i < 3 ? Phase::kForward : Phase::kBackward);
  }
  const Tensor& y = g.tensors()[1];
  EXPECT_EQ(y.name, "y");
  EXPECT_EQ(y.size_bytes(), 64);
  EXPECT_FALSE(y.alias_of);
  EXPECT_EQ(y.role, TensorRole::kActivation);
  // The view shares y's storage; relu_ copies on write, as DTR does.
  EXPECT_EQ(g.tensors()[2].name, "v");
  EXPECT_EQ(g.tensors()[2].alias_of, y.id);
  EXPECT_EQ(g.tensors()[3].name, "y2");
  EXPECT_FALSE(g.tensors()[3].alias_of);
  EXPECT_EQ(g.tensors()[3].size_bytes(), 64);
  EXPECT_EQ(std::get<bool>(g.ops()[2].attrs.at("copy_on_write")), true);
  EXPECT_EQ(g.ops()[2].inputs, std::vector<TensorId>{y.id});
  const Tensor& grad = g.tensors()[4];
  EXPECT_EQ(grad.role, TensorRole::kGradient);
  EXPECT_EQ(grad.size_bytes(), 32);
  EXPECT_EQ(g.ops()[3].inputs, (std::vector<TensorId>{TensorId(3), TensorId(2)}));
  // Only g is never released; the weight is a parameter, not an output.
  EXPECT_EQ(g.outputs, std::vector<TensorId>{grad.id});

  // Program order: w (16) throughout, y's storage over steps 0-3 (v reads
  // it at grad), y2 from relu_ (step 2) to grad, g at 3: 80, 80, 144, 176.
  EXPECT_THAT(ComputeLiveness(g).live_bytes, ElementsAre(80, 80, 144, 176));
  // The DTR replay copies y2 into fresh storage at relu_ (16 + 64 + 64 = 144)
  // and keeps y's storage until v is released, after grad (144 + 32 = 176).
  EXPECT_EQ(dtr::MeasureBaseline(dtr::LowerTrace(dtr::ParseTrace(kLog, "tiny.log"))).peak_bytes, 176);

  const auto latencies = sim::ComputeOpLatencies(g, sim::FindDevice("a100"), nullptr);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(latencies[i].source, sim::LatencySource::kMeasured);
    EXPECT_EQ(latencies[i].latency_us, times[i]);
  }
}

TEST(DtrImport, MultipleResultsAndDottedNames) {
  const Graph g = ImportDtrTrace(dtr::ParseTrace(R"({"INSTRUCTION":"CONSTANT","NAME":"x"}
{"INSTRUCTION":"MEMORY","NAME":"x","MEMORY":"8"}
{"INSTRUCTION":"CALL","NAME":"aten.split","ARGS":["x"],"RESULT":["a","b"],"TIME":"10"}
{"INSTRUCTION":"MEMORY","NAME":"a","MEMORY":"8"}
{"INSTRUCTION":"ALIAS","NAME":"a","ALIAS":"0"}
{"INSTRUCTION":"MEMORY","NAME":"b","MEMORY":"4"}
{"INSTRUCTION":"ALIAS","NAME":"b","ALIAS":"-1"}
{"INSTRUCTION":"RELEASE","NAME":"a"}
)",
                                                 "split.log"));
  ASSERT_EQ(g.num_ops(), 1u);
  // A dot would read as an overload separator.
  EXPECT_EQ(g.ops()[0].type, "dtr.aten_split");
  EXPECT_EQ(g.ops()[0].overload, "");
  EXPECT_EQ(g.tensor(g.ops()[0].outputs[0]).alias_of, TensorId(0));
  EXPECT_EQ(g.tensor(g.ops()[0].outputs[0]).role, TensorRole::kParameter);  // a view of a weight
  EXPECT_FALSE(g.tensor(g.ops()[0].outputs[1]).alias_of);
  EXPECT_EQ(g.outputs, std::vector<TensorId>{g.ops()[0].outputs[1]});
}

std::string ImportError(const std::string& text) {
  try {
    ImportDtrTrace(dtr::ParseTrace(text, "bad.log"));
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(DtrImport, MalformedLogsNameFileAndLine) {
  EXPECT_THAT(ImportError(R"({"INSTRUCTION":"CALL","NAME":"f","ARGS":["nope"],"RESULT":["y"],"TIME":"1"})"),
              HasSubstr("bad.log:1: CALL: argument 'nope' is not a defined tensor"));
  EXPECT_THAT(ImportError("{\"INSTRUCTION\":\"CONSTANT\",\"NAME\":\"x\"}\n"), HasSubstr("bad.log:1"));
  EXPECT_THAT(ImportError("{\"INSTRUCTION\":\"MEMORY\",\"NAME\":\"x\",\"MEMORY\":\"-3\"}\n"), HasSubstr("bad.log:1"));
  EXPECT_THAT(ImportError("not json\n"), HasSubstr("bad.log:1"));
}

TEST(DtrImport, HugeNumbersAreErrorsNamingTheFile) {
  // Valid for the trace, too large for a graph: Validate's message names the log.
  EXPECT_THAT(ImportError("{\"INSTRUCTION\":\"CONSTANT\",\"NAME\":\"w\"}\n"
                          "{\"INSTRUCTION\":\"MEMORY\",\"NAME\":\"w\",\"MEMORY\":\"144115188075855872\"}\n"),
              ::testing::StartsWith("bad.log: tensor 'w' (t0) is too large"));
  EXPECT_EQ(ImportError("{\"INSTRUCTION\":\"MEMORY\",\"NAME\":\"w\",\"MEMORY\":1e400}\n"),
            "bad.log:1: not valid JSON: number out of range at line 1, column 45: 1e400");
  EXPECT_EQ(ImportError("{\"INSTRUCTION\":\"MEMORY\",\"NAME\":\"w\",\"MEMORY\":9223372036854775808}\n"),
            "bad.log:1: MEMORY: field \"MEMORY\" is out of range: 9223372036854775808");
  EXPECT_EQ(ImportError("{\"INSTRUCTION\":\"MEMORY\",\"NAME\":\"w\",\"MEMORY\":\"99999999999999999999\"}\n"),
            "bad.log:1: MEMORY: field \"MEMORY\" is out of range: \"99999999999999999999\"");
  EXPECT_THAT(ImportError(std::string(100000, '[') + "\n"), HasSubstr("bad.log:1: not valid JSON: nested deeper than 512"));
}

// The DTR paper's traces: every CALL and MUTATE becomes an op, every CONSTANT
// a parameter, and freeing at the last use (and writing in place) never needs
// more than the replay's unconstrained peak.
TEST(DtrImport, SharedTracesImport) {
  for (const char* name : {"dtr/resnet32-56.log", "dtr/unet-6.log"}) {
    const std::string path = testing::SharedDataPath(name);
    if (path.empty()) GTEST_SKIP() << "shared data not present";
    SCOPED_TRACE(name);
    const dtr::Trace trace = dtr::ReadTrace(path);
    const Graph g = ImportDtrTrace(trace);
    Validate(g);
    size_t calls = 0, constants = 0;
    for (const dtr::Instr& in : trace.instrs) {
      calls += in.kind == dtr::InstrKind::kCall || in.kind == dtr::InstrKind::kMutate;
      constants += in.kind == dtr::InstrKind::kConstant;
    }
    EXPECT_EQ(g.num_ops(), calls);
    size_t params = 0;
    for (const Tensor& t : g.tensors()) params += t.role == TensorRole::kParameter && !t.producer;
    EXPECT_EQ(params, constants);
    EXPECT_FALSE(g.outputs.empty());
    const int64_t replay_peak = dtr::MeasureBaseline(dtr::LowerTrace(trace)).peak_bytes;
    const int64_t graph_peak = ComputeLiveness(g).peak_bytes;
    EXPECT_GT(graph_peak, 0);
    EXPECT_LE(graph_peak, replay_peak);
  }
}

}  // namespace
}  // namespace memfit
