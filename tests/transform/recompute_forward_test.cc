// Recomputing a backward run's forward inputs next to it: what is copied,
// what the run reads afterwards, and each rule that keeps an op from being
// copied (random draws, written state, a source overwritten before the run).
#include "transform/recompute_forward.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "autodiff/training_graph.h"
#include "conv_attrs.h"
#include "ir/builder.h"
#include "ir/validate.h"
#include "test_util.h"
#include "analysis/stats.h"
#include "models/zoo.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

using testing::OpNamed;
using testing::ProducerName;

// x [6, 8] -> mm(x, w^T) = h -> relu = r -> sum (the loss); a "backward" run
// reads r and h: mul(r, h) -> relu.
struct Chain {
  GraphBuilder b{"chain"};
  TensorId x, h, r;
  std::vector<OpId> run;
  Chain() {
    x = b.Input("x", {6, 8});
    const TensorId w = b.Parameter("w", {8, 8});
    const TensorId wt = b.Call("aten.t", {w}, {}, "wt");
    h = b.Call("aten.mm", {x, wt}, {}, "mm");
    r = b.Call("aten.relu", {h}, {}, "relu");
    b.MarkOutput(b.Call("aten.sum", {r}, {}, "loss"));
    b.set_phase(Phase::kBackward);
    const TensorId d1 = b.Call("aten.mul.Tensor", {r, h}, {}, "bwd.mul");
    const TensorId d2 = b.Call("aten.relu", {d1}, {}, "bwd.relu");
    b.MarkOutput(d2);
    run = {*b.tensor(d1).producer, *b.tensor(d2).producer};
  }
};

TEST(RecomputeForward, CopiesWhatTheRunReadsRightBeforeIt) {
  Chain c;
  const Graph& g = c.b.graph();
  const auto r = RecomputeForwardOf(g, c.run);
  ASSERT_TRUE(r);
  Validate(r->graph);
  // mm and relu again; the weight's transpose is a view of a source and
  // holds no memory of its own: read as it is.
  EXPECT_EQ(ToString(r->record), "2 forward ops (mm .. relu) again before bwd.mul");
  ASSERT_EQ(r->graph.num_ops(), g.num_ops() + 2);
  EXPECT_EQ(r->graph.ops()[3].name, "loss");
  EXPECT_EQ(r->graph.ops()[4].name, "mm.recompute");
  EXPECT_EQ(r->graph.ops()[5].name, "relu.recompute");
  EXPECT_EQ(r->graph.ops()[4].phase, Phase::kBackward);
  EXPECT_EQ(ProducerName(r->graph, r->graph.ops()[4].inputs[1]), "wt");
  // The run reads the copies; the forward's own results end in the forward.
  const Op& mul = OpNamed(r->graph, "bwd.mul");
  EXPECT_EQ(ProducerName(r->graph, mul.inputs[0]), "relu.recompute");
  EXPECT_EQ(ProducerName(r->graph, mul.inputs[1]), "mm.recompute");
  EXPECT_EQ(ProducerName(r->graph, OpNamed(r->graph, "loss").inputs[0]), "relu");
  EXPECT_EQ(r->graph.outputs.size(), g.outputs.size());
  EXPECT_THAT(RecordedFissions(r->graph), ::testing::ElementsAre(StartsWith("recompute: 2 forward ops")));
}

TEST(RecomputeForward, LeavesRandomDrawsAndWrittenStateAndWhatFollowsThem) {
  GraphBuilder b{"stateful"};
  const TensorId x = b.Input("x", {6, 4, 3, 3});
  const auto drop = b.CallMulti("aten.native_dropout", {x}, {{"p", 0.5}, {"train", true}}, "drop");
  const TensorId r1 = b.Call("aten.relu", {drop[0]}, {}, "after_drop");
  const TensorId w = b.Parameter("bn.weight", {4});
  const TensorId bias = b.Parameter("bn.bias", {4});
  const TensorId mean = b.Buffer("bn.running_mean", {4});
  const TensorId var = b.Buffer("bn.running_var", {4});
  Attrs bn = testing::BatchNormTrainingAttrs();
  bn.erase("running_mean");
  bn.erase("running_var");
  const TensorId n = b.CallMulti("aten.native_batch_norm", {x, w, bias, mean, var}, bn, "bn")[0];
  const TensorId r2 = b.Call("aten.relu", {n}, {}, "after_bn");
  b.MarkOutput(b.Call("aten.sum", {b.Call("aten.add.Tensor", {r1, r2})}));
  b.set_phase(Phase::kBackward);
  const TensorId d = b.Call("aten.mul.Tensor", {r1, r2}, {}, "bwd.mul");
  b.MarkOutput(d);
  EXPECT_FALSE(RecomputeForwardOf(b.graph(), {*b.tensor(d).producer}));
}

TEST(RecomputeForward, DoesNotReadASourceOverwrittenBeforeTheRun) {
  GraphBuilder b{"overwritten"};
  const TensorId x = b.Input("x", {6, 8});
  const TensorId s = b.Buffer("scale", {6, 8});
  const TensorId a = b.Call("aten.mul.Tensor", {x, s}, {}, "scaled");
  const TensorId r = b.Call("aten.relu", {x}, {}, "relu");
  b.Call("aten.add_.Tensor", {s, x}, {}, "update");  // the buffer changes after `scaled` read it
  b.MarkOutput(b.Call("aten.sum", {b.Call("aten.add.Tensor", {a, r})}));
  b.set_phase(Phase::kBackward);
  const TensorId d = b.Call("aten.mul.Tensor", {a, r}, {}, "bwd.mul");
  b.MarkOutput(d);
  const auto result = RecomputeForwardOf(b.graph(), {*b.tensor(d).producer});
  ASSERT_TRUE(result);
  EXPECT_EQ(ToString(result->record), "1 forward ops (relu .. relu) again before bwd.mul");
  EXPECT_EQ(ProducerName(result->graph, OpNamed(result->graph, "bwd.mul").inputs[0]), "scaled");
}

// A mask made by zeros_like and filled through a view of it (swin's
// attention mask): the run reads the mask's tensor, whose storage the fill
// changed; the copy is the mask as the run finds it, fill included.
TEST(RecomputeForward, CopiesTheWritesIntoWhatItCopies) {
  GraphBuilder b{"mask"};
  const TensorId x = b.Input("x", {6, 8});
  const TensorId m = b.Call("aten.zeros_like", {x}, {}, "mask");
  const TensorId rows = b.Call("aten.slice.Tensor", {m}, {{"dim", int64_t{0}}, {"start", int64_t{0}}, {"end", int64_t{3}}, {"step", int64_t{1}}}, "rows");
  b.Call("aten.fill_.Scalar", {rows}, {{"value", 1.0}}, "fill");
  b.MarkOutput(b.Call("aten.sum", {b.Call("aten.mul.Tensor", {x, m})}));
  b.set_phase(Phase::kBackward);
  const TensorId d = b.Call("aten.mul.Tensor", {m, x}, {}, "bwd.mul");
  b.MarkOutput(d);
  const auto r = RecomputeForwardOf(b.graph(), {*b.tensor(d).producer});
  ASSERT_TRUE(r);
  Validate(r->graph);
  EXPECT_EQ(ToString(r->record), "3 forward ops (mask .. fill) again before bwd.mul");
  EXPECT_EQ(ProducerName(r->graph, OpNamed(r->graph, "bwd.mul").inputs[0]), "mask.recompute");
  EXPECT_EQ(ProducerName(r->graph, OpNamed(r->graph, "fill.recompute").inputs[0]), "rows.recompute");
}

// VGG-U-Net's encoder backward (its longest run along the batch) with the
// BatchNorm-free encoder forward copied before it splits as one run.
TEST(RecomputeForward, SplitsTheCopiesWithTheRun) {
  ZooOptions zoo;
  zoo.batch = 4;
  zoo.image = 128;  // activations outweigh the weights, as at its own sizes
  const Graph g = BuildTrainingGraph(BuildZooModel("vgg-unet", zoo));
  const DimensionGraph dims = ComputeDimensions(g);
  int batch = -1;
  for (const Dimension& d : dims.dims) {
    if (d.kind == "batch" && batch < 0) batch = d.id;
  }
  ASSERT_GE(batch, 0);
  const auto runs = FissionRegions(g, dims, batch);
  ASSERT_FALSE(runs.empty());
  const auto copied = RecomputeBefore(g, dims, batch, runs.front());
  ASSERT_TRUE(copied);
  const FissionResult split = copied->Split(3);
  Validate(split.graph);
  EXPECT_EQ(split.record.parts, 3);
  EXPECT_THAT(split.record.first_op, HasSubstr(".recompute"));
  EXPECT_THAT(split.record.last_op, StartsWith("bwd.block1_conv1"));
  // Recorded in order: the copies, then the split.
  const auto recorded = RecordedFissions(split.graph);
  ASSERT_EQ(recorded.size(), 2u);
  EXPECT_THAT(recorded[0], StartsWith("recompute: "));
  EXPECT_EQ(recorded[1], ToString(split.record));
  // The encoder's saved activations now live in the forward only: the
  // program-order peak falls.
  EXPECT_LT(ComputeStats(split.graph).peak_bytes, ComputeStats(g).peak_bytes);
}

}  // namespace
}  // namespace memfit
