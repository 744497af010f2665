// Runs the memfit binary (`memfit dtr`) on a temporary log.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "trace_builder.h"

namespace memfit::dtr {
namespace {

using ::testing::HasSubstr;

struct Output {
  int status;
  std::string text;  // stdout and stderr
};

Output RunCli(const std::string& args) {
  std::string command = std::string(MEMFIT_CLI_PATH) + " " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  std::string text;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) text.append(buffer.data(), n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text};
}

class DtrCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("memfit_dtr_cli_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    // Peak 360 B (see FourCandidates in simulator_test.cc).
    testing::TraceBuilder b;
    b.Start().Const("w", 10).Op("a", {"w"}, 100, 100).Op("b", {"w"}, 100, 10).Op("c", {"w"}, 50, 10);
    b.Op("d", {"w"}, 100, 1).Release("a").Release("b").Release("c").Release("d");
    Write("good.log", b.text());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  std::filesystem::path dir_;
};

TEST_F(DtrCliTest, SingleBudgetAsJson) {
  Output out = RunCli("dtr " + Path("good.log") + " --budget 300 --heuristic lru --json");
  ASSERT_EQ(out.status, 0) << out.text;
  nlohmann::json j = nlohmann::json::parse(out.text);
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["budget_bytes"], 300);
  EXPECT_EQ(j["unconstrained_peak_bytes"], 360);
  EXPECT_EQ(j["evictions"], 1);
  EXPECT_EQ(j["heuristic"], "lru");
}

TEST_F(DtrCliTest, RatioAsText) {
  Output out = RunCli("dtr " + Path("good.log") + " --budget-ratio 0.5 --heuristic dtr");
  ASSERT_EQ(out.status, 0) << out.text;
  EXPECT_THAT(out.text, HasSubstr("budget 180 bytes"));
  // 0.5 x 360 B: a is evicted for b, then b (h_DTR 0.01; c was just made) for d.
  EXPECT_THAT(out.text, HasSubstr("status ok"));
  EXPECT_THAT(out.text, HasSubstr("evictions 2"));
}

TEST_F(DtrCliTest, SweepAsJsonArray) {
  Output out = RunCli("dtr " + Path("good.log") + " --sweep --heuristic msps --json");
  ASSERT_EQ(out.status, 0) << out.text;
  nlohmann::json j = nlohmann::json::parse(out.text);
  ASSERT_EQ(j.size(), 10u);
  EXPECT_EQ(j[9]["status"], "ok");
  EXPECT_DOUBLE_EQ(j[9]["budget_ratio"].get<double>(), 1.0);
}

TEST_F(DtrCliTest, UserErrorsExitWithStatus2) {
  Output bad_heuristic = RunCli("dtr " + Path("good.log") + " --budget-ratio 0.5 --heuristic belady");
  EXPECT_EQ(bad_heuristic.status, 2);
  EXPECT_THAT(bad_heuristic.text, HasSubstr("memfit: error: --heuristic: unknown heuristic 'belady'"));

  Output no_budget = RunCli("dtr " + Path("good.log"));
  EXPECT_EQ(no_budget.status, 2);
  EXPECT_THAT(no_budget.text, HasSubstr("--budget-ratio"));

  std::string bad = Write("bad.log", "{\"INSTRUCTION\":\"CONSTANT\",\"NAME\":\"w\"}\n{\"INSTRUCTION\":\"RELEASE\"}\n");
  Output malformed = RunCli("dtr " + bad + " --budget 100");
  EXPECT_EQ(malformed.status, 2);
  EXPECT_THAT(malformed.text, HasSubstr(bad + ":2: RELEASE: missing field \"NAME\""));
}

}  // namespace
}  // namespace memfit::dtr
