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

// Why the op that makes `t` cannot run on tiles along `axis`; empty when it can.
std::string WhyNot(const Graph& g, TensorId t, int axis = 2) {
  return WhyNotTileable(g, *g.tensor(t).producer, axis).value_or("");
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

// More tiles than rows is refused by name, before rows are planned for
// each of them (a --parts of a million took seconds and memory).
TEST(SpatialFission, RefusesMoreTilesThanRows) {
  GraphBuilder b("conv");
  const TensorId x = b.Input("x", {1, 2, 8, 5});
  const TensorId w = b.Parameter("w", {4, 2, 3, 3});
  b.MarkOutput(b.Call("aten.relu", {Conv(b, x, w, 1, 1)}));
  const Graph& g = b.graph();
  EXPECT_EQ(TileAlongH(g, 8).record.parts, 8);
  EXPECT_THAT(testing::ErrorOf([&] { TileAlongH(g, 9); }), HasSubstr("9 tiles of 8 rows: need 2 to 8"));
  EXPECT_THAT(testing::ErrorOf([&] { TileAlongH(g, 1'000'000'000); }), HasSubstr("need 2 to 8"));
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
  // Per tile: the input gradient, a transposed convolution of the gradient
  // rows with the same weight (no stand-in for the input: nothing the size
  // of an input tile is allocated), and the weight gradients.
  const auto inputs = OfType(r.graph, "aten.convolution");
  const auto backs = OfType(r.graph, "aten.convolution_backward");
  ASSERT_EQ(inputs.size(), 2u);
  ASSERT_EQ(backs.size(), 2u);
  EXPECT_TRUE(std::get<bool>(inputs[0]->attrs.at("transposed")));
  EXPECT_EQ(Ints(*inputs[0], "padding"), (std::vector<int64_t>{0, 1}));  // none along H, W's own
  EXPECT_EQ(r.graph.tensor(inputs[0]->inputs[0]).shape, (Shape{1, 4, 5, 5}));   // grad rows [0, 5)
  EXPECT_EQ(r.graph.tensor(inputs[0]->outputs[0]).shape, (Shape{1, 2, 7, 5}));  // input rows [-1, 6)
  EXPECT_TRUE(OfType(r.graph, "aten.empty").empty());
  EXPECT_EQ(Ints(*backs[0], "output_mask"), (std::vector<int64_t>{0, 1, 1}));
  EXPECT_EQ(r.graph.tensor(backs[0]->inputs[0]).shape, (Shape{1, 4, 4, 5}));  // its own rows [0, 4)
  // Tile 0's input gradient (rows [-1, 6)) cut to [0, 4): a view of rows 1..4.
  bool cut = false;
  for (const Op* s : OfType(r.graph, "aten.slice")) {
    cut |= s->inputs[0] == inputs[0]->outputs[0] && Int(*s, "start") == 1 && Int(*s, "end") == 5;
  }
  EXPECT_TRUE(cut);
  EXPECT_EQ(r.record.summed_outputs, 2);
  for (size_t i = 0; i < g.outputs.size(); ++i) {
    EXPECT_EQ(r.graph.tensor(r.graph.outputs[i]).name, g.tensor(g.outputs[i]).name);
    EXPECT_EQ(r.graph.tensor(r.graph.outputs[i]).shape, g.tensor(g.outputs[i]).shape);
  }
}

// A 1x1 convolution with stride 2 over 7 rows reaches only the even input
// rows. In 7 tiles of one row each, the tiles of rows 1, 3 and 5 get zeros
// (aten.zeros): no window reaches them. Its 4 columns make 2, and the last
// column no window reaches either: the transposed convolutions that make
// the input gradient add it as output_padding.
TEST(SpatialFission, RowsNoWindowReachesGetZeroGradient) {
  GraphBuilder b("strided_backward");
  const auto grads = ConvBackward(b, {1, 2, 4, 2}, {1, 2, 7, 4}, {2, 2, 1, 1}, 2, 0, {1, 0, 0});
  b.MarkOutput(b.Call("aten.relu", {grads[0]}));
  const Graph& g = b.graph();
  const FissionResult r = TileAlongH(g, 7);  // one row per tile
  // Odd rows 1, 3, 5: no output row's window (1 row, stride 2) reaches them.
  EXPECT_EQ(OfType(r.graph, "aten.zeros").size(), 3u);
  const auto inputs = OfType(r.graph, "aten.convolution");
  ASSERT_EQ(inputs.size(), 4u);
  for (const Op* op : inputs) {
    EXPECT_EQ(Ints(*op, "output_padding"), (std::vector<int64_t>{0, 1}));
    EXPECT_EQ(r.graph.tensor(op->outputs[0]).shape, (Shape{1, 2, 1, 4}));
  }
  EXPECT_TRUE(OfType(r.graph, "aten.convolution_backward").empty());
}

TEST(SpatialFission, RenumbersMaxPoolIndicesIntoTheWholeInput) {
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
  // Along W (6 columns, 3 pooled: tiles own [0, 1) and [1, 3)), tile 0
  // pools columns [0, 2), tile 1 columns [2, 6): a tile of width Wt from
  // column c renumbers h * Wt + w as h * 6 + w + c, i.e. adds
  // floor(index / Wt) * (6 - Wt) + c.
  const FissionResult cols = ApplySpatialFission(g, {AllOps(g), 3, 2});
  Validate(cols.graph);
  std::vector<int64_t> widths, skips, shifts;
  for (const Op* op : OfType(cols.graph, "aten.div")) widths.push_back(Int(*op, "other"));
  for (const Op* op : OfType(cols.graph, "aten.mul")) skips.push_back(Int(*op, "other"));
  for (const Op* op : OfType(cols.graph, "aten.add")) {
    if (op->overload == "Scalar") shifts.push_back(Int(*op, "other"));
  }
  EXPECT_EQ(widths, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(skips, (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(shifts, (std::vector<int64_t>{2}));  // tile 0 starts at column 0
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
  // Batch statistics reduce H and W.
  EXPECT_THAT(WhyNot(g, bn), HasSubstr("axis"));
  // A softmax along H needs every row; along the channels it tiles H.
  EXPECT_NE(WhyNot(g, sm), "");
  EXPECT_EQ(WhyNot(g, rows), "");
  EXPECT_NE(WhyNot(g, pooled), "");
  EXPECT_THAT(testing::ErrorOf([&] { ApplySpatialFission(g, {{*g.tensor(sm).producer}, 2, 2}); }),
              HasSubstr("_softmax"));
  EXPECT_THAT(testing::ErrorOf([&] { ApplySpatialFission(g, {{*g.tensor(rows).producer}, 1, 2}); }),
              HasSubstr("axis 1"));
}

std::vector<int64_t> RowsAlongH(const Graph& g, const std::vector<const Op*>& ops, size_t input = 0) {
  std::vector<int64_t> rows;
  for (const Op* op : ops) rows.push_back(g.tensor(op->inputs.at(input)).shape[2]);
  return rows;
}

// Nearest upsampling x2 of 5 rows into 10, in three tiles of the output:
// [0, 3), [3, 6), [6, 10). Output row r reads input row floor(r / 2):
//
//   tile 0: rows [0, 3) read [0, 2), which make [0, 4): cut to [0, 3)
//   tile 1: rows [3, 6) read [1, 3), which make [2, 6): cut to [3, 6)
//   tile 2: rows [6, 10) read [3, 5), which make [6, 10)
//
// Backward, input-gradient rows [a, b) sum output-gradient rows [2a, 2b)
// (output_size and input_size follow the tile).
TEST(SpatialFission, UpsamplingReadsTheRowsItsTileRepeats) {
  GraphBuilder b("upsample");
  const TensorId x = b.Input("x", {1, 2, 5, 4});
  const Attrs up = {{"output_size", std::vector<int64_t>{10, 8}}, {"scales_h", 2.0}, {"scales_w", 2.0}};
  const TensorId y = b.Call("aten.upsample_nearest2d", {x}, up);
  b.MarkOutput(b.Call("aten.relu", {y}));
  Attrs back = up;
  back["input_size"] = std::vector<int64_t>{1, 2, 5, 4};
  const TensorId gy = b.Input("grad_y", {1, 2, 10, 8});
  b.MarkOutput(b.Call("aten.upsample_nearest2d_backward", {gy}, back));
  const Graph& g = b.graph();

  const FissionResult r = TileAlongH(g, 3);
  const auto ups = OfType(r.graph, "aten.upsample_nearest2d");
  ASSERT_EQ(ups.size(), 3u);
  EXPECT_EQ(RowsAlongH(r.graph, ups), (std::vector<int64_t>{2, 2, 2}));
  for (const Op* op : ups) EXPECT_EQ(Ints(*op, "output_size"), (std::vector<int64_t>{4, 8}));
  // Tile 0 and 1 make a row more than they own and cut it off (a view).
  std::vector<std::pair<int64_t, int64_t>> cuts;
  for (const Op* s : OfType(r.graph, "aten.slice")) {
    if (s->name.find("upsample_nearest2d.tile") != std::string::npos) cuts.emplace_back(Int(*s, "start"), Int(*s, "end"));
  }
  EXPECT_EQ(cuts, (std::vector<std::pair<int64_t, int64_t>>{{0, 3}, {1, 4}}));
  // The input-gradient tiles own [0, 1), [1, 3), [3, 5) of its 5 rows (the
  // last two a row longer) and sum gradient rows [0, 2), [2, 6), [6, 10).
  const auto backs = OfType(r.graph, "aten.upsample_nearest2d_backward");
  ASSERT_EQ(backs.size(), 3u);
  EXPECT_EQ(RowsAlongH(r.graph, backs), (std::vector<int64_t>{2, 4, 4}));
  EXPECT_EQ(Ints(*backs[0], "input_size"), (std::vector<int64_t>{1, 2, 1, 4}));
  EXPECT_EQ(Ints(*backs[2], "input_size"), (std::vector<int64_t>{1, 2, 2, 4}));

  // Bilinear (corners not aligned) blends each row with the next: a row of
  // halo each side, clipped to the image. Output rows [0, 3) read [0, 3),
  // [3, 6) read [0, 4), [6, 10) read [2, 5).
  GraphBuilder lin("bilinear");
  Attrs bilinear = up;
  bilinear["align_corners"] = false;
  const TensorId zl = lin.Call("aten.upsample_bilinear2d", {lin.Input("x", {1, 2, 5, 4})}, bilinear);
  lin.MarkOutput(zl);
  const FissionResult rl = TileAlongH(lin.graph(), 3);
  EXPECT_EQ(RowsAlongH(rl.graph, OfType(rl.graph, "aten.upsample_bilinear2d")), (std::vector<int64_t>{3, 4, 3}));
  bilinear["align_corners"] = true;
  GraphBuilder aligned("aligned");
  const TensorId za = aligned.Call("aten.upsample_bilinear2d", {aligned.Input("x", {1, 2, 5, 4})}, bilinear);
  aligned.MarkOutput(za);
  EXPECT_THAT(WhyNot(aligned.graph(), za), HasSubstr("aligns corners"));

  // PyTorch maps output rows to input rows in float: exact for powers of two only.
  GraphBuilder odd("upsample_x3");
  const TensorId z = odd.Call("aten.upsample_nearest2d", {odd.Input("x", {1, 1, 4, 4})},
                              {{"output_size", std::vector<int64_t>{12, 12}}});
  odd.MarkOutput(z);
  EXPECT_THAT(WhyNot(odd.graph(), z), HasSubstr("power of two"));
}

// A 2x2 stride-2 transposed convolution (U-Net's up-convolution) of 4
// rows into 8, in two tiles: output rows [0, 4) are reached by input rows
// [ceil((0 + 0 - 1) / 2), floor((4 - 1 + 0) / 2) + 1) = [0, 2), which make
// exactly rows [0, 4) (padding and output padding 0 along H in the tile).
// Its backward: input-gradient rows [0, 2) read output-gradient rows
// [0, 4); the weight gradient sums over each tile's own input rows, the
// bias gradient over its own output-gradient rows.
TEST(SpatialFission, TransposedConvolutionReadsTheInputRowsThatReachItsTile) {
  GraphBuilder b("up");
  const TensorId x = b.Input("x", {1, 2, 4, 3});
  Attrs attrs = testing::ConvAttrs(2, 0, /*transposed=*/true);
  attrs.erase("bias");
  const TensorId y = b.Call("aten.convolution", {x, b.Parameter("w", {2, 3, 2, 2}), b.Parameter("b", {3})}, attrs);
  b.MarkOutput(y);
  const TensorId gy = b.Input("grad_y", {1, 3, 8, 6});
  const auto grads = b.CallMulti("aten.convolution_backward", {gy, b.Input("x2", {1, 2, 4, 3}), b.Parameter("w2", {2, 3, 2, 2})},
                                 ConvBackwardAttrs(2, 0, 3, {1, 1, 1}, /*transposed=*/true));
  for (TensorId t : grads) b.MarkOutput(t);
  const Graph& g = b.graph();
  ASSERT_EQ(g.tensor(y).shape, (Shape{1, 3, 8, 6}));

  const FissionResult r = TileAlongH(g, 2);
  const auto convs = OfType(r.graph, "aten.convolution");
  ASSERT_EQ(convs.size(), 2u);
  EXPECT_EQ(RowsAlongH(r.graph, convs), (std::vector<int64_t>{2, 2}));
  for (const Op* c : convs) EXPECT_EQ(r.graph.tensor(c->outputs[0]).shape, (Shape{1, 3, 4, 6}));
  // Per tile: the input gradient (output-gradient rows [0, 4) or [4, 8)) and
  // the weight gradient (its own 2 input rows and the 4 they reach).
  const auto backs = OfType(r.graph, "aten.convolution_backward");
  ASSERT_EQ(backs.size(), 4u);
  EXPECT_EQ(RowsAlongH(r.graph, backs), (std::vector<int64_t>{4, 4, 4, 4}));
  EXPECT_EQ(RowsAlongH(r.graph, backs, 1), (std::vector<int64_t>{2, 2, 2, 2}));
  EXPECT_EQ(OfType(r.graph, "aten.sum").size(), 2u);  // the bias gradient, summed over the tiles
  EXPECT_EQ(r.record.summed_outputs, 2);

  // Stride 2 with a 1x1 kernel leaves odd rows unreached: they would hold the bias.
  GraphBuilder gaps("gaps");
  const TensorId z = gaps.Call("aten.convolution",
                               {gaps.Input("x", {1, 2, 4, 3}), gaps.Parameter("w", {2, 3, 1, 1}), gaps.Parameter("b", {3})},
                               attrs);
  gaps.MarkOutput(z);
  EXPECT_THAT(WhyNot(gaps.graph(), z), HasSubstr("bias"));
}

// Average pooling 3x3, stride 1, padding 1 counts the padding in its
// divisor (count_include_pad): tiles padded with zero rows at the true
// borders and pooled with padding 0 along H divide by 9 as the whole does.
// Without count_include_pad the divisor would change: refused.
TEST(SpatialFission, AveragePoolingTilesWhereItCountsThePadding) {
  GraphBuilder b("avg");
  const TensorId x = b.Input("x", {1, 2, 6, 4});
  Attrs pool = {{"kernel_size", std::vector<int64_t>{3, 3}}, {"stride", std::vector<int64_t>{1, 1}},
                {"padding", std::vector<int64_t>{1, 1}},     {"ceil_mode", false},
                {"count_include_pad", true},                  {"divisor_override", std::monostate{}}};
  const TensorId y = b.Call("aten.avg_pool2d", {x}, pool);
  b.MarkOutput(y);
  pool["count_include_pad"] = false;
  const TensorId exclusive = b.Call("aten.avg_pool2d", {x}, pool);
  b.MarkOutput(exclusive);
  const Graph& g = b.graph();

  const FissionResult r = ApplySpatialFission(g, {{*g.tensor(y).producer}, 2, 2});
  Validate(r.graph);
  const auto pools = OfType(r.graph, "aten.avg_pool2d");
  ASSERT_EQ(pools.size(), 3u);  // two tiles and the exclusive pooling, whole
  EXPECT_EQ(Ints(*pools[0], "padding"), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(RowsAlongH(r.graph, {pools[0], pools[1]}), (std::vector<int64_t>{5, 5}));  // [-1, 4) and [2, 7)
  EXPECT_EQ(OfType(r.graph, "aten.constant_pad_nd").size(), 2u);
  EXPECT_THAT(WhyNot(g, exclusive), HasSubstr("count_include_pad"));
}

// A crop along H shifts rows (output row r is input row r + 1); its
// backward pads the rows the crop cut off with zeros. A crop along W is a
// view of each tile, and its backward element-wise along H with the
// tile's rows in input_sizes.
TEST(SpatialFission, CropsShiftRowsAndTheirBackwardPadsZeros) {
  GraphBuilder b("crop");
  const TensorId x = b.Input("x", {1, 2, 8, 4});
  auto slice = [](int64_t dim, int64_t start, int64_t end) {
    return Attrs{{"dim", dim}, {"start", start}, {"end", end}, {"step", int64_t{1}}};
  };
  const TensorId rows = b.Call("aten.slice", {x}, slice(2, 1, 7));
  const TensorId cols = b.Call("aten.slice", {rows}, slice(3, 0, 3));
  b.MarkOutput(b.Call("aten.relu", {cols}));
  const TensorId g_cols = b.Input("grad", {1, 2, 6, 3});
  Attrs back_cols = slice(3, 0, 3);
  back_cols["input_sizes"] = std::vector<int64_t>{1, 2, 6, 4};
  const TensorId g_rows = b.Call("aten.slice_backward", {g_cols}, back_cols);
  Attrs back_rows = slice(2, 1, 7);
  back_rows["input_sizes"] = std::vector<int64_t>{1, 2, 8, 4};
  b.MarkOutput(b.Call("aten.relu", {b.Call("aten.slice_backward", {g_rows}, back_rows)}));
  const Graph& g = b.graph();

  const FissionResult r = TileAlongH(g, 2);
  // The relu of the crop: tile rows [0, 3) and [3, 6) of x's rows [1, 4) and [4, 7).
  const auto relus = OfType(r.graph, "aten.relu");
  ASSERT_EQ(relus.size(), 4u);
  EXPECT_EQ(RowsAlongH(r.graph, relus), (std::vector<int64_t>{3, 4, 3, 4}));
  // The backward of the crop along W keeps the tile's rows: 6 rows of the
  // gradient split [0, 3), [3, 6), input_sizes rescaled.
  std::vector<int64_t> sizes;
  for (const Op* op : OfType(r.graph, "aten.slice_backward")) sizes.push_back(Ints(*op, "input_sizes")[2]);
  EXPECT_EQ(sizes, (std::vector<int64_t>{3, 3}));
  // The crop along H's backward: x's rows [0, 4) from gradient rows [-1, 3)
  // (one zero row on top), rows [4, 8) from [3, 7) (one below).
  const auto pads = OfType(r.graph, "aten.constant_pad_nd");
  ASSERT_EQ(pads.size(), 2u);
  EXPECT_EQ(Ints(*pads[0], "pad"), (std::vector<int64_t>{0, 0, 1, 0}));
  EXPECT_EQ(Ints(*pads[1], "pad"), (std::vector<int64_t>{0, 0, 0, 1}));
}

// A constant padding along H shifts rows like a crop, with its value where
// the input has none: x [1, 2, 6, 4] padded (W 1 | 1, H 2 | 1) with 0.5 is
// 9 rows; in 3 tiles, tile 0's rows [0, 3) are 2 rows of 0.5 over x's row 0,
// tile 2's [6, 9) x's rows [4, 6) over one row of 0.5. Each tile is then
// padded along W alone. Negative entries crop: a view of the rows.
TEST(SpatialFission, ConstantPaddingShiftsRowsAndFillsTheBorders) {
  GraphBuilder b("pad");
  const TensorId x = b.Input("x", {1, 2, 6, 4});
  const TensorId padded = b.Call("aten.constant_pad_nd", {x}, {{"pad", std::vector<int64_t>{1, 1, 2, 1}}, {"value", 0.5}});
  b.MarkOutput(b.Call("aten.relu", {padded}));
  const TensorId y = b.Input("y", {1, 2, 11, 4});
  const TensorId cropped = b.Call("aten.constant_pad_nd", {y}, {{"pad", std::vector<int64_t>{0, 0, -1, -1}}});
  b.MarkOutput(b.Call("aten.relu", {cropped}));
  const Graph& g = b.graph();

  const FissionResult r = TileAlongH(g, 3);
  EXPECT_EQ(RowsAlongH(r.graph, OfType(r.graph, "aten.relu")), (std::vector<int64_t>{3, 3, 3, 3, 3, 3}));
  std::vector<std::vector<int64_t>> fills, along_w;
  for (const Op* op : OfType(r.graph, "aten.constant_pad_nd")) {
    if (Ints(*op, "pad")[0] == 0) {
      EXPECT_EQ(std::get<double>(op->attrs.at("value")), 0.5);
      fills.push_back(Ints(*op, "pad"));
    } else {
      along_w.push_back(Ints(*op, "pad"));
    }
  }
  EXPECT_EQ(fills, (std::vector<std::vector<int64_t>>{{0, 0, 2, 0}, {0, 0, 0, 1}}));
  EXPECT_EQ(along_w, (std::vector<std::vector<int64_t>>(3, {1, 1, 0, 0})));
  // The crop's tiles are x's rows [1, 4), [4, 7), [7, 10): slices.
  std::vector<int64_t> starts;
  for (const Op* op : OfType(r.graph, "aten.slice")) {
    if (r.graph.tensor(op->inputs[0]).name == "y") starts.push_back(Int(*op, "start"));
  }
  EXPECT_EQ(starts, (std::vector<int64_t>{1, 4, 7}));
}

// Element-wise along H but not an element-wise kernel: a softmax's
// backward along W reads its tiles dense (PyTorch 1.13 reads a strided
// `output` with the gradient's strides); a relu reads them as views. A scan
// along H or a triangle of H and W depends on the row: refused.
TEST(SpatialFission, NonPointwiseKernelsReadDenseTiles) {
  GraphBuilder b("softmax_backward");
  const TensorId grad = b.Input("grad", {1, 2, 6, 6});
  const TensorId out = b.Input("out", {1, 2, 6, 6});
  const TensorId dx = b.Call("aten._softmax_backward_data", {grad, out},
                             {{"dim", int64_t{-1}}, {"input_dtype", std::string("f32")}});
  const TensorId relu = b.Call("aten.relu", {dx});
  b.MarkOutput(relu);
  const TensorId scan = b.Call("aten.cumsum", {out}, {{"dim", int64_t{2}}});
  const TensorId across = b.Call("aten.cumsum", {out}, {{"dim", int64_t{3}}});
  const TensorId triangle = b.Call("aten.triu", {out}, {{"diagonal", int64_t{0}}});
  for (TensorId t : {scan, across, triangle}) b.MarkOutput(t);
  const Graph& g = b.graph();
  const FissionResult r = ApplySpatialFission(g, {{*g.tensor(dx).producer, *g.tensor(relu).producer}, 2, 2});
  Validate(r.graph);
  // Per tile: grad and out copied dense for the softmax's backward; the
  // relu reads the softmax tile itself.
  EXPECT_EQ(OfType(r.graph, "aten.clone").size(), 4u);
  EXPECT_NE(WhyNot(g, scan), "");
  EXPECT_EQ(WhyNot(g, across), "");
  EXPECT_NE(WhyNot(g, triangle), "");
}

// A squeeze-and-excitation gate: x [1, 4, 6, 6] scaled by sigmoid(mean
// over H and W) [1, 4, 1, 1]. The gate has one row along H, which its
// reader broadcasts to every tile: it stays out of the run (it was tiled,
// and the broadcast read it before any tile made it: "used before the
// parts that make it" on DeepLabV3-MobileNetV3).
TEST(SpatialFission, OneRowGatesStayOutOfTheRun) {
  GraphBuilder b("se");
  const TensorId x = b.Input("x", {1, 4, 6, 6});
  const TensorId y = b.Call("aten.relu", {x});
  const TensorId mean = b.Call("aten.mean", {y}, {{"dim", std::vector<int64_t>{2, 3}}, {"keepdim", true}});
  const TensorId gate = b.Call("aten.sigmoid", {mean});
  b.MarkOutput(b.Call("aten.relu", {b.Call("aten.mul", {y, gate})}));
  const Graph& g = b.graph();
  EXPECT_THAT(WhyNot(g, gate), HasSubstr("one row"));
  const auto regions = SpatialRegions(g, 2);
  ASSERT_FALSE(regions.empty());
  for (const auto& region : regions) Validate(ApplySpatialFission(g, {region, 2, 2}).graph);
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
