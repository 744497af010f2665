#include "autodiff/training_graph.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "conv_attrs.h"
#include "ir/builder.h"
#include "ir/validate.h"
#include "test_util.h"
#include "util/error.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;

// x[8, 32] -> linear(32->16) -> relu -> linear(16->4) -> log_softmax -> nll.
// fc1.weight is used once; `shared` is added twice to exercise accumulation.
Graph TwoLayerMlp() {
  GraphBuilder b("mlp");
  TensorId x = b.Input("x", {8, 32});
  TensorId y = b.Input("y", {8}, DType::kI64);
  TensorId w1 = b.Parameter("fc1.weight", {16, 32});
  TensorId b1 = b.Parameter("fc1.bias", {16});
  TensorId w2 = b.Parameter("fc2.weight", {4, 16});
  TensorId b2 = b.Parameter("fc2.bias", {4});
  TensorId shared = b.Parameter("shared", {16});
  TensorId h = b.Call("aten.addmm", {b1, x, b.Call("aten.t", {w1})});
  h = b.Call("aten.add.Tensor", {h, shared});
  h = b.Call("aten.relu", {h});
  h = b.Call("aten.add.Tensor", {h, shared});
  TensorId logits = b.Call("aten.addmm", {b2, h, b.Call("aten.t", {w2})});
  TensorId lsm = b.Call("aten._log_softmax", {logits}, {{"dim", int64_t{1}}, {"half_to_float", false}});
  auto loss = b.CallMulti("aten.nll_loss_forward", {lsm, y},
                          {{"weight", std::monostate{}}, {"reduction", int64_t{1}}, {"ignore_index", int64_t{-100}}});
  b.mutable_graph().mutable_tensor(loss[0]).role = TensorRole::kOutput;
  b.MarkOutput(loss[0]);
  return b.Finish();
}

std::map<std::string, int> CountOpTypes(const Graph& g, Phase phase) {
  std::map<std::string, int> counts;
  for (const Op& op : g.ops()) {
    if (op.phase == phase) ++counts[op.qualified_type()];
  }
  return counts;
}

class TrainingGraphTest : public ::testing::TestWithParam<std::tuple<OptimizerKind, bool, double>> {};

TEST_P(TrainingGraphTest, EveryParameterGetsExactlyOneGradientOfItsShape) {
  const auto [optimizer, update, momentum] = GetParam();
  TrainingOptions options;
  options.optimizer = optimizer;
  options.update_weights = update;
  options.momentum = momentum;
  const Graph forward = TwoLayerMlp();
  const Graph train = BuildTrainingGraph(forward, options);
  EXPECT_NO_THROW(Validate(train));

  const auto grads = ParameterGradients(train);
  ASSERT_EQ(grads.size(), 5u);
  std::set<TensorId> distinct;
  for (const auto& [param, grad] : grads) {
    ASSERT_TRUE(grad.has_value()) << train.tensor(param).name;
    EXPECT_EQ(train.tensor(*grad).shape, train.tensor(param).shape) << train.tensor(param).name;
    EXPECT_EQ(train.tensor(*grad).role, TensorRole::kGradient);
    EXPECT_TRUE(distinct.insert(train.StorageRoot(*grad)).second) << "gradients share storage";
  }
  int states = 0;
  for (const Tensor& t : train.tensors()) states += t.role == TensorRole::kOptimizerState && !t.alias_of;
  if (!update) {
    EXPECT_EQ(states, 0);
    EXPECT_EQ(train.outputs.size(), 1u + 5u);  // loss + every gradient
  } else if (optimizer == OptimizerKind::kAdam) {
    EXPECT_EQ(states, 2 * 5);  // exp_avg and exp_avg_sq per parameter
    EXPECT_EQ(CountOpTypes(train, Phase::kOptimizer)["aten.addcdiv_"], 5);
  } else {
    EXPECT_EQ(states, momentum != 0 ? 5 : 0);
    EXPECT_GE(CountOpTypes(train, Phase::kOptimizer)["aten.add_.Tensor"], 5);
  }
  if (update) {
    // The update writes each parameter in place: same storage.
    for (TensorId out : train.outputs) {
      if (train.tensor(out).role == TensorRole::kParameter) {
        EXPECT_EQ(train.tensor(train.StorageRoot(out)).role, TensorRole::kParameter);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Optimizers, TrainingGraphTest,
                         ::testing::Values(std::make_tuple(OptimizerKind::kSgd, true, 0.0),
                                           std::make_tuple(OptimizerKind::kSgd, true, 0.9),
                                           std::make_tuple(OptimizerKind::kAdam, true, 0.0),
                                           std::make_tuple(OptimizerKind::kSgd, false, 0.0)),
                         [](const auto& info) {
                           // sgd, sgd_momentum, adam, sgd_no_update
                           return std::string(ToString(std::get<0>(info.param))) +
                                  (std::get<2>(info.param) > 0 ? "_momentum" : "") +
                                  (std::get<1>(info.param) ? "" : "_no_update");
                         });

TEST(TrainingGraph, BackwardUsesAtenBackwardOps) {
  const Graph train = BuildTrainingGraph(TwoLayerMlp());
  const auto counts = CountOpTypes(train, Phase::kBackward);
  EXPECT_EQ(counts.at("aten.nll_loss_backward"), 1);
  EXPECT_EQ(counts.at("aten._log_softmax_backward_data"), 1);
  EXPECT_EQ(counts.at("aten.threshold_backward"), 1);
  // fc2: grad of input and of weight; fc1: grad of weight only (x is data).
  EXPECT_EQ(counts.at("aten.mm"), 3);
  // `shared` is used twice: its two contributions are summed once.
  EXPECT_EQ(counts.at("aten.add.Tensor"), 1);
  // Bias gradients: sum over the batch with keepdim, then a view.
  EXPECT_EQ(counts.at("aten.sum.dim_IntList"), 4);
}

TEST(TrainingGraph, ConvolutionBackwardMasksInputGradientOfData) {
  GraphBuilder b("conv");
  TensorId x = b.Input("x", {2, 3, 8, 8});
  TensorId w = b.Parameter("conv.weight", {4, 3, 3, 3});
  TensorId y = b.Call("aten.convolution", {x, w}, testing::ConvAttrs(1, 1));
  TensorId loss = b.Call("aten.sum", {y});
  b.MarkOutput(loss);
  const Graph train = BuildTrainingGraph(b.Finish());
  Validate(train);
  for (const Op& op : train.ops()) {
    if (op.type != "aten.convolution_backward") continue;
    EXPECT_EQ(std::get<std::vector<int64_t>>(op.attrs.at("output_mask")), (std::vector<int64_t>{0, 1, 0}));
    EXPECT_EQ(op.outputs.size(), 1u);
  }
}

// ZeroPadding2D then a crop: each gradient is the incoming one padded or
// cropped back by the negated pad, to the input's shape.
TEST(TrainingGraph, ConstantPadBackwardCropsByTheNegatedPad) {
  GraphBuilder b("pad");
  TensorId w = b.Parameter("w", {2, 3, 4, 5});
  TensorId padded = b.Call("aten.constant_pad_nd", {w}, {{"pad", std::vector<int64_t>{1, 2, 0, 3}}, {"value", 0.0}});
  TensorId cropped = b.Call("aten.constant_pad_nd", {padded}, {{"pad", std::vector<int64_t>{0, -1}}, {"value", 0.0}});
  EXPECT_EQ(b.shape(cropped), (Shape{2, 3, 7, 7}));
  b.MarkOutput(b.Call("aten.sum", {cropped}));
  const Graph train = BuildTrainingGraph(b.Finish());
  Validate(train);
  std::vector<std::vector<int64_t>> pads;
  for (const Op& op : train.ops()) {
    if (op.phase == Phase::kBackward && op.type == "aten.constant_pad_nd") {
      pads.push_back(std::get<std::vector<int64_t>>(op.attrs.at("pad")));
    }
  }
  EXPECT_EQ(pads, (std::vector<std::vector<int64_t>>{{0, 1}, {-1, -2, 0, -3}}));
  EXPECT_EQ(train.tensor(*ParameterGradients(train).front().second).shape, (Shape{2, 3, 4, 5}));
}

TEST(TrainingGraph, RejectsGraphsWithoutAScalarLoss) {
  GraphBuilder b("g");
  TensorId w = b.Parameter("w", {4});
  b.MarkOutput(b.Call("aten.relu", {w}));
  const std::string error = testing::ErrorOf([&] { BuildTrainingGraph(b.Finish()); });
  EXPECT_THAT(error, HasSubstr("must be a floating-point scalar"));
}

TEST(TrainingGraph, NamesTheOpWithoutABackwardRule) {
  GraphBuilder b("g");
  TensorId w = b.Parameter("w", {4});
  TensorId y = b.CallOpaque("custom.op", {w}, {{{4}, DType::kF32}}, {}, "mystery")[0];
  b.MarkOutput(b.Call("aten.sum", {y}));
  const std::string error = testing::ErrorOf([&] { BuildTrainingGraph(b.Finish()); });
  EXPECT_THAT(error, HasSubstr("op 'mystery' (custom.op)"));
  EXPECT_THAT(error, HasSubstr("no backward rule"));
}

}  // namespace
}  // namespace memfit
