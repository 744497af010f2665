// memfit fission and memfit inplace from the command line: what they print,
// and bad input as one line, exit status 2, nothing written.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "io/graph_json.h"
#include "test_util.h"
#include "transform/fission.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;
using testing::RunCli;

class TransformCli : public ::testing::Test {
 protected:
  void SetUp() override { graph_ = Zoo("mlp", "--batch 8"); }
  // A zoo model's training step, written into the test's directory.
  std::string Zoo(const std::string& name, const std::string& sizes) {
    return testing::ZooGraph(dir_, name + ".json", name + " " + sizes + " --train");
  }
  testing::TempDir dir_;
  std::string graph_;
};

TEST_F(TransformCli, FissionWritesTheSplitGraph) {
  const std::string out = dir_.File("split.json");
  const auto r = RunCli("fission " + graph_ + " --dim batch --parts 3 -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("fission:    images[0] (batch) x3 over"));
  const Graph split = LoadGraph(out);
  EXPECT_EQ(RecordedFissions(split).size(), 1u);
  const auto why = RunCli("fission " + graph_ + " --dim batch --why");
  EXPECT_EQ(why.exit_code, 0);
  EXPECT_THAT(why.out, HasSubstr("does not touch images[0]"));  // the weights' transposes
  // The MLP's ops are all about as heavy: its band is the whole run.
  const auto band = RunCli("fission " + graph_ + " --dim batch --band");
  EXPECT_EQ(band.exit_code, 0);
  EXPECT_THAT(band.out, HasSubstr("band: the whole run"));
  EXPECT_THAT(band.out, HasSubstr("x2 over 22 ops"));
}

// The rewrites alone: a U-Net's convolutions of concatenations per piece;
// nothing to split asked for is one line, exit 2, nothing written.
TEST_F(TransformCli, FissionRewritesAloneWithoutADimension) {
  const std::string out = dir_.File("concat.json");
  const auto r = RunCli("fission " + Zoo("unet", "--batch 2 --image 32") + " --split-concats -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("convolutions of concatenations split: 4"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("fission:")));
  EXPECT_EQ(RecordedFissions(LoadGraph(out)).size(), 1u);
  const auto none = RunCli("fission " + graph_ + " --split-concats -o " + dir_.File("mlp.json"));
  ASSERT_EQ(none.exit_code, 0) << none.err;
  EXPECT_THAT(none.out, HasSubstr("no convolution of a concatenation to split"));
  for (const std::string flags : {"", " --split-concats --heavy-runs"}) {
    const std::string nothing = dir_.File("nothing.json");
    const auto bad = RunCli("fission " + graph_ + flags + " -o " + nothing);
    EXPECT_EQ(bad.exit_code, 2) << flags;
    EXPECT_THAT(bad.err, HasSubstr("give one of --dim and --spatial")) << flags;
    EXPECT_FALSE(std::filesystem::exists(nothing));
  }
}

// GPT-2's band is its vocabulary head and loss, forward and backward.
TEST_F(TransformCli, FissionSplitsThePeakBand) {
  const auto r = RunCli("fission " + Zoo("gpt2-small", "--batch 2 --seq 16") + " --dim batch --band");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("band: 13 of the run's 1307 ops ('lm_head.mm' .. 'bwd.lm_head.mm_3')"));
  EXPECT_THAT(r.out, HasSubstr("x2 over 13 ops (lm_head.mm .. bwd.lm_head.mm_3)"));
}

TEST_F(TransformCli, FissionRecomputesTheForwardOfABackwardRun) {
  const std::string out = dir_.File("again.json");
  const auto r = RunCli("fission " + Zoo("vgg-unet", "--batch 2 --image 32") + " --dim batch --recompute -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("recompute: 27 forward ops (block1_conv1.convolution .. relu_10) again before bwd.relu_10"));
  EXPECT_THAT(r.out, HasSubstr("x2 over 57 ops (block1_conv1.convolution.recompute .. bwd.block1_conv1.convolution)"));
  EXPECT_EQ(RecordedFissions(LoadGraph(out)).size(), 2u);
}

// segnet's heavy backward runs, each with its forward copied before it
// through the BatchNorms written in two passes.
TEST_F(TransformCli, FissionSplitsHeavyRunsWithTheirForwardsAgain) {
  const std::string out = dir_.File("heavy.json");
  const auto r = RunCli("fission " + Zoo("segnet", "--batch 4 --image 32 --width 48") +
                        " --dim batch --parts 2 --two-pass-batchnorm --two-pass-batchnorm-forward --heavy-runs "
                        "--recompute -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("batchnorm backward in two passes: 8 ops"));
  EXPECT_THAT(r.out, HasSubstr("batchnorm forward in two passes: 8 ops"));
  EXPECT_THAT(r.out, HasSubstr(" forward ops again before 4 of the runs"));
  const Graph split = LoadGraph(out);
  EXPECT_GE(RecordedFissions(split).size(), 2u + 4u + 4u);  // the rewrites, the copies, the splits
}

TEST_F(TransformCli, InPlaceWritesTheRewrittenGraph) {
  const std::string out = dir_.File("inplace.json");
  const auto r = RunCli("inplace " + graph_ + " -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("in place:"));
  EXPECT_TRUE(std::filesystem::exists(out));
}

TEST_F(TransformCli, BadInputIsOneLineExitTwoAndWritesNothing) {
  const std::string out = dir_.File("never.json");
  const std::string bad = dir_.Write("bad.json", "{\"oops");
  for (const std::string& args :
       {"fission " + graph_ + " --dim nope -o " + out, "fission " + graph_ + " --dim batch --parts 0 -o " + out,
        "fission " + graph_ + " --dim batch --parts 1000 -o " + out,
        "fission " + graph_ + " --dim batch --region 99 -o " + out,
        // The MLP's run is the whole step: nothing before it to copy.
        "fission " + graph_ + " --dim batch --recompute -o " + out,
        "fission " + graph_ + " --dim batch --parts abc -o " + out, "fission " + bad + " --dim batch -o " + out,
        "fission " + dir_.File("missing.json") + " --dim batch -o " + out, "inplace " + bad + " -o " + out,
        // Spatial: a bad axis, both modes, neither, and an MLP that has no NCHW run to tile.
        "fission " + graph_ + " --spatial Z -o " + out, "fission " + graph_ + " --spatial H --dim batch -o " + out,
        "fission " + graph_ + " -o " + out, "fission " + graph_ + " --spatial H -o " + out,
        "fission " + graph_ + " --spatial H --parts 1 -o " + out,
        // --heavy-runs chooses its runs itself.
        "fission " + graph_ + " --dim batch --heavy-runs --at fc1.addmm -o " + out,
        "fission " + graph_ + " --dim batch --heavy-runs --band -o " + out,
        "fission " + graph_ + " --dim batch --heavy-runs --region 1 -o " + out,
        // --and-forward splits the forward of a recomputed run; --each-batch chooses its dimensions.
        "fission " + graph_ + " --dim batch --and-forward -o " + out,
        "fission " + graph_ + " --each-batch --dim batch -o " + out,
        "fission " + graph_ + " --each-batch --recompute -o " + out}) {
    SCOPED_TRACE(args);
    const auto r = RunCli(args);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr("memfit: error:"));
    EXPECT_FALSE(std::filesystem::exists(out));
  }
}

}  // namespace
}  // namespace memfit
