// Runs the built `memfit` binary on temporary CSV files.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace {

struct CliRun {
  int exit_code;
  std::string output;  // stdout and stderr together
};

CliRun RunCli(const std::string& args) {
  const std::string command = std::string(MEMFIT_CLI_PATH) + " " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) output.append(buffer.data(), n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "memfit_alloc_cli_" + std::to_string(getpid());
    std::system(("mkdir -p " + dir_).c_str());
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  std::string Read(const std::string& name) {
    std::ifstream in(dir_ + "/" + name);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::string dir_;
};

// a [0,4) 4, b [0,2) 2, c [2,4) 2, d [1,3) 1: lower bound 7 (see greedy_test).
constexpr const char* kFour = "id,lower,upper,size\na,0,4,4\nb,0,2,2\nc,2,4,2\nd,1,3,1\n";

TEST_F(CliTest, MinimizesByDefaultAndWritesOffsets) {
  const std::string in = Write("four.1048576.csv", kFour);
  const CliRun r = RunCli("alloc " + in + " -o " + dir_ + "/out.csv");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("status: solved"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("height: 7"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("lower_bound: 7"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("proven_optimal: true"), std::string::npos) << r.output;
  // The capacity in the file name is not guessed.
  EXPECT_EQ(r.output.find("capacity"), std::string::npos) << r.output;
  EXPECT_EQ(Read("out.csv"), "id,lower,upper,size,offset\na,0,4,4,0\nb,0,2,2,4\nc,2,4,2,4\nd,1,3,1,6\n");
}

// The progress line is for terminals only: through a pipe (and with
// --quiet) the output is the report alone.
TEST_F(CliTest, NoProgressLineThroughAPipeOrWithQuiet) {
  const std::string in = Write("four.csv", kFour);
  for (const std::string flags : {"", " --quiet", " -q --json"}) {
    const CliRun r = RunCli("alloc " + in + flags);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.find('\r'), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("alloc:"), std::string::npos) << r.output;
  }
}

TEST_F(CliTest, FitsACapacityAndPrintsJson) {
  const std::string in = Write("four.csv", kFour);
  const CliRun r = RunCli("alloc " + in + " --capacity 7 --planner exact --json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\"status\":\"solved\""), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"height\":7"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"capacity\":7"), std::string::npos) << r.output;
}

TEST_F(CliTest, InfeasibleCapacityExitsOne) {
  const std::string in = Write("four.csv", kFour);
  const CliRun r = RunCli("alloc " + in + " --capacity 6");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("status: infeasible"), std::string::npos) << r.output;
}

TEST_F(CliTest, MalformedCsvExitsTwoNamingTheLine) {
  const std::string in = Write("bad.csv", "id,lower,upper,size\n0,0,1,x\n");
  const CliRun r = RunCli("alloc " + in);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("bad.csv:2: field 'size'"), std::string::npos) << r.output;
}

TEST_F(CliTest, BadFlagsExitTwo) {
  const std::string in = Write("four.csv", kFour);
  EXPECT_EQ(RunCli("alloc " + in + " --planner magic").exit_code, 2);
  EXPECT_EQ(RunCli("alloc " + in + " --capacity 8 --minimize").exit_code, 2);
  EXPECT_EQ(RunCli("alloc " + in + " --alignment 0").exit_code, 2);
  EXPECT_EQ(RunCli("alloc " + dir_ + "/missing.csv").exit_code, 2);
}

TEST_F(CliTest, AlignmentIsAnOption) {
  const std::string in = Write("four.csv", kFour);
  const CliRun r = RunCli("alloc " + in + " --alignment 8 --planner best-fit");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("height: 17"), std::string::npos) << r.output;  // a 0, b/c 8, d 16
}

// Issue 15 ---------------------------------------------------------------

TEST_F(CliTest, OverlappingPinnedOffsetsExitTwoNamingBoth) {
  const std::string in = Write("pins.csv", "id,lower,upper,size,offset\na,0,4,4,0\nb,2,6,4,2\nc,0,9,1,\n");
  const CliRun r = RunCli("alloc " + in);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(r.output,
            "memfit: error: buffers a and b are both alive in [2, 4) but fixed at overlapping bytes "
            "[0, 4) and [2, 6)\n");
}

TEST_F(CliTest, HugeAlignmentsExitTwo) {
  const std::string in = Write("four.csv", kFour);
  for (const char* alignment : {"4611686018427387904", "9223372036854775807"}) {
    const CliRun r = RunCli("alloc " + in + " --alignment " + alignment);
    EXPECT_EQ(r.exit_code, 2) << alignment << ": " << r.output;
    EXPECT_NE(r.output.find("overflow a 64-bit byte count"), std::string::npos) << r.output;
  }
}

TEST_F(CliTest, TimeLimits) {
  const std::string in = Write("four.csv", kFour);
  for (const char* limit : {"1e10", "inf"}) {
    const CliRun r = RunCli("alloc " + in + " --planner exact --capacity 7 --time-limit " + limit);
    EXPECT_EQ(r.exit_code, 0) << limit << ": " << r.output;
    EXPECT_NE(r.output.find("status: solved"), std::string::npos) << r.output;
  }
  for (const char* limit : {"nan", "-1", "0"}) {
    const CliRun r = RunCli("alloc " + in + " --time-limit " + limit);
    EXPECT_EQ(r.exit_code, 2) << limit << ": " << r.output;
    EXPECT_NE(r.output.find("--time-limit"), std::string::npos) << r.output;
  }
  EXPECT_EQ(RunCli("alloc " + in + " --max-nodes -5").exit_code, 2);
}

TEST_F(CliTest, DeterministicRunsWriteIdenticalOutput) {
  // A random 400-buffer problem, stopped by its node budget midway.
  std::string csv = "id,lower,upper,size\n";
  uint64_t x = 12345;
  auto next = [&] { return (x = x * 6364136223846793005ULL + 1442695040888963407ULL) >> 33; };
  for (int i = 0; i < 400; ++i) {
    const uint64_t a = next() % 300, b = next() % 300, size = 1 + next() % 5000;
    csv += fmt::format("{},{},{},{}\n", i, std::min(a, b), std::max(a, b) + 1, size);
  }
  const std::string in = Write("random.csv", csv);
  std::string reports[2];
  for (int run = 0; run < 2; ++run) {
    const CliRun r = RunCli("alloc " + in + " --deterministic --max-nodes 5000 --json -o " + dir_ + "/out" +
                            std::to_string(run) + ".csv");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    reports[run] = r.output;
  }
  EXPECT_EQ(reports[0], reports[1]);
  EXPECT_EQ(reports[0].find("seconds"), std::string::npos) << reports[0];
  EXPECT_FALSE(Read("out0.csv").empty());
  EXPECT_EQ(Read("out0.csv"), Read("out1.csv"));
}

TEST_F(CliTest, ReadsGzippedCsv) {
  Write("four.csv", kFour);
  ASSERT_EQ(std::system(("gzip -f " + dir_ + "/four.csv").c_str()), 0);
  const CliRun r = RunCli("alloc " + dir_ + "/four.csv.gz");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("height: 7"), std::string::npos) << r.output;
  const std::string bad = Write("bad.csv.gz", "not gzip");
  EXPECT_EQ(RunCli("alloc " + bad).exit_code, 2);
}

}  // namespace
