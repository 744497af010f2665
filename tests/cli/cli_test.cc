// End-to-end tests of the memfit binary: exit codes, one-line errors, and
// output files that are never half-written.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;
using testing::RunCli;
using testing::TempDir;

int CountLines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

// A user error: exit status 2 and exactly one line on stderr.
void ExpectUserError(const testing::CliResult& r, const std::string& fragment) {
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(CountLines(r.err), 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("memfit: error: "));
  EXPECT_THAT(r.err, HasSubstr(fragment));
}

TEST(Cli, ZooListsEveryFamily) {
  const auto r = RunCli("zoo list");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* name : {"bert-base", "gpt2-small", "gpt-neo-1.3b", "vit-base", "resnet-50", "vgg16", "unet",
                           "densenet121", "mobilenet-v2", "mlp"}) {
    EXPECT_THAT(r.out, HasSubstr(name));
  }
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
}

TEST(Cli, FailedWriteLeavesNoPartialFile) {
  TempDir dir;
  ExpectUserError(RunCli("zoo mlp -o " + dir.File("no/such/dir/out.json")), "cannot write");
  // Overwriting keeps the old file intact when the new build fails.
  const std::string file = dir.Write("keep.json", "old contents");
  ExpectUserError(RunCli("zoo bert-tiny --seq 100000 -o " + file), "seq");
  EXPECT_EQ(testing::ReadAll(file), "old contents");
}

}  // namespace
}  // namespace memfit
