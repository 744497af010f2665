// Graph-level dimensions: hand-made graphs with their groups written out.
#include "analysis/dims.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "conv_attrs.h"
#include "ir/builder.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

namespace memfit {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

// The dimension of one axis (-1: the axis is linked to nothing).
int Dim(const DimensionGraph& d, TensorId t, int axis) { return d.dim_of.at(t.index()).at(axis); }

using testing::ConvAttrs;

// y = relu(x @ w^T), loss = sum(y): the batch runs from x to y; the hidden
// dimension comes from w's rows; the contraction is reduced at mm.
TEST(Dimensions, LinearLayerGroupsBatchAndHidden) {
  GraphBuilder b("linear");
  const TensorId x = b.Input("x", {8, 32});
  const TensorId w = b.Parameter("w", {16, 32});
  const TensorId wt = b.Call("aten.t", {w});
  const TensorId h = b.Call("aten.mm", {x, wt});
  const TensorId y = b.Call("aten.relu", {h});
  b.MarkOutput(y);
  const DimensionGraph d = ComputeDimensions(b.graph());

  const int batch = Dim(d, x, 0);
  ASSERT_GE(batch, 0);
  EXPECT_EQ(Dim(d, h, 0), batch);
  EXPECT_EQ(Dim(d, y, 0), batch);
  EXPECT_EQ(d.dims[batch].name, "x[0]");
  EXPECT_EQ(d.dims[batch].kind, "batch");
  EXPECT_EQ(d.dims[batch].length, 8);
  EXPECT_THAT(d.dims[batch].ops, ElementsAre(OpId(1), OpId(2)));  // mm, relu

  const int hidden = Dim(d, w, 0);
  ASSERT_GE(hidden, 0);
  EXPECT_NE(hidden, batch);
  EXPECT_EQ(Dim(d, wt, 1), hidden);
  EXPECT_EQ(Dim(d, h, 1), hidden);
  EXPECT_EQ(Dim(d, y, 1), hidden);
  EXPECT_EQ(d.dims[hidden].name, "w[0]");  // named by the parameter
  EXPECT_EQ(d.dims[hidden].length, 16);

  // The contraction: w's columns run through the transpose and are summed
  // at mm (x's own columns are linked to nothing: the registry ties
  // outputs to inputs, not one input to another).
  const int k = Dim(d, w, 1);
  ASSERT_GE(k, 0);
  EXPECT_EQ(Dim(d, wt, 0), k);
  ASSERT_EQ(d.dims[k].reduced.size(), 1u);
  EXPECT_EQ(d.dims[k].reduced[0].op, OpId(1));
  EXPECT_EQ(Dim(d, x, 1), -1);
  EXPECT_TRUE(d.barriers.empty());
  EXPECT_TRUE(d.refused.empty());
  // Longest reach first: the hidden dimension spans four axes, the batch three.
  EXPECT_EQ(d.dims.front().id, hidden);
  EXPECT_EQ(d.dims[hidden].members.size(), 4u);
  EXPECT_EQ(d.dims[batch].members.size(), 3u);
}

// mm(x, x^T) would make the output's rows and columns one dimension (both
// are x's rows): the link is refused, and the two axes stay apart.
TEST(Dimensions, NeverGroupsTwoAxesOfOneTensor) {
  GraphBuilder b("gram");
  const TensorId x = b.Input("x", {6, 6});
  const TensorId xt = b.Call("aten.t", {x});
  const TensorId g = b.Call("aten.mm", {x, xt});
  b.MarkOutput(g);
  const DimensionGraph d = ComputeDimensions(b.graph());
  EXPECT_NE(Dim(d, g, 0), Dim(d, g, 1));
  ASSERT_EQ(d.refused.size(), 1u);
  EXPECT_EQ(d.refused[0].op, OpId(1));
  for (const Dimension& dim : d.dims) {
    for (size_t i = 1; i < dim.members.size(); ++i) EXPECT_NE(dim.members[i].tensor, dim.members[i - 1].tensor);
  }
}

// A softmax never links its own axis: splitting along it would change every
// result. The other axes run through.
TEST(Dimensions, SoftmaxAxisIsNotLinked) {
  GraphBuilder b("softmax");
  const TensorId x = b.Input("x", {2, 4, 8});
  const TensorId s = b.Call("aten._softmax", {x}, {{"dim", int64_t{-1}}, {"half_to_float", false}});
  b.MarkOutput(s);
  const DimensionGraph d = ComputeDimensions(b.graph());
  EXPECT_EQ(Dim(d, s, 0), Dim(d, x, 0));
  EXPECT_EQ(Dim(d, s, 1), Dim(d, x, 1));
  EXPECT_EQ(Dim(d, s, 2), -1);
  EXPECT_EQ(Dim(d, x, 2), -1);
}

// A boolean mask selects a count only the graph declares (x[mask] of a
// captured step): the kept axis runs through, the selected one is new, and
// the dimension graph reads the count from the declared output (it failed
// with "data-dependent" before: `memfit dims`, and optimize's fission).
TEST(Dimensions, BooleanMaskIndexTakesItsCountFromTheGraph) {
  GraphBuilder b("masked");
  const TensorId x = b.Input("x", {8, 5});
  const TensorId mask = b.Input("mask", {8}, DType::kBool);
  const TensorId picked = b.CallOpaque("aten.index.Tensor", {x, mask}, {{{3, 5}, DType::kF32}})[0];
  b.MarkOutput(picked);
  const DimensionGraph d = ComputeDimensions(b.graph());
  EXPECT_EQ(Dim(d, picked, 1), Dim(d, x, 1));
  EXPECT_NE(Dim(d, x, 1), -1);
  EXPECT_EQ(Dim(d, picked, 0), -1);
  EXPECT_EQ(ComputeOpCost(b.graph(), b.graph().ops().back()).bytes_written, 3 * 5 * 4);
}

// A convolution passes the batch through and takes its output channels from
// the weight; BatchNorm's statistics reduce the batch (fission along it must
// accumulate them); an opaque op stops everything.
TEST(Dimensions, ConvolutionBatchNormAndBarriers) {
  GraphBuilder b("conv");
  const TensorId x = b.Input("images", {4, 3, 16, 16});
  const TensorId w = b.Parameter("w", {8, 3, 3, 3});
  const TensorId y = b.Call("aten.convolution", {x, w}, ConvAttrs(/*stride=*/1, /*padding=*/1, /*transposed=*/false));
  const TensorId gamma = b.Parameter("gamma", {8});
  const TensorId beta = b.Parameter("beta", {8});
  const std::vector<TensorId> bn = b.CallMulti("aten.native_batch_norm", {y, gamma, beta},
                                               {{"running_mean", std::monostate{}},
                                                {"running_var", std::monostate{}},
                                                {"training", true},
                                                {"momentum", 0.1},
                                                {"eps", 1e-5}});
  const std::vector<TensorId> opaque = b.CallOpaque("mylib.mystery", {bn[0]}, {{{4, 8}, DType::kF32}});
  b.MarkOutput(opaque[0]);
  const DimensionGraph d = ComputeDimensions(b.graph());

  const int batch = Dim(d, x, 0);
  EXPECT_EQ(Dim(d, y, 0), batch);
  EXPECT_EQ(Dim(d, bn[0], 0), batch);
  EXPECT_EQ(d.dims[batch].kind, "batch");
  EXPECT_EQ(d.dims[Dim(d, w, 0)].name, "w[0]");
  EXPECT_EQ(Dim(d, y, 1), Dim(d, w, 0));
  EXPECT_EQ(Dim(d, bn[0], 1), Dim(d, w, 0));
  // BatchNorm's affine parameters are per channel: a split of the channels
  // slices them with the activations.
  EXPECT_EQ(Dim(d, gamma, 0), Dim(d, w, 0));
  // BatchNorm reduces the batch; the convolution reduces the input channels.
  const auto reduces = [&](int dim, OpId op) {
    return std::any_of(d.dims[dim].reduced.begin(), d.dims[dim].reduced.end(),
                       [&](const ReductionSite& r) { return r.op == op; });
  };
  EXPECT_TRUE(reduces(batch, OpId(1)));
  // The opaque op's output is linked to nothing.
  EXPECT_EQ(Dim(d, opaque[0], 0), -1);
  EXPECT_THAT(d.barriers, ElementsAre(OpId(2)));
  EXPECT_NE(FormatDimensions(b.graph(), d).find("barriers: 1 ops"), std::string::npos);
}

// A transposed convolution's weight is [Cin, Cout/groups, kh, kw]: its
// output channels come from the weight's dim 1.
TEST(Dimensions, TransposedConvolutionTakesChannelsFromWeightDim1) {
  GraphBuilder b("up");
  const TensorId x = b.Input("x", {2, 8, 4, 4});
  const TensorId w = b.Parameter("w", {8, 5, 2, 2});
  const TensorId y = b.Call("aten.convolution", {x, w}, ConvAttrs(/*stride=*/2, /*padding=*/0, /*transposed=*/true));
  b.MarkOutput(y);
  const DimensionGraph d = ComputeDimensions(b.graph());
  EXPECT_EQ(Dim(d, y, 1), Dim(d, w, 1));
  EXPECT_EQ(d.dims[Dim(d, y, 1)].length, 5);
  EXPECT_TRUE(d.refused.empty());
}

// A video model flattens [B, T, C] to [B*T, C] at once: the input's batch
// axis is alone in its group, yet fission carries it through the merge, so it
// is a dimension, the batch. The reshape's result is a view of the input
// (the capture gives it the input's role) and no batch of its own.
TEST(Dimensions, AnInputAxisMergedAtOnceIsTheBatch) {
  GraphBuilder b("frames");
  const TensorId x = b.Input("x", {4, 3, 5});
  const TensorId w = b.Parameter("w", {5, 2});
  const TensorId flat = b.Call("aten.reshape", {x}, {{"shape", Shape{12, 5}}});
  const TensorId y = b.Call("aten.mm", {flat, w});
  b.MarkOutput(y);
  const DimensionGraph d = ComputeDimensions(b.graph());
  const int batch = Dim(d, x, 0);
  ASSERT_GE(batch, 0);
  EXPECT_EQ(d.dims[batch].kind, "batch");
  EXPECT_EQ(d.dims[batch].length, 4);
  EXPECT_THAT(d.dims[batch].members, ElementsAre(TensorAxis{x, 0}));
  EXPECT_EQ(Dim(d, x, 1), -1);  // T, the merge's inner factor: no dimension
  EXPECT_EQ(d.dims[Dim(d, flat, 0)].kind, "");
}

// SimCLR's two views, torch.cat([x1, x2]): the concatenation's axis holds
// both batches (its extent is their sum), so no piece's group holds it; it
// is a batch too. A concatenation along another axis is not.
TEST(Dimensions, AConcatenationOfBatchesIsABatch) {
  GraphBuilder b("views");
  const TensorId x1 = b.Input("x1", {4, 5});
  const TensorId x2 = b.Input("x2", {4, 5});
  const TensorId w = b.Parameter("w", {5, 3});
  const TensorId both = b.Call("aten.cat", {x1, x2}, {{"dim", int64_t{0}}});
  const TensorId wide = b.Call("aten.cat", {x1, x2}, {{"dim", int64_t{-1}}});
  b.MarkOutput(b.Call("aten.mm", {both, w}));
  b.MarkOutput(b.Call("aten.relu", {wide}));
  const DimensionGraph d = ComputeDimensions(b.graph());
  const int batch = Dim(d, both, 0);
  ASSERT_GE(batch, 0);
  EXPECT_EQ(d.dims[batch].kind, "batch");
  EXPECT_EQ(d.dims[batch].length, 8);
  ASSERT_GE(Dim(d, wide, 1), 0);
  EXPECT_EQ(d.dims[Dim(d, wide, 1)].kind, "");
}

// `memfit dims` on a zoo training step: the batch of the images runs through
// the convolutions and is reduced where BatchNorm takes its statistics.
TEST(DimensionsCli, PrintsTheBatchOfAResNet) {
  testing::TempDir dir;
  const std::string graph = testing::ZooGraph(dir, "g.json", "resnet-18 --batch 2 --image 32 --train");
  const testing::CliResult r = testing::RunCli("dims --json " + graph);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  const auto batch = std::find_if(j["dims"].begin(), j["dims"].end(), [](const nlohmann::json& d) {
    return d["name"] == "images[0]";
  });
  ASSERT_NE(batch, j["dims"].end());
  EXPECT_EQ((*batch)["kind"], "batch");
  EXPECT_EQ((*batch)["length"], 2);
  EXPECT_GT((*batch)["ops"].size(), 100u);
  EXPECT_TRUE(std::any_of((*batch)["reduced"].begin(), (*batch)["reduced"].end(), [](const nlohmann::json& r) {
    return r["type"] == "aten.native_batch_norm";
  }));
  const testing::CliResult bad = testing::RunCli("dims " + dir.File("missing.json"));
  EXPECT_EQ(bad.exit_code, 2);
}

}  // namespace
}  // namespace memfit
