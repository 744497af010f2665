#include "ir/registry.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>

#include "conv_attrs.h"
#include "ir/builder.h"
#include "ir/validate.h"
#include "test_util.h"
#include "util/error.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;

// Expects `fn` to throw memfit::Error whose message contains `fragment`.
template <typename Fn>
void ExpectError(Fn fn, const std::string& fragment) {
  const std::string error = testing::ErrorOf([&] { fn(); });
  EXPECT_THAT(error, HasSubstr(fragment));
}

// The dimension links of the op that made t.
std::vector<DimLink> LinksOf(GraphBuilder& b, TensorId t) {
  return ComputeDimLinks(b.graph(), b.graph().op(b.tensor(t).producer.value())).links;
}

TEST(Registry, CoversAtLeastFiftyAtenOps) {
  const auto types = RegisteredOpTypes();
  EXPECT_GE(types.size(), 50u);
  for (const char* must : {"aten.mm", "aten.addmm", "aten.bmm", "aten.convolution", "aten.convolution_backward",
                           "aten.native_layer_norm", "aten.native_layer_norm_backward", "aten.native_batch_norm",
                           "aten.native_batch_norm_backward", "aten._softmax", "aten._softmax_backward_data",
                           "aten.gelu", "aten.gelu_backward", "aten.embedding", "aten.embedding_dense_backward",
                           "aten.nll_loss_forward", "aten.nll_loss_backward", "aten.native_dropout",
                           "aten.max_pool2d_with_indices", "aten.threshold_backward", "aten.view", "aten.permute"}) {
    EXPECT_NE(FindOpSchema(must), nullptr) << must;
  }
  EXPECT_EQ(FindOpSchema("aten.no_such_op"), nullptr);
}

TEST(Registry, MatmulShapesFlopsAndLinks) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {8, 32});
  TensorId w = b.Parameter("w", {16, 32});
  TensorId wt = b.Call("aten.t", {w});
  TensorId y = b.Call("aten.mm", {x, wt});
  EXPECT_EQ(b.shape(wt), (Shape{32, 16}));
  EXPECT_EQ(b.shape(y), (Shape{8, 16}));
  const Graph& g = b.graph();
  // 2 * M * N * K = 2 * 8 * 16 * 32.
  EXPECT_DOUBLE_EQ(ComputeOpCost(g, g.op(OpId(1))).flops, 8192.0);
  // aten.t is a view: no bytes move and its output shares w's storage.
  EXPECT_EQ(ComputeOpCost(g, g.op(OpId(0))).bytes_read, 0);
  EXPECT_EQ(g.StorageRoot(wt), w);
  const DimLinks links = ComputeDimLinks(g, g.op(OpId(1)));
  EXPECT_THAT(links.links, ::testing::Contains(DimLink{0, 0, 0, 0}));  // M from x
  EXPECT_THAT(links.links, ::testing::Contains(DimLink{0, 1, 1, 1}));  // N from w^T
  // K summed (parts add up), one index over both inputs.
  EXPECT_THAT(links.reduced, ::testing::ElementsAre(ReducedDim{0, 1, PartialCombine::kSum, 0},
                                                    ReducedDim{1, 0, PartialCombine::kSum, 0}));
}

TEST(Registry, UninitializedAllocationsMoveNoBytes) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {64, 128});
  b.Call("aten.empty_like", {x});
  b.Call("aten.ones_like", {x});
  b.Call("aten.empty", {}, {{"size", std::vector<int64_t>{64, 128}}, {"dtype", std::string("bool")}});
  const Graph& g = b.graph();
  // empty_like and empty hand out memory as it is: nothing read, written or computed.
  for (OpId id : {OpId(0), OpId(2)}) {
    const OpCost cost = ComputeOpCost(g, g.op(id));
    EXPECT_EQ(cost.bytes_read, 0) << g.op(id).type;
    EXPECT_EQ(cost.bytes_written, 0) << g.op(id).type;
    EXPECT_EQ(cost.flops, 0) << g.op(id).type;
  }
  // ones_like writes every element (64 * 128 floats).
  EXPECT_EQ(ComputeOpCost(g, g.op(OpId(1))).bytes_written, 64 * 128 * 4);
}

TEST(Registry, ConvolutionShapeAndWorkspace) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {2, 3, 224, 224});
  TensorId w = b.Parameter("w", {64, 3, 7, 7});
  TensorId y = b.Call("aten.convolution", {x, w}, testing::ConvAttrs(2, 3));
  EXPECT_EQ(b.shape(y), (Shape{2, 64, 112, 112}));
  const OpCost cost = ComputeOpCost(b.graph(), b.graph().op(OpId(0)));
  // 2 * N*Cout*Hout*Wout * Cin*kh*kw
  EXPECT_DOUBLE_EQ(cost.flops, 2.0 * 2 * 64 * 112 * 112 * 3 * 7 * 7);
  // im2col columns of one sample: Cin*kh*kw * Hout*Wout floats.
  EXPECT_EQ(cost.workspace_bytes, 3 * 7 * 7 * 112 * 112 * 4);
}

TEST(Registry, TransposedConvolutionDoublesResolution) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {1, 128, 16, 16});
  TensorId w = b.Parameter("w", {128, 64, 2, 2});
  TensorId y = b.Call("aten.convolution", {x, w},
                      {{"stride", std::vector<int64_t>{2, 2}}, {"padding", std::vector<int64_t>{0, 0}},
                       {"transposed", true}, {"bias", std::monostate{}}});
  EXPECT_EQ(b.shape(y), (Shape{1, 64, 32, 32}));
  // The columns of a transposed convolution span the input's pixels: Cout*kh*kw
  // x Hin*Win floats (ATen's slow_conv_transpose2d), a quarter of what the
  // output's pixels would give at stride 2.
  EXPECT_EQ(ComputeOpCost(b.graph(), b.graph().op(OpId(0))).workspace_bytes, 64 * 2 * 2 * 16 * 16 * 4);
  // Its backward holds the same columns.
  TensorId dy = b.Input("dy", {1, 64, 32, 32});
  b.CallMulti("aten.convolution_backward", {dy, x, w}, testing::ConvBackwardAttrs(2, 0, 0, {1, 1, 0}, /*transposed=*/true));
  EXPECT_EQ(ComputeOpCost(b.graph(), b.graph().op(OpId(1))).workspace_bytes, 64 * 2 * 2 * 16 * 16 * 4);
}

TEST(Registry, LayerNormStatisticsKeepLeadingDims) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {4, 10, 32});
  TensorId w = b.Parameter("w", {32});
  TensorId bias = b.Parameter("b", {32});
  auto outs = b.CallMulti("aten.native_layer_norm", {x, w, bias},
                          {{"normalized_shape", std::vector<int64_t>{32}}, {"eps", 1e-12}});
  ASSERT_EQ(outs.size(), 3u);
  EXPECT_EQ(b.shape(outs[0]), (Shape{4, 10, 32}));
  EXPECT_EQ(b.shape(outs[1]), (Shape{4, 10, 1}));
  EXPECT_EQ(b.tensor(outs[1]).dtype, DType::kF32);
}

// Statistics are float for f32 and half inputs, double for double inputs (a
// model captured in f64 declares them so).
TEST(Registry, NormalizationStatisticsOfDoubleInputsAreDouble) {
  for (DType dtype : {DType::kF64, DType::kBF16}) {
    GraphBuilder b("g", dtype);
    TensorId x = b.Input("x", {4, 8, 6, 6});
    TensorId w = b.Parameter("w", {8});
    TensorId bias = b.Parameter("b", {8});
    const DType stats = dtype == DType::kF64 ? DType::kF64 : DType::kF32;
    auto bn = b.CallMulti("aten.native_batch_norm", {x, w, bias}, testing::BatchNormTrainingAttrs());
    EXPECT_EQ(b.tensor(bn[1]).dtype, stats) << ToString(dtype);
    TensorId w6 = b.Parameter("w6", {6});
    TensorId b6 = b.Parameter("b6", {6});
    auto ln = b.CallMulti("aten.native_layer_norm", {x, w6, b6},
                          {{"normalized_shape", std::vector<int64_t>{6}}, {"eps", 1e-5}});
    EXPECT_EQ(b.tensor(ln[2]).dtype, stats) << ToString(dtype);
  }
}

// torch 1.13's CPU kernels return a bf16 layer norm's and batch norm's
// statistics in bf16 (a graph captured for real there declares them so), its
// meta kernels (fake tracing) in float: either is taken as declared; another
// dtype is refused.
TEST(Registry, ReducedPrecisionStatisticsAreTakenAsDeclared) {
  GraphBuilder b("g", DType::kBF16);
  TensorId x = b.Input("x", {4, 8, 6});
  TensorId w = b.Parameter("w", {6}), bias = b.Parameter("b", {6});
  const Attrs attrs{{"normalized_shape", std::vector<int64_t>{6}}, {"eps", 1e-5}};
  for (DType stats : {DType::kBF16, DType::kF32}) {
    auto ln = b.CallOpaque("aten.native_layer_norm", {x, w, bias},
                           {{{4, 8, 6}, DType::kBF16}, {{4, 8, 1}, stats}, {{4, 8, 1}, stats}}, attrs);
    const Op& op = b.graph().op(*b.tensor(ln[1]).producer);
    EXPECT_EQ(InferOutputTypes(*FindOpSchema("aten.native_layer_norm"), b.graph(), op)[2].dtype, stats);
  }
  EXPECT_NO_THROW(Validate(b.graph()));
  b.CallOpaque("aten.native_layer_norm", {x, w, bias},
               {{{4, 8, 6}, DType::kBF16}, {{4, 8, 1}, DType::kF16}, {{4, 8, 1}, DType::kF16}}, attrs);
  ExpectError([&] { Validate(b.graph()); }, "is declared f16[4, 8, 1], the registry infers f32[4, 8, 1]");
}

TEST(Registry, ViewResolvesMinusOneAndRejectsBadCounts) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {4, 6});
  EXPECT_EQ(b.shape(b.Call("aten.view", {x}, {{"size", std::vector<int64_t>{2, -1}}})), (Shape{2, 12}));
  ExpectError([&] { b.Call("aten.view", {x}, {{"size", std::vector<int64_t>{5, 5}}}); }, "cannot view [4, 6]");
  ExpectError([&] { b.Call("aten.view", {x}, {{"size", std::vector<int64_t>{-1, -1}}}); }, "more than one -1");
  // reshape's argument is ATen's: "shape" (what the executor passes on).
  EXPECT_EQ(b.shape(b.Call("aten.reshape", {x}, {{"shape", std::vector<int64_t>{3, -1}}})), (Shape{3, 8}));
  ExpectError([&] { b.Call("aten.reshape", {x}, {{"size", std::vector<int64_t>{3, 8}}}); }, "shape");
}

TEST(Registry, ShapeErrorsNameTheOp) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {8, 32});
  TensorId w = b.Parameter("w", {16, 8});
  ExpectError([&] { b.Call("aten.mm", {x, w}, {}, "proj"); }, "op 'proj' (aten.mm): inner dimensions do not match");
  ExpectError([&] { b.Call("aten.mm", {x}); }, "expects 2 tensor inputs, got 1");
  ExpectError([&] { b.Call("aten._softmax", {x}, {{"dim", int64_t{5}}}); }, "'dim' = 5 is out of range");
  ExpectError([&] { b.Call("aten.add.Tensor", {x, w}); }, "do not broadcast");
  ExpectError([&] { b.Call("aten.native_dropout", {x}, {{"p", 1.5}}); }, "outside [0, 1]");
  ExpectError([&] { b.Call("aten.not_an_op", {x}); }, "not registered");
}

TEST(Registry, InPlaceAndRandomFlags) {
  EXPECT_TRUE(FindOpSchema("aten.add_")->inplace);
  EXPECT_FALSE(FindOpSchema("aten.add")->inplace);
  EXPECT_TRUE(IsRandomOp("aten.native_dropout"));
  EXPECT_TRUE(IsRandomOp("aten.bernoulli"));
  EXPECT_FALSE(IsRandomOp("aten.relu"));
  EXPECT_FALSE(IsRandomOp("custom.unknown"));
  GraphBuilder b("g");
  TensorId p = b.Parameter("p", {4});
  TensorId g = b.Input("g", {4});
  TensorId p2 = b.Call("aten.add_.Tensor", {p, g}, {{"alpha", -0.1}});
  EXPECT_EQ(b.graph().StorageRoot(p2), p);
  EXPECT_EQ(b.tensor(p2).role, TensorRole::kParameter);
}

TEST(Registry, BatchNormMutatesRunningStats) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {2, 8, 4, 4});
  TensorId w = b.Parameter("w", {8}), bias = b.Parameter("b", {8});
  TensorId mean = b.Buffer("mean", {8}), var = b.Buffer("var", {8});
  b.CallMulti("aten.native_batch_norm", {x, w, bias, mean, var}, {{"training", true}, {"momentum", 0.1}, {"eps", 1e-5}});
  EXPECT_EQ(MutatedInputs(b.graph(), b.graph().op(OpId(0))), (std::vector<size_t>{3, 4}));
  const OpFlags flags = ComputeOpFlags(b.graph(), b.graph().op(OpId(0)));
  EXPECT_EQ(flags.mutated_inputs, (std::vector<size_t>{3, 4}));
  EXPECT_FALSE(flags.random || flags.inplace || flags.view);
}

// Every op PyTorch 1.13 tags nondeterministic_seeded (functional and in-place
// forms; python/tests/test_op_flags.py checks the installed torch's list
// against the registry), so --no-rng-replay and the Python side's RNG replay
// cover them all.
TEST(Registry, EveryRandomAtenOpIsRandom) {
  for (const char* name :
       {"aten._fused_dropout", "aten._sample_dirichlet", "aten._standard_gamma", "aten.alpha_dropout",
        "aten.alpha_dropout_", "aten.bernoulli", "aten.bernoulli_", "aten.binomial", "aten.cauchy", "aten.cauchy_",
        "aten.dropout", "aten.dropout_", "aten.exponential", "aten.exponential_", "aten.feature_alpha_dropout",
        "aten.feature_alpha_dropout_", "aten.feature_dropout", "aten.feature_dropout_", "aten.geometric",
        "aten.geometric_", "aten.log_normal", "aten.log_normal_", "aten.multinomial", "aten.native_dropout",
        "aten.normal", "aten.normal_", "aten.normal_functional", "aten.poisson", "aten.rand", "aten.rand_like",
        "aten.randint", "aten.randint_like", "aten.randn", "aten.randn_like", "aten.random", "aten.random_",
        "aten.randperm", "aten.rrelu", "aten.rrelu_", "aten.rrelu_with_noise", "aten.rrelu_with_noise_",
        "aten.uniform", "aten.uniform_"}) {
    EXPECT_TRUE(IsRandomOp(name)) << name;
  }
}

TEST(Registry, RandomOpsInferTheirShapes) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {4, 5});
  TensorId probs = b.Input("probs", {3, 10});
  TensorId d = b.Call("aten.dropout", {x}, {{"p", 0.1}, {"train", true}});
  EXPECT_EQ(b.shape(d), (Shape{4, 5}));
  EXPECT_EQ(b.tensor(b.Call("aten.randperm", {}, {{"n", int64_t{7}}})).shape, (Shape{7}));
  EXPECT_EQ(b.tensor(b.Call("aten.randperm", {}, {{"n", int64_t{7}}})).dtype, DType::kI64);
  TensorId m = b.Call("aten.multinomial", {probs}, {{"num_samples", int64_t{2}}, {"replacement", false}});
  EXPECT_EQ(b.shape(m), (Shape{3, 2}));
  EXPECT_EQ(b.tensor(m).dtype, DType::kI64);
  EXPECT_EQ(b.shape(b.Call("aten.normal.Tensor_float", {x}, {{"std", 1.0}})), (Shape{4, 5}));
  EXPECT_EQ(b.shape(b.Call("aten.normal.float_float", {}, {{"mean", 0.0}, {"std", 1.0},
                                                            {"size", std::vector<int64_t>{2, 3}}})),
            (Shape{2, 3}));
  EXPECT_EQ(b.shape(b.Call("aten.bernoulli.p", {x}, {{"p", 0.5}})), (Shape{4, 5}));
  const auto fused = b.CallMulti("aten._fused_dropout", {x}, {{"p", 0.5}});
  EXPECT_EQ(b.tensor(fused[1]).dtype, DType::kU8);
  ExpectError([&] { b.Call("aten.randperm", {}, {{"n", int64_t{-1}}}); }, "negative n = -1");
  ExpectError([&] { b.Call("aten.multinomial", {probs}, {{"num_samples", int64_t{0}}}); }, "num_samples = 0");
}

TEST(Registry, OpFlagsFollowTheSchemas) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {2, 8, 4, 4});
  TensorId w = b.Parameter("w", {8}), bias = b.Parameter("b", {8});
  b.Call("aten.relu", {x});  // op 0: no flags (BatchNormMutatesRunningStats has `mutates`)
  b.CallMulti("aten.native_dropout", {x}, {{"p", 0.5}, {"train", true}});
  b.Call("aten.add_.Tensor", {w, bias});
  b.Call("aten.t", {b.Input("m", {3, 4})});
  b.CallOpaque("mylib.fancy_op", {x}, {{{7}, DType::kF16}});
  const Graph& g = b.graph();
  auto flags = [](bool random, bool inplace, bool view, std::vector<size_t> mutated) {
    OpFlags f;
    f.random = random;
    f.inplace = inplace;
    f.view = view;
    f.mutated_inputs = std::move(mutated);
    return f;
  };
  EXPECT_TRUE(ComputeOpFlags(g, g.op(OpId(0))).empty());
  EXPECT_EQ(ComputeOpFlags(g, g.op(OpId(1))), flags(true, false, false, {}));
  EXPECT_EQ(ComputeOpFlags(g, g.op(OpId(2))), flags(false, true, false, {}));
  EXPECT_EQ(ComputeOpFlags(g, g.op(OpId(3))), flags(false, false, true, {}));
  EXPECT_TRUE(ComputeOpFlags(g, g.op(OpId(4))).empty());
}

TEST(Registry, BatchNormInEvaluationHasEmptyStatistics) {
  // PyTorch's CPU kernel returns save_mean / save_invstd of shape [0] when
  // training is false (a model in eval(), as functorch's aot_function traces
  // it); its CUDA kernel returns them per channel, unwritten: a graph that
  // declares [C] (captured on a GPU) is taken as declared.
  GraphBuilder b("g");
  TensorId x = b.Input("x", {2, 8, 4, 4});
  TensorId w = b.Parameter("w", {8}), bias = b.Parameter("b", {8});
  TensorId mean = b.Buffer("mean", {8}), var = b.Buffer("var", {8});
  auto outs = b.CallMulti("aten.native_batch_norm", {x, w, bias, mean, var},
                          {{"training", false}, {"momentum", 0.1}, {"eps", 1e-5}});
  EXPECT_EQ(b.shape(outs[0]), (Shape{2, 8, 4, 4}));
  EXPECT_EQ(b.shape(outs[1]), (Shape{0}));
  EXPECT_EQ(b.shape(outs[2]), (Shape{0}));
  for (const DimLink& l : ComputeDimLinks(b.graph(), b.graph().op(OpId(0))).links) EXPECT_EQ(l.output, 0);
  auto cuda = b.CallOpaque("aten.native_batch_norm", {x, w, bias, mean, var},
                           {{{2, 8, 4, 4}, DType::kF32}, {{8}, DType::kF32}, {{8}, DType::kF32}},
                           {{"training", false}, {"momentum", 0.1}, {"eps", 1e-5}});
  const Op& op = b.graph().op(*b.tensor(cuda[1]).producer);
  EXPECT_EQ(InferOutputTypes(*FindOpSchema("aten.native_batch_norm"), b.graph(), op)[1].shape, (Shape{8}));
  EXPECT_NO_THROW(Validate(b.graph()));
}

// stack runs every axis of every input through to the output's, past the
// new one; pixel_shuffle and pixel_unshuffle only the leading (batch) axes
// (channels and pixels are interleaved by the factor); repeat an axis
// repeated once (self's axes line up with the last ones of `repeats`); the
// gates an LSTM cell cuts with unsafe_split keep the batch.
TEST(Registry, StackShuffleRepeatAndUnsafeSplitLinkTheAxesTheyKeep) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {2, 5, 12, 4, 4});
  TensorId y = b.Input("y", {2, 5, 12, 4, 4});
  b.Call("aten.stack", {x, y}, {{"dim", int64_t{1}}});
  const DimLinks stack = ComputeDimLinks(b.graph(), b.graph().op(OpId(0)));
  EXPECT_EQ(stack.links.size(), 10u);
  EXPECT_THAT(stack.links, ::testing::Contains(DimLink{0, 0, 1, 0}));
  EXPECT_THAT(stack.links, ::testing::Contains(DimLink{0, 2, 0, 1}));
  EXPECT_THAT(stack.links, ::testing::Contains(DimLink{0, 5, 1, 4}));
  b.Call("aten.pixel_shuffle", {x}, {{"upscale_factor", int64_t{2}}});
  EXPECT_EQ(ComputeDimLinks(b.graph(), b.graph().op(OpId(1))).links,
            (std::vector<DimLink>{{0, 0, 0, 0}, {0, 1, 0, 1}}));
  b.Call("aten.pixel_unshuffle", {x}, {{"downscale_factor", int64_t{2}}});
  EXPECT_EQ(ComputeDimLinks(b.graph(), b.graph().op(OpId(2))).links,
            (std::vector<DimLink>{{0, 0, 0, 0}, {0, 1, 0, 1}}));
  TensorId m = b.Input("m", {6, 8});
  b.Call("aten.repeat", {m}, {{"repeats", std::vector<int64_t>{3, 1, 2}}});
  EXPECT_EQ(ComputeDimLinks(b.graph(), b.graph().op(OpId(3))).links, (std::vector<DimLink>{{0, 1, 0, 0}}));
  auto gates = b.CallMulti("aten.unsafe_split", {m}, {{"split_size", int64_t{2}}, {"dim", int64_t{1}}});
  ASSERT_EQ(gates.size(), 4u);
  EXPECT_EQ(ComputeDimLinks(b.graph(), b.graph().op(OpId(4))).links,
            (std::vector<DimLink>{{0, 0, 0, 0}, {1, 0, 0, 0}, {2, 0, 0, 0}, {3, 0, 0, 0}}));
}

// The pieces of split and unbind keep every axis but the one cut (the
// attention's q, k, v chunks of [S, B, 3E] keep S and B); a piece of unbind
// loses that axis. A contiguous reshape says it reads in row-major order.
TEST(Registry, SplitPiecesKeepTheOtherAxes) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {5, 4, 12});
  auto pieces = b.CallMulti("aten.split.Tensor", {x}, {{"split_size", int64_t{4}}, {"dim", int64_t{-1}}});
  ASSERT_EQ(pieces.size(), 3u);
  const DimLinks split = ComputeDimLinks(b.graph(), b.graph().op(OpId(0)));
  EXPECT_EQ(split.links.size(), 6u);
  EXPECT_THAT(split.links, ::testing::Contains(DimLink{2, 1, 0, 1}));
  EXPECT_THAT(split.links, ::testing::Not(::testing::Contains(DimLink{0, 2, 0, 2})));
  b.CallMulti("aten.unbind.int", {x}, {{"dim", int64_t{1}}});
  const DimLinks unbind = ComputeDimLinks(b.graph(), b.graph().op(OpId(1)));
  EXPECT_EQ(unbind.links.size(), 4u * 2);
  EXPECT_THAT(unbind.links, ::testing::Contains(DimLink{3, 1, 0, 2}));
  b.Call("aten.view", {x}, {{"size", std::vector<int64_t>{5, 16, 3}}});
  EXPECT_TRUE(ComputeDimLinks(b.graph(), b.graph().op(OpId(2))).row_major_reshape);
  EXPECT_FALSE(split.row_major_reshape);
}

TEST(Registry, OpaqueOpsAreAcceptedWithDeclaredShapes) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {3, 5});
  auto outs = b.CallOpaque("mylib.fancy_op", {x}, {{{7}, DType::kF16}});
  EXPECT_EQ(b.shape(outs[0]), (Shape{7}));
  const OpCost cost = ComputeOpCost(b.graph(), b.graph().op(OpId(0)));
  EXPECT_DOUBLE_EQ(cost.flops, 7.0);  // default: one per output element
  EXPECT_EQ(cost.bytes_read, 3 * 5 * 4);
  EXPECT_TRUE(ComputeDimLinks(b.graph(), b.graph().op(OpId(0))).links.empty());
}

TEST(Registry, SoftmaxLinksEveryDimButTheSoftmaxDim) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {2, 4, 8, 8});
  b.Call("aten._softmax", {x}, {{"dim", int64_t{-1}}, {"half_to_float", false}});
  const DimLinks links = ComputeDimLinks(b.graph(), b.graph().op(OpId(0)));
  EXPECT_EQ(links.links.size(), 3u);
  for (const DimLink& l : links.links) EXPECT_NE(l.output_dim, 3);
}

// x[:, 0] traces as a slice of the whole batch, then a select: the slice
// is the identity on the batch (and on any part of it), so the batch runs
// through it and through its backward. A slice that drops rows does not.
TEST(Registry, ASliceThatKeepsTheWholeAxisLinksIt) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {4, 6, 8});
  const int64_t end = std::numeric_limits<int64_t>::max();
  TensorId all = b.Call("aten.slice", {x}, {{"dim", int64_t{0}}, {"start", int64_t{0}}, {"end", end}});
  TensorId some = b.Call("aten.slice", {x}, {{"dim", int64_t{0}}, {"start", int64_t{1}}, {"end", end}});
  TensorId back = b.Call("aten.slice_backward", {all}, {{"input_sizes", std::vector<int64_t>{4, 6, 8}}, {"dim", int64_t{0}},
                                                        {"start", int64_t{0}}, {"end", end}, {"step", int64_t{1}}});
  TensorId grown = b.Call("aten.slice_backward", {some}, {{"input_sizes", std::vector<int64_t>{4, 6, 8}}, {"dim", int64_t{0}},
                                                          {"start", int64_t{1}}, {"end", end}, {"step", int64_t{1}}});
  auto links_of = [&](TensorId t) { return LinksOf(b, t); };
  const DimLink batch{0, 0, 0, 0};
  for (TensorId t : {all, back, some, grown}) {
    const std::vector<DimLink> links = links_of(t);
    const bool keeps_all = t == all || t == back;
    EXPECT_EQ(links.size(), keeps_all ? 3u : 2u);
    EXPECT_EQ(std::find(links.begin(), links.end(), batch) != links.end(), keeps_all);
  }
}

// Links of backward ops, each pinned to what makes it exact on a part:
// element-wise gradients are linked in every input they read; a mean loss's
// gradient (divided by the whole's element count), a weight norm's reduced
// dims and a padding's mirrored dims are not.
TEST(Registry, BackwardLinksFollowWhatEachElementReads) {
  GraphBuilder b("g");
  const TensorId x = b.Input("x", {4, 3, 6, 6});
  const TensorId g = b.Input("g", {4, 3, 6, 6});
  auto links_of = [&](TensorId t) { return ComputeDimLinks(b.graph(), b.graph().op(b.tensor(t).producer.value())); };
  auto has = [](const DimLinks& l, DimLink link) { return std::find(l.links.begin(), l.links.end(), link) != l.links.end(); };

  const DimLinks elu = links_of(b.Call("aten.elu_backward", {g, x}, {{"alpha", 1.0}, {"scale", 1.0}, {"input_scale", 1.0},
                                                                     {"is_result", false}}));
  for (int d = 0; d < 4; ++d) EXPECT_TRUE(has(elu, {0, d, 0, d}) && has(elu, {0, d, 1, d})) << d;

  const TensorId w = b.Parameter("w", {3});
  const DimLinks prelu = links_of(b.CallMulti("aten.prelu_backward", {g, x, w})[0]);
  EXPECT_TRUE(has(prelu, {0, 0, 0, 0}) && has(prelu, {0, 0, 1, 0}));
  EXPECT_TRUE(has(prelu, {1, 0, 1, 1}));  // the weight gradient per channel
  EXPECT_NE(std::find(prelu.reduced.begin(), prelu.reduced.end(), ReducedDim{1, 0, PartialCombine::kSum}),
            prelu.reduced.end());  // summed over the batch

  const TensorId padded = b.Call("aten.reflection_pad2d", {x}, {{"padding", std::vector<int64_t>{1, 1, 2, 2}}});
  const DimLinks pad_back = links_of(b.Call("aten.reflection_pad2d_backward", {padded, x},
                                            {{"padding", std::vector<int64_t>{1, 1, 2, 2}}}));
  EXPECT_TRUE(has(pad_back, {0, 0, 0, 0}) && has(pad_back, {0, 1, 1, 1}));
  EXPECT_FALSE(has(pad_back, {0, 2, 1, 2}) || has(pad_back, {0, 3, 1, 3}));

  const TensorId t = b.Input("t", {4, 3, 6, 6});
  const TensorId one = b.Input("one", {});
  for (int64_t reduction : {0, 1, 2}) {
    const TensorId grad = reduction == 0 ? g : one;
    const DimLinks huber = links_of(b.Call("aten.huber_loss_backward", {grad, x, t}, {{"reduction", reduction}, {"delta", 1.0}}));
    // Element-wise in self and target; a mean divides by the whole count, so its
    // linked dims are also marked whole (a fission rewrites it: ElementwiseLossBackwardLinks).
    EXPECT_TRUE(has(huber, {0, 0, 2, 0})) << reduction;
    const bool whole = std::find(huber.reduced.begin(), huber.reduced.end(),
                                 ReducedDim{1, 0, PartialCombine::kWhole}) != huber.reduced.end();
    EXPECT_EQ(whole, reduction == 1) << reduction;
  }

  const TensorId v = b.Parameter("v", {8, 3, 3, 3});
  const TensorId gain = b.Parameter("gain", {8, 1, 1, 1});
  const DimLinks norm = links_of(b.CallMulti("aten._weight_norm_interface", {v, gain}, {{"dim", int64_t{0}}})[0]);
  EXPECT_TRUE(has(norm, {0, 0, 0, 0}));
  for (int d = 1; d < 4; ++d) EXPECT_FALSE(has(norm, {0, d, 0, d})) << d;
}

TEST(Registry, PoolingShapes) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {1, 64, 112, 112});
  auto outs = b.CallMulti("aten.max_pool2d_with_indices", {x},
                          {{"kernel_size", std::vector<int64_t>{3, 3}}, {"stride", std::vector<int64_t>{2, 2}},
                           {"padding", std::vector<int64_t>{1, 1}}, {"dilation", std::vector<int64_t>{1, 1}},
                           {"ceil_mode", false}});
  EXPECT_EQ(b.shape(outs[0]), (Shape{1, 64, 56, 56}));
  EXPECT_EQ(b.tensor(outs[1]).dtype, DType::kI64);
  TensorId pooled = b.Call("aten._adaptive_avg_pool2d", {outs[0]}, {{"output_size", std::vector<int64_t>{1, 1}}});
  EXPECT_EQ(b.shape(pooled), (Shape{1, 64, 1, 1}));
}

TEST(Registry, ReductionsAndLoss) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {4, 10});
  TensorId y = b.Input("y", {4}, DType::kI64);
  EXPECT_EQ(b.shape(b.Call("aten.sum.dim_IntList", {x}, {{"dim", std::vector<int64_t>{0}}, {"keepdim", true}})), (Shape{1, 10}));
  EXPECT_EQ(b.shape(b.Call("aten.mean.dim", {x}, {{"dim", std::vector<int64_t>{-1}}})), (Shape{4}));
  TensorId lsm = b.Call("aten._log_softmax", {x}, {{"dim", int64_t{1}}, {"half_to_float", false}});
  auto loss = b.CallMulti("aten.nll_loss_forward", {lsm, y},
                          {{"weight", std::monostate{}}, {"reduction", int64_t{1}}, {"ignore_index", int64_t{-100}}});
  EXPECT_EQ(b.shape(loss[0]), Shape{});
  TensorId bad = b.Input("bad", {5}, DType::kI64);
  ExpectError([&] { b.CallMulti("aten.nll_loss_forward", {lsm, bad}, {{"weight", std::monostate{}}}); }, "target [5]");
}

}  // namespace
}  // namespace memfit

namespace memfit {
namespace {

TEST(Registry, CapturedGraphOps) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {6, 4});
  auto pieces = b.CallMulti("aten.split_with_sizes", {x}, {{"split_sizes", std::vector<int64_t>{2, 4}}, {"dim", int64_t{0}}});
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(b.shape(pieces[1]), (Shape{4, 4}));
  EXPECT_EQ(b.graph().StorageRoot(pieces[1]), x);  // views share x's storage
  auto rows = b.CallMulti("aten.unbind.int", {x}, {{"dim", int64_t{1}}});
  EXPECT_EQ(rows.size(), 4u);
  EXPECT_EQ(b.shape(b.Call("aten.stack", rows, {{"dim", int64_t{0}}})), (Shape{4, 6}));
  EXPECT_EQ(b.shape(b.Call("aten.arange.start_step", {}, {{"start", int64_t{0}}, {"end", int64_t{10}}, {"step", int64_t{3}}})),
            (Shape{4}));
  EXPECT_EQ(b.tensor(b.Call("aten.new_zeros", {x}, {{"size", std::vector<int64_t>{3}}})).dtype, DType::kF32);
  TensorId alias = b.Call("aten._reshape_alias", {x}, {{"size", std::vector<int64_t>{24}}, {"stride", std::vector<int64_t>{1}}});
  EXPECT_EQ(b.graph().StorageRoot(alias), x);
  ExpectError([&] { b.CallMulti("aten.split_with_sizes", {x}, {{"split_sizes", std::vector<int64_t>{2, 2}}}); },
              "split sizes sum to 4");
}

}  // namespace
}  // namespace memfit

namespace memfit {
namespace {

TEST(Registry, EmbeddingReadsOnlyTheGatheredRows) {
  GraphBuilder b("g");
  TensorId table = b.Parameter("wte", {50000, 64});
  TensorId ids = b.Input("ids", {2, 8}, DType::kI64);
  b.Call("aten.embedding", {table, ids});
  const OpCost cost = ComputeOpCost(b.graph(), b.graph().op(OpId(0)));
  // 16 rows of 64 floats, plus 16 int64 indices.
  EXPECT_EQ(cost.bytes_read, 16 * 64 * 4 + 16 * 8);
  EXPECT_EQ(cost.bytes_written, 16 * 64 * 4);
}

}  // namespace
}  // namespace memfit

namespace memfit {
namespace {

// The ops torchvision's models and captured real programs use beyond the
// first registry (issue 20): shapes, aliasing, flags and links.
TEST(Registry, AdvancedIndexing) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {4, 6, 5});
  TensorId idx = b.Input("idx", {2, 3}, DType::kI64);
  // x[idx]: the index shape replaces dim 0.
  EXPECT_EQ(b.shape(b.Call("aten.index.Tensor", {x, idx})), (Shape{2, 3, 6, 5}));
  // x[:, idx] is index(x, [None, idx]): the attribute marks the None entry.
  TensorId cols = b.Call("aten.index.Tensor", {x, idx}, {{"indices", std::vector<int64_t>{0, 1}}});
  EXPECT_EQ(b.shape(cols), (Shape{4, 2, 3, 5}));
  const DimLinks links = ComputeDimLinks(b.graph(), b.graph().op(b.tensor(cols).producer.value()));
  // self's dims kept, and the block's rows and columns the indices'.
  EXPECT_THAT(links.links, ::testing::UnorderedElementsAre(DimLink{0, 0, 0, 0}, DimLink{0, 3, 0, 2},
                                                           DimLink{0, 1, 1, 0}, DimLink{0, 2, 1, 1}));
  // x[i, :, j]: tensor entries not adjacent -> the index dims go in front.
  TensorId j = b.Input("j", {3}, DType::kI64);
  EXPECT_EQ(b.shape(b.Call("aten.index.Tensor", {x, j, j}, {{"indices", std::vector<int64_t>{1, 0, 1}}})),
            (Shape{3, 6}));
  ExpectError([&] { b.Call("aten.index.Tensor", {x, idx}, {{"indices", std::vector<int64_t>{0, 0}}}); },
              "marks 0 tensor entries but the op has 1");
  ExpectError([&] { b.Call("aten.index.Tensor", {x, j, j, j, j}); }, "too many indices");
  TensorId f = b.Input("f", {3});
  ExpectError([&] { b.Call("aten.index.Tensor", {x, f}); }, "must be an integer or boolean tensor");
  // A boolean mask selects a data-dependent count: validation takes it from
  // the declared output, building without one is an error.
  TensorId mask = b.Input("mask", {4, 6}, DType::kBool);
  ExpectError([&] { b.Call("aten.index.Tensor", {x, mask}); }, "data-dependent");
  auto picked = b.CallOpaque("aten.index.Tensor", {x, mask}, {{{7, 5}, DType::kF32}});
  const Op& op = b.graph().op(b.tensor(picked[0]).producer.value());
  const auto inferred = InferOutputTypes(*FindOpSchema("aten.index"), b.graph(), op);
  EXPECT_EQ(inferred[0].shape, (Shape{7, 5}));
}

TEST(Registry, IndexPutBindsValuesAfterTheIndexList) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {4, 6});
  TensorId idx = b.Input("idx", {3}, DType::kI64);
  TensorId v = b.Input("v", {4, 3});
  // index_put(self, indices: Tensor?[], values): the list ends before values.
  const OpSchema* put = FindOpSchema("aten.index_put");
  Op probe;
  probe.type = "aten.index_put";
  const auto positions = ResolveTensorArgs(put->tensor_args, probe, 3);
  EXPECT_EQ(positions, (std::vector<std::optional<size_t>>{0, 1, 2}));
  TensorId y = b.Call("aten.index_put", {x, idx, v}, {{"indices", std::vector<int64_t>{0, 1}}, {"accumulate", true}});
  EXPECT_EQ(b.shape(y), (Shape{4, 6}));
  EXPECT_FALSE(b.tensor(y).alias_of.has_value());
  TensorId z = b.Call("aten.index_put_", {x, idx, v}, {{"indices", std::vector<int64_t>{0, 1}}});
  EXPECT_EQ(b.graph().StorageRoot(z), x);
  const DimLinks links = ComputeDimLinks(b.graph(), b.graph().op(b.tensor(z).producer.value()));
  // dim 1 is indexed; dim 0 is self's and the values' (they broadcast to x[:, idx], [4, 3])
  EXPECT_THAT(links.links, ::testing::ElementsAre(DimLink{0, 0, 0, 0}, DimLink{0, 0, 2, 0}));
  ExpectError([&] { b.Call("aten.index_put", {x, v}); }, "at least one index tensor");
}

// A gather's row i is self at the indices' row i: aten.index and
// index_select link their rows to the indices' (a GNN's messages along its
// edges). A scatter that accumulates adds parts of its rows into self one
// after another (kInto); one that assigns, or a mean, needs them all.
TEST(Registry, GathersFollowTheirIndicesAndScattersAddIntoSelf) {
  GraphBuilder b("g");
  TensorId h = b.Input("h", {5, 4});
  TensorId src = b.Input("src", {12}, DType::kI64);
  TensorId pairs = b.Input("pairs", {3, 2}, DType::kI64);
  TensorId rows = b.Call("aten.index", {h, src});
  EXPECT_EQ(b.shape(rows), (Shape{12, 4}));
  EXPECT_THAT(LinksOf(b, rows), ::testing::ElementsAre(DimLink{0, 1, 0, 1}, DimLink{0, 0, 1, 0}));
  // x[:, pairs]: the block [3, 2] in place of the indexed dim.
  TensorId cols = b.Call("aten.index", {h, pairs}, {{"indices", std::vector<int64_t>{0, 1}}});
  EXPECT_EQ(b.shape(cols), (Shape{5, 3, 2}));
  EXPECT_THAT(LinksOf(b, cols),
              ::testing::ElementsAre(DimLink{0, 0, 0, 0}, DimLink{0, 1, 1, 0}, DimLink{0, 2, 1, 1}));
  TensorId picked = b.Call("aten.index_select", {h, src}, {{"dim", int64_t{0}}});
  EXPECT_THAT(LinksOf(b, picked), ::testing::ElementsAre(DimLink{0, 1, 0, 1}, DimLink{0, 0, 1, 0}));

  auto reduced_of = [&](TensorId t) { return ComputeDimLinks(b.graph(), b.graph().op(b.tensor(t).producer.value())).reduced; };
  TensorId added = b.Call("aten.index_add", {h, src, rows}, {{"dim", int64_t{0}}});
  EXPECT_THAT(reduced_of(added), ::testing::ElementsAre(ReducedDim{2, 0, PartialCombine::kInto, 0},
                                                        ReducedDim{1, 0, PartialCombine::kInto, 0}));
  TensorId put = b.Call("aten.index_put", {h, src, rows}, {{"accumulate", true}});
  EXPECT_THAT(reduced_of(put), ::testing::ElementsAre(ReducedDim{2, 0, PartialCombine::kInto, 0},
                                                      ReducedDim{1, 0, PartialCombine::kInto, 0}));
  TensorId set = b.Call("aten.index_put", {h, src, rows}, {{"accumulate", false}});
  EXPECT_THAT(reduced_of(set), ::testing::ElementsAre(ReducedDim{2, 0, PartialCombine::kWhole, 0},
                                                      ReducedDim{1, 0, PartialCombine::kWhole, 0}));
  TensorId where = b.Input("where", {12, 4}, DType::kI64);
  TensorId most = b.Call("aten.scatter_reduce", {h, where, rows},
                         {{"dim", int64_t{0}}, {"reduce", std::string("amax")}, {"include_self", true}});
  EXPECT_THAT(reduced_of(most), ::testing::ElementsAre(ReducedDim{2, 0, PartialCombine::kInto, 0},
                                                       ReducedDim{1, 0, PartialCombine::kInto, 0}));
  // In place too (scatter_add_ was left with no sums when its rule was
  // patched in before the in-place variants were registered).
  for (const char* type : {"aten.scatter_add_", "aten.index_add_"}) {
    const bool by_rows = std::string_view(type) == "aten.index_add_";
    TensorId into = b.Call(type, {b.Call("aten.relu", {h}), by_rows ? src : where, rows}, {{"dim", int64_t{0}}});
    EXPECT_THAT(reduced_of(into), ::testing::ElementsAre(ReducedDim{2, 0, PartialCombine::kInto, 0},
                                                         ReducedDim{1, 0, PartialCombine::kInto, 0}))
        << type;
  }
  for (auto [reduce, include_self] : {std::pair{"mean", true}, std::pair{"amax", false}}) {
    TensorId not_in_turn = b.Call("aten.scatter_reduce", {h, where, rows},
                                  {{"dim", int64_t{0}}, {"reduce", std::string(reduce)}, {"include_self", include_self}});
    EXPECT_TRUE(reduced_of(not_in_turn).empty()) << reduce;
  }
}

// An index by aten.arange from 0 by 1 pairs row i with row i: the gather of
// a sequence classifier's last token (`h[torch.arange(B), last]`) and its
// gradient keep the batch.
TEST(Registry, AnIndexByAnArangeKeepsItsRows) {
  GraphBuilder b("g");
  TensorId h = b.Input("h", {6, 5, 4});
  TensorId last = b.Input("last", {6}, DType::kI64);
  TensorId rows = b.Call("aten.arange", {}, {{"end", int64_t{6}}});
  TensorId picked = b.Call("aten.index", {h, rows, last});
  EXPECT_EQ(b.shape(picked), (Shape{6, 4}));
  EXPECT_THAT(LinksOf(b, picked), ::testing::ElementsAre(DimLink{0, 1, 0, 2}, DimLink{0, 0, 1, 0},
                                                         DimLink{0, 0, 2, 0}, DimLink{0, 0, 0, 0}));
  TensorId zeros = b.Call("aten.zeros", {}, {{"size", std::vector<int64_t>{6, 5, 4}}});
  TensorId back = b.Call("aten.index_put", {zeros, rows, last, picked}, {{"accumulate", true}});
  const DimLinks links = ComputeDimLinks(b.graph(), b.graph().op(b.tensor(back).producer.value()));
  EXPECT_THAT(links.links, ::testing::UnorderedElementsAre(DimLink{0, 2, 0, 2}, DimLink{0, 2, 3, 1}, DimLink{0, 0, 0, 0},
                                                           DimLink{0, 0, 3, 0}, DimLink{0, 0, 1, 0}, DimLink{0, 0, 2, 0}));
  EXPECT_TRUE(links.reduced.empty());
  // From 1, it pairs row i with row i + 1: no link to self.
  TensorId shifted = b.Call("aten.arange", {}, {{"start", int64_t{1}}, {"end", int64_t{7}}});
  EXPECT_THAT(LinksOf(b, b.Call("aten.index", {b.Call("aten.relu", {h}), shifted, last})),
              ::testing::ElementsAre(DimLink{0, 1, 0, 2}, DimLink{0, 0, 1, 0}, DimLink{0, 0, 2, 0}));
}

// sort / topk / max.dim link every dim but the one they sort, pick from or
// reduce (they were barriers: a fission stopped at every top-k gate and sort).
TEST(Registry, SelectionsLinkEveryDimButTheirOwn) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {4, 6, 5});
  auto links_of = [&](TensorId t) { return LinksOf(b, t); };
  const auto sorted = b.CallMulti("aten.sort", {x}, {{"dim", int64_t{1}}, {"descending", true}});
  EXPECT_THAT(links_of(sorted[0]), ::testing::ElementsAre(DimLink{0, 0, 0, 0}, DimLink{0, 2, 0, 2}, DimLink{1, 0, 0, 0},
                                                          DimLink{1, 2, 0, 2}));
  const auto top = b.CallMulti("aten.topk", {x}, {{"k", int64_t{2}}});  // the last dim by default
  EXPECT_EQ(b.shape(top[0]), (Shape{4, 6, 2}));
  EXPECT_THAT(links_of(top[0]), ::testing::ElementsAre(DimLink{0, 0, 0, 0}, DimLink{0, 1, 0, 1}, DimLink{1, 0, 0, 0},
                                                       DimLink{1, 1, 0, 1}));
  const auto most = b.CallMulti("aten.max", {x}, {{"dim", int64_t{0}}, {"keepdim", false}});
  EXPECT_THAT(links_of(most[0]), ::testing::ElementsAre(DimLink{0, 0, 0, 1}, DimLink{0, 1, 0, 2}, DimLink{1, 0, 0, 1},
                                                        DimLink{1, 1, 0, 2}));
  EXPECT_TRUE(links_of(b.Call("aten.max", {x})).empty());  // the overall maximum
}

TEST(Registry, PaddingRollUpsamplingAndLosses) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {2, 3, 8, 8});
  EXPECT_EQ(b.shape(b.Call("aten.constant_pad_nd", {x}, {{"pad", std::vector<int64_t>{1, 2, 0, -3}}})),
            (Shape{2, 3, 5, 11}));
  ExpectError([&] { b.Call("aten.constant_pad_nd", {x}, {{"pad", std::vector<int64_t>{1}}}); }, "2 per padded dim");
  TensorId rolled = b.Call("aten.roll", {x}, {{"shifts", std::vector<int64_t>{1}}, {"dims", std::vector<int64_t>{2}}});
  EXPECT_EQ(b.shape(rolled), (Shape{2, 3, 8, 8}));
  EXPECT_EQ(ComputeDimLinks(b.graph(), b.graph().op(b.tensor(rolled).producer.value())).links.size(), 3u);
  EXPECT_EQ(b.shape(b.Call("aten.upsample_bilinear2d", {x}, {{"output_size", std::vector<int64_t>{16, 12}},
                                                            {"align_corners", false}})),
            (Shape{2, 3, 16, 12}));
  EXPECT_EQ(b.shape(b.Call("aten.upsample_bilinear2d.vec", {x}, {{"output_size", std::monostate{}},
                                                                {"align_corners", false},
                                                                {"scale_factors", std::vector<double>{2.0, 1.5}}})),
            (Shape{2, 3, 16, 12}));
  TensorId g = b.Input("g", {2, 3, 16, 16});
  EXPECT_EQ(b.shape(b.Call("aten.upsample_bilinear2d_backward", {g}, {{"output_size", std::vector<int64_t>{16, 16}},
                                                                     {"input_size", std::vector<int64_t>{2, 3, 8, 8}},
                                                                     {"align_corners", false}})),
            (Shape{2, 3, 8, 8}));
  TensorId target = b.Input("t", {2, 8, 8}, DType::kI64);
  auto loss = b.CallMulti("aten.nll_loss2d_forward", {x, target}, {{"reduction", int64_t{1}}, {"ignore_index", int64_t{-100}}});
  EXPECT_EQ(b.shape(loss[0]), Shape{});
  auto none = b.CallMulti("aten.nll_loss2d_forward", {x, target}, {{"reduction", int64_t{0}}});
  EXPECT_EQ(b.shape(none[0]), (Shape{2, 8, 8}));
  TensorId bad = b.Input("bad", {2, 7, 8}, DType::kI64);
  ExpectError([&] { b.CallMulti("aten.nll_loss2d_forward", {x, bad}); }, "does not match input");
  EXPECT_EQ(b.shape(b.Call("aten.nll_loss2d_backward", {loss[0], x, target, loss[1]}, {{"reduction", int64_t{1}}})),
            (Shape{2, 3, 8, 8}));
  EXPECT_EQ(b.shape(b.Call("aten.norm.ScalarOpt_dim", {x}, {{"p", 2.0}, {"dim", std::vector<int64_t>{-1}},
                                                           {"keepdim", true}})),
            (Shape{2, 3, 8, 1}));
  EXPECT_EQ(b.shape(b.Call("aten.norm.Scalar", {x})), Shape{});
}

TEST(Registry, ActivationsClampFillAndRandomFactories) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {4, 5});
  for (const char* name : {"aten.silu_", "aten.hardswish_", "aten.hardtanh_", "aten.fill_.Scalar", "aten.clamp_"}) {
    TensorId y = b.Call(name, {x});
    EXPECT_EQ(b.graph().StorageRoot(y), x) << name;
  }
  TensorId mask = b.Input("mask", {1, 5}, DType::kBool);
  TensorId value = b.Input("value", {});
  EXPECT_EQ(b.graph().StorageRoot(b.Call("aten.masked_fill_.Tensor", {x, mask, value})), x);
  EXPECT_EQ(b.shape(b.Call("aten.masked_fill.Tensor", {x, mask, value})), (Shape{4, 5}));
  TensorId lo = b.Input("lo", {5});
  EXPECT_EQ(b.shape(b.Call("aten.clamp.Tensor", {x, lo})), (Shape{4, 5}));
  EXPECT_EQ(b.shape(b.Call("aten.clamp_min", {x}, {{"min", 0.0}})), (Shape{4, 5}));
  EXPECT_EQ(b.shape(b.Call("aten.hardsigmoid_backward", {x, x})), (Shape{4, 5}));
  TensorId v = b.Call("aten.as_strided_", {x}, {{"size", std::vector<int64_t>{5, 4}}, {"stride", std::vector<int64_t>{1, 5}}});
  EXPECT_EQ(b.shape(v), (Shape{5, 4}));
  EXPECT_EQ(b.graph().StorageRoot(v), x);
  for (const char* name : {"aten.rand", "aten.randn", "aten.randint", "aten.uniform_", "aten.normal_", "aten.randint_like"}) {
    EXPECT_TRUE(IsRandomOp(name)) << name;
  }
  EXPECT_EQ(b.tensor(b.Call("aten.randint", {}, {{"high", int64_t{5}}, {"size", std::vector<int64_t>{3}}})).dtype,
            DType::kI64);
}

}  // namespace
}  // namespace memfit

namespace memfit {
namespace {

TEST(Registry, TypePromotionFollowsPyTorch) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {4});
  TensorId h = b.Input("h", {4}, DType::kBF16);
  TensorId d0 = b.Input("d0", {}, DType::kF64);
  TensorId f0 = b.Input("f0", {});
  TensorId i = b.Input("i", {4}, DType::kI64);
  TensorId m = b.Input("m", {4}, DType::kBool);
  EXPECT_EQ(b.tensor(b.Call("aten.mul.Tensor", {x, d0})).dtype, DType::kF32);   // a 0-dim f64 does not widen f32[4]
  EXPECT_EQ(b.tensor(b.Call("aten.mul.Tensor", {f0, d0})).dtype, DType::kF64);  // all 0-dim: f64
  EXPECT_EQ(b.tensor(b.Call("aten.mul.Tensor", {i, f0})).dtype, DType::kF32);   // a higher category wins
  EXPECT_EQ(b.tensor(b.Call("aten.add.Tensor", {h, x})).dtype, DType::kF32);
  EXPECT_EQ(b.tensor(b.Call("aten.sum", {m})).dtype, DType::kI64);
  EXPECT_EQ(b.tensor(b.Call("aten.sum", {x})).dtype, DType::kF32);
}

TEST(Registry, OpsOfTheIdiomsCorpus) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {4, 6});
  TensorId idx = b.Input("idx", {4, 2}, DType::kI64);
  EXPECT_EQ(b.shape(b.Call("aten.gather", {x, idx}, {{"dim", int64_t{1}}})), (Shape{4, 2}));
  TensorId rows = b.Input("rows", {3}, DType::kI64);
  EXPECT_EQ(b.shape(b.Call("aten.index_select", {x, rows}, {{"dim", int64_t{0}}})), (Shape{3, 6}));
  EXPECT_EQ(b.shape(b.Call("aten.scatter_add", {x, idx, idx}, {{"dim", int64_t{1}}})), (Shape{4, 6}));
  auto top = b.CallMulti("aten.topk", {x}, {{"k", int64_t{2}}, {"dim", int64_t{1}}});
  EXPECT_EQ(b.shape(top[0]), (Shape{4, 2}));
  EXPECT_EQ(b.tensor(top[1]).dtype, DType::kI64);
  EXPECT_EQ(b.shape(b.CallMulti("aten.max.dim", {x}, {{"dim", int64_t{0}}, {"keepdim", true}})[0]), (Shape{1, 6}));
  EXPECT_EQ(b.shape(b.Call("aten.max", {x})), Shape{});
  EXPECT_EQ(b.shape(b.Call("aten.glu", {x}, {{"dim", int64_t{1}}})), (Shape{4, 3}));
  EXPECT_EQ(b.shape(b.Call("aten.repeat", {x}, {{"repeats", std::vector<int64_t>{2, 1, 3}}})), (Shape{2, 4, 18}));
  EXPECT_EQ(b.CallMulti("aten.unsafe_split.Tensor", {x}, {{"split_size", int64_t{4}}, {"dim", int64_t{1}}}).size(), 2u);
  EXPECT_EQ(b.tensor(b.Call("aten.isnan", {x})).dtype, DType::kBool);
  TensorId img = b.Input("img", {2, 8, 3, 3});
  EXPECT_EQ(b.shape(b.Call("aten.pixel_shuffle", {img}, {{"upscale_factor", int64_t{2}}})), (Shape{2, 2, 6, 6}));
  EXPECT_EQ(b.shape(b.Call("aten.reflection_pad2d", {img}, {{"padding", std::vector<int64_t>{1, 1, 2, 0}}})),
            (Shape{2, 8, 5, 5}));
  auto gn = b.CallMulti("aten.native_group_norm", {img},
                        {{"N", int64_t{2}}, {"C", int64_t{8}}, {"HxW", int64_t{9}}, {"group", int64_t{4}}, {"eps", 1e-5}});
  EXPECT_EQ(b.shape(gn[1]), (Shape{2, 4}));
  ExpectError([&] { b.Call("aten.glu", {img}, {{"dim", int64_t{2}}}); }, "odd extent 3");
}

// The ops the idioms corpus ran opaque before (issue 20): shapes, links and
// the errors of each.
TEST(Registry, OpsOfTheIdiomsCorpusOnceOpaque) {
  GraphBuilder b("g");
  auto links_of = [&](TensorId t) { return LinksOf(b, t); };
  // max_pool3d: three spatial dims pooled, batch and channels linked.
  TensorId vol = b.Input("vol", {2, 4, 4, 6, 6});
  auto pool = b.CallMulti("aten.max_pool3d_with_indices", {vol}, {{"kernel_size", std::vector<int64_t>{2, 2, 2}}});
  EXPECT_EQ(b.shape(pool[0]), (Shape{2, 4, 2, 3, 3}));
  EXPECT_EQ(b.tensor(pool[1]).dtype, DType::kI64);
  EXPECT_THAT(links_of(pool[0]), ::testing::Contains(DimLink{0, 1, 0, 1}));
  EXPECT_THAT(links_of(pool[0]), ::testing::Not(::testing::Contains(DimLink{0, 2, 0, 2})));
  EXPECT_EQ(b.shape(b.Call("aten.max_pool3d_with_indices_backward", {pool[0], vol, pool[1]},
                           {{"kernel_size", std::vector<int64_t>{2, 2, 2}}, {"stride", std::vector<int64_t>{2, 2, 2}}})),
            (Shape{2, 4, 4, 6, 6}));
  ExpectError([&] { b.CallMulti("aten.max_pool3d_with_indices", {b.Input("flat", {2, 4, 6})},
                                {{"kernel_size", std::vector<int64_t>{2, 2, 2}}}); }, "expects a 4-d or 5-d input");
  // prelu and its backward; weight norm.
  TensorId x = b.Input("x", {4, 8});
  TensorId a = b.Input("a", {8});
  EXPECT_EQ(b.shape(b.Call("aten.prelu", {x, a})), (Shape{4, 8}));
  EXPECT_EQ(b.shape(b.CallMulti("aten.prelu_backward", {x, x, a})[1]), (Shape{8}));
  ExpectError([&] { b.Call("aten.prelu", {x, b.Input("a3", {3})}); }, "expected 1 or 8");
  TensorId g = b.Input("g", {4, 1});
  auto wn = b.CallMulti("aten._weight_norm_interface", {x, g}, {{"dim", int64_t{0}}});
  EXPECT_EQ(b.shape(wn[1]), (Shape{4, 1}));
  EXPECT_EQ(b.shape(b.CallMulti("aten._weight_norm_interface_backward", {x, x, g, wn[1]})[1]), (Shape{4, 1}));
  // embedding bag: one row per offset, the embedding dim linked to the weight's.
  TensorId weight = b.Input("weight", {20, 8});
  TensorId ids = b.Input("ids", {7}, DType::kI64);
  TensorId offsets = b.Input("offsets", {3}, DType::kI64);
  auto bag = b.CallMulti("aten._embedding_bag", {weight, ids, offsets}, {{"mode", int64_t{1}}});
  EXPECT_EQ(b.shape(bag[0]), (Shape{3, 8}));
  EXPECT_THAT(links_of(bag[0]), ::testing::ElementsAre(DimLink{0, 1, 0, 1}));
  EXPECT_EQ(b.shape(b.CallMulti("aten._embedding_bag", {weight, ids, offsets},
                                {{"include_last_offset", true}})[0]), (Shape{2, 8}));
  EXPECT_EQ(b.shape(b.Call("aten._embedding_bag_dense_backward", {bag[0], ids, ids, offsets, offsets},
                           {{"num_weights", int64_t{20}}})), (Shape{20, 8}));
  // CTC: the batch is linked; log_alpha spans twice the longest target plus one.
  TensorId lp = b.Input("lp", {6, 2, 5});
  TensorId targets = b.Input("targets", {2, 3}, DType::kI64);
  Attrs lengths = {{"input_lengths", std::vector<int64_t>{6, 6}}, {"target_lengths", std::vector<int64_t>{2, 3}}};
  auto ctc = b.CallMulti("aten._ctc_loss", {lp, targets}, lengths);
  EXPECT_EQ(b.shape(ctc[0]), (Shape{2}));
  EXPECT_EQ(b.shape(ctc[1]), (Shape{2, 6, 7}));
  EXPECT_EQ(b.shape(b.Call("aten._ctc_loss_backward", {ctc[0], lp, targets, ctc[0], ctc[1]}, lengths)),
            (Shape{6, 2, 5}));
  ExpectError([&] { b.CallMulti("aten._ctc_loss", {lp, targets}, {{"input_lengths", std::vector<int64_t>{6}},
                                                                   {"target_lengths", std::vector<int64_t>{2}}}); },
              "need 2 entries");
  // The .Tensor overloads: lengths are integer tensors, log_alpha's extent is data (declared).
  TensorId in_len = b.Input("input_lengths", {2}, DType::kI64);
  TensorId tg_len = b.Input("target_lengths", {2}, DType::kI64);
  auto ctc_t = b.CallOpaque("aten._ctc_loss", {lp, targets, in_len, tg_len}, {{{2}, DType::kF32}, {{2, 6, 5}, DType::kF32}});
  const Op& ctc_op = b.graph().op(*b.tensor(ctc_t[0]).producer);
  EXPECT_EQ(InferOutputTypes(*FindOpSchema("aten._ctc_loss"), b.graph(), ctc_op)[1].shape, (Shape{2, 6, 5}));
  EXPECT_EQ(b.shape(b.Call("aten._ctc_loss_backward", {ctc_t[0], lp, targets, in_len, tg_len, ctc_t[0], ctc_t[1]})),
            (Shape{6, 2, 5}));
  ExpectError([&] { b.CallMulti("aten._ctc_loss", {lp, targets, in_len, tg_len}); }, "must declare the output shapes");
  ExpectError([&] { b.Call("aten._ctc_loss_backward", {ctc_t[0], lp, targets, lp, tg_len, ctc_t[0], ctc_t[1]}); },
              "input_lengths must be an integer tensor of 2 entries");
  // affine grid and grid sampling.
  TensorId theta = b.Input("theta", {2, 2, 3});
  TensorId grid = b.Call("aten.affine_grid_generator", {theta}, {{"size", std::vector<int64_t>{2, 3, 5, 7}}});
  EXPECT_EQ(b.shape(grid), (Shape{2, 5, 7, 2}));
  TensorId img = b.Input("img", {2, 3, 6, 6});
  TensorId sampled = b.Call("aten.grid_sampler_2d", {img, grid});
  EXPECT_EQ(b.shape(sampled), (Shape{2, 3, 5, 7}));
  EXPECT_THAT(links_of(sampled), ::testing::Contains(DimLink{0, 3, 1, 2}));
  auto back = b.CallMulti("aten.grid_sampler_2d_backward", {sampled, img, grid},
                          {{"output_mask", std::vector<int64_t>{0, 1}}});
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(b.shape(back[0]), (Shape{2, 5, 7, 2}));
  // grad_grid follows the output positions; it sums over the channels of grad_output and input.
  EXPECT_THAT(links_of(back[0]), ::testing::IsSupersetOf({DimLink{0, 0, 0, 0}, DimLink{0, 1, 0, 2}, DimLink{0, 2, 2, 2}}));
  auto both = b.CallMulti("aten.grid_sampler_2d_backward", {sampled, img, grid},
                          {{"output_mask", std::vector<int64_t>{1, 1}}});
  ASSERT_EQ(both.size(), 2u);
  // grad_input keeps the batch and channels; its H and W are where the grid points (not linked),
  // and it sums over the output positions (each one index of grad_output and the grid).
  const DimLinks sampler_links = ComputeDimLinks(b.graph(), b.graph().op(*b.tensor(both[0]).producer));
  EXPECT_THAT(links_of(both[0]), ::testing::Not(::testing::Contains(DimLink{0, 2, 1, 2})));
  EXPECT_THAT(links_of(both[0]), ::testing::Contains(DimLink{0, 1, 1, 1}));
  EXPECT_THAT(sampler_links.reduced, ::testing::Contains(ReducedDim{2, 2, PartialCombine::kSum, 2}));
  EXPECT_THAT(links_of(both[1]), ::testing::Contains(DimLink{1, 2, 0, 3}));
  ExpectError([&] { b.Call("aten.grid_sampler_2d", {img, b.Input("g3", {2, 5, 7, 3})}); }, "grid must be");
  // im2col / col2im.
  Attrs window = {{"kernel_size", std::vector<int64_t>{2, 2}}, {"stride", std::vector<int64_t>{2, 2}}};
  TensorId cols = b.Call("aten.im2col", {b.Input("img4", {2, 3, 4, 6})}, window);
  EXPECT_EQ(b.shape(cols), (Shape{2, 12, 6}));
  Attrs fold = window;
  fold["output_size"] = std::vector<int64_t>{4, 6};
  EXPECT_EQ(b.shape(b.Call("aten.col2im", {cols}, fold)), (Shape{2, 3, 4, 6}));
  fold["output_size"] = std::vector<int64_t>{4, 4};
  ExpectError([&] { b.Call("aten.col2im", {cols}, fold); }, "has 6 windows, output_size gives 4");
  // nonzero / masked_select: the count is the declared one, at most every element.
  TensorId mask = b.Input("mask", {4, 8}, DType::kBool);
  ExpectError([&] { b.Call("aten.nonzero", {mask}); }, "data-dependent");
  auto nz = b.CallOpaque("aten.nonzero", {mask}, {{{5, 2}, DType::kI64}});
  const Op& nz_op = b.graph().op(b.tensor(nz[0]).producer.value());
  EXPECT_EQ(InferOutputTypes(*FindOpSchema("aten.nonzero"), b.graph(), nz_op)[0].shape, (Shape{5, 2}));
  auto sel = b.CallOpaque("aten.masked_select", {x, mask}, {{{40}, DType::kF32}});
  const Op& sel_op = b.graph().op(b.tensor(sel[0]).producer.value());
  ExpectError([&] { InferOutputTypes(*FindOpSchema("aten.masked_select"), b.graph(), sel_op); },
              "declares 40 selected elements of 32");
  TensorId counts = b.Input("counts", {3}, DType::kI64);
  auto rep = b.CallOpaque("aten.repeat_interleave.Tensor", {counts}, {{{5}, DType::kI64}});
  const Op& rep_op = b.graph().op(b.tensor(rep[0]).producer.value());
  EXPECT_EQ(InferOutputTypes(*FindOpSchema("aten.repeat_interleave"), b.graph(), rep_op)[0].shape, (Shape{5}));
  // argmax: the dim reduced (a whole-dim reduction for fission), the others linked.
  TensorId am = b.Call("aten.argmax", {x}, {{"dim", int64_t{1}}});
  EXPECT_EQ(b.shape(am), (Shape{4}));
  EXPECT_EQ(b.tensor(am).dtype, DType::kI64);
  EXPECT_THAT(links_of(am), ::testing::ElementsAre(DimLink{0, 0, 0, 0}));
  EXPECT_EQ(b.shape(b.Call("aten.argmin", {x}, {{"dim", int64_t{-1}}, {"keepdim", true}})), (Shape{4, 1}));
  EXPECT_EQ(b.shape(b.Call("aten.argmax", {x})), Shape{});
}

// Every rule either answers or refuses with an Error for inputs of rank 0 or
// of huge extents, for dimension attributes naming dimension 0 or -1 (PyTorch
// accepts both for a 0-d tensor) and for huge sizes. A rule that indexed a
// per-dimension table with such a dimension wrote past an empty vector (found
// by fuzzing graph JSON: aten.sum of a scalar over dim [0]).
// Ops held-out programs ran opaque (barriers to fission): pooling that
// keeps indices, sliding windows, a diagonal, statistics, running extrema.
TEST(Registry, WindowsDiagonalsAndStatistics) {
  GraphBuilder b("g");
  auto links_of = [&](TensorId t) { return LinksOf(b, t); };
  TensorId img = b.Input("img", {2, 3, 8, 6});
  auto amax = b.CallMulti("aten.adaptive_max_pool2d", {img}, {{"output_size", std::vector<int64_t>{3, 2}}});
  EXPECT_EQ(b.shape(amax[0]), (Shape{2, 3, 3, 2}));
  EXPECT_EQ(b.tensor(amax[1]).dtype, DType::kI64);
  EXPECT_THAT(links_of(amax[0]), ::testing::Not(::testing::Contains(DimLink{0, 2, 0, 2})));  // windows by index
  EXPECT_EQ(b.shape(b.Call("aten.adaptive_max_pool2d_backward", {amax[0], img, amax[1]})), (Shape{2, 3, 8, 6}));
  auto pooled = b.CallMulti("aten.max_pool2d_with_indices", {img}, {{"kernel_size", std::vector<int64_t>{2, 2}}});
  EXPECT_EQ(b.shape(b.Call("aten.max_unpool2d", {pooled[0], pooled[1]}, {{"output_size", std::vector<int64_t>{8, 6}}})),
            (Shape{2, 3, 8, 6}));
  ExpectError([&] { b.Call("aten.max_unpool2d", {pooled[0], img}, {{"output_size", std::vector<int64_t>{8, 6}}}); },
              "shapes differ");
  // unfold(2, 3, 2): 8 rows -> 3 windows of 3, appended last; the other axes linked.
  const Attrs unfold = {{"dimension", int64_t{2}}, {"size", int64_t{3}}, {"step", int64_t{2}}};
  TensorId windows = b.Call("aten.unfold", {img}, unfold);
  EXPECT_EQ(b.shape(windows), (Shape{2, 3, 3, 6, 3}));
  EXPECT_THAT(links_of(windows), ::testing::ElementsAre(DimLink{0, 0, 0, 0}, DimLink{0, 1, 0, 1}, DimLink{0, 3, 0, 3}));
  EXPECT_EQ(b.shape(b.Call("aten.unfold_backward", {windows}, {{"input_sizes", std::vector<int64_t>{2, 3, 8, 6}},
                                                               {"dim", int64_t{2}}, {"size", int64_t{3}},
                                                               {"step", int64_t{2}}})),
            (Shape{2, 3, 8, 6}));
  const Attrs too_wide = {{"dimension", int64_t{3}}, {"size", int64_t{7}}, {"step", int64_t{1}}};
  ExpectError([&] { b.Call("aten.unfold", {img}, too_wide); }, "outside [0, 6]");
  // diagonal(offset 1, dims 2 and 3) of [2, 3, 8, 6]: min(8, 6 - 1) = 5, appended last.
  TensorId diag = b.Call("aten.diagonal", {img}, {{"offset", int64_t{1}}, {"dim1", int64_t{2}}, {"dim2", int64_t{3}}});
  EXPECT_EQ(b.shape(diag), (Shape{2, 3, 5}));
  EXPECT_THAT(links_of(diag), ::testing::ElementsAre(DimLink{0, 0, 0, 0}, DimLink{0, 1, 0, 1}));
  EXPECT_EQ(b.shape(b.Call("aten.diagonal_backward", {diag}, {{"input_sizes", std::vector<int64_t>{2, 3, 8, 6}},
                                                              {"offset", int64_t{1}}, {"dim1", int64_t{2}},
                                                              {"dim2", int64_t{3}}})),
            (Shape{2, 3, 8, 6}));
  const Attrs far_below = {{"offset", int64_t{-7}}, {"dim1", int64_t{2}}, {"dim2", int64_t{3}}};
  EXPECT_EQ(b.shape(b.Call("aten.diagonal", {img}, far_below)), (Shape{2, 3, 1}));
  ExpectError([&] { b.Call("aten.diagonal", {img}, {{"dim1", int64_t{1}}, {"dim2", int64_t{-3}}}); }, "both 1");
  EXPECT_EQ(b.shape(b.Call("aten.eye", {}, {{"n", int64_t{4}}})), (Shape{4, 4}));
  EXPECT_EQ(b.shape(b.Call("aten.eye", {}, {{"n", int64_t{4}}, {"m", int64_t{2}}})), (Shape{4, 2}));
  // var_mean: two results, both linked; all / any: bool.
  auto vm = b.CallMulti("aten.var_mean", {img}, {{"dim", std::vector<int64_t>{1}}});
  EXPECT_EQ(b.shape(vm[0]), (Shape{2, 8, 6}));
  EXPECT_EQ(b.shape(vm[1]), (Shape{2, 8, 6}));
  EXPECT_THAT(links_of(vm[1]), ::testing::Contains(DimLink{1, 0, 0, 0}));
  TensorId all = b.Call("aten.all", {img}, {{"dim", int64_t{3}}, {"keepdim", true}});
  EXPECT_EQ(b.shape(all), (Shape{2, 3, 8, 1}));
  EXPECT_EQ(b.tensor(all).dtype, DType::kBool);
  EXPECT_EQ(b.tensor(b.Call("aten.any", {img})).dtype, DType::kBool);
  // cummax keeps the shape; its scanned axis is not linked.
  auto running = b.CallMulti("aten.cummax", {img}, {{"dim", int64_t{3}}});
  EXPECT_EQ(b.shape(running[1]), (Shape{2, 3, 8, 6}));
  EXPECT_THAT(links_of(running[0]), ::testing::Not(::testing::Contains(DimLink{0, 3, 0, 3})));
  EXPECT_THAT(links_of(b.Call("aten.logcumsumexp", {img}, {{"dim", int64_t{2}}})),
              ::testing::Not(::testing::Contains(DimLink{0, 2, 0, 2})));
  // cdist of [2, 5, 4] and [7, 4] rows: [2, 5, 7]; rows linked, the row length reduced whole.
  TensorId x1 = b.Input("x1", {2, 5, 4});
  TensorId x2 = b.Input("x2", {7, 4});
  TensorId dist = b.Call("aten._cdist_forward", {x1, x2}, {{"p", 2.0}});
  EXPECT_EQ(b.shape(dist), (Shape{2, 5, 7}));
  EXPECT_THAT(links_of(dist), ::testing::IsSupersetOf({DimLink{0, 0, 0, 0}, DimLink{0, 1, 0, 1}, DimLink{0, 2, 1, 0}}));
  EXPECT_EQ(b.shape(b.Call("aten._cdist_backward", {dist, x1, x2, dist}, {{"p", 2.0}})), (Shape{2, 5, 4}));
  ExpectError([&] { b.Call("aten._cdist_forward", {x1, b.Input("x3", {7, 3})}); }, "rows differ in length");
  // log_sigmoid_forward's buffer: self's shape (CPU) or empty (CUDA), as declared.
  auto log_sigmoid = b.CallMulti("aten.log_sigmoid_forward", {x1});
  EXPECT_EQ(b.shape(log_sigmoid[1]), (Shape{2, 5, 4}));
  EXPECT_EQ(b.shape(b.Call("aten.log_sigmoid_backward", {x1, x1, log_sigmoid[1]})), (Shape{2, 5, 4}));
  auto on_cuda = b.CallOpaque("aten.log_sigmoid_forward", {x1}, {{{2, 5, 4}, DType::kF32}, {{0}, DType::kF32}});
  const Op& cuda_op = b.graph().op(*b.tensor(on_cuda[0]).producer);
  EXPECT_EQ(InferOutputTypes(*FindOpSchema("aten.log_sigmoid_forward"), b.graph(), cuda_op)[1].shape, (Shape{0}));
  EXPECT_EQ(b.shape(b.Call("aten.log_sigmoid_backward", {x1, x1, on_cuda[1]})), (Shape{2, 5, 4}));
}

TEST(Registry, EveryRuleAnswersOrRefusesOddShapesAndAttributes) {
  const std::vector<Attrs> attr_sets = {
      {},
      {{"dim", int64_t{0}}},
      {{"dim", int64_t{-1}}},
      {{"dim", std::vector<int64_t>{0}}},
      {{"dim", std::vector<int64_t>{-1, 0}}},
      {{"dims", std::vector<int64_t>{0}}},
      {{"dims", std::vector<int64_t>{0, -1}}},
      {{"dim0", int64_t{0}}, {"dim1", int64_t{-1}}},
      {{"dim", int64_t{0}}, {"keepdim", true}},
      {{"dim", std::vector<int64_t>{0}}, {"keepdim", true}},
  };
  // The other attributes rules ask for, so that a rule reaches its dimension.
  const Attrs others = {{"index", int64_t{0}},        {"k", int64_t{1}},
                        {"chunks", int64_t{1}},       {"split_size", int64_t{1}},
                        {"split_sizes", std::vector<int64_t>{1}}, {"half_to_float", false},
                        {"start", int64_t{0}},        {"end", int64_t{1}},
                        {"input_dtype", std::string("float32")}, {"reduction", int64_t{1}},
                        {"input_sizes", std::vector<int64_t>{}}};
  // Extents and sizes near what a tensor may hold (kMaxTensorBytes): a rule's
  // arithmetic must refuse, not overflow.
  constexpr int64_t kHuge = int64_t{1} << 26;
  const Attrs huge = {{"size", std::vector<int64_t>{kHuge, kHuge, kHuge}},
                      {"repeats", std::vector<int64_t>{kHuge, kHuge}},
                      {"sizes", std::vector<int64_t>{kHuge, kHuge, kHuge}},
                      {"output_size", std::vector<int64_t>{kHuge, kHuge}},
                      {"scale_factors", std::vector<double>{1e9, 1e9}},
                      {"steps", kHuge * kHuge},
                      {"end", kHuge * kHuge}};
  std::vector<Attrs> with_others;
  for (Attrs attrs : attr_sets) {
    with_others.push_back(attrs);
    attrs.insert(others.begin(), others.end());
    with_others.push_back(attrs);
    attrs.insert(huge.begin(), huge.end());
    with_others.push_back(attrs);
  }
  for (const std::string& type : RegisteredOpTypes()) {
    const OpSchema& schema = *FindOpSchema(type);
    const size_t most = std::min<size_t>(schema.max_inputs().value_or(schema.min_inputs() + 2), 8);
    // The first input's shape, then the others' (ranks that disagree too).
    const std::vector<std::pair<Shape, Shape>> shapes = {
        {{}, {}},         {{3, 3}, {3, 3}}, {{kHuge, kHuge}, {kHuge, kHuge}},
        {{3, 3}, {}},     {{}, {3, 3}},     {{2, 3, 4, 5}, {3}},
        {{3}, {2, 3, 4, 5}}};
    for (const auto& [first, rest] : shapes) {
      for (size_t n = schema.min_inputs(); n <= most; ++n) {
        for (const Attrs& attrs : with_others) {
          GraphBuilder b("g");
          std::vector<TensorId> inputs;
          for (size_t i = 0; i < n; ++i) inputs.push_back(b.Input(fmt::format("x{}", i), i == 0 ? first : rest));
          try {
            b.CallMulti(type, inputs, attrs);
          } catch (const Error&) {
            continue;  // refused with a message: fine
          }
          const Graph& g = b.graph();
          const Op& op = g.op(OpId(0));
          try {
            const OpCost cost = ComputeOpCost(g, op);
            EXPECT_GE(cost.bytes_read, 0) << type;
            ComputeDimLinks(g, op);
          } catch (const Error&) {
          }
        }
      }
    }
  }
}

// mv's rows are its result's, and m is one index summed over the matrix's
// columns and the vector; dot sums its one index over both. They were
// barriers: a deep & cross network's x @ w ended every run along the batch.
TEST(Registry, VectorProductsSumTheirSharedIndex) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {6, 4});
  TensorId w = b.Input("w", {4});
  TensorId rows = b.Call("aten.mv", {x, w});
  EXPECT_THAT(LinksOf(b, rows), ::testing::ElementsAre(DimLink{0, 0, 0, 0}));
  const Op& mv = b.graph().op(*b.tensor(rows).producer);
  EXPECT_THAT(ComputeDimLinks(b.graph(), mv).reduced,
              ::testing::ElementsAre(ReducedDim{0, 1, PartialCombine::kSum, 0}, ReducedDim{1, 0, PartialCombine::kSum, 0}));
  TensorId v = b.Input("v", {4});
  TensorId both = b.Call("aten.dot", {w, v});
  const DimLinks dot = ComputeDimLinks(b.graph(), b.graph().op(*b.tensor(both).producer));
  EXPECT_TRUE(dot.links.empty());
  EXPECT_THAT(dot.reduced,
              ::testing::ElementsAre(ReducedDim{0, 0, PartialCombine::kSum, 0}, ReducedDim{1, 0, PartialCombine::kSum, 0}));
}

// logical_and_ / logical_or_ link other (broadcast) to self element by
// element: clamp's backward, ge(x, min).logical_and_(le(x, max)), ended
// every run along the batch at it.
TEST(Registry, InPlaceLogicalOpsLinkBothOperands) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {4, 3}, DType::kBool);
  TensorId row = b.Input("row", {3}, DType::kBool);
  EXPECT_THAT(LinksOf(b, b.Call("aten.logical_and_", {x, b.Input("y", {4, 3}, DType::kBool)})),
              ::testing::IsSupersetOf({DimLink{0, 0, 0, 0}, DimLink{0, 0, 1, 0}, DimLink{0, 1, 1, 1}}));
  EXPECT_THAT(LinksOf(b, b.Call("aten.logical_or_", {x, row})), ::testing::Contains(DimLink{0, 1, 1, 0}));
}

// new_empty_strided(x, x.shape, ...) (autograd's buffer for the gradient of an
// assignment into a slice) and the other new_* factories of self's own shape
// are made like self, as zeros_like is: linked axis by axis. Of another shape
// they are no part of self's axes.
TEST(Registry, NewFactoriesOfSelfsShapeLinkItsAxes) {
  GraphBuilder b("g");
  TensorId x = b.Input("x", {4, 3, 5});
  TensorId same = b.Call("aten.new_empty_strided", {x}, {{"size", Shape{4, 3, 5}}, {"stride", Shape{15, 5, 1}}});
  EXPECT_THAT(LinksOf(b, same), ::testing::ElementsAre(DimLink{0, 0, 0, 0}, DimLink{0, 1, 0, 1}, DimLink{0, 2, 0, 2}));
  TensorId counts = b.Call("aten.new_zeros", {x}, {{"size", Shape{4}}});
  EXPECT_THAT(LinksOf(b, counts), ::testing::IsEmpty());
}

}  // namespace
}  // namespace memfit
