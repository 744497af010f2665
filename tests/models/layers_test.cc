// Tests of the zoo's building blocks: the ATen op sequences they emit.
#include "models/layers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ir/validate.h"

namespace memfit::models {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> OpTypes(const Graph& g) {
  std::vector<std::string> types;
  for (const Op& op : g.ops()) types.push_back(op.qualified_type());
  return types;
}

TEST(Layers, LinearOn2dIsTAddmm) {
  GraphBuilder b("linear");
  TensorId x = b.Input("x", {4, 8});
  TensorId y = Linear(b, "fc", x, 16);
  EXPECT_EQ(b.shape(y), (Shape{4, 16}));
  const Graph g = b.Finish();
  EXPECT_THAT(OpTypes(g), ElementsAre("aten.t", "aten.addmm"));
  // addmm(bias, x, weight.t())
  const Op& addmm = g.ops()[1];
  EXPECT_EQ(g.tensor(addmm.inputs[0]).name, "fc.bias");
  EXPECT_EQ(addmm.inputs[1], x);
  EXPECT_EQ(g.tensor(addmm.inputs[2]).alias_of, std::optional<TensorId>(g.ops()[0].inputs[0]));
  Validate(g);
}

TEST(Layers, LinearOn3dFlattensAroundAddmm) {
  GraphBuilder b("linear");
  TensorId x = b.Input("x", {2, 3, 8});
  TensorId y = Linear(b, "fc", x, 16);
  TensorId z = Linear(b, "proj", y, 4, /*bias=*/false);
  EXPECT_EQ(b.shape(y), (Shape{2, 3, 16}));
  EXPECT_EQ(b.shape(z), (Shape{2, 3, 4}));
  const Graph g = b.Finish();
  EXPECT_THAT(OpTypes(g), ElementsAre("aten.t", "aten.view", "aten.addmm", "aten.view",  //
                                      "aten.t", "aten.view", "aten.mm", "aten.view"));
  Validate(g);
}

TEST(Layers, ConvWithoutBiasHasNoneAttribute) {
  GraphBuilder b("conv");
  TensorId x = b.Input("x", {2, 3, 32, 32});
  TensorId y = Conv2d(b, "conv1", x, 8, 3, {.stride = 2, .padding = 1});
  EXPECT_EQ(b.shape(y), (Shape{2, 8, 16, 16}));
  TensorId up = Conv2d(b, "up", y, 4, 2, {.stride = 2, .bias = true, .transposed = true});
  EXPECT_EQ(b.shape(up), (Shape{2, 4, 32, 32}));
  const Graph g = b.Finish();
  const Op& conv = g.ops()[0];
  EXPECT_EQ(conv.inputs.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(conv.attrs.at("bias")));
  EXPECT_EQ(g.ops()[1].inputs.size(), 3u);
  EXPECT_EQ(g.tensor(g.ops()[1].inputs[1]).shape, (Shape{8, 4, 2, 2}));  // [in, out, k, k]
  Validate(g);
}

TEST(Layers, BatchNormReadsParametersAndRunningStatistics) {
  GraphBuilder b("bn");
  TensorId x = b.Input("x", {2, 8, 4, 4});
  BatchNorm2d(b, "bn1", x);
  const Graph g = b.Finish();
  const Op& bn = g.ops()[0];
  EXPECT_EQ(bn.qualified_type(), "aten.native_batch_norm");
  ASSERT_EQ(bn.inputs.size(), 5u);
  EXPECT_EQ(g.tensor(bn.inputs[1]).role, TensorRole::kParameter);
  EXPECT_EQ(g.tensor(bn.inputs[3]).name, "bn1.running_mean");
  EXPECT_EQ(g.tensor(bn.inputs[3]).role, TensorRole::kBuffer);
  EXPECT_EQ(bn.outputs.size(), 3u);
  EXPECT_EQ(std::get<bool>(bn.attrs.at("training")), true);
  EXPECT_EQ(MutatedInputs(g, bn), (std::vector<size_t>{3, 4}));
  Validate(g);
}

TEST(Layers, CrossEntropyIsLogSoftmaxThenNllLoss) {
  GraphBuilder b("ce");
  TensorId logits = b.Input("logits", {6, 10});
  TensorId labels = b.Input("labels", {6}, DType::kI64);
  TensorId loss = CrossEntropy(b, logits, labels);
  EXPECT_TRUE(b.shape(loss).empty());
  const Graph g = b.Finish();
  EXPECT_THAT(OpTypes(g), ElementsAre("aten._log_softmax", "aten.nll_loss_forward"));
  EXPECT_EQ(std::get<int64_t>(g.ops()[1].attrs.at("ignore_index")), -100);
  Validate(g);
}

TEST(Layers, DropoutIsOmittedAtZero) {
  GraphBuilder b("dropout");
  TensorId x = b.Input("x", {4});
  EXPECT_EQ(Dropout(b, x, 0), x);
  EXPECT_NE(Dropout(b, x, 0.5), x);
  const Graph g = b.Finish();
  EXPECT_THAT(OpTypes(g), ElementsAre("aten.native_dropout"));
  EXPECT_EQ(g.ops()[0].outputs.size(), 2u);
}

// Self-attention as torch.matmul decomposes it: heads split with view +
// permute, cloned contiguous and flattened to [B * heads, S, dh] for bmm.
TEST(Layers, MultiHeadAttentionOpSequence) {
  GraphBuilder b("attn");
  TensorId q = b.Input("q", {2, 5, 8});
  TensorId k = b.Input("k", {2, 5, 8});
  TensorId v = b.Input("v", {2, 5, 8});
  TensorId mask = b.Input("mask", {2, 1, 1, 5});
  TensorId ctx = MultiHeadAttention(b, q, k, v,
                                    {.heads = 2, .scale = 2.0, .scale_tensor = std::nullopt, .mask = mask, .dropout = 0.1});
  EXPECT_EQ(b.shape(ctx), (Shape{2, 5, 8}));
  const Graph g = b.Finish();
  EXPECT_THAT(OpTypes(g),
              ElementsAre("aten.view", "aten.permute", "aten.view", "aten.permute", "aten.view", "aten.permute",
                          "aten.transpose.int", "aten.clone", "aten.view", "aten.clone", "aten.view", "aten.bmm",
                          "aten.view", "aten.div.Scalar", "aten.add.Tensor", "aten._softmax", "aten.native_dropout",
                          "aten.view", "aten.clone", "aten.view", "aten.bmm", "aten.view", "aten.permute",
                          "aten.clone", "aten.view"));
  for (const Op& op : g.ops()) {
    if (op.type == "aten.bmm") {
      EXPECT_EQ(g.tensor(op.outputs[0]).shape[0], 4);
    }
    if (op.type == "aten._softmax") {
      EXPECT_EQ(g.tensor(op.outputs[0]).shape, (Shape{2, 2, 5, 5}));
    }
  }
  Validate(g);
}

}  // namespace
}  // namespace memfit::models
