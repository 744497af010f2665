// Spatial fission on hand-made graphs: the halo rows each tile reads, the
// padding at the true borders only, the input-gradient rows recomputed
// from the output-gradient rows that reach them, and the refusals.
// (Numbers: python/tests/test_fission.py runs tiled steps against the whole
// ones through PyTorch.)
#include "transform/spatial_fission.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "autodiff/training_graph.h"
#include "conv_attrs.h"
#include "ir/builder.h"
#include "ir/validate.h"
#include "models/zoo.h"
#include "test_util.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;
using testing::BatchNormTrainingAttrs;
using testing::ConvBackwardAttrs;

std::vector<const Op*> OfType(const Graph& g, std::string_view type) {
  std::vector<const Op*> ops;
  for (const Op& op : g.ops()) {
    if (op.type == type) ops.push_back(&op);
  }
  return ops;
}

std::vector<OpId> AllOps(const Graph& g) {
  std::vector<OpId> ids;
  for (const Op& op : g.ops()) ids.push_back(op.id);
  return ids;
}

// Every op of `g` tiled along H into `tiles`; the result validates.
FissionResult TileAlongH(const Graph& g, int tiles) {
  FissionResult r = ApplySpatialFission(g, {AllOps(g), 2, tiles});
  Validate(r.graph);
  return r;
}

int64_t Int(const Op& op, const char* name) { return std::get<int64_t>(op.attrs.at(name)); }
std::vector<int64_t> Ints(const Op& op, const char* name) { return std::get<std::vector<int64_t>>(op.attrs.at(name)); }

TensorId Conv(GraphBuilder& b, TensorId x, TensorId w, int64_t stride, int64_t pad, int64_t dilation = 1) {
  return b.Call("aten.convolution", {x, w},
                {{"bias", std::monostate{}},
                 {"stride", std::vector<int64_t>{stride, stride}},
                 {"padding", std::vector<int64_t>{pad, pad}},
                 {"dilation", std::vector<int64_t>{dilation, dilation}},
                 {"transposed", false},
                 {"output_padding", std::vector<int64_t>{0, 0}},
                 {"groups", int64_t{1}}});
}

// The gradients of one convolution: grad_y, x and the weight w (shapes
// given) into aten.convolution_backward(stride, pad, Cout, output_mask).
std::vector<TensorId> ConvBackward(GraphBuilder& b, const Shape& grad_y, const Shape& x, const Shape& w,
                                   int64_t stride, int64_t pad, std::vector<int64_t> mask) {
  const TensorId gy = b.Input("grad_y", grad_y);
  const TensorId in = b.Input("x", x);
  const TensorId weight = b.Parameter("w", w);
  return b.CallMulti("aten.convolution_backward", {gy, in, weight}, ConvBackwardAttrs(stride, pad, w[0], mask));
}

// x [1, 2, 8, 5] -> conv 3x3 stride 1 pad 1 -> relu -> y [1, 4, 8, 5], in
// two tiles of 4 rows. Output rows [0, 4) read input rows [-1, 5): row -1
// is padding (the image's top border), padded explicitly; rows [4, 8) read
// [3, 9): row 8 is the bottom border. The convolution itself runs with
// padding 0 along H (and keeps 1 along W).
TEST(SpatialFission, ReadsTheHaloAndPadsOnlyAtTheTrueBorders) {
  GraphBuilder b("conv");
  const TensorId x = b.Input("x", {1, 2, 8, 5});
  const TensorId w = b.Parameter("w", {4, 2, 3, 3});
  const TensorId y = b.Call("aten.relu", {Conv(b, x, w, 1, 1)});
  b.MarkOutput(y);
  const Graph& g = b.graph();
  const FissionResult r = TileAlongH(g, 2);
  EXPECT_EQ(r.record.dim_name, "H");
  EXPECT_EQ(r.record.dim_kind, "spatial");

  const auto slices = OfType(r.graph, "aten.slice");
  ASSERT_EQ(slices.size(), 2u);
  EXPECT_EQ(Int(*slices[0], "start"), 0);  // real rows [0, 5) of x for tile 0
  EXPECT_EQ(Int(*slices[0], "end"), 5);
  EXPECT_EQ(Int(*slices[1], "start"), 3);  // real rows [3, 8) for tile 1
  EXPECT_EQ(Int(*slices[1], "end"), 8);
  const auto pads = OfType(r.graph, "aten.constant_pad_nd");
  ASSERT_EQ(pads.size(), 2u);
  EXPECT_EQ(Ints(*pads[0], "pad"), (std::vector<int64_t>{0, 0, 1, 0}));  // one zero row on top
  EXPECT_EQ(Ints(*pads[1], "pad"), (std::vector<int64_t>{0, 0, 0, 1}));  // one below
  for (const Op* conv : OfType(r.graph, "aten.convolution")) {
    EXPECT_EQ(Ints(*conv, "padding"), (std::vector<int64_t>{0, 1}));
    EXPECT_EQ(r.graph.tensor(conv->outputs[0]).shape, (Shape{1, 4, 4, 5}));
  }
  // The tiles side by side make y, under its own name.
  const Tensor& out = r.graph.tensor(r.graph.outputs[0]);
  EXPECT_EQ(out.name, g.tensor(y).name);
  EXPECT_EQ(out.shape, g.tensor(y).shape);
  EXPECT_EQ(r.record.joined_outputs, 1);
}

// Stride 2, dilation 2, kernel 3, padding 2 over 11 rows: output extent
// (11 + 4 - 4 - 1) / 2 + 1 = 6. In three tiles the output rows are
// [0, 2), [2, 4), [4, 6); tile k reads rows [2a - 2, 2(b-1) - 2 + 4 + 1):
// [-2, 5), [2, 9), [6, 13) -> real [0, 5) + 2 zero rows, [2, 9), [6, 11) +
// 2 zero rows.
TEST(SpatialFission, HaloFollowsStrideDilationAndPadding) {
  GraphBuilder b("strided");
  const TensorId x = b.Input("x", {1, 1, 11, 4});
  const TensorId w = b.Parameter("w", {1, 1, 3, 3});
  const TensorId y = Conv(b, x, w, 2, 2, 2);
  b.MarkOutput(y);
  const Graph& g = b.graph();
  ASSERT_EQ(g.tensor(y).shape[2], 6);
  const FissionResult r = TileAlongH(g, 3);
  std::vector<std::pair<int64_t, int64_t>> rows;
  for (const Op* s : OfType(r.graph, "aten.slice")) rows.emplace_back(Int(*s, "start"), Int(*s, "end"));
  EXPECT_EQ(rows, (std::vector<std::pair<int64_t, int64_t>>{{0, 5}, {2, 9}, {6, 11}}));
  const auto pads = OfType(r.graph, "aten.constant_pad_nd");
  ASSERT_EQ(pads.size(), 2u);
  EXPECT_EQ(Ints(*pads[0], "pad"), (std::vector<int64_t>{0, 0, 2, 0}));
  EXPECT_EQ(Ints(*pads[1], "pad"), (std::vector<int64_t>{0, 0, 0, 2}));
}

// The backward of a 3x3 convolution over 8 rows, in two tiles: the
// input-gradient rows [0, 4) receive from output-gradient rows
// [ceil((0 + 1 - 2) / 1), floor((4 - 1 + 1) / 1) + 1) = [-1, 5) -> [0, 5),
// whose windows cover input rows [-1, 6): the tile's gradient is cut to
// [0, 4) (one row on top, two below). Weight gradients come from each
// tile's own output-gradient rows and are added up.
TEST(SpatialFission, RecomputesInputGradientRowsAndSumsWeightGradients) {
  GraphBuilder b("conv_backward");
  const auto grads = ConvBackward(b, {1, 4, 8, 5}, {1, 2, 8, 5}, {4, 2, 3, 3}, 1, 1, {1, 1, 1});
  const TensorId gx = b.Call("aten.relu", {grads[0]});
  b.MarkOutput(gx);
  b.MarkOutput(grads[1]);
  b.MarkOutput(grads[2]);
  const Graph& g = b.graph();
  const FissionResult r = TileAlongH(g, 2);
  const auto backs = OfType(r.graph, "aten.convolution_backward");
  ASSERT_EQ(backs.size(), 4u);  // per tile: the input gradient, the weight gradients
  EXPECT_EQ(Ints(*backs[0], "output_mask"), (std::vector<int64_t>{1, 0, 0}));
  EXPECT_EQ(r.graph.tensor(backs[0]->inputs[0]).shape, (Shape{1, 4, 5, 5}));  // grad rows [0, 5)
  EXPECT_EQ(r.graph.tensor(backs[0]->outputs[0]).shape, (Shape{1, 2, 7, 5}));  // input rows [-1, 6)
  EXPECT_EQ(Ints(*backs[1], "output_mask"), (std::vector<int64_t>{0, 1, 1}));
  EXPECT_EQ(r.graph.tensor(backs[1]->inputs[0]).shape, (Shape{1, 4, 4, 5}));  // its own rows [0, 4)
  // Tile 0's input gradient (rows [-1, 6)) cut to [0, 4): a view of rows 1..4.
  bool cut = false;
  for (const Op* s : OfType(r.graph, "aten.slice")) {
    cut |= s->inputs[0] == backs[0]->outputs[0] && Int(*s, "start") == 1 && Int(*s, "end") == 5;
  }
  EXPECT_TRUE(cut);
  // The input gradient alone reads only the input's shape.
  EXPECT_EQ(r.graph.op(*r.graph.tensor(backs[0]->inputs[1]).producer).type, "aten.empty");
  EXPECT_EQ(r.record.summed_outputs, 2);
  for (size_t i = 0; i < g.outputs.size(); ++i) {
    EXPECT_EQ(r.graph.tensor(r.graph.outputs[i]).name, g.tensor(g.outputs[i]).name);
    EXPECT_EQ(r.graph.tensor(r.graph.outputs[i]).shape, g.tensor(g.outputs[i]).shape);
  }
}

// A 1x1 convolution with stride 2 over 7 rows reaches only the even input
// rows. In 7 tiles of one row each, the tiles of rows 1, 3 and 5 get zeros
// (aten.zeros): no window reaches them.
TEST(SpatialFission, RowsNoWindowReachesGetZeroGradient) {
  GraphBuilder b("strided_backward");
  const auto grads = ConvBackward(b, {1, 2, 4, 2}, {1, 2, 7, 3}, {2, 2, 1, 1}, 2, 0, {1, 0, 0});
  b.MarkOutput(b.Call("aten.relu", {grads[0]}));
  const Graph& g = b.graph();
  const FissionResult r = TileAlongH(g, 7);  // one row per tile
  // Odd rows 1, 3, 5: no output row's window (1 row, stride 2) reaches them.
  EXPECT_EQ(OfType(r.graph, "aten.zeros").size(), 3u);
  EXPECT_EQ(OfType(r.graph, "aten.convolution_backward").size(), 4u);
}

TEST(SpatialFission, ShiftsMaxPoolIndicesByTheTilesFirstRow) {
  GraphBuilder b("pool");
  const TensorId x = b.Input("x", {1, 2, 8, 6});
  const auto pooled = b.CallMulti("aten.max_pool2d_with_indices", {x},
                                  {{"kernel_size", std::vector<int64_t>{2, 2}},
                                   {"stride", std::vector<int64_t>{2, 2}},
                                   {"padding", std::vector<int64_t>{0, 0}},
                                   {"dilation", std::vector<int64_t>{1, 1}},
                                   {"ceil_mode", false}});
  b.MarkOutput(pooled[0]);
  b.MarkOutput(pooled[1]);
  const Graph& g = b.graph();
  const FissionResult r = TileAlongH(g, 2);
  // Tile 1 pools input rows [4, 8): its flat indices h * 6 + w are 4 * 6 = 24 short.
  const auto adds = OfType(r.graph, "aten.add");
  ASSERT_EQ(adds.size(), 1u);
  EXPECT_EQ(Int(*adds[0], "other"), 24);
  // Along W the flat indices would not shift by a constant.
  const auto why = WhyNotTileable(g, *g.tensor(pooled[0]).producer, 3);
  ASSERT_TRUE(why);
  EXPECT_THAT(*why, HasSubstr("only along H"));
}

TEST(SpatialFission, RefusesWhatATileCannotComputeAlone) {
  GraphBuilder b("refusals");
  const TensorId x = b.Input("x", {2, 3, 6, 6});
  const TensorId w = b.Parameter("w", {3});
  const TensorId bias = b.Parameter("b", {3});
  const TensorId bn = b.CallMulti("aten.native_batch_norm", {x, w, bias}, BatchNormTrainingAttrs())[0];
  const TensorId sm = b.Call("aten._softmax", {x}, {{"dim", int64_t{2}}, {"half_to_float", false}});
  const TensorId rows = b.Call("aten._softmax", {x}, {{"dim", int64_t{1}}, {"half_to_float", false}});
  const TensorId pooled = b.Call("aten._adaptive_avg_pool2d", {x}, {{"output_size", std::vector<int64_t>{1, 1}}});
  b.MarkOutput(bn);
  b.MarkOutput(sm);
  b.MarkOutput(rows);
  b.MarkOutput(pooled);
  const Graph& g = b.graph();
  auto why = [&](TensorId t, int axis) { return WhyNotTileable(g, *g.tensor(t).producer, axis); };
  // Batch statistics reduce H and W.
  ASSERT_TRUE(why(bn, 2));
  EXPECT_THAT(*why(bn, 2), HasSubstr("axis"));
  // A softmax along H needs every row; along the channels it tiles H.
  EXPECT_TRUE(why(sm, 2));
  EXPECT_FALSE(why(rows, 2));
  EXPECT_TRUE(why(pooled, 2));
  EXPECT_THAT(testing::ErrorOf([&] { ApplySpatialFission(g, {{*g.tensor(sm).producer}, 2, 2}); }),
              HasSubstr("_softmax"));
  EXPECT_THAT(testing::ErrorOf([&] { ApplySpatialFission(g, {{*g.tensor(rows).producer}, 1, 2}); }),
              HasSubstr("axis 1"));
}

// Every run of VGG-16's training step that tiles along H makes a valid
// graph with the step's results under their names.
TEST(SpatialFission, TilesEveryRunOfVgg16) {
  ZooOptions zoo;
  zoo.batch = 1;
  zoo.image = 64;
  const Graph g = BuildTrainingGraph(BuildZooModel("vgg16", zoo), {});
  const auto regions = SpatialRegions(g, 2);
  ASSERT_GE(regions.size(), 2u);  // the features' forward and their backward
  EXPECT_GE(regions[0].size(), 30u);
  for (const auto& region : regions) {
    for (int n : {2, 3, 8}) {
      const FissionResult r = ApplySpatialFission(g, {region, 2, n});
      Validate(r.graph);
      ASSERT_EQ(r.graph.outputs.size(), g.outputs.size());
      for (size_t i = 0; i < g.outputs.size(); ++i) {
        EXPECT_EQ(r.graph.tensor(r.graph.outputs[i]).name, g.tensor(g.outputs[i]).name);
      }
      EXPECT_THAT(r.graph.metadata.at("fission.0"), HasSubstr("H (spatial)"));
    }
  }
}

}  // namespace
}  // namespace memfit
