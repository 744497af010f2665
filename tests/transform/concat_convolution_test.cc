// A convolution of a concatenation written per piece: what the rewrite
// emits in the forward and the backward, what it leaves alone, and what it
// saves (the executor's equality with the original step is in
// python/tests/test_fission.py).
#include "transform/concat_convolution.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "analysis/stats.h"
#include "autodiff/training_graph.h"
#include "ir/builder.h"
#include "ir/validate.h"
#include "models/layers.h"
#include "models/zoo.h"
#include "test_util.h"
#include "transform/fission.h"
#include "transform/spatial_fission.h"

namespace memfit {
namespace {

using ::testing::ElementsAre;

using testing::OpNamed;
using testing::ProducerName;
using models::Conv2d;

struct Options {
  int64_t cat_dim = 1;
  int64_t groups = 1;
  bool bias = true;
  bool transposed = false;
  bool cat_read_again = false;  // a relu of the concatenation too
};

// a [2, 3, 8, 8], b [2, 5, 8, 8] (b made from a) -> cat -> conv -> sum:
// its training step.
Graph Step(const Options& o = {}) {
  GraphBuilder b("catconv");
  const TensorId x = b.Input("x", {2, 3, 8, 8});
  const TensorId a = b.Call("aten.relu", {Conv2d(b, "first", x, 3, 3, {.padding = 1})}, {}, "a");
  const TensorId pre = Conv2d(b, "pre", x, o.cat_dim == 1 ? 5 : 3, 3, {.padding = 1});
  const TensorId c = b.Call("aten.cat", {a, pre}, {{"dim", o.cat_dim}}, "cat");
  const TensorId y = Conv2d(b, "conv", c, 4, 3,
                            {.padding = 1, .groups = o.groups, .bias = o.bias, .transposed = o.transposed});
  TensorId loss = b.Call("aten.sum", {y}, {}, "loss");
  if (o.cat_read_again) loss = b.Call("aten.add", {loss, b.Call("aten.sum", {b.Call("aten.relu", {c})})}, {}, "total");
  b.MarkOutput(loss);
  return BuildTrainingGraph(b.graph(), {});
}

size_t Count(const Graph& g, std::string_view type) {
  return static_cast<size_t>(std::count_if(g.ops().begin(), g.ops().end(), [&](const Op& op) { return op.type == type; }));
}

TEST(ConcatConvolution, ConvolvesEachPieceAndSumsInTheForward) {
  const Graph g = Step();
  const Graph split = SplitConcatenatedConvolutions(g);
  Validate(split);
  EXPECT_THAT(RecordedFissions(split), ElementsAre("convolutions of concatenations split: 1"));
  EXPECT_EQ(Count(split, "aten.cat"), Count(g, "aten.cat"));  // the forward cat gone, a weight-gradient cat made
  // y = conv(a, W[:, 0:3], bias) + conv(pre, W[:, 3:8]): the sum keeps the
  // convolution's name and result.
  const Op& sum = OpNamed(split, "conv.convolution");
  EXPECT_EQ(sum.type, "aten.add");
  const Op& first = split.op(*split.tensor(sum.inputs[0]).producer);
  const Op& second = split.op(*split.tensor(sum.inputs[1]).producer);
  EXPECT_EQ(first.type, "aten.convolution");
  EXPECT_EQ(split.tensor(first.inputs[0]).name, "a");
  EXPECT_EQ(split.tensor(first.inputs[1]).shape, (Shape{4, 3, 3, 3}));
  ASSERT_EQ(first.inputs.size(), 3u);  // the bias, once
  EXPECT_EQ(split.tensor(first.inputs[2]).name, "conv.bias");
  EXPECT_EQ(ProducerName(split, second.inputs[0]), "pre.convolution");
  EXPECT_EQ(split.tensor(second.inputs[1]).shape, (Shape{4, 5, 3, 3}));
  EXPECT_EQ(second.inputs.size(), 2u);
  // The weight's slices are views of it.
  EXPECT_EQ(split.StorageRoot(first.inputs[1]), split.StorageRoot(second.inputs[1]));
  EXPECT_EQ(split.tensor(split.StorageRoot(first.inputs[1])).name, "conv.weight");
}

TEST(ConcatConvolution, EachPieceGetsItsOwnGradientInTheBackward) {
  const Graph g = Step();
  const Graph split = SplitConcatenatedConvolutions(g);
  // Two convolution backwards where there was one, from the same grad_output;
  // the weight gradient is their weight gradients joined along dim 1, the
  // bias gradient the first piece's.
  EXPECT_EQ(Count(split, "aten.convolution_backward"), Count(g, "aten.convolution_backward") + 1);
  const Op* grad_weight = nullptr;
  for (const Op& op : split.ops()) {
    if (op.type == "aten.cat" && op.phase == Phase::kBackward) grad_weight = &op;
  }
  ASSERT_NE(grad_weight, nullptr);
  ASSERT_EQ(grad_weight->inputs.size(), 2u);
  EXPECT_EQ(split.tensor(grad_weight->outputs[0]).shape, (Shape{4, 8, 3, 3}));
  const Op& back0 = split.op(*split.tensor(grad_weight->inputs[0]).producer);
  const Op& back1 = split.op(*split.tensor(grad_weight->inputs[1]).producer);
  EXPECT_EQ(back0.inputs[0], back1.inputs[0]);
  EXPECT_EQ(split.tensor(back0.inputs[1]).name, "a");
  EXPECT_EQ(std::get<std::vector<int64_t>>(back0.attrs.at("output_mask")), (std::vector<int64_t>{1, 1, 1}));
  EXPECT_EQ(std::get<std::vector<int64_t>>(back1.attrs.at("output_mask")), (std::vector<int64_t>{1, 1, 0}));
  // No tensor of the concatenation's shape is left: not the concatenation,
  // not its gradient; each piece's gradient is a tensor of its own.
  for (const Tensor& t : split.tensors()) EXPECT_NE(t.shape, (Shape{2, 8, 8, 8})) << t.name;
  EXPECT_FALSE(split.tensor(back0.outputs[0]).alias_of);
  EXPECT_EQ(split.tensor(back1.outputs[0]).shape, (Shape{2, 5, 8, 8}));
  // The step's results (loss, updated parameters) are the same tensors.
  ASSERT_EQ(split.outputs.size(), g.outputs.size());
  for (size_t i = 0; i < g.outputs.size(); ++i) {
    EXPECT_EQ(split.tensor(split.outputs[i]).name, g.tensor(g.outputs[i]).name);
    EXPECT_EQ(split.tensor(split.outputs[i]).shape, g.tensor(g.outputs[i]).shape);
  }
}

TEST(ConcatConvolution, TransposedConvolutionsSliceTheWeightsFirstDim) {
  Options o;
  o.transposed = true;
  const Graph split = SplitConcatenatedConvolutions(Step(o));
  Validate(split);
  const Op& sum = OpNamed(split, "conv.convolution");
  EXPECT_EQ(split.tensor(split.op(*split.tensor(sum.inputs[0]).producer).inputs[1]).shape, (Shape{3, 4, 3, 3}));
}

TEST(ConcatConvolution, LeavesOtherConcatenationsAlone) {
  Options read_again, grouped, no_channels;
  read_again.cat_read_again = true;
  grouped.groups = 2;
  no_channels.cat_dim = 2;  // along H: not the convolution's input channels
  for (const Options& o : {read_again, grouped, no_channels}) {
    const Graph g = Step(o);
    EXPECT_FALSE(HasConcatenatedConvolution(g, OpNamed(g, "cat")));
    const Graph same = SplitConcatenatedConvolutions(g);
    EXPECT_EQ(same.num_ops(), g.num_ops());
    EXPECT_TRUE(RecordedFissions(same).empty());
  }
}

// A piece written in place after the concatenation: the concatenation's copy
// kept the values the convolution must read.
TEST(ConcatConvolution, LeavesPiecesWrittenAfterTheConcatenationAlone) {
  GraphBuilder b("written");
  const TensorId x = b.Input("x", {2, 3, 8, 8});
  const TensorId a = b.Call("aten.relu", {x}, {}, "a");
  const TensorId c = b.Call("aten.cat", {a, x}, {{"dim", int64_t{1}}}, "cat");
  b.Call("aten.relu_", {a}, {}, "overwrite");
  b.MarkOutput(b.Call("aten.sum", {Conv2d(b, "conv", c, 4, 3, {.padding = 1})}, {}, "loss"));
  const Graph& g = b.graph();
  EXPECT_FALSE(HasConcatenatedConvolution(g, OpNamed(g, "cat")));
  EXPECT_EQ(SplitConcatenatedConvolutions(g).num_ops(), g.num_ops());
  // Written before the concatenation, it is the same for both.
  GraphBuilder before("before");
  const TensorId y = before.Input("x", {2, 3, 8, 8});
  const TensorId r = before.Call("aten.relu", {y}, {}, "a");
  before.Call("aten.relu_", {r}, {}, "overwrite");
  const TensorId c2 = before.Call("aten.cat", {r, y}, {{"dim", int64_t{1}}}, "cat");
  before.MarkOutput(before.Call("aten.sum", {Conv2d(before, "conv", c2, 4, 3, {.padding = 1})}, {}, "loss"));
  EXPECT_TRUE(HasConcatenatedConvolution(before.graph(), OpNamed(before.graph(), "cat")));
}

// U-Net's decoder: every up block convolves cat(skip, upsampled). The
// concatenations and their whole gradients are gone, and the program-order
// peak is lower.
TEST(ConcatConvolution, UNetDecoderBlocksNeedLessMemory) {
  ZooOptions zoo;
  zoo.batch = 2;
  zoo.image = 64;
  const Graph g = BuildTrainingGraph(BuildZooModel("unet", zoo), {});
  const Graph split = SplitConcatenatedConvolutions(g);
  Validate(split);
  EXPECT_THAT(RecordedFissions(split), ElementsAre("convolutions of concatenations split: 4"));
  EXPECT_LT(ComputeStats(split).peak_bytes, ComputeStats(g).peak_bytes);
  for (const Op& op : split.ops()) {
    if (op.type == "aten.cat") {
      EXPECT_EQ(op.phase, Phase::kBackward) << op.name;  // only weight gradients
    }
  }
}

// After the rewrite every run of U-Net's step that tiles along H still
// tiles: the weight slices the rewrite adds are read whole by their
// convolutions, so they stay out of the runs. (They were tiled as if a
// kernel's rows were an image's, and the convolution then read the slice
// "before the parts that make it": every spatial candidate of U-Net was
// refused.)
TEST(ConcatConvolution, WeightSlicesStayOutOfSpatialRuns) {
  ZooOptions zoo;
  zoo.batch = 2;
  zoo.image = 64;
  const Graph split = SplitConcatenatedConvolutions(BuildTrainingGraph(BuildZooModel("unet", zoo), {}));
  const auto runs = SpatialRegions(split, 2);
  ASSERT_GE(runs.size(), 4u);
  for (const auto& run : runs) {
    for (OpId id : run) EXPECT_NE(split.op(id).type, "aten.slice") << split.op(id).name;
    Validate(ApplySpatialFission(split, {run, 2, 2}).graph);
  }
  // Asked by hand, such a run is refused in one line that names the slice.
  std::vector<OpId> with_slice;
  for (const Op& op : split.ops()) {
    if (op.name.starts_with("up1.conv.double_conv.0.convolution")) with_slice.push_back(op.id);
  }
  EXPECT_THAT(testing::ErrorOf([&] { ApplySpatialFission(split, {with_slice, 2, 2}); }),
              ::testing::HasSubstr("whole, which op 'up1.conv.double_conv.0.convolution.weight0'"));
}

}  // namespace
}  // namespace memfit
