// BatchNorm's backward and forward written as their two passes: what the
// rewrites emit, which BatchNorms they leave alone, and that fission then
// reaches through the element-wise passes (and recomputing in parts through
// the forward's) (the executor's equality with the fused op is in
// python/tests/test_fission.py).
#include "transform/batchnorm_two_pass.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "analysis/dims.h"
#include "autodiff/training_graph.h"
#include "ir/builder.h"
#include "ir/validate.h"
#include "test_util.h"
#include "models/zoo.h"
#include "transform/fission.h"
#include "transform/recompute_forward.h"

namespace memfit {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

using testing::OpNamed;
using testing::ProducerName;

// x [4, 3, 5, 5] -> BatchNorm (training) -> sum; its backward by hand.
struct Norm {
  GraphBuilder b;
  TensorId x, dy, weight;
  explicit Norm(DType dtype = DType::kF32, bool train = true, std::vector<int64_t> mask = {1, 1, 1})
      : b("norm", dtype) {
    x = b.Input("x", {4, 3, 5, 5});
    weight = b.Parameter("w", {3});
    const TensorId bias = b.Parameter("b", {3});
    const TensorId mean = b.Source("rm", {3}, dtype, TensorRole::kBuffer);
    const TensorId var = b.Source("rv", {3}, dtype, TensorRole::kBuffer);
    const auto bn = b.CallMulti("aten.native_batch_norm", {x, weight, bias, mean, var},
                                {{"training", train}, {"momentum", 0.1}, {"eps", 1e-5}}, "bn");
    b.MarkOutput(b.Call("aten.sum", {bn[0]}, {}, "loss"));
    b.set_phase(Phase::kBackward);
    dy = b.Call("aten.ones_like", {bn[0]}, {}, "dy");
    const auto grads = b.CallMulti("aten.native_batch_norm_backward", {dy, x, weight, mean, var, bn[1], bn[2]},
                                   {{"train", train}, {"eps", 1e-5}, {"output_mask", mask}}, "bwd.bn");
    for (TensorId g : grads) b.MarkOutput(g);
  }
};

TEST(TwoPassBatchNorm, WritesTheSumsThenGradInputElementWise) {
  Norm n;
  const Graph& g = n.b.graph();
  const Graph two = TwoPassBatchNormBackward(g);
  Validate(two);
  // The sums keep the op's name and ask for the weight and bias gradients
  // only, which keep their names and stay the step's results.
  const Op& sums = OpNamed(two, "bwd.bn");
  EXPECT_EQ(sums.type, "aten.native_batch_norm_backward");
  EXPECT_EQ(std::get<std::vector<int64_t>>(sums.attrs.at("output_mask")), (std::vector<int64_t>{0, 1, 1}));
  ASSERT_EQ(sums.outputs.size(), 2u);
  ASSERT_EQ(two.outputs.size(), g.outputs.size());
  for (size_t i = 0; i < g.outputs.size(); ++i) {
    EXPECT_EQ(two.tensor(two.outputs[i]).name, g.tensor(g.outputs[i]).name);
    EXPECT_EQ(two.tensor(two.outputs[i]).shape, g.tensor(g.outputs[i]).shape);
  }
  EXPECT_EQ(ProducerName(two, two.outputs[2]), "bwd.bn");
  EXPECT_EQ(ProducerName(two, two.outputs[3]), "bwd.bn");
  // grad_input = (c + dy·k) + x·b, per-channel coefficients viewed [1, 3, 1, 1].
  const Op& dx = OpNamed(two, "bwd.bn.grad_input");
  EXPECT_EQ(dx.type, "aten.addcmul");
  EXPECT_EQ(ProducerName(two, two.outputs[1]), "bwd.bn.grad_input");
  EXPECT_EQ(ProducerName(two, dx.inputs[0]), "bwd.bn.grad_input_dy");
  EXPECT_EQ(two.tensor(dx.inputs[1]).name, "x");
  EXPECT_EQ(ProducerName(two, OpNamed(two, "bwd.bn.grad_input_dy").inputs[1]), "dy");
  EXPECT_EQ(two.tensor(dx.inputs[2]).shape, (Shape{1, 3, 1, 1}));
  EXPECT_EQ(two.tensor(two.outputs[1]).shape, (Shape{4, 3, 5, 5}));
  EXPECT_THAT(RecordedFissions(two), ElementsAre("batchnorm backward in two passes: 1 ops"));
}

TEST(TwoPassBatchNorm, KeepsSumsTheOriginalDidNotAskForAsIntermediates) {
  Norm n(DType::kF64, true, {1, 0, 0});
  const Graph two = TwoPassBatchNormBackward(n.b.graph());
  Validate(two);
  const Op& sums = OpNamed(two, "bwd.bn");
  ASSERT_EQ(sums.outputs.size(), 2u);
  EXPECT_EQ(two.tensor(sums.outputs[0]).name, "bwd.bn.sum_dy_xhat");
  EXPECT_EQ(two.tensor(sums.outputs[1]).name, "bwd.bn.sum_dy");
  EXPECT_EQ(two.tensor(sums.outputs[0]).dtype, DType::kF64);
  EXPECT_EQ(two.outputs.size(), n.b.graph().outputs.size());
}

TEST(TwoPassBatchNorm, LeavesEvaluationHalfPrecisionAndNoGradInputAlone) {
  struct Case {
    DType dtype;
    bool train;
    std::vector<int64_t> mask;
  };
  for (const Case& c : {Case{DType::kF32, false, {1, 1, 1}}, Case{DType::kF16, true, {1, 1, 1}},
                        Case{DType::kF32, true, {0, 1, 1}}}) {
    const Norm n(c.dtype, c.train, c.mask);
    const Graph& g = n.b.graph();
    EXPECT_FALSE(HasTwoPassBackward(g, OpNamed(g, "bwd.bn")));
    const Graph two = TwoPassBatchNormBackward(g);
    EXPECT_EQ(two.num_ops(), g.num_ops());
    EXPECT_TRUE(RecordedFissions(two).empty());
  }
}

TEST(TwoPassBatchNorm, FissionReachesThroughTheElementWisePass) {
  ZooOptions zoo;
  zoo.batch = 4;
  zoo.image = 32;
  TrainingOptions training;
  training.momentum = 0.9;
  const Graph g = BuildTrainingGraph(BuildZooModel("resnet-18", zoo), training);
  const DimensionGraph dims = ComputeDimensions(g);
  const int batch = dims.dims.front().kind == "batch" ? 0 : -1;
  ASSERT_EQ(batch, 0);
  // Before: every BatchNorm backward is refused along the batch.
  for (const Op& op : g.ops()) {
    if (op.type != "aten.native_batch_norm_backward") continue;
    EXPECT_THAT(WhyNotSplittable(g, dims, op.id, batch).value_or(""), HasSubstr("needs the whole"));
  }
  const Graph two = TwoPassBatchNormBackward(g);
  Validate(two);
  const DimensionGraph dims2 = ComputeDimensions(two);
  const int d = FindDimension(dims2, dims.dims[batch].name).value_or(-1);
  ASSERT_GE(d, 0);
  // After: the sums and the element-wise pass split; a heavy backward run
  // starts with a grad_input pass and reaches the convolution's backward.
  for (const Op& op : two.ops()) {
    if (op.type == "aten.native_batch_norm_backward" || op.name.ends_with(".grad_input")) {
      EXPECT_FALSE(WhyNotSplittable(two, dims2, op.id, d)) << op.name;
    }
  }
  const auto heavy = HeavyBackwardRuns(two, dims2, d);
  ASSERT_FALSE(heavy.empty());
  bool through = false;
  for (const auto& run : heavy) {
    EXPECT_EQ(two.op(run.front()).phase, Phase::kBackward);
    bool pass = false;
    for (OpId id : run) {
      pass = pass || two.op(id).name.ends_with(".grad_input");
      through = through || (pass && two.op(id).type == "aten.convolution_backward");
    }
  }
  EXPECT_TRUE(through);
  const FissionResult split = ApplyFissions(two, dims2, d, heavy, 3);
  Validate(split.graph);
  EXPECT_EQ(RecordedFissions(split.graph).size(), RecordedFissions(two).size() + heavy.size());
  EXPECT_EQ(split.graph.outputs.size(), g.outputs.size());
}

TEST(TwoPassBatchNormForward, WritesTheStatisticsThenTheNormalizationElementWise) {
  Norm n;
  const Graph& g = n.b.graph();
  const Graph two = TwoPassBatchNormForward(g);
  Validate(two);
  // The statistics keep the op's name and update the running statistics;
  // the saved mean and inverse std keep their names and reach the backward.
  const Op& stats = OpNamed(two, "bn");
  EXPECT_EQ(stats.type, "aten.batch_norm_update_stats");
  ASSERT_EQ(stats.inputs.size(), 3u);
  EXPECT_EQ(two.tensor(stats.inputs[1]).name, "rm");
  EXPECT_EQ(two.tensor(stats.inputs[2]).name, "rv");
  EXPECT_DOUBLE_EQ(std::get<double>(stats.attrs.at("momentum")), 0.1);
  const Op& back = OpNamed(two, "bwd.bn");
  EXPECT_EQ(back.inputs[5], stats.outputs[0]);  // the saved mean
  EXPECT_EQ(ProducerName(two, back.inputs[6]), "bn.invstd");
  EXPECT_EQ(OpNamed(two, "bn.invstd").type, "aten.rsqrt");
  EXPECT_EQ(ProducerName(two, OpNamed(two, "bn.invstd").inputs[0]), "bn.var_eps");
  EXPECT_EQ(two.tensor(back.inputs[6]).name, g.tensor(OpNamed(g, "bn").outputs[2]).name);
  // y = c + x·k, element-wise, under the output's name.
  const Op& y = OpNamed(two, "bn.normalize");
  EXPECT_EQ(y.type, "aten.addcmul");
  EXPECT_EQ(two.tensor(y.inputs[1]).name, "x");
  EXPECT_EQ(two.tensor(y.inputs[0]).shape, (Shape{1, 3, 1, 1}));
  EXPECT_EQ(two.tensor(y.inputs[2]).shape, (Shape{1, 3, 1, 1}));
  EXPECT_EQ(two.tensor(y.outputs[0]).name, g.tensor(OpNamed(g, "bn").outputs[0]).name);
  EXPECT_EQ(ProducerName(two, OpNamed(two, "loss").inputs[0]), "bn.normalize");
  EXPECT_THAT(RecordedFissions(two), ElementsAre("batchnorm forward in two passes: 1 ops"));
  // Both passes: the backward reads the forward's new statistics.
  const Graph both = TwoPassBatchNormBackward(two);
  Validate(both);
  EXPECT_EQ(ProducerName(both, OpNamed(both, "bwd.bn").inputs[6]), "bn.invstd");
}

TEST(TwoPassBatchNormForward, LeavesEvaluationAndHalfPrecisionAlone) {
  for (auto [dtype, train] : {std::pair{DType::kF32, false}, std::pair{DType::kF16, true}}) {
    const Norm n(dtype, train);
    const Graph& g = n.b.graph();
    EXPECT_FALSE(HasTwoPassForward(g, OpNamed(g, "bn")));
    EXPECT_EQ(TwoPassBatchNormForward(g).num_ops(), g.num_ops());
  }
}

// A convolution after a BatchNorm in two passes: its backward's saved input
// (the ReLU of the normalization) is made again before it from the images
// and the kept statistics (vectors the backward reads anyway), where a
// fused BatchNorm stopped the copies; the statistics are not copied (they
// update the running statistics).
TEST(TwoPassBatchNormForward, ItsNormalizationIsRecomputedFromTheKeptStatistics) {
  ZooOptions zoo;
  zoo.batch = 4;
  zoo.image = 32;
  const Graph g = BuildTrainingGraph(BuildZooModel("resnet-18", zoo), TrainingOptions{});
  const Graph two = TwoPassBatchNormForward(TwoPassBatchNormBackward(g));
  Validate(two);
  const DimensionGraph dims = ComputeDimensions(two);
  const std::optional<int> batch = FindDimension(dims, ComputeDimensions(g).dims.front().name);
  ASSERT_TRUE(batch);
  const auto heavy = HeavyBackwardRuns(two, dims, *batch);
  ASSERT_FALSE(heavy.empty());
  const RecomputedRuns r = RecomputeBeforeEach(two, dims, *batch, heavy);
  Validate(r.graph);
  EXPECT_GT(r.copied, 0);
  EXPECT_EQ(r.runs.size(), heavy.size());
  int normalizations = 0;
  for (const Op& op : r.graph.ops()) {
    if (!op.name.ends_with(".recompute") && op.name.find(".recompute_") == std::string::npos) continue;
    EXPECT_NE(op.type, "aten.batch_norm_update_stats") << op.name;
    normalizations += op.name.find(".normalize.recompute") != std::string::npos;
  }
  EXPECT_GT(normalizations, 0);
  // Every run holds its copies (none is left whole before the parts).
  for (const auto& run : r.runs) {
    bool copy = false;
    for (OpId id : run) copy = copy || r.graph.op(id).name.find(".recompute") != std::string::npos;
    EXPECT_TRUE(copy);
  }
  const FissionResult split = ApplyFissions(r.graph, r.dims, r.dim, r.runs, 2);
  Validate(split.graph);
  EXPECT_EQ(split.graph.outputs.size(), g.outputs.size());
}

}  // namespace
}  // namespace memfit
