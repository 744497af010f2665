// End-to-end tests of the memfit binary: exit codes, one-line errors, and
// output files that are never half-written.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::ExpectUserError;
using testing::RunCli;
using testing::TempDir;

TEST(Cli, ZooListsEveryFamily) {
  const auto r = RunCli("zoo list");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* name : {"bert-base", "gpt2-small", "gpt-neo-1.3b", "vit-base", "resnet-50", "vgg16", "unet",
                           "densenet121", "mobilenet-v2", "mlp"}) {
    EXPECT_THAT(r.out, HasSubstr(name));
  }
}

// --width: a non-square image for the Keras segmentation nets (their default
// 416x608 in the listing); a square-only model refuses it in one line.
TEST(Cli, ZooWidth) {
  EXPECT_THAT(RunCli("zoo list").out, HasSubstr("416x608"));
  TempDir dir;
  const std::string file = dir.File("segnet.json");
  ASSERT_EQ(RunCli("zoo segnet --batch 1 --image 32 --width 48 -o " + file).exit_code, 0);
  const auto j = nlohmann::json::parse(testing::ReadAll(file));
  EXPECT_EQ(j["metadata"]["image"], "32");
  EXPECT_EQ(j["metadata"]["width"], "48");
  ExpectUserError(RunCli("zoo vgg16 --image 32 --width 48 -o " + dir.File("vgg.json")),
                  "width = 48 differs from image = 32; the model takes square images only");
}

TEST(Cli, ZooTrainThenStatsJson) {
  TempDir dir;
  const std::string file = dir.File("mlp.json");
  auto r = RunCli("zoo mlp --batch 16 --train --optimizer adam -o " + file);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunCli("stats --json " + file);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  for (const char* key : {"ops", "tensors", "param_count", "param_bytes", "peak_bytes", "flops",
                          "activation_bytes", "optimizer_state_bytes"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  // 784*1024 + 1024 + 1024*1024 + 1024 + 1024*10 + 10 parameters.
  EXPECT_EQ(j["param_count"].get<int64_t>(), 784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10);
  EXPECT_EQ(j["param_bytes"].get<int64_t>(), 4 * j["param_count"].get<int64_t>());
  // Adam: two f32 states per parameter element.
  EXPECT_EQ(j["optimizer_state_bytes"].get<int64_t>(), 2 * j["param_bytes"].get<int64_t>());
  // The peak holds at least parameters, their gradients and Adam's states.
  EXPECT_GE(j["peak_bytes"].get<int64_t>(), 4 * j["param_bytes"].get<int64_t>());
  r = RunCli("stats " + file);
  EXPECT_THAT(r.out, HasSubstr("peak (program order)"));
  EXPECT_EQ(RunCli("validate " + file).exit_code, 0);
}

TEST(Cli, UserErrorsExitTwoWithOneLine) {
  TempDir dir;
  ExpectUserError(RunCli("zoo no-such-model -o " + dir.File("x.json")), "no-such-model");
  ExpectUserError(RunCli("zoo mlp --dtype f128 -o " + dir.File("x.json")), "--dtype");
  ExpectUserError(RunCli("zoo mlp --train --optimizer rmsprop -o " + dir.File("x.json")), "--optimizer");
  ExpectUserError(RunCli("zoo mlp --batch -3 -o " + dir.File("x.json")), "batch");
  ExpectUserError(RunCli("zoo mlp"), "-o FILE.json is required");
  ExpectUserError(RunCli("stats " + dir.File("missing.json")), "missing.json");
  ExpectUserError(RunCli("stats " + dir.Write("bad.json", "{\"format\": ")), "malformed JSON");
  ExpectUserError(RunCli("frobnicate"), "frobnicate");
  EXPECT_FALSE(std::filesystem::exists(dir.File("x.json")));
  // A directory read as a file was an empty one ("unexpected end of input",
  // or "not a valid ONNX model" to import); an empty file to import was
  // taken for ONNX.
  const std::string folder = dir.File("folder.json");
  std::filesystem::create_directory(folder);
  for (const std::string command : {"stats", "simulate", "optimize --mem-limit-ratio 0.5 -o", "import -o"}) {
    const bool writes = command.ends_with("-o");
    ExpectUserError(RunCli(command + (writes ? " " + dir.File("x.json") : std::string()) + " " + folder),
                    "it is a directory");
  }
  ExpectUserError(RunCli("import " + dir.Write("empty.json", "") + " -o " + dir.File("x.json")), "the file is empty");
  EXPECT_FALSE(std::filesystem::exists(dir.File("x.json")));
}

TEST(Cli, FailedWriteLeavesNoPartialFile) {
  TempDir dir;
  ExpectUserError(RunCli("zoo mlp -o " + dir.File("no/such/dir/out.json")), "cannot write");
  // Overwriting keeps the old file intact when the new build fails.
  const std::string file = dir.Write("keep.json", "old contents");
  ExpectUserError(RunCli("zoo bert-tiny --seq 100000 -o " + file), "seq");
  EXPECT_EQ(testing::ReadAll(file), "old contents");
}

// A valid graph file (mlp, batch 2) and variants of its text.
class MalformedFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    graph_ = dir_.File("g.json");
    ASSERT_EQ(RunCli("zoo mlp --batch 2 -o " + graph_).exit_code, 0);
    text_ = testing::ReadAll(graph_);
  }
  // The graph text with the first `from` replaced by `to`, written as `name`.
  std::string Variant(const std::string& name, const std::string& from, const std::string& to) {
    std::string text = text_;
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    text.replace(at, from.size(), to);
    return dir_.Write(name, text);
  }

  TempDir dir_;
  std::string graph_, text_;
};

// Every command that reads a graph gives exit 2 and one line naming the file,
// without nlohmann's tags, where out-of-range numbers aborted and deep
// nesting overflowed the stack.
TEST_F(MalformedFilesTest, EveryGraphReaderGivesOneLineNamingTheFile) {
  const std::string huge = Variant("huge.json", "\"shape\": [\n    2,", "\"shape\": [\n    1e309,");
  const std::string digits = Variant("digits.json", "\"shape\": [\n    2,", "\"shape\": [\n    " + std::string(400, '9') + ",");
  const std::string deep = Variant("deep.json", "\"name\": \"mlp\"",
                                   "\"name\": " + std::string(100000, '[') + std::string(100000, ']'));
  const std::string cut = dir_.Write("cut.json", text_.substr(0, text_.size() / 2));
  for (const std::string command : {"validate", "stats", "simulate", "dtr --budget-ratio 0.5 ", "plan",
                                     "optimize --mem-limit-ratio 0.5", "dims"}) {
    for (const auto& [file, fragment] : std::vector<std::pair<std::string, std::string>>{
             {huge, "malformed JSON: number out of range at line"},
             {digits, "malformed JSON: number out of range at line"},
             {deep, "malformed JSON: nested deeper than 512 levels"},
             {cut, "malformed JSON: parse error at line"}}) {
      const auto r = RunCli(command + " " + file);
      ExpectUserError(r, file + ": " + fragment);
      EXPECT_THAT(r.err, Not(HasSubstr("json.exception"))) << command;
    }
  }
}

// An op whose time cannot be used (an opaque op's measured time_us of -1)
// is an error naming the graph in every command that times ops.
TEST_F(MalformedFilesTest, UntimeableOpsNameTheGraph) {
  auto j = nlohmann::json::parse(text_);
  const int64_t id = static_cast<int64_t>(j["tensors"].size());
  j["tensors"].push_back({{"id", id}, {"name", "opq"}, {"shape", {2, 784}}, {"dtype", "f32"}, {"role", "activation"}});
  j["ops"].push_back({{"id", j["ops"].size()}, {"name", "x"}, {"type", "my.op"}, {"phase", "forward"},
                      {"inputs", {0}}, {"outputs", {id}}, {"attrs", {{"time_us", -1}}}});
  j["outputs"].push_back(id);
  const std::string file = dir_.Write("opq.json", j.dump());
  for (const std::string command : {"simulate", "dtr --budget-ratio 0.5", "plan", "optimize --mem-limit-ratio 0.5"}) {
    ExpectUserError(RunCli(command + " " + file), file + ": op 'x' (my.op): attribute time_us");
  }
}

// validate said ok to aliasing the other commands rejected later, without
// naming the file; now the loader's validation rejects it for all of them.
TEST_F(MalformedFilesTest, ValidateAgreesWithTheOtherCommands) {
  auto j = nlohmann::json::parse(text_);
  j["tensors"][6]["alias_of"] = 10;  // relu's output aliasing a later tensor
  const std::string later = dir_.Write("later.json", j.dump());
  j = nlohmann::json::parse(text_);
  j["tensors"][6]["alias_of"] = 2;  // relu's output aliasing a weight
  const std::string other = dir_.Write("other.json", j.dump());
  for (const std::string command : {"validate", "stats", "simulate", "plan", "dtr --budget-ratio 0.5"}) {
    ExpectUserError(RunCli(command + " " + later), later + ": tensor 'relu' (t6) aliases tensor 'fc2.addmm' (t10), which comes after it");
    ExpectUserError(RunCli(command + " " + other),
                    other + ": op 'relu' (aten.relu): output tensor 'relu' (t6) aliases tensor 'fc1.weight' (t2)");
  }
}

TEST_F(MalformedFilesTest, ValidateRecognisesAPlan) {
  const std::string plan = dir_.File("p.json");
  ASSERT_EQ(RunCli("plan " + graph_ + " -o " + plan).exit_code, 0);
  const auto r = RunCli("validate " + plan);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("ok: plan of "));
  // Fields of the wrong type aborted PlanFromJson (nlohmann type_error.302).
  auto j = nlohmann::json::parse(testing::ReadAll(plan));
  j["proven_optimal"] = "yes";
  const std::string bad = dir_.Write("bad_plan.json", j.dump());
  for (const std::string command : {"validate", "simulate"}) {
    ExpectUserError(RunCli(command + " " + bad), bad + ": proven_optimal: expected true or false, got \"yes\"");
  }
  j = nlohmann::json::parse(testing::ReadAll(plan));
  const std::string version = dir_.Write("deep_plan.json", [&] {
    std::string text = j.dump();
    text.replace(text.find("\"version\":2"), 11, "\"version\":" + std::string(100000, '[') + std::string(100000, ']'));
    return text;
  }());
  ExpectUserError(RunCli("validate " + version), version + ": malformed JSON: nested deeper than 512 levels");
}

TEST_F(MalformedFilesTest, DeviceAndCostFilesGiveOneLine) {
  const std::string device = dir_.Write("dev.json", R"({"name": "x", "peak_tflops": {"f32": 1e309},
      "memory_bandwidth_gb_per_s": 100, "host_bandwidth_gb_per_s": 10, "launch_overhead_us": 1, "memory_gib": 4})");
  ExpectUserError(RunCli("simulate " + graph_ + " --device " + device), device + ": malformed JSON: number out of range");
  const std::string costs = dir_.Write("costs.json", R"({"entries": [{"op": "aten.relu", "input_shapes": [[2, 1024]],
      "dtype": "f32", "latency_us": )" + std::string(400, '1') + "}]}");
  ExpectUserError(RunCli("simulate " + graph_ + " --costs " + costs), costs + ": malformed JSON: number out of range");
  ExpectUserError(RunCli("dtr " + graph_ + " --budget-ratio 0.5 --costs " + costs), costs + ": malformed JSON");
  // Each rate is positive and finite, but the op times it gives are not
  // representable: the message names every file they come from.
  const std::string slow = dir_.Write("slow.json", R"({"name": "slow", "peak_tflops": {"f32": 1e-290},
      "memory_bandwidth_gb_per_s": 1e-290, "host_bandwidth_gb_per_s": 10, "launch_overhead_us": 1, "memory_gib": 4})");
  for (const std::string command : {"simulate", "dtr --budget-ratio 0.5"}) {
    ExpectUserError(RunCli(command + " " + graph_ + " --device " + slow),
                    graph_ + " on " + slow + ": graph 'mlp': its ops take ");
  }
}

// Floating flags: nan, inf and negative numbers are errors, and a ratio
// whose budget passes int64 saturates (it printed -9223372036854775808).
TEST_F(MalformedFilesTest, FloatingFlags) {
  for (const char* value : {"nan", "inf", "-1", "0.5"}) {
    ExpectUserError(RunCli("dtr " + graph_ + " --budget-ratio 0.5 --overhead-limit " + value), "--overhead-limit");
  }
  for (const char* value : {"nan", "inf", "-1", "0"}) {
    ExpectUserError(RunCli("dtr " + graph_ + " --budget-ratio " + value), "--budget-ratio");
    ExpectUserError(RunCli("simulate " + graph_ + " --compute-efficiency " + value), "--compute-efficiency");
    ExpectUserError(RunCli("simulate " + graph_ + " --memory-efficiency " + value), "--memory-efficiency");
  }
  for (const char* value : {"nan", "inf", "-1"}) {
    ExpectUserError(RunCli("zoo mlp --train --momentum " + std::string(value) + " -o " + dir_.File("z.json")),
                    "--momentum");
  }
  // CLI11 saturated an integer beyond int64; units as --mem-limit's (util/byte_count.h).
  ExpectUserError(RunCli("dtr " + graph_ + " --budget 99999999999999999999"),
                  "--budget: '99999999999999999999' is out of range");
  ExpectUserError(RunCli("dtr " + graph_ + " --budget 12parsecs"), "--budget: unknown unit 'parsecs'");
  for (const char* budget : {"64MiB", "'64 MiB'", "0.0625GiB"}) {
    const auto mib = RunCli("dtr " + graph_ + " --budget " + budget + " --json");
    ASSERT_EQ(mib.exit_code, 0) << budget << ": " << mib.err;
    EXPECT_EQ(nlohmann::json::parse(mib.out)["budget_bytes"].get<int64_t>(), int64_t{64} << 20) << budget;
  }
  const auto r = RunCli("dtr " + graph_ + " --budget-ratio 1e300 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["budget_bytes"].get<int64_t>(), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(j["status"], "ok");
}

}  // namespace
}  // namespace memfit
