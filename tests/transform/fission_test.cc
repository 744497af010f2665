// Fission on hand-made graphs: what is sliced, joined and summed, and each
// rule that refuses an inexact split.
#include "transform/fission.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>

#include "autodiff/training_graph.h"
#include "conv_attrs.h"
#include "ir/builder.h"
#include "ir/validate.h"
#include "models/zoo.h"
#include "test_util.h"
#include "transform/spatial_fission.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;

int DimOf(const DimensionGraph& d, TensorId t, int axis) { return d.dim_of.at(t.index()).at(axis); }

int Count(const Graph& g, std::string_view type) {
  return static_cast<int>(std::count_if(g.ops().begin(), g.ops().end(), [&](const Op& op) { return op.type == type; }));
}

const Tensor* Named(const Graph& g, std::string_view name) {
  for (const Tensor& t : g.tensors()) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::vector<OpId> AllOps(const Graph& g) {
  std::vector<OpId> ids;
  for (const Op& op : g.ops()) ids.push_back(op.id);
  return ids;
}

// A graph's batch (the dimension of x's leading axis) and its runs.
struct BatchRuns {
  BatchRuns(const Graph& g, TensorId x)
      : dims(ComputeDimensions(g)), batch(DimOf(dims, x, 0)), runs(FissionRegions(g, dims, batch)) {}
  DimensionGraph dims;
  int batch;
  std::vector<std::vector<OpId>> runs;
};

// `g` split along x's batch into `parts`, all its ops being one run; the
// result validates.
FissionResult SplitWholeAlongTheBatch(const Graph& g, TensorId x, int parts) {
  const BatchRuns batch(g, x);
  EXPECT_EQ(batch.runs.size(), 1u);
  EXPECT_EQ(batch.runs.at(0).size(), g.num_ops());
  FissionResult split = ApplyFission(g, batch.dims, {batch.runs.at(0), batch.batch, parts});
  Validate(split.graph);
  return split;
}

// relu(x) as log-probabilities, the gradient of their mean NLL loss (`op`,
// nll_loss_backward or nll_loss2d_backward) against integer targets of
// `target_shape`, and relu of it marked the output; returns the gradient.
TensorId MeanLossGradient(GraphBuilder& b, std::string_view op, TensorId x, Shape target_shape) {
  const TensorId log_probs = b.Call("aten.relu", {x});
  const TensorId target = b.Input("target", std::move(target_shape), DType::kI64);
  const TensorId grad = b.Input("grad", {});
  const TensorId total = b.Input("total_weight", {});
  const TensorId dx = b.Call(op, {grad, log_probs, target, total},
                             {{"weight", std::monostate{}}, {"reduction", int64_t{1}}, {"ignore_index", int64_t{-100}}});
  b.MarkOutput(b.Call("aten.relu", {dx}));
  return dx;
}

// x [10, 32] -> mm(w1^T) -> relu -> mm(w2^T) = y [10, 4]. The transposes
// do not touch the batch, so S is the three ops after them.
struct Mlp {
  GraphBuilder b{"mlp"};
  TensorId x, w1, w2, h, r, y;
  OpId mm1, relu, mm2;
  Mlp() {
    x = b.Input("x", {10, 32});
    w1 = b.Parameter("w1", {16, 32});
    w2 = b.Parameter("w2", {4, 16});
    const TensorId w1t = b.Call("aten.t", {w1});
    const TensorId w2t = b.Call("aten.t", {w2});
    h = b.Call("aten.mm", {x, w1t});
    r = b.Call("aten.relu", {h});
    y = b.Call("aten.mm", {r, w2t});
    b.MarkOutput(y);
    mm1 = *b.tensor(h).producer;
    relu = *b.tensor(r).producer;
    mm2 = *b.tensor(y).producer;
  }
};

TEST(Fission, SplitsAChainAlongTheBatchUnevenly) {
  Mlp m;
  const Graph& g = m.b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const int batch = DimOf(dims, m.x, 0);
  const FissionResult r = ApplyFission(g, dims, {{m.mm1, m.relu, m.mm2}, batch, 3});
  Validate(r.graph);

  // 10 = 4 + 3 + 3: three slices of x, three copies of each op, one cat.
  EXPECT_EQ(Count(r.graph, "aten.slice"), 3);
  EXPECT_EQ(Count(r.graph, "aten.mm"), 6);
  EXPECT_EQ(Count(r.graph, "aten.relu"), 3);
  EXPECT_EQ(Count(r.graph, "aten.cat"), 1);
  const Tensor* part0 = Named(r.graph, "relu.part0");
  const Tensor* part2 = Named(r.graph, "relu.part2");
  ASSERT_NE(part0, nullptr);
  ASSERT_NE(part2, nullptr);
  EXPECT_EQ(part0->shape, (Shape{4, 16}));
  EXPECT_EQ(part2->shape, (Shape{3, 16}));
  // The result keeps its name, shape and place among the step's results.
  ASSERT_EQ(r.graph.outputs.size(), 1u);
  const Tensor& y = r.graph.tensor(r.graph.outputs[0]);
  EXPECT_EQ(y.shape, (Shape{10, 4}));
  EXPECT_EQ(r.graph.op(*y.producer).type, "aten.cat");
  EXPECT_EQ(r.record.parts, 3);
  EXPECT_EQ(r.record.num_ops, 3);
  EXPECT_EQ(r.record.sliced_inputs, 3);
  EXPECT_EQ(r.record.joined_outputs, 1);
  EXPECT_EQ(RecordedFissions(r.graph), std::vector<std::string>{ToString(r.record)});
  EXPECT_EQ(ToString(r.record), "x[0] (batch) x3 over 3 ops (mm .. mm_1)");
}

TEST(Fission, AccumulatesWeightGradientsOverTheParts) {
  ZooOptions zoo;
  zoo.batch = 8;
  zoo.image = 4;
  const Graph fwd = BuildZooModel("mlp", zoo);
  TrainingOptions training;
  training.update_weights = false;
  const Graph g = BuildTrainingGraph(fwd, training);
  const DimensionGraph dims = ComputeDimensions(g);
  // S: every op of the backward pass that can run on parts of the batch.
  const int batch = DimOf(dims, g.tensors()[0].role == TensorRole::kInput ? g.tensors()[0].id : TensorId(0), 0);
  ASSERT_GE(batch, 0);
  std::vector<OpId> s;
  for (const Op& op : g.ops()) {
    if (op.phase == Phase::kBackward && !WhyNotSplittable(g, dims, op.id, batch)) s.push_back(op.id);
  }
  ASSERT_GE(s.size(), 4u);
  const FissionResult r = ApplyFission(g, dims, {s, batch, 2});
  Validate(r.graph);
  EXPECT_GT(r.record.summed_outputs, 0);
  // Every parameter gradient is still a result of the step, with its shape.
  ASSERT_EQ(r.graph.outputs.size(), g.outputs.size());
  for (size_t i = 0; i < g.outputs.size(); ++i) {
    const Tensor& before = g.tensor(g.outputs[i]);
    const Tensor& after = r.graph.tensor(r.graph.outputs[i]);
    EXPECT_EQ(after.name, before.name);
    EXPECT_EQ(after.shape, before.shape);
    EXPECT_EQ(after.role, before.role);
  }
}

// A weight gradient dW = g^T x over 3 parts of the batch (10 = 4 + 3 + 3):
// part 0's product starts the running sum, parts 1 and 2 add theirs in the
// GEMM itself (addmm_ in place, beta = 1): no partial product is written and
// read back by an add_, and the last one is named like the whole.
// x [10, 8] through a linear layer without bias: g = relu(x w^T) [10, 4],
// a stand-in for the gradient of its result, carries the batch like x; the
// step's result is `grad(g, x)`. Split along the batch in 3 parts.
template <typename Grad>
FissionResult GradientInThreeParts(GraphBuilder& b, Grad grad) {
  const TensorId x = b.Input("x", {10, 8});
  const TensorId w = b.Parameter("w", {4, 8});
  const TensorId g = b.Call("aten.relu", {b.Call("aten.mm", {x, b.Call("aten.t", {w})})});
  b.MarkOutput(grad(g, x));
  const Graph& graph = b.graph();
  const DimensionGraph dims = ComputeDimensions(graph);
  const int batch = DimOf(dims, x, 0);
  FissionResult r = ApplyFission(graph, dims, {FissionRegions(graph, dims, batch).at(0), batch, 3});
  Validate(r.graph);
  return r;
}

TEST(Fission, AddsEachPartsWeightGradientInItsGemm) {
  GraphBuilder b("dw");
  TensorId dw;
  const FissionResult r = GradientInThreeParts(b, [&](TensorId g, TensorId x) {
    return dw = b.Call("aten.mm", {b.Call("aten.t", {g}), x});
  });
  EXPECT_EQ(r.record.num_ops, 4);  // mm, relu, t(g), the weight gradient
  EXPECT_EQ(Count(r.graph, "aten.mm"), 3 + 1);  // h's parts, dW's part 0
  EXPECT_EQ(Count(r.graph, "aten.addmm_"), 2);
  EXPECT_EQ(Count(r.graph, "aten.add_"), 0);
  EXPECT_EQ(r.record.summed_outputs, 1);

  // The chain: mm (part 0, [4, 8] rows) -> addmm_ (part 1) -> addmm_ (part 2),
  // each writing the storage of part 0's product.
  const Tensor& whole = r.graph.tensor(r.graph.outputs[0]);
  EXPECT_EQ(whole.name, b.tensor(dw).name);
  EXPECT_EQ(whole.shape, (Shape{4, 8}));
  const Op& last = r.graph.op(*whole.producer);
  ASSERT_EQ(last.type, "aten.addmm_");
  EXPECT_EQ(r.graph.tensor(last.inputs[1]).shape, (Shape{4, 3}));  // g_2^T
  EXPECT_EQ(r.graph.tensor(last.inputs[2]).shape, (Shape{3, 8}));  // x_2
  const Op& middle = r.graph.op(*r.graph.tensor(last.inputs[0]).producer);
  ASSERT_EQ(middle.type, "aten.addmm_");
  const Op& first = r.graph.op(*r.graph.tensor(middle.inputs[0]).producer);
  EXPECT_EQ(first.type, "aten.mm");
  EXPECT_EQ(r.graph.tensor(first.inputs[1]).shape, (Shape{4, 8}));  // x_0
  EXPECT_EQ(r.graph.StorageRoot(whole.id), first.outputs[0]);
}

// A bias gradient db = sum(g, [0], keepdim) over the same 3 parts: parts 1
// and 2 add theirs as a GEMM too, ones[1, 3] x g_k, with one row of ones
// for both (they have 3 rows each).
TEST(Fission, AddsEachPartsBiasGradientAsAGemm) {
  GraphBuilder b("db");
  const FissionResult r = GradientInThreeParts(b, [&](TensorId g, TensorId) {
    return b.Call("aten.sum", {g}, {{"dim", std::vector<int64_t>{0}}, {"keepdim", true}});
  });
  EXPECT_EQ(Count(r.graph, "aten.sum"), 1);
  EXPECT_EQ(Count(r.graph, "aten.addmm_"), 2);
  EXPECT_EQ(Count(r.graph, "aten.full"), 1);
  EXPECT_EQ(Count(r.graph, "aten.add_"), 0);

  const Tensor& whole = r.graph.tensor(r.graph.outputs[0]);
  EXPECT_EQ(whole.shape, (Shape{1, 4}));
  const Op& last = r.graph.op(*whole.producer);
  ASSERT_EQ(last.type, "aten.addmm_");
  EXPECT_EQ(r.graph.tensor(last.inputs[1]).shape, (Shape{1, 3}));  // the ones
  EXPECT_EQ(r.graph.tensor(last.inputs[2]).shape, (Shape{3, 4}));  // g_2
  const Op& middle = r.graph.op(*r.graph.tensor(last.inputs[0]).producer);
  ASSERT_EQ(middle.type, "aten.addmm_");
  EXPECT_EQ(middle.inputs[1], last.inputs[1]);
  EXPECT_EQ(r.graph.op(*r.graph.tensor(middle.inputs[0]).producer).type, "aten.sum");
}

TEST(Fission, RefusesBatchNormAlongTheBatchButNotAlongChannels) {
  GraphBuilder b("bn");
  const TensorId x = b.Input("x", {4, 3, 5, 5});
  const TensorId w = b.Parameter("w", {3});
  const TensorId bias = b.Parameter("b", {3});
  const TensorId y = b.CallMulti("aten.native_batch_norm", {x, w, bias}, testing::BatchNormTrainingAttrs())[0];
  b.MarkOutput(y);
  const Graph& g = b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const OpId bn = *g.tensor(y).producer;
  const auto why = WhyNotSplittable(g, dims, bn, DimOf(dims, x, 0));
  ASSERT_TRUE(why);
  EXPECT_THAT(*why, HasSubstr("needs the whole of x[0]"));
  // The statistics sum over every position too (a BatchNorm without running
  // statistics, InstanceNorm's, used to split along H and W).
  for (int axis : {2, 3}) {
    const int dim = DimOf(dims, x, axis);
    ASSERT_GE(dim, 0);
    EXPECT_THAT(WhyNotSplittable(g, dims, bn, dim).value_or(""), HasSubstr("needs the whole")) << axis;
  }
  // Statistics are per channel: a part of the channels is exact.
  EXPECT_FALSE(WhyNotSplittable(g, dims, bn, DimOf(dims, x, 1)));
  Validate(ApplyFission(g, dims, {{bn}, DimOf(dims, x, 1), 3}).graph);
}

// In evaluation a BatchNorm normalizes each element by its running
// statistics, which it only reads, and on CPU its saved statistics have no
// elements: exact on parts of the batch (a frozen backbone's BatchNorm was
// refused as writing shared state, then for its empty statistics).
TEST(Fission, SplitsBatchNormInEvaluationAlongTheBatch) {
  GraphBuilder b("bn_eval");
  const TensorId x = b.Input("x", {4, 3, 5, 5});
  const TensorId w = b.Parameter("w", {3});
  const TensorId bias = b.Parameter("b", {3});
  const TensorId mean = b.Buffer("running_mean", {3});
  const TensorId var = b.Buffer("running_var", {3});
  const auto bn = b.CallMulti("aten.native_batch_norm", {b.Call("aten.relu", {x}), w, bias, mean, var},
                              {{"training", false}, {"momentum", 0.1}, {"eps", 1e-5}});
  b.MarkOutput(b.Call("aten.relu", {bn[0]}));
  const Graph& g = b.graph();
  ASSERT_EQ(g.tensor(bn[1]).numel(), 0);
  const OpId op = *g.tensor(bn[0]).producer;
  EXPECT_TRUE(MutatedInputs(g, g.op(op)).empty());
  const DimensionGraph dims = ComputeDimensions(g);
  EXPECT_FALSE(WhyNotSplittable(g, dims, op, DimOf(dims, x, 0)));
  const FissionResult r = ApplyFission(g, dims, {AllOps(g), DimOf(dims, x, 0), 2});
  Validate(r.graph);
  EXPECT_EQ(Count(r.graph, "aten.native_batch_norm"), 2);
  EXPECT_EQ(r.record.joined_outputs, 1);
}

// mse_loss's mean divides by the element count, its backward too (inside
// the kernel): along the batch both are rewritten (parts with reduction
// "sum", the count of the whole), and a tile along H is refused. With
// reduction "sum" the backward is element-wise and the loss a plain sum.
TEST(Fission, MeanSquaredErrorSplitsAlongTheBatchWithTheWholeCount) {
  GraphBuilder b("mse");
  const TensorId x = b.Input("x", {4, 3, 5, 5});
  const TensorId target = b.Input("target", {4, 3, 5, 5});
  const TensorId y = b.Call("aten.relu", {x});
  const TensorId loss = b.Call("aten.mse_loss", {y, target}, {{"reduction", int64_t{1}}});
  const TensorId seed = b.Call("aten.ones_like", {loss});
  const TensorId grad = b.Call("aten.mse_loss_backward", {seed, y, target}, {{"reduction", int64_t{1}}});
  b.MarkOutput(loss);
  b.MarkOutput(b.Call("aten.threshold_backward", {grad, y}, {{"threshold", 0.0}}));
  const Graph& g = b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const int batch = DimOf(dims, x, 0);
  ASSERT_EQ(DimOf(dims, target, 0), batch);  // the target joins the batch through the backward
  const OpId forward = *g.tensor(loss).producer, backward = *g.tensor(grad).producer;
  EXPECT_FALSE(WhyNotSplittable(g, dims, forward, batch));
  EXPECT_FALSE(WhyNotSplittable(g, dims, backward, batch));
  EXPECT_THAT(WhyNotTileable(g, backward, 2).value_or(""), HasSubstr("reduces the axis"));
  const auto runs = FissionRegions(g, dims, batch);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].size(), 4u);  // relu, the loss, its backward, relu's backward: ones_like stays whole
  const FissionResult r = ApplyFission(g, dims, {runs[0], batch, 3});
  Validate(r.graph);
  int parts = 0, over_count = 0;
  for (const Op& op : r.graph.ops()) {
    if (op.type == "aten.mse_loss" || op.type == "aten.mse_loss_backward") {
      ++parts;
      EXPECT_EQ(std::get<int64_t>(op.attrs.at("reduction")), 2) << op.name;
    }
    if (op.name.find(".over_count") != std::string::npos || op.name.find(".mean") != std::string::npos) {
      ++over_count;
      EXPECT_DOUBLE_EQ(std::get<double>(op.attrs.at("other")), 300.0) << op.name;  // 4 * 3 * 5 * 5
    }
  }
  EXPECT_EQ(parts, 6);
  EXPECT_EQ(over_count, 2);  // the gradient over the count before the parts, the sum over it after
}

// Its backward: grad_input reads sums of the gradient over the batch and
// every position (refused along them); the weight and bias gradients alone
// are sums (split, added up); per channel both are exact, the per-channel
// inputs (a weight that InstanceNorm repeats per sample) sliced with them.
TEST(Fission, BatchNormBackwardNeedsTheWholeBatchOnlyForItsInputGradient) {
  for (bool grad_input : {true, false}) {
    GraphBuilder b("bn_backward");
    const TensorId x = b.Input("x", {4, 3, 5, 5});  // the gradient and the input come from it
    const TensorId w = b.Parameter("w", {3});
    const TensorId mean = b.Input("mean", {3});
    const TensorId invstd = b.Input("invstd", {3});
    const auto grads = b.CallMulti("aten.native_batch_norm_backward",
                                   {b.Call("aten.neg", {x}), b.Call("aten.relu", {x}), w, mean, invstd},
                                   {{"running_mean", std::monostate{}}, {"running_var", std::monostate{}}, {"train", true},
                                    {"eps", 1e-5}, {"output_mask", std::vector<int64_t>{grad_input, 1, 1}}});
    for (TensorId t : grads) b.MarkOutput(t);
    const Graph& g = b.graph();
    const DimensionGraph dims = ComputeDimensions(g);
    const OpId back = *g.tensor(grads[0]).producer;
    for (int axis : {0, 2, 3}) {
      ASSERT_GE(DimOf(dims, x, axis), 0);
      EXPECT_EQ(WhyNotSplittable(g, dims, back, DimOf(dims, x, axis)).has_value(), grad_input) << axis;
    }
    EXPECT_FALSE(WhyNotSplittable(g, dims, back, DimOf(dims, x, 1)));
    EXPECT_EQ(DimOf(dims, w, 0), DimOf(dims, x, 1));
    if (!grad_input) Validate(ApplyFission(g, dims, {AllOps(g), DimOf(dims, x, 0), 2}).graph);
  }
}

// GroupNorm normalizes each sample alone: exact on parts of the batch (its
// N attribute follows the part, forward and backward), refused along the
// channels and the pixels its statistics sum over.
TEST(Fission, SplitsGroupNormAlongTheBatchOnly) {
  GraphBuilder b("gn");
  const TensorId x = b.Input("x", {4, 6, 5, 5});
  const TensorId w = b.Parameter("w", {6});
  const TensorId bias = b.Parameter("b", {6});
  const Attrs attrs = {{"N", int64_t{4}}, {"C", int64_t{6}}, {"HxW", int64_t{25}}, {"group", int64_t{3}}, {"eps", 1e-5}};
  const auto gn = b.CallMulti("aten.native_group_norm", {x, w, bias}, attrs);
  const TensorId y = b.Call("aten.relu", {gn[0]});
  Attrs back_attrs = attrs;
  back_attrs.erase("eps");
  back_attrs["output_mask"] = std::vector<int64_t>{1, 1, 1};
  const auto grads = b.CallMulti("aten.native_group_norm_backward", {y, x, gn[1], gn[2], w}, back_attrs);
  for (TensorId t : grads) b.MarkOutput(t);
  const Graph& g = b.graph();
  const FissionResult split = SplitWholeAlongTheBatch(g, x, 3);
  int parts = 0;
  for (const Op& op : split.graph.ops()) {
    if (op.type != "aten.native_group_norm" && op.type != "aten.native_group_norm_backward") continue;
    const int64_t n = std::get<int64_t>(op.attrs.at("N"));
    EXPECT_EQ(n, split.graph.tensor(op.inputs[op.type == "aten.native_group_norm" ? 0 : 1]).shape[0]) << op.name;
    EXPECT_LT(n, 4) << op.name;
    ++parts;
  }
  EXPECT_EQ(parts, 6);
  EXPECT_EQ(split.record.summed_outputs, 2);  // the weight and bias gradients
  const OpId norm = *g.tensor(gn[0]).producer;
  const DimensionGraph dims = ComputeDimensions(g);
  for (int axis : {1, 2, 3}) {
    const int dim = DimOf(dims, x, axis);
    if (dim >= 0) {
      EXPECT_TRUE(WhyNotSplittable(g, dims, norm, dim)) << axis;
    }
  }
  // A mismatched N is a clear error, not a kernel's.
  back_attrs["N"] = int64_t{5};
  EXPECT_THAT(testing::ErrorOf([&] { b.CallMulti("aten.native_group_norm_backward", {y, x, gn[1], gn[2], w}, back_attrs); }),
              HasSubstr("N = 5, C = 6 do not match input [4, 6, 5, 5]"));
}

// The targets of a classification loss index its class axis: the gradient
// of a part of the classes would need the targets shifted into the part.
// Rows split; classes never do.
TEST(Fission, NeverSplitsALossGradientAlongItsClasses) {
  GraphBuilder b("nll");
  const TensorId x = b.Input("x", {4, 10});
  const TensorId dx = MeanLossGradient(b, "aten.nll_loss_backward", x, {4});
  const Graph& g = b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const OpId back = *g.tensor(dx).producer;
  EXPECT_FALSE(WhyNotSplittable(g, dims, back, DimOf(dims, x, 0)));
  const int classes = DimOf(dims, dx, 1);
  ASSERT_GE(classes, 0);
  EXPECT_TRUE(WhyNotSplittable(g, dims, back, classes));
  EXPECT_THAT(testing::ErrorOf([&] { ApplyFission(g, dims, {AllOps(g), classes, 2}); }), HasSubstr("nll_loss_backward"));
}

// A scatter's and a gather's `dim` is addressed by the index values: never
// split (a part would need the indices shifted into it); the rows they
// share split, the index and the source with them.
TEST(Fission, NeverSplitsAScatterAlongTheDimItsIndicesAddress) {
  GraphBuilder b("scatter");
  const TensorId x = b.Input("x", {4, 16});
  const TensorId index = b.Input("index", {4, 3}, DType::kI64);
  const TensorId h = b.Call("aten.relu", {x});
  const TensorId picked = b.Call("aten.gather", {h, index}, {{"dim", int64_t{1}}, {"sparse_grad", false}});
  const TensorId src = b.Call("aten.neg", {picked});
  const TensorId y = b.Call("aten.scatter_add", {h, index, src}, {{"dim", int64_t{1}}});
  b.MarkOutput(b.Call("aten.relu", {y}));
  const Graph& g = b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const OpId scatter = *g.tensor(y).producer, gather = *g.tensor(picked).producer;
  const int columns = DimOf(dims, x, 1);
  ASSERT_GE(columns, 0);
  EXPECT_THAT(WhyNotSplittable(g, dims, scatter, columns).value_or(""), HasSubstr("input 0"));
  EXPECT_TRUE(WhyNotSplittable(g, dims, gather, columns));
  const FissionResult split = SplitWholeAlongTheBatch(g, x, 2);
  for (const Op& op : split.graph.ops()) {
    if (op.type == "aten.scatter_add") {
      EXPECT_EQ(split.graph.tensor(op.inputs[1]).shape, (Shape{2, 3})) << op.name;
    }
  }
}

// A GNN's messages along its edges: gathered from the nodes at the edges'
// sources, summed into their destinations by index_add_ into zeros made
// before the step's ops. Split along the edges, each part adds its messages
// into what the parts before it left, in place, in the order the whole
// adds them (so a part's sum is never a separate tensor added afterwards).
TEST(Fission, AddsEachPartsScatteredRowsIntoThePartsBefore) {
  GraphBuilder b("gnn");
  const TensorId h = b.Input("h", {5, 4});
  const TensorId src = b.Input("src", {12}, DType::kI64);
  const TensorId dst = b.Input("dst", {12}, DType::kI64);
  const TensorId zeros = b.Call("aten.zeros_like", {h});
  const TensorId messages = b.Call("aten.relu", {b.Call("aten.index", {h, src})});
  const TensorId summed = b.Call("aten.index_add_", {zeros, dst, messages}, {{"dim", int64_t{0}}});
  b.MarkOutput(b.Call("aten.tanh", {summed}));
  const Graph& g = b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const int edges = DimOf(dims, src, 0);
  ASSERT_GE(edges, 0);
  EXPECT_EQ(DimOf(dims, dst, 0), edges);
  EXPECT_EQ(DimOf(dims, messages, 0), edges);
  const auto runs = FissionRegions(g, dims, edges);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].size(), 3u);  // index, relu, index_add_
  const FissionResult split = ApplyFission(g, dims, {runs[0], edges, 3});
  Validate(split.graph);
  std::vector<const Op*> adds;
  for (const Op& op : split.graph.ops()) {
    if (op.type == "aten.index_add_") adds.push_back(&op);
  }
  ASSERT_EQ(adds.size(), 3u);
  EXPECT_EQ(split.graph.tensor(adds[0]->inputs[0]).name, "zeros_like");
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(split.graph.tensor(adds[k]->inputs[2]).shape, (Shape{4, 4}));
    EXPECT_EQ(split.graph.StorageRoot(adds[k]->outputs[0]), split.graph.StorageRoot(adds[0]->inputs[0]));
    if (k > 0) EXPECT_EQ(adds[k]->inputs[0], adds[k - 1]->outputs[0]);
  }
  EXPECT_EQ(Count(split.graph, "aten.add"), 0);  // nothing added after the parts
  // The tanh reads the last part's sum.
  EXPECT_EQ(split.graph.op(*split.graph.tensor(split.graph.outputs[0]).producer).inputs[0], adds[2]->outputs[0]);
}

// The same scatter with its gradients, out of place: the messages' gradient
// gathered at the destinations (index_select), the nodes' gathered into by
// index_put with accumulate, chained the same way. An op of the run that
// reads what an in-place scatter adds into would see a part's sum: refused.
TEST(Fission, RefusesToReadWhatAnInPlaceScatterAddsInto) {
  GraphBuilder b("gnn");
  const TensorId h = b.Input("h", {5, 4});
  const TensorId src = b.Input("src", {12}, DType::kI64);
  const TensorId grad = b.Input("grad", {5, 4});
  const TensorId g_messages = b.Call("aten.index_select", {grad, src}, {{"dim", int64_t{0}}});
  const TensorId zeros = b.Call("aten.new_zeros", {grad}, {{"size", std::vector<int64_t>{5, 4}}});
  const TensorId g_nodes = b.Call("aten.index_put", {zeros, src, b.Call("aten.neg", {g_messages})},
                                  {{"accumulate", true}});
  b.MarkOutput(g_nodes);
  const Graph& g = b.graph();
  const BatchRuns along_src(g, src);
  ASSERT_EQ(along_src.runs.size(), 1u);
  const FissionResult split = ApplyFission(g, along_src.dims, {along_src.runs[0], along_src.batch, 2});
  Validate(split.graph);
  EXPECT_EQ(Count(split.graph, "aten.index_put"), 2);
  EXPECT_EQ(Count(split.graph, "aten.add"), 0);

  GraphBuilder c("reads");
  const TensorId x = c.Input("x", {5, 4});
  const TensorId edges = c.Input("edges", {12}, DType::kI64);
  const TensorId acc = c.Call("aten.relu", {x});
  const TensorId gathered = c.Call("aten.index", {acc, edges});
  const TensorId into = c.Call("aten.index_add_", {acc, edges, gathered}, {{"dim", int64_t{0}}});
  c.MarkOutput(c.Call("aten.tanh", {into}));
  const Graph& reads = c.graph();
  const DimensionGraph dims = ComputeDimensions(reads);
  const int along = DimOf(dims, edges, 0);
  const std::vector<OpId> ops{*reads.tensor(gathered).producer, *reads.tensor(into).producer};
  try {
    ApplyFission(reads, dims, {ops, along, 2});
    ADD_FAILURE() << "split a run that reads what it adds into";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("reads the tensor that op 'index_add_' adds its parts into"));
  }
}

// `h[torch.arange(B), last]` along the batch: each part indexes its own
// rows by 0, 1, ... (an arange of the part's length), not by the slice of
// the whole's arange (rows lo.. of a part that has hi - lo of them).
TEST(Fission, IndexesEachPartsRowsByAnArangeOfItsOwn) {
  GraphBuilder b("last_token");
  const TensorId x = b.Input("x", {6, 5, 4});
  const TensorId last = b.Input("last", {6}, DType::kI64);
  const TensorId h = b.Call("aten.tanh", {x});
  const TensorId rows = b.Call("aten.arange", {}, {{"end", int64_t{6}}});
  const TensorId picked = b.Call("aten.index", {h, rows, last});
  b.MarkOutput(b.Call("aten.relu", {picked}));
  const Graph& g = b.graph();
  const BatchRuns batch(g, x);
  ASSERT_EQ(batch.runs.size(), 1u);
  EXPECT_EQ(DimOf(batch.dims, rows, 0), batch.batch);
  const FissionResult split = ApplyFission(g, batch.dims, {batch.runs[0], batch.batch, 3});
  Validate(split.graph);
  int parts = 0;
  for (const Op& op : split.graph.ops()) {
    if (op.type != "aten.index") continue;
    ++parts;
    EXPECT_EQ(split.graph.tensor(op.inputs[0]).shape, (Shape{2, 5, 4}));
    const Op& iota = split.graph.op(*split.graph.tensor(op.inputs[1]).producer);
    EXPECT_EQ(iota.type, "aten.arange");
    EXPECT_EQ(std::get<int64_t>(iota.attrs.at("end")), 2);
    EXPECT_EQ(split.graph.tensor(op.inputs[2]).shape, (Shape{2}));
  }
  EXPECT_EQ(parts, 3);
}

// A depthwise convolution maps channel c to channel c: it splits along the
// channels, its groups following the part. A grouped one (2 groups of 4)
// does not: the same groups on half the rows would pair them with other
// input channels.
TEST(Fission, SplitsDepthwiseConvolutionsAlongChannelsOnly) {
  for (int64_t groups : {8, 2}) {
    GraphBuilder b("conv");
    const TensorId x = b.Input("x", {2, 8, 6, 6});
    const TensorId w = b.Parameter("w", {8, 8 / groups, 3, 3});
    Attrs attrs = testing::ConvAttrs(1, 1);
    attrs["groups"] = groups;
    const TensorId y = b.Call("aten.convolution", {b.Call("aten.relu", {x}), w}, attrs);
    b.MarkOutput(b.Call("aten.relu", {y}));
    const Graph& g = b.graph();
    const DimensionGraph dims = ComputeDimensions(g);
    const int channels = DimOf(dims, y, 1);
    ASSERT_GE(channels, 0);
    if (groups == 2) {
      EXPECT_TRUE(WhyNotSplittable(g, dims, *g.tensor(y).producer, channels));
      EXPECT_NE(DimOf(dims, x, 1), channels);
      continue;
    }
    EXPECT_EQ(DimOf(dims, x, 1), channels);
    const FissionResult split = ApplyFission(g, dims, {AllOps(g), channels, 2});
    Validate(split.graph);
    for (const Op& op : split.graph.ops()) {
      if (op.type == "aten.convolution") {
        EXPECT_EQ(std::get<int64_t>(op.attrs.at("groups")), 4) << op.name;
      }
    }
  }
  // And the channel rule is checked: 8 input channels are not 3 groups of 2.
  GraphBuilder b("bad");
  Attrs attrs = testing::ConvAttrs(1, 1);
  attrs["groups"] = int64_t{3};
  EXPECT_THAT(testing::ErrorOf([&] {
                b.Call("aten.convolution", {b.Input("x", {2, 8, 6, 6}), b.Parameter("w", {6, 2, 3, 3})}, attrs);
              }),
              HasSubstr("groups = 3 does not match input [2, 8, 6, 6] and weight [6, 2, 3, 3]"));
}

TEST(Fission, NeverSplitsSoftmaxAlongItsAxis) {
  GraphBuilder b("softmax");
  const TensorId x = b.Input("x", {6, 7});
  const TensorId e = b.Call("aten.exp", {x});
  const TensorId y = b.Call("aten._softmax", {e}, {{"dim", int64_t{1}}, {"half_to_float", false}});
  b.MarkOutput(y);
  const Graph& g = b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const OpId softmax = *g.tensor(y).producer;
  // The rows are independent; the normalized axis is not.
  EXPECT_FALSE(WhyNotSplittable(g, dims, softmax, DimOf(dims, x, 0)));
  const int axis = DimOf(dims, x, 1);
  if (axis >= 0) {
    EXPECT_TRUE(WhyNotSplittable(g, dims, softmax, axis));
    EXPECT_THAT(testing::ErrorOf([&] { ApplyFission(g, dims, {AllOps(g), axis, 2}); }), HasSubstr("_softmax"));
  }
  Validate(ApplyFission(g, dims, {AllOps(g), DimOf(dims, x, 0), 2}).graph);
}

TEST(Fission, DrawsDropoutMasksWholeAndRefusesOtherRandomOps) {
  GraphBuilder b("dropout");
  const TensorId x = b.Input("x", {6, 7});
  const auto drop = b.CallMulti("aten.native_dropout", {x}, {{"p", 0.25}, {"train", true}});
  const TensorId y = b.Call("aten.relu", {drop[0]});
  const TensorId noise = b.Call("aten.rand_like", {y});
  b.MarkOutput(noise);
  b.MarkOutput(drop[1]);
  const Graph& g = b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const int batch = DimOf(dims, x, 0);
  EXPECT_FALSE(WhyNotSplittable(g, dims, *b.tensor(y).producer, batch));
  const auto why = WhyNotSplittable(g, dims, *b.tensor(noise).producer, batch);
  ASSERT_TRUE(why);
  EXPECT_THAT(*why, HasSubstr("random"));

  // The mask is drawn once, whole (bernoulli(1 - p) out of place over an
  // empty bool template, so remat may draw it again), and each part
  // multiplies by its slice of it and by 1 / (1 - p).
  const FissionResult r = ApplyFission(g, dims, {{*b.tensor(y).producer, *b.tensor(drop[0]).producer}, batch, 2});
  Validate(r.graph);
  EXPECT_EQ(Count(r.graph, "aten.native_dropout"), 0);
  EXPECT_EQ(Count(r.graph, "aten.bernoulli"), 1);
  EXPECT_EQ(Count(r.graph, "aten.bernoulli_"), 0);
  EXPECT_EQ(Count(r.graph, "aten.native_dropout_backward"), 2);
  const Tensor& mask = r.graph.tensor(r.graph.outputs[1]);
  EXPECT_EQ(mask.shape, (Shape{6, 7}));
  EXPECT_EQ(mask.dtype, DType::kBool);
  EXPECT_EQ(r.graph.op(*mask.producer).type, "aten.bernoulli");
  EXPECT_EQ(Count(r.graph, "aten.ne"), 0);
  for (const Op& op : r.graph.ops()) {
    if (op.type == "aten.bernoulli") {
      EXPECT_DOUBLE_EQ(std::get<double>(op.attrs.at("p")), 0.75);
    }
  }
}

TEST(Fission, RefusesASetThatIsNotConvex) {
  Mlp m;
  const Graph& g = m.b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  // mm1 and mm2 without the relu between them.
  EXPECT_THAT(testing::ErrorOf([&] { ApplyFission(g, dims, {{m.mm1, m.mm2}, DimOf(dims, m.x, 0), 2}); }),
              HasSubstr("not convex"));
}

TEST(Fission, RescalesShapeAttributesOfViews) {
  GraphBuilder b("view");
  const TensorId x = b.Input("x", {6, 4, 5});
  const TensorId v = b.Call("aten.view", {x}, {{"size", std::vector<int64_t>{6, 20}}});
  const TensorId y = b.Call("aten.relu", {v});
  b.MarkOutput(y);
  const Graph& g = b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const FissionResult r = ApplyFission(g, dims, {AllOps(g), DimOf(dims, x, 0), 2});
  Validate(r.graph);
  const Tensor* part = Named(r.graph, "view.part1");
  ASSERT_NE(part, nullptr);
  EXPECT_EQ(part->shape, (Shape{3, 20}));
}

TEST(Fission, SlicesAnInnerAxisIntoAContiguousCopy) {
  GraphBuilder b("inner");
  const TensorId x = b.Input("x", {2, 8, 3});
  const TensorId y = b.Call("aten.relu", {x});
  b.MarkOutput(y);
  const Graph& g = b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const int seq = DimOf(dims, x, 1);
  ASSERT_GE(seq, 0);
  const FissionResult r = ApplyFission(g, dims, {AllOps(g), seq, 4});
  Validate(r.graph);
  EXPECT_EQ(Count(r.graph, "aten.clone"), 4);
  EXPECT_EQ(r.graph.tensor(r.graph.outputs[0]).shape, (Shape{2, 8, 3}));
}

// nn.MultiheadAttention with a key padding mask: baddbmm(mask [B*heads, 1, S],
// q, k^T) adds the mask to every query row. The mask's batch and key axes are
// the output's: split along the batch, each part adds its own rows of the
// mask (it was shared whole, and the part's baddbmm failed to broadcast
// [6, 1, 5] to [3, 4, 5]).
TEST(Fission, SlicesABatchedBiasAlongTheBatchAndBroadcastsItsUnitAxes) {
  GraphBuilder b("masked_scores");
  const TensorId q = b.Input("q", {6, 4, 3});
  const TensorId k = b.Input("kt", {6, 3, 5});
  const TensorId mask = b.Input("mask", {6, 1, 5});
  const TensorId scores = b.Call("aten.baddbmm", {mask, q, k});
  b.MarkOutput(b.Call("aten.relu", {scores}));
  const Graph& g = b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  EXPECT_EQ(DimOf(dims, mask, 0), DimOf(dims, q, 0));
  EXPECT_EQ(DimOf(dims, mask, 2), DimOf(dims, k, 2));
  const FissionResult r = ApplyFission(g, dims, {AllOps(g), DimOf(dims, q, 0), 2});
  Validate(r.graph);
  for (const Op& op : r.graph.ops()) {
    if (op.type == "aten.baddbmm") {
      EXPECT_EQ(r.graph.tensor(op.inputs[0]).shape, (Shape{3, 1, 5})) << op.name;
    }
  }
  EXPECT_THAT(testing::ErrorOf([&] { b.Call("aten.baddbmm", {b.Input("wide", {6, 2, 5}), q, k}); }),
              HasSubstr("does not broadcast"));
}

// A joined output keeps the layout it had. An attention's gradient leaves
// the region as a transposed view t [4, 5, 6] (strides 30, 1, 5); joined by
// a plain cat it would be contiguous, and the ops after the region would see
// other strides than at capture: an element-wise op passes them on, and
// torch 1.13's native_group_norm_backward read such a grad as if contiguous
// (a diffusion model's GroupNorm gradients 2% off). The parts are permuted
// into t's memory order, concatenated there and permuted back.
TEST(Fission, JoinsATransposedOutputInItsOwnLayout) {
  GraphBuilder b("transposed");
  const TensorId x = b.Input("x", {4, 6, 5});
  const TensorId r = b.Call("aten.relu", {x});
  const TensorId t = b.Call("aten.transpose", {r}, {{"dim0", int64_t{1}}, {"dim1", int64_t{2}}});
  b.MarkOutput(b.Call("aten.neg", {t}));
  Graph g = b.graph();
  g.mutable_tensor(t).strides = {30, 1, 5};
  const DimensionGraph dims = ComputeDimensions(g);
  const FissionResult split = ApplyFission(g, dims, {{*g.tensor(r).producer, *g.tensor(t).producer}, DimOf(dims, x, 0), 2});
  Validate(split.graph);
  const Tensor* whole = Named(split.graph, "transpose");
  ASSERT_NE(whole, nullptr);
  EXPECT_EQ(whole->strides, (std::vector<int64_t>{30, 1, 5}));
  const Op& back = split.graph.op(*whole->producer);
  EXPECT_EQ(back.type, "aten.permute");
  EXPECT_EQ(std::get<std::vector<int64_t>>(back.attrs.at("dims")), (std::vector<int64_t>{0, 2, 1}));
  const Op& cat = split.graph.op(*split.graph.tensor(back.inputs[0]).producer);
  EXPECT_EQ(cat.type, "aten.cat");
  EXPECT_EQ(std::get<int64_t>(cat.attrs.at("dim")), 0);
  EXPECT_EQ(split.graph.tensor(back.inputs[0]).shape, (Shape{4, 6, 5}));  // t in memory order
  // Row-major originals are joined by a plain cat, as before.
  Graph plain = b.graph();
  const FissionResult contiguous =
      ApplyFission(plain, dims, {{*plain.tensor(r).producer, *plain.tensor(t).producer}, DimOf(dims, x, 0), 2});
  EXPECT_EQ(Count(contiguous.graph, "aten.permute"), 0);
}

// A skip connection's gradient: a channel slice of a concatenation's
// gradient g [4, 6] (a third of it), read by a region that runs after
// g's other readers. Sliced as it is, each part would view g and hold it
// whole until the last part; it is copied dense once before the parts,
// which slice the copy. When g is read again after the region, the copy
// would only add bytes: the parts slice the view itself.
TEST(Fission, CopiesAViewOfALargerStorageDenseBeforeTheParts) {
  for (const bool read_after : {false, true}) {
    GraphBuilder b("skip");
    const TensorId x = b.Input("x", {4, 6});
    const TensorId g = b.Call("aten.relu", {x});
    b.MarkOutput(b.Call("aten.sum", {g}, {{"dim", std::vector<int64_t>{1}}, {"keepdim", false}}));
    const TensorId skip =
        b.Call("aten.slice", {g}, {{"dim", int64_t{1}}, {"start", int64_t{4}}, {"end", int64_t{6}}, {"step", int64_t{1}}});
    const TensorId y = b.Call("aten.tanh", {skip});
    b.MarkOutput(b.Call("aten.relu", {y}));
    if (read_after) b.MarkOutput(b.Call("aten.neg", {g}));
    const Graph& g_in = b.graph();
    const DimensionGraph dims = ComputeDimensions(g_in);
    std::vector<OpId> region;
    for (const Op& op : g_in.ops()) {
      if (op.type == "aten.tanh" || (op.type == "aten.relu" && op.inputs[0] == y)) region.push_back(op.id);
    }
    const FissionResult r = ApplyFission(g_in, dims, {region, DimOf(dims, x, 0), 2});
    Validate(r.graph);
    const Tensor* compact = Named(r.graph, g_in.tensor(skip).name + ".compact");
    EXPECT_EQ(compact != nullptr, !read_after);
    if (compact) {
      EXPECT_FALSE(compact->alias_of.has_value());  // its own storage
      int slices = 0;
      for (const Op& op : r.graph.ops()) slices += op.type == "aten.slice" && op.inputs[0] == compact->id;
      EXPECT_EQ(slices, 2);
    }
  }
}

TEST(Fission, RejectsBadSpecs) {
  Mlp m;
  const Graph& g = m.b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const int batch = DimOf(dims, m.x, 0);
  EXPECT_THAT(testing::ErrorOf([&] { ApplyFission(g, dims, {{m.relu}, batch, 11}); }), HasSubstr("need 2 to 10"));
  EXPECT_THAT(testing::ErrorOf([&] { ApplyFission(g, dims, {{m.relu}, batch, 1}); }), HasSubstr("need 2 to 10"));
  EXPECT_THAT(testing::ErrorOf([&] { ApplyFission(g, dims, {{}, batch, 2}); }), HasSubstr("empty"));
  EXPECT_THAT(testing::ErrorOf([&] { ApplyFission(g, dims, {{m.relu}, 99, 2}); }), HasSubstr("does not exist"));
}

// upsample_nearest2d's backward spells its input's whole shape out
// ("input_size", batch included): each part's is its own rows.
TEST(Fission, RescalesTheInputSizeOfAnUpsampleBackward) {
  GraphBuilder b("upsample");
  const TensorId x = b.Input("x", {6, 2, 3, 3});
  const TensorId up = b.Call("aten.upsample_nearest2d", {b.Call("aten.relu", {x})},
                             {{"output_size", std::vector<int64_t>{6, 6}}, {"scales_h", 2.0}, {"scales_w", 2.0}});
  const TensorId back = b.Call("aten.upsample_nearest2d_backward", {b.Call("aten.mul", {up, up})},
                               {{"output_size", std::vector<int64_t>{6, 6}},
                                {"input_size", std::vector<int64_t>{6, 2, 3, 3}},
                                {"scales_h", 2.0},
                                {"scales_w", 2.0}});
  b.MarkOutput(b.Call("aten.relu", {back}));
  const Graph& g = b.graph();
  const FissionResult split = SplitWholeAlongTheBatch(g, x, 3);
  int parts = 0;
  for (const Op& op : split.graph.ops()) {
    if (op.type != "aten.upsample_nearest2d_backward") continue;
    EXPECT_EQ(std::get<std::vector<int64_t>>(op.attrs.at("input_size")), (std::vector<int64_t>{2, 2, 3, 3})) << op.name;
    ++parts;
  }
  EXPECT_EQ(parts, 3);
}

// A segmentation loss's backward: nll_loss2d_backward's input gradient
// [N, C, H, W] is indexed by its target [N, H, W], so each part reads its
// own targets (they were shared whole, and a part's kernel failed on them:
// torchvision's FCN and LR-ASPP through fission_check.py).
TEST(Fission, SlicesThePixelTargetsOfASegmentationLossBackward) {
  GraphBuilder b("nll2d");
  const TensorId x = b.Input("x", {4, 3, 5, 5});
  MeanLossGradient(b, "aten.nll_loss2d_backward", x, {4, 5, 5});
  const Graph& g = b.graph();
  const FissionResult split = SplitWholeAlongTheBatch(g, x, 2);
  int parts = 0;
  for (const Op& op : split.graph.ops()) {
    if (op.type != "aten.nll_loss2d_backward") continue;
    EXPECT_EQ(split.graph.tensor(op.inputs[2]).shape, (Shape{2, 5, 5})) << op.name;
    ++parts;
  }
  EXPECT_EQ(parts, 2);
}

}  // namespace
}  // namespace memfit

namespace memfit {
namespace {

// BERT's reshapes: [B, S, H] -> [B*S, H] for a matmul, then back. The batch
// is the outer factor of the merged rows, so a part of the batch is a
// contiguous run of rows: the parts slice rows [lo*S, hi*S).
TEST(Fission, FollowsTheBatchThroughMergedAxes) {
  GraphBuilder b("merged");
  const TensorId x = b.Input("x", {4, 3, 8});
  const TensorId w = b.Parameter("w", {8, 8});
  const TensorId rows = b.Call("aten.view", {x}, {{"size", std::vector<int64_t>{12, 8}}});
  const TensorId wt = b.Call("aten.t", {w});
  const TensorId h = b.Call("aten.mm", {rows, wt});
  const TensorId y = b.Call("aten.view", {h}, {{"size", std::vector<int64_t>{4, 3, 8}}});
  const TensorId r = b.Call("aten.relu", {y});
  const TensorId skip = b.Call("aten.add", {r, x}, {}, "skip");  // y's batch meets x's: one group
  b.MarkOutput(skip);
  const Graph& g = b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const int batch = DimOf(dims, x, 0);
  ASSERT_GE(batch, 0);
  // The dimension graph keeps the merged rows apart from the batch...
  EXPECT_NE(DimOf(dims, rows, 0), batch);
  // ... and fission follows it through the merge anyway.
  const auto regions = FissionRegions(g, dims, batch);
  ASSERT_EQ(regions.size(), 1u);
  EXPECT_EQ(regions[0].size(), 5u);  // view, mm, view, relu, add (not the transpose)
  const FissionResult split = ApplyFission(g, dims, {regions[0], batch, 2});
  Validate(split.graph);
  const Tensor* rows1 = Named(split.graph, "view.part1");
  ASSERT_NE(rows1, nullptr);
  EXPECT_EQ(rows1->shape, (Shape{6, 8}));
  const Tensor* h1 = Named(split.graph, "mm.part1");
  ASSERT_NE(h1, nullptr);
  EXPECT_EQ(h1->shape, (Shape{6, 8}));
  EXPECT_EQ(split.graph.tensor(split.graph.outputs[0]).shape, (Shape{4, 3, 8}));
}

// Two weight gradients of a batch of 4 rows: dW1 = g^T x ([64, 128] summed
// from 4 x (64 + 128) floats of rows) outweighs what it reads and is left
// out of the region, to run once after the parts; dW2 = o^T h ([2, 64] from
// 4 x (2 + 64)) is smaller than its rows and stays split.
TEST(Fission, LeavesHeavySumsOutOfTheRegion) {
  GraphBuilder b("heavy");
  const TensorId x = b.Input("x", {4, 128});
  const TensorId w = b.Parameter("w", {64, 128});
  const TensorId v = b.Parameter("v", {2, 64});
  const TensorId h = b.Call("aten.mm", {x, b.Call("aten.t", {w})});
  const TensorId gr = b.Call("aten.relu", {h});
  const TensorId o = b.Call("aten.mm", {h, b.Call("aten.t", {v})});
  const TensorId gt = b.Call("aten.t", {gr});
  const TensorId dw1 = b.Call("aten.mm", {gt, x});
  const TensorId ot = b.Call("aten.t", {o});
  const TensorId dw2 = b.Call("aten.mm", {ot, h});
  b.MarkOutput(dw1);
  b.MarkOutput(dw2);
  const Graph& g = b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const int batch = DimOf(dims, x, 0);
  auto producer = [&](TensorId t) { return *b.tensor(t).producer; };
  const std::vector<OpId> run = {producer(h), producer(gr), producer(o), producer(gt),
                                 producer(dw1), producer(ot), producer(dw2)};
  const std::vector<OpId> kept = WithoutHeavySums(g, dims, batch, run);
  EXPECT_THAT(kept, ::testing::ElementsAre(run[0], run[1], run[2], run[3], run[5], run[6]));

  // The trimmed region: g^T joined from its parts ([64, 4]), dW1 one whole
  // mm after them; dW2 the sum of 2 partial products, the second added in
  // its GEMM (addmm_ into the first).
  const FissionResult split = ApplyFission(g, dims, {kept, batch, 2});
  Validate(split.graph);
  const Op& whole = split.graph.op(*split.graph.tensor(split.graph.outputs[0]).producer);
  EXPECT_EQ(whole.type, "aten.mm");
  EXPECT_EQ(split.graph.tensor(whole.inputs[0]).shape, (Shape{64, 4}));
  EXPECT_EQ(split.graph.op(*split.graph.tensor(split.graph.outputs[1]).producer).type, "aten.addmm_");
  EXPECT_EQ(split.record.summed_outputs, 1);
}

// A language model's head in miniature: x [64, 32] -> mm -> relu -> mm to
// 4096 "words" -> log_softmax -> mm back to 8 -> relu -> mm. Working sets
// along the batch (bytes of the storages an op reads and writes that carry
// it; the weights do not): the first mm 8 + 8 KiB, relu 8 + 8 KiB, the
// head's mm 8 KiB + 1 MiB, log_softmax 1 + 1 MiB (the heaviest), the mm
// back 1 MiB + 2 KiB, then 2 + 2 KiB and 2 + 2 KiB. A quarter of 2 MiB is
// 512 KiB: the band is the head's three ops, and split 4 ways its heaviest
// op holds a quarter.
TEST(Fission, PeakBandIsTheRunAroundItsHeaviestOps) {
  GraphBuilder b("head");
  const TensorId x = b.Input("x", {64, 32});
  auto linear = [&](TensorId in, int64_t out, std::string_view w) {
    const TensorId weight = b.Parameter(std::string(w), {out, b.tensor(in).shape[1]});
    return b.Call("aten.mm", {in, b.Call("aten.t", {weight})});
  };
  const TensorId h = b.Call("aten.relu", {linear(x, 32, "w1")});
  const TensorId logits = linear(h, 4096, "w2");
  const TensorId ls = b.Call("aten._log_softmax", {logits}, {{"dim", int64_t{1}}, {"half_to_float", false}});
  const TensorId back = linear(ls, 8, "w3");
  const TensorId y = linear(b.Call("aten.relu", {back}), 8, "w4");
  b.MarkOutput(y);
  const Graph& g = b.graph();
  const BatchRuns along(g, x);
  ASSERT_EQ(along.runs.size(), 1u);
  ASSERT_EQ(along.runs[0].size(), 7u);  // the transposes do not touch the batch
  auto producer = [&](TensorId t) { return *b.tensor(t).producer; };
  const std::vector<OpId> band = PeakBand(g, along.dims, along.batch, along.runs[0]);
  EXPECT_THAT(band, ::testing::ElementsAre(producer(logits), producer(ls), producer(back)));

  const FissionResult split = ApplyFission(g, along.dims, {band, along.batch, 4});
  Validate(split.graph);
  EXPECT_EQ(split.record.num_ops, 3);
  EXPECT_EQ(Count(split.graph, "aten._log_softmax"), 4);
  EXPECT_EQ(Count(split.graph, "aten.relu"), 2);  // outside the band: whole
  const Tensor* part = Named(split.graph, "_log_softmax.part0");
  ASSERT_NE(part, nullptr);
  EXPECT_EQ(part->shape, (Shape{16, 4096}));

  // Where every op of a run is about as heavy (the MLP above), the band is
  // the whole run and comes back empty.
  Mlp m;
  const BatchRuns mlp(m.b.graph(), m.x);
  EXPECT_THAT(PeakBand(m.b.graph(), mlp.dims, mlp.batch, {m.mm1, m.relu, m.mm2}), ::testing::IsEmpty());
}

// A reshape that merges the batch as an inner factor ([S, B, H] ->
// [S*B, H]) carries it in S blocks (the heads in attention's
// [B*heads, S, dh] are carried so): a part is the same rows of every block.
// Sliced, the merged tensor is viewed as [S, B*H'], cut and copied; joined,
// the parts are viewed as blocks, concatenated along B and merged again.
TEST(Fission, FollowsTheBatchAsAnInnerFactor) {
  GraphBuilder b("inner");
  const TensorId x = b.Input("x", {4, 3, 8});
  const TensorId t = b.Call("aten.permute", {x}, {{"dims", std::vector<int64_t>{1, 0, 2}}});
  const TensorId c = b.Call("aten.clone", {t}, {{"memory_format", std::string("contiguous_format")}});
  const TensorId rows = b.Call("aten.view", {c}, {{"size", std::vector<int64_t>{12, 8}}});
  const TensorId r = b.Call("aten.relu", {rows});
  b.MarkOutput(r);
  const Graph& g = b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const int batch = DimOf(dims, x, 0);
  EXPECT_FALSE(WhyNotSplittable(g, dims, *b.tensor(rows).producer, batch));

  // The view and the relu in 2 parts: c [3, 4, 8] sliced along its axis 1
  // (a copy: not the leading axis), each part viewed as [3*2, 8]; the
  // relu's [12, 8] joined from 3 blocks of 2 rows per part.
  const FissionResult both =
      ApplyFission(g, dims, {{*b.tensor(rows).producer, *b.tensor(r).producer}, batch, 2});
  Validate(both.graph);
  const Tensor* view0 = Named(both.graph, "view.part0");
  ASSERT_NE(view0, nullptr);
  EXPECT_EQ(view0->shape, (Shape{6, 8}));
  const Tensor& out = both.graph.tensor(both.graph.outputs[0]);
  EXPECT_EQ(out.shape, (Shape{12, 8}));
  EXPECT_EQ(both.graph.op(*out.producer).type, "aten.reshape");
  const Tensor& joined = both.graph.tensor(both.graph.op(*out.producer).inputs[0]);
  const Op& cat = both.graph.op(*joined.producer);
  EXPECT_EQ(cat.type, "aten.cat");
  EXPECT_EQ(std::get<int64_t>(cat.attrs.at("dim")), 1);
  EXPECT_EQ(joined.shape, (Shape{3, 4, 8}));

  // The relu alone: its input [12, 8] holds the batch in 3 blocks of 4
  // rows; a part is viewed as [3, 4, 8], cut to [3, 2, 8], copied and
  // merged to [6, 8].
  const FissionResult relu = ApplyFission(g, dims, {{*b.tensor(r).producer}, batch, 2});
  Validate(relu.graph);
  const Tensor* relu1 = Named(relu.graph, "relu.part1");
  ASSERT_NE(relu1, nullptr);
  EXPECT_EQ(relu1->shape, (Shape{6, 8}));
  EXPECT_EQ(Count(relu.graph, "aten.slice"), 2);
  EXPECT_EQ(Count(relu.graph, "aten.clone"), 3);  // the original and one per part
}

}  // namespace
}  // namespace memfit

namespace memfit {
namespace {

// A view of a tensor from outside S that is also read after S is made again
// whole after the parts (a view costs nothing); its parts feed S.
TEST(Fission, RemakesViewsOfOutsideTensorsWhole) {
  GraphBuilder b("view-out");
  const TensorId x = b.Input("x", {6, 4});
  const TensorId v = b.Call("aten.view", {x}, {{"size", std::vector<int64_t>{6, 2, 2}}});
  const TensorId y = b.Call("aten.relu", {v});
  b.MarkOutput(y);
  b.MarkOutput(v);
  const Graph& g = b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const FissionResult r = ApplyFission(g, dims, {AllOps(g), DimOf(dims, x, 0), 2});
  Validate(r.graph);
  const Tensor& whole = r.graph.tensor(r.graph.outputs[1]);
  EXPECT_EQ(whole.name, "view");
  EXPECT_EQ(whole.shape, (Shape{6, 2, 2}));
  ASSERT_TRUE(whole.alias_of.has_value());
  EXPECT_EQ(r.graph.tensor(*whole.alias_of).name, "x");  // a view of x, not a copy
  EXPECT_EQ(Count(r.graph, "aten.cat"), 1);              // only y is joined
}

}  // namespace
}  // namespace memfit

namespace memfit {
namespace {

// What torch traces for dropout: bernoulli_ into empty_like(x), div_ by the
// keep probability, then x * mask. The draw needs nothing of the run: it
// stays whole, before the parts, and the run goes on around it. Held whole
// across the parts, the mask is drawn as bools (1 byte per element, not 4);
// each part makes its slice the scaled float mask again.
// An op between the split ops that waits for them (a write, or what reads
// one) runs after them, and so does every op that reads what it makes or
// writes: swin's stochastic depth draws bernoulli_ into an empty buffer
// that a later product reads. Run before the parts, the product read the
// buffer before the draw filled it.
TEST(Fission, OpsThatReadADeferredWriteWaitForIt) {
  GraphBuilder b("deferred");
  const TensorId x = b.Input("x", {5, 3});
  const TensorId w = b.Parameter("w", {4, 3});
  const TensorId wd = b.Call("aten.detach", {w});
  const TensorId noise = b.Call("aten.empty", {}, {{"size", std::vector<int64_t>{5, 3}}});
  const TensorId drawn = b.Call("aten.bernoulli_.float", {noise}, {{"p", 0.5}});
  const TensorId kept = b.Call("aten.mul", {x, drawn});
  const TensorId wt = b.Call("aten.t", {wd});
  const TensorId y = b.Call("aten.mm", {x, wt});
  b.MarkOutput(b.Call("aten.relu", {kept}));
  b.MarkOutput(y);
  const Graph& g = b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const int rows = DimOf(dims, w, 0);
  ASSERT_GE(rows, 0);
  const FissionResult split =
      ApplyFission(g, dims, {{*g.tensor(wd).producer, *g.tensor(wt).producer, *g.tensor(y).producer}, rows, 2});
  Validate(split.graph);
  std::optional<size_t> draw, product;
  for (const Op& op : split.graph.ops()) {
    if (op.type == "aten.bernoulli_") draw = op.id.index();
    if (op.type == "aten.mul") product = op.id.index();
  }
  ASSERT_TRUE(draw && product);
  EXPECT_LT(*draw, *product);
}

// Random draws between S's ops keep their order. The first draw fills a
// fresh buffer S never reads: it runs in its place, before the second,
// which S reads. Drawn into a tensor made from an S result instead, the
// first waits for the parts, and the second, which S needs, would draw
// before it: refused.
// (An encoder-decoder transformer split in its decoder drew every mask from
// another place in the stream: the encoder's waited, the decoder's did not.)
// A gather's backward scatters into new_zeros(h, size), which reads only h's
// dtype: made whole before the parts as a factory, it no longer ends the run
// where h is made in it (a top-k gate's experts, stacked, could not be split).
TEST(Fission, NewZerosBeforeAScatterIsAFactory) {
  GraphBuilder b("gathered");
  const TensorId x = b.Input("x", {6, 4});
  const TensorId idx = b.Input("idx", {6, 2}, DType::kI64);
  const TensorId h = b.Call("aten.tanh", {x});
  const TensorId picked = b.Call("aten.gather", {h, idx}, {{"dim", int64_t{1}}});
  const TensorId zeros = b.Call("aten.new_zeros", {h}, {{"size", std::vector<int64_t>{6, 4}}});
  const TensorId back = b.Call("aten.scatter_add", {zeros, idx, picked}, {{"dim", int64_t{1}}});
  b.MarkOutput(b.Call("aten.relu", {back}));
  const Graph& g = b.graph();
  const BatchRuns batch(g, x);
  ASSERT_EQ(batch.runs.size(), 1u);
  EXPECT_EQ(batch.runs[0].size(), g.num_ops() - 1);  // every op but the factory
  const FissionResult split = ApplyFission(g, batch.dims, {batch.runs[0], batch.batch, 3});
  Validate(split.graph);
  EXPECT_EQ(split.graph.tensor(split.graph.outputs[0]).shape, (Shape{6, 4}));
}

TEST(Fission, RandomDrawsBetweenTheSplitOpsKeepTheirOrder) {
  for (bool after_s : {false, true}) {
    GraphBuilder b("draws");
    const TensorId x = b.Input("x", {5, 3});
    const TensorId w = b.Parameter("w", {4, 3});
    const TensorId wd = b.Call("aten.detach", {w});
    const TensorId wt_first = b.Call("aten.t", {wd});
    const TensorId first_buffer = after_s ? b.Call("aten.mul", {wt_first, wt_first})
                                          : b.Call("aten.empty", {}, {{"size", std::vector<int64_t>{5, 3}}});
    const TensorId first = b.Call("aten.bernoulli_.float", {first_buffer}, {{"p", 0.5}});
    b.MarkOutput(b.Call("aten.relu", {first}));
    const TensorId second_buffer = b.Call("aten.empty", {}, {{"size", std::vector<int64_t>{5, 3}}});
    const TensorId second = b.Call("aten.bernoulli_.float", {second_buffer}, {{"p", 0.5}});
    const TensorId kept = b.Call("aten.mul", {x, second});
    const TensorId wt = b.Call("aten.t", {wd});
    const TensorId y = b.Call("aten.mm", {kept, wt});
    b.MarkOutput(y);
    const Graph& g = b.graph();
    const DimensionGraph dims = ComputeDimensions(g);
    const int rows = DimOf(dims, w, 0);
    ASSERT_GE(rows, 0);
    std::vector<OpId> s = {*g.tensor(wd).producer, *g.tensor(wt).producer, *g.tensor(y).producer};
    if (after_s) {
      s.insert(s.begin() + 1, *g.tensor(wt_first).producer);
      EXPECT_THAT(testing::ErrorOf([&] { ApplyFission(g, dims, {s, rows, 2}); }),
                  HasSubstr("draws after one that must wait for them"));
      continue;
    }
    const FissionResult split = ApplyFission(g, dims, {s, rows, 2});
    Validate(split.graph);
    std::vector<std::string> draws;
    for (const Op& op : split.graph.ops()) {
      if (op.type == "aten.bernoulli_") draws.push_back(split.graph.tensor(op.inputs[0]).name);
    }
    EXPECT_EQ(draws, (std::vector<std::string>{g.tensor(first_buffer).name, g.tensor(second_buffer).name}));
  }
}

TEST(Fission, KeepsAWholeDrawOutsideTheRunAsBools) {
  GraphBuilder b("traced-dropout");
  const TensorId x = b.Input("x", {6, 4});
  const TensorId h = b.Call("aten.relu", {x});
  const TensorId e = b.Call("aten.empty_like", {h});
  const TensorId drawn = b.Call("aten.bernoulli_.float", {e});  // p left at its default, 0.5
  const TensorId mask = b.Call("aten.div_.Scalar", {drawn}, {{"other", 0.5}});
  const TensorId y = b.Call("aten.mul", {h, mask});
  const TensorId r = b.Call("aten.relu", {y});
  b.MarkOutput(r);
  const Graph& g = b.graph();
  const BatchRuns along(g, x);
  ASSERT_EQ(along.runs.size(), 1u);
  EXPECT_EQ(along.runs[0].size(), 3u);  // relu, mul, relu
  const FissionResult split = ApplyFission(g, along.dims, {along.runs[0], along.batch, 2});
  Validate(split.graph);
  for (const Op& op : split.graph.ops()) {
    if (op.type == "aten.bernoulli") {
      EXPECT_EQ(std::get<double>(op.attrs.at("p")), 0.5);
    }
  }
  EXPECT_EQ(Count(split.graph, "aten.bernoulli_"), 0);
  EXPECT_EQ(Count(split.graph, "aten.bernoulli"), 1);
  EXPECT_EQ(Count(split.graph, "aten._to_copy"), 2);
  EXPECT_EQ(Count(split.graph, "aten.div_"), 2);
  EXPECT_EQ(Count(split.graph, "aten.mul"), 2);
  // The draw comes before every part, as bools; each part's mask is a float
  // [3, 4] scaled by the keep probability.
  size_t draw = 0, first_part = split.graph.num_ops();
  for (const Op& op : split.graph.ops()) {
    if (op.type == "aten.bernoulli") {
      draw = op.id.index();
      EXPECT_EQ(split.graph.tensor(op.outputs[0]).dtype, DType::kBool);
    }
    if (op.name.find(".part") != std::string::npos) first_part = std::min(first_part, op.id.index());
    if (op.type == "aten.div_") {
      EXPECT_EQ(split.graph.tensor(op.outputs[0]).dtype, DType::kF32);
      EXPECT_EQ(split.graph.tensor(op.outputs[0]).shape, (Shape{3, 4}));
    }
  }
  EXPECT_LT(draw, first_part);
}

// _reshape_alias spells out contiguous strides: a part gets its own.
TEST(Fission, RewritesTheStridesOfAReshapeAlias) {
  GraphBuilder b("reshape-alias");
  const TensorId x = b.Input("x", {4, 3, 2});
  const TensorId v = b.Call("aten._reshape_alias", {x},
                            {{"size", std::vector<int64_t>{4, 6}}, {"stride", std::vector<int64_t>{6, 1}}});
  const TensorId r = b.Call("aten.relu", {v});
  const TensorId back = b.Call("aten.view", {r}, {{"size", std::vector<int64_t>{4, 3, 2}}});
  const TensorId y = b.Call("aten.add", {back, x});
  b.MarkOutput(y);
  const Graph& g = b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const FissionResult split = ApplyFission(g, dims, {AllOps(g), DimOf(dims, x, 0), 2});
  Validate(split.graph);
  for (const Op& op : split.graph.ops()) {
    if (op.type == "aten._reshape_alias") {
      EXPECT_EQ(std::get<std::vector<int64_t>>(op.attrs.at("size")), (std::vector<int64_t>{2, 6}));
      EXPECT_EQ(std::get<std::vector<int64_t>>(op.attrs.at("stride")), (std::vector<int64_t>{6, 1}));
    }
  }
}

}  // namespace
}  // namespace memfit

namespace memfit {
namespace {

// A classifier on the first token (x[:, 0], traced as a slice of the whole
// batch and a select) and its backward (slice_backward into the whole
// batch): the slice keeps all of the batch, so each part slices all of its
// own rows and the region runs through it.
TEST(Fission, RunsThroughASliceThatKeepsTheWholeBatch) {
  GraphBuilder b("first-token");
  const TensorId x = b.Input("x", {6, 5, 4});
  const int64_t end = std::numeric_limits<int64_t>::max();
  const auto whole_slice = [&](TensorId t, const char* type, bool backward) {
    Attrs attrs{{"dim", int64_t{0}}, {"start", int64_t{0}}, {"end", end}, {"step", int64_t{1}}};
    if (backward) attrs["input_sizes"] = std::vector<int64_t>{6, 5, 4};
    return b.Call(type, {t}, attrs);
  };
  const TensorId rows = whole_slice(b.Call("aten.relu", {x}), "aten.slice", false);
  const TensorId first = b.Call("aten.select", {rows}, {{"dim", int64_t{1}}, {"index", int64_t{0}}});
  const TensorId grad = b.Call("aten.select_backward", {b.Call("aten.mul", {first, first})},
                               {{"input_sizes", std::vector<int64_t>{6, 5, 4}}, {"dim", int64_t{1}}, {"index", int64_t{0}}});
  b.MarkOutput(b.Call("aten.relu", {whole_slice(grad, "aten.slice_backward", true)}));
  const Graph& g = b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const int batch = DimOf(dims, x, 0);
  const auto regions = FissionRegions(g, dims, batch);
  ASSERT_EQ(regions.size(), 1u);
  EXPECT_EQ(regions[0].size(), g.num_ops());
  const FissionResult split = ApplyFission(g, dims, {regions[0], batch, 3});
  Validate(split.graph);
  for (const Op& op : split.graph.ops()) {
    if (op.type == "aten.slice_backward" && op.name.find(".part") != std::string::npos) {
      EXPECT_EQ(std::get<std::vector<int64_t>>(op.attrs.at("input_sizes")), (std::vector<int64_t>{2, 5, 4})) << op.name;
    }
  }
  EXPECT_EQ(Count(split.graph, "aten.slice_backward"), 3);
}

}  // namespace
}  // namespace memfit

namespace memfit {
namespace {

// Self-attention without heads: the scores' rows and columns both come
// from the sequence of x, so the group of the sequence holds the rows and
// the keys' axis, not the columns (a group never holds two axes of one
// tensor). scores @ k then sums the keys' sequence while its rows carry the
// queries': one part of its output needs every part of the keys. Refused
// for the sequence; every region found applies (it used to stop at the
// shape check of the split).
TEST(Fission, RefusesToSumADimensionAnOutputCarries) {
  GraphBuilder b("attention-like");
  const TensorId x = b.Input("x", {6, 4});
  const TensorId q = b.Call("aten.mm", {x, b.Parameter("wq", {4, 4})});
  const TensorId k = b.Call("aten.mm", {x, b.Parameter("wk", {4, 4})});
  const TensorId scores = b.Call("aten.relu", {b.Call("aten.mm", {q, b.Call("aten.t", {k})})});
  const TensorId context = b.Call("aten.mm", {scores, k});
  b.MarkOutput(b.Call("aten.relu", {context}));
  const Graph& g = b.graph();
  const DimensionGraph dims = ComputeDimensions(g);
  const int sequence = DimOf(dims, x, 0);
  const auto why = WhyNotSplittable(g, dims, *b.tensor(context).producer, sequence);
  ASSERT_TRUE(why.has_value());
  EXPECT_THAT(*why, HasSubstr("while an output carries it"));
  for (const std::vector<OpId>& run : FissionRegions(g, dims, sequence)) {
    Validate(ApplyFission(g, dims, {run, sequence, 2}).graph);
  }
}

}  // namespace
}  // namespace memfit
