// Tests of the model zoo: every model builds and validates at small
// options, parameter counts match the published (and exact torchvision /
// HuggingFace) figures, key tensors have the expected shapes, builds are
// deterministic and bad requests fail with clear messages.
#include "models/zoo.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>

#include "ir/registry.h"
#include "ir/validate.h"
#include "test_util.h"
#include "util/error.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;

const Tensor& FindTensor(const Graph& g, std::string_view name) {
  for (const Tensor& t : g.tensors()) {
    if (t.name == name) return t;
  }
  throw std::runtime_error("no tensor named " + std::string(name));
}

bool HasTensor(const Graph& g, std::string_view name) {
  for (const Tensor& t : g.tensors()) {
    if (t.name == name) return true;
  }
  return false;
}

int64_t CountOps(const Graph& g, std::string_view type) {
  int64_t n = 0;
  for (const Op& op : g.ops()) n += op.type == type;
  return n;
}

// Small but valid options: two samples, 16 tokens, the smallest convenient
// image for the family.
ZooOptions SmallOptions(const ZooModel& m) {
  ZooOptions o;
  o.batch = 2;
  o.seq = 16;
  if (m.family == "vit") o.image = m.name == "vit-huge" ? 28 : 32;
  else if (m.family == "unet") o.image = 32;
  else if (m.family == "mlp") o.image = 8;
  else if (m.family == "keras-seg") o.image = 32, o.width = 64;
  else o.image = 64;
  return o;
}

class EveryModel : public ::testing::TestWithParam<ZooModel> {};

TEST_P(EveryModel, SmallBuildValidatesAndEndsInScalarLoss) {
  const ZooModel& m = GetParam();
  const ZooOptions o = SmallOptions(m);
  const Graph g = BuildZooModel(m.name, o);
  EXPECT_NO_THROW(Validate(g));
  ASSERT_EQ(g.outputs.size(), 1u);
  const Tensor& loss = g.tensor(g.outputs[0]);
  EXPECT_TRUE(loss.shape.empty()) << ShapeToString(loss.shape);
  EXPECT_EQ(loss.role, TensorRole::kOutput);
  EXPECT_EQ(loss.dtype, DType::kF32);
  EXPECT_EQ(g.op(*loss.producer).type, "aten.nll_loss_forward");
  EXPECT_EQ(g.name, m.name);
  EXPECT_EQ(g.metadata.at("model"), m.name);
  EXPECT_EQ(g.metadata.at("family"), m.family);
  EXPECT_EQ(g.metadata.at("batch"), "2");
  EXPECT_EQ(g.metadata.at("dtype"), "f32");
  if (m.default_seq) {
    EXPECT_EQ(g.metadata.at("seq"), "16");
  }
  if (m.default_image) {
    EXPECT_EQ(g.metadata.at("image"), std::to_string(o.image));
  }
  for (const Op& op : g.ops()) {
    EXPECT_NE(FindOpSchema(op.type), nullptr) << op.type << " is not registered (op " << op.name << ")";
    EXPECT_EQ(op.phase, Phase::kForward);
  }
  // Every source tensor is a parameter, buffer or input; inputs include i64 labels.
  bool has_labels = false;
  for (const Tensor& t : g.tensors()) {
    if (t.producer) continue;
    EXPECT_TRUE(t.role == TensorRole::kParameter || t.role == TensorRole::kBuffer || t.role == TensorRole::kInput)
        << t.name;
    has_labels = has_labels || (t.role == TensorRole::kInput && t.dtype == DType::kI64);
  }
  EXPECT_TRUE(has_labels);
}

TEST_P(EveryModel, DefaultBuildValidatesAndUsesDefaults) {
  const ZooModel& m = GetParam();
  const Graph g = BuildZooModel(m.name, {});
  EXPECT_NO_THROW(Validate(g));
  EXPECT_EQ(g.metadata.at("batch"), std::to_string(m.default_batch));
  if (m.default_seq) {
    EXPECT_EQ(g.metadata.at("seq"), std::to_string(m.default_seq));
  }
  if (m.default_image) {
    EXPECT_EQ(g.metadata.at("image"), std::to_string(m.default_image));
  }
}

TEST_P(EveryModel, BuildsAreDeterministic) {
  const ZooModel& m = GetParam();
  const Graph a = BuildZooModel(m.name, SmallOptions(m));
  const Graph b = BuildZooModel(m.name, SmallOptions(m));
  ASSERT_EQ(a.num_ops(), b.num_ops());
  ASSERT_EQ(a.num_tensors(), b.num_tensors());
  for (size_t i = 0; i < a.num_ops(); ++i) {
    EXPECT_EQ(ToString(a.ops()[i]), ToString(b.ops()[i]));
    EXPECT_EQ(a.ops()[i].attrs, b.ops()[i].attrs);
  }
  for (size_t i = 0; i < a.num_tensors(); ++i) EXPECT_EQ(ToString(a.tensors()[i]), ToString(b.tensors()[i]));
}

TEST_P(EveryModel, HalfPrecisionWithoutDropout) {
  const ZooModel& m = GetParam();
  ZooOptions o = SmallOptions(m);
  o.dtype = DType::kF16;
  o.dropout = 0;
  const Graph g = BuildZooModel(m.name, o);
  EXPECT_NO_THROW(Validate(g));
  EXPECT_EQ(g.tensor(g.outputs[0]).dtype, DType::kF16);
  EXPECT_EQ(CountOps(g, "aten.native_dropout"), 0);
  for (const Tensor& t : g.tensors()) {
    if (t.role == TensorRole::kParameter) {
      EXPECT_EQ(t.dtype, DType::kF16) << t.name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Zoo, EveryModel, ::testing::ValuesIn(ZooModels()),
                         [](const ::testing::TestParamInfo<ZooModel>& info) { return testing::TestName(info.param.name); });

TEST(Zoo, ModelsAreSortedAndComplete) {
  std::vector<std::string> names;
  for (const ZooModel& m : ZooModels()) names.push_back(m.name);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_THAT(names, ::testing::ElementsAre("bert-base", "bert-large", "bert-medium", "bert-mini", "bert-small",
                                            "bert-tiny", "densenet121", "fcn8", "gpt-neo-1.3b", "gpt2-large", "gpt2-medium",
                                            "gpt2-small", "gpt2-xl", "mlp", "mobilenet-v2", "resnet-101",
                                            "resnet-152", "resnet-18", "resnet-34", "resnet-50", "segnet", "unet", "vgg-unet", "vgg16",
                                            "vit-base", "vit-huge", "vit-large", "vit-small", "vit-tiny"));
}

// Parameter counts at the default configuration against the published
// figures. The small BERTs' published sizes (Turc et al. 2019) are rounded
// from a slightly different count; they get 2%.
TEST(Zoo, ParameterCountsMatchPublishedFigures) {
  for (const ZooModel& m : ZooModels()) {
    if (m.published_params == 0) continue;
    const int64_t ours = CountParameters(BuildZooModel(m.name, {}));
    const double diff = std::abs(static_cast<double>(ours) / static_cast<double>(m.published_params) - 1);
    const bool small_bert = m.name == "bert-mini" || m.name == "bert-small";
    EXPECT_LE(diff, small_bert ? 0.02 : 0.01) << m.name << ": " << ours << " vs published " << m.published_params;
  }
}

// Exact counts of the reference implementations (torchvision, HuggingFace
// transformers, milesial/Pytorch-UNet), so a missing bias shows up.
TEST(Zoo, ParameterCountsMatchReferenceImplementationsExactly) {
  const std::map<std::string, int64_t> exact = {
      {"bert-base", 109'482'240 + 768 * 2 + 2},  // BertModel + classifier
      {"bert-large", 335'141'888 + 1024 * 2 + 2},
      {"gpt2-small", 124'439'808},
      {"gpt2-medium", 354'823'168},
      {"gpt2-large", 774'030'080},
      {"gpt2-xl", 1'557'611'200},
      {"gpt-neo-1.3b", 1'315'575'808},
      {"vit-base", 86'567'656},
      {"vit-large", 304'326'632},
      {"vit-huge", 632'045'800},
      {"resnet-18", 11'689'512},
      {"resnet-34", 21'797'672},
      {"resnet-50", 25'557'032},
      {"resnet-101", 44'549'160},
      {"resnet-152", 60'192'808},
      {"vgg16", 138'357'544},
      {"densenet121", 7'978'856},
      {"mobilenet-v2", 3'504'872},
      {"unet", 31'037'698},
      // keras_segmentation at 19 classes, trainable parameters (Keras's
      // count_params() adds the BatchNorm moving mean and variance, 2 per
      // channel). fcn8: the VGG-16 convolutions 14'714'688, conv2d_5
      // 7*7*512*4096 + 4096 = 102'764'544, conv2d_6 4096*4096 + 4096 =
      // 16'781'312, conv2d_7 4096*19 + 19 = 77'843, conv2d_8 512*19 + 19 =
      // 9'747, conv2d_9 256*19 + 19 = 4'883, the transposed convolutions
      // without bias 2 * 4*4*19*19 + 16*16*19*19 = 11'552 + 92'416.
      {"fcn8", 14'714'688 + 102'764'544 + 16'781'312 + 77'843 + 9'747 + 4'883 + 11'552 + 92'416},
      // segnet: 3x3 convolutions with bias 3->64, 64->128, 128->256,
      // 256->256, 256->512, 512->256, 256->128, 128->64, 64->19, and
      // BatchNorm gamma + beta after all but the last.
      {"segnet", 9 * (3 * 64 + 64 * 128 + 128 * 256 + 256 * 256 + 256 * 512 + 512 * 256 + 256 * 128 + 128 * 64 + 64 * 19) +
                     (64 + 128 + 256 + 256 + 512 + 256 + 128 + 64 + 19) +
                     2 * (64 + 128 + 256 + 256 + 512 + 256 + 128 + 64)},  // 3'704'083
      // vgg-unet: VGG-16 blocks 1-4 (14'714'688 less block 5's three
      // 512->512 convolutions, 3 * 2'359'808), the decoder's 3x3
      // convolutions 512->512, (512+256)->256, (256+128)->128,
      // (128+64)->64, 64->19 with bias, BatchNorm on the first four.
      {"vgg-unet", 14'714'688 - 3 * 2'359'808 + 9 * (512 * 512 + 768 * 256 + 384 * 128 + 192 * 64 + 64 * 19) +
                       (512 + 256 + 128 + 64 + 19) + 2 * (512 + 256 + 128 + 64)},  // 12'330'835
      {"mlp", 784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10},
  };
  for (const auto& [name, count] : exact) EXPECT_EQ(CountParameters(BuildZooModel(name, {})), count) << name;
}

TEST(Zoo, BertBaseShapesAndNames) {
  const Graph g = BuildZooModel("bert-base", {.batch = 3, .seq = 64});
  EXPECT_EQ(FindTensor(g, "bert.encoder.layer.11.output.LayerNorm.native_layer_norm.0").shape, (Shape{3, 64, 768}));
  const Tensor& q = FindTensor(g, "bert.encoder.layer.0.attention.self.query.weight");
  EXPECT_EQ(q.shape, (Shape{768, 768}));
  EXPECT_EQ(q.role, TensorRole::kParameter);
  EXPECT_EQ(FindTensor(g, "bert.encoder.layer.0.intermediate.dense.weight").shape, (Shape{3072, 768}));
  EXPECT_EQ(FindTensor(g, "bert.embeddings.word_embeddings.weight").shape, (Shape{30522, 768}));
  EXPECT_EQ(FindTensor(g, "bert.embeddings.position_ids").role, TensorRole::kBuffer);
  EXPECT_EQ(FindTensor(g, "classifier.weight").shape, (Shape{2, 768}));
  EXPECT_EQ(FindTensor(g, "input_ids").dtype, DType::kI64);
  EXPECT_EQ(FindTensor(g, "labels").shape, (Shape{3}));
  // Attention scores [B, heads, S, S] and the softmax per layer.
  EXPECT_EQ(CountOps(g, "aten._softmax"), 12);
  EXPECT_EQ(FindTensor(g, "bert.encoder.layer.0.attention.self._softmax").shape, (Shape{3, 12, 64, 64}));
  // Dropout: embeddings, 3 per layer (probabilities, two residual branches), the pooled output.
  EXPECT_EQ(CountOps(g, "aten.native_dropout"), 1 + 12 * 3 + 1);
  EXPECT_EQ(CountOps(g, "aten.native_layer_norm"), 1 + 12 * 2);
}

TEST(Zoo, Gpt2TiesTheLmHeadToTheTokenEmbedding) {
  const Graph g = BuildZooModel("gpt2-small", {.batch = 2, .seq = 32});
  EXPECT_FALSE(HasTensor(g, "lm_head.weight"));
  const Tensor& wte = FindTensor(g, "transformer.wte.weight");
  int64_t uses = 0;
  for (const Op& op : g.ops()) {
    for (TensorId in : op.inputs) uses += in == wte.id;
  }
  EXPECT_EQ(uses, 2);  // the embedding lookup and aten.t for the LM head
  EXPECT_EQ(FindTensor(g, "transformer.h.0.attn.c_attn.weight").shape, (Shape{768, 2304}));
  EXPECT_EQ(FindTensor(g, "transformer.causal_mask").shape, (Shape{1, 1, 32, 32}));
  EXPECT_EQ(FindTensor(g, "transformer.causal_mask").role, TensorRole::kBuffer);
  EXPECT_EQ(FindTensor(g, "transformer.ln_f.native_layer_norm.0").shape, (Shape{2, 32, 768}));
  // Logits over the vocabulary for every token feed the loss.
  const Op& log_softmax = g.op(*FindTensor(g, "loss._log_softmax").producer);
  EXPECT_EQ(g.tensor(log_softmax.inputs[0]).shape, (Shape{64, 50257}));
  EXPECT_EQ(CountOps(g, "aten.gelu"), 12);
  for (const Op& op : g.ops()) {
    if (op.type == "aten.gelu") {
      EXPECT_EQ(std::get<std::string>(op.attrs.at("approximate")), "tanh");
    }
  }
}

TEST(Zoo, GptNeoHasNoBiasOnQkv) {
  const Graph g = BuildZooModel("gpt-neo-1.3b", {.batch = 1, .seq = 16});
  EXPECT_TRUE(HasTensor(g, "transformer.h.0.attn.attention.q_proj.weight"));
  EXPECT_FALSE(HasTensor(g, "transformer.h.0.attn.attention.q_proj.bias"));
  EXPECT_TRUE(HasTensor(g, "transformer.h.0.attn.attention.out_proj.bias"));
  EXPECT_EQ(FindTensor(g, "transformer.wpe.weight").shape, (Shape{2048, 2048}));
  EXPECT_EQ(CountOps(g, "aten.div"), 0);  // GPT-Neo does not scale its scores
}

TEST(Zoo, VitBaseTokens) {
  const Graph g = BuildZooModel("vit-base", {.batch = 2});
  EXPECT_EQ(FindTensor(g, "vit.embeddings.tokens").shape, (Shape{2, 197, 768}));
  EXPECT_EQ(FindTensor(g, "vit.embeddings.patch_embeddings.projection.weight").shape, (Shape{768, 3, 16, 16}));
  EXPECT_EQ(FindTensor(g, "vit.embeddings.position_embeddings").shape, (Shape{1, 197, 768}));
  EXPECT_EQ(FindTensor(g, "cls_output").shape, (Shape{2, 768}));
  const Graph huge = BuildZooModel("vit-huge", {.batch = 1});
  EXPECT_EQ(FindTensor(huge, "vit.embeddings.tokens").shape, (Shape{1, 257, 1280}));
}

TEST(Zoo, ResnetFeaturesAndBatchNormState) {
  const Graph g = BuildZooModel("resnet-50", {.batch = 4});
  EXPECT_EQ(FindTensor(g, "avgpool.flatten").shape, (Shape{4, 2048}));
  EXPECT_EQ(FindTensor(g, "layer1.0.downsample.0.weight").shape, (Shape{256, 64, 1, 1}));
  EXPECT_EQ(FindTensor(g, "layer4.2.conv2.weight").shape, (Shape{512, 512, 3, 3}));
  EXPECT_EQ(FindTensor(g, "layer1.0.bn1.running_mean").role, TensorRole::kBuffer);
  EXPECT_EQ(FindTensor(g, "fc.weight").shape, (Shape{1000, 2048}));
  // 53 BatchNorms (1 stem + 16 blocks x 3 + 4 downsample), each with two running statistics.
  EXPECT_EQ(CountOps(g, "aten.native_batch_norm"), 53);
  int64_t buffers = 0;
  for (const Tensor& t : g.tensors()) buffers += t.role == TensorRole::kBuffer;
  EXPECT_EQ(buffers, 2 * 53);
  EXPECT_EQ(FindTensor(BuildZooModel("resnet-18", {.batch = 4}), "avgpool.flatten").shape, (Shape{4, 512}));
}

TEST(Zoo, UnetLogitsPerPixel) {
  const Graph g = BuildZooModel("unet", {.batch = 2, .image = 64});
  EXPECT_EQ(FindTensor(g, "up1.up.weight").shape, (Shape{1024, 512, 2, 2}));
  EXPECT_EQ(FindTensor(g, "outc.conv.weight").shape, (Shape{2, 64, 1, 1}));
  EXPECT_EQ(CountOps(g, "aten.cat"), 4);
  const Op& log_softmax = g.op(*FindTensor(g, "loss._log_softmax").producer);
  EXPECT_EQ(g.tensor(log_softmax.inputs[0]).shape, (Shape{2 * 64 * 64, 2}));
}

// The Keras segmentation nets at Checkmate's 416x608: the layer output
// sizes of the Checkmate graphs (cost_ram / 4 / 32 in
// ../shared/data/remat/checkmate/*_32_416x608_train.json).
TEST(Zoo, KerasSegmentationLayersMatchCheckmate) {
  const auto out = [](const Graph& g, std::string_view op_name) {
    for (const Op& op : g.ops()) {
      if (op.name == op_name) return g.tensor(op.outputs[0]).shape;
    }
    throw std::runtime_error("no op named " + std::string(op_name));
  };
  const Graph f = BuildZooModel("fcn8", {.batch = 1});
  EXPECT_EQ(f.metadata.at("image"), "416");
  EXPECT_EQ(f.metadata.at("width"), "608");
  EXPECT_EQ(FindTensor(f, "images").shape, (Shape{1, 3, 416, 608}));
  EXPECT_EQ(out(f, "block5_pool.max_pool2d_with_indices"), (Shape{1, 512, 13, 19}));
  EXPECT_EQ(out(f, "conv2d_5.convolution"), (Shape{1, 4096, 13, 19}));
  EXPECT_EQ(out(f, "conv2d_transpose.convolution"), (Shape{1, 19, 28, 40}));
  EXPECT_EQ(out(f, "cropping2d"), (Shape{1, 19, 28, 38}));
  EXPECT_EQ(out(f, "cropping2d_1"), (Shape{1, 19, 26, 38}));
  EXPECT_EQ(out(f, "conv2d_transpose_1.convolution"), (Shape{1, 19, 54, 78}));
  EXPECT_EQ(out(f, "cropping2d_3"), (Shape{1, 19, 52, 76}));
  EXPECT_EQ(out(f, "conv2d_transpose_2.convolution"), (Shape{1, 19, 424, 616}));
  const auto counts = [](const Graph& g, const std::map<std::string, int64_t>& expected) {
    for (const auto& [type, n] : expected) EXPECT_EQ(CountOps(g, type), n) << g.name << " " << type;
  };
  // VGG's 13 convolutions, conv2d_5..9 and three transposed.
  counts(f, {{"aten.convolution", 13 + 5 + 3}, {"aten.slice", 4}, {"aten.add", 2}, {"aten.native_dropout", 2}});

  const Graph s = BuildZooModel("segnet", {.batch = 1});
  EXPECT_EQ(out(s, "zero_padding2d_5"), (Shape{1, 64, 210, 306}));
  EXPECT_EQ(out(s, "max_pooling2d_3.max_pool2d_with_indices"), (Shape{1, 256, 26, 38}));
  EXPECT_EQ(out(s, "up_sampling2d_5"), (Shape{1, 128, 208, 304}));
  EXPECT_EQ(out(s, "conv2d_19.convolution"), (Shape{1, 19, 208, 304}));
  counts(s, {{"aten.constant_pad_nd", 8},
             {"aten.convolution", 9},
             {"aten.native_batch_norm", 8},
             {"aten.relu", 4},
             {"aten.max_pool2d_with_indices", 4},
             {"aten.upsample_nearest2d", 3}});

  const Graph u = BuildZooModel("vgg-unet", {.batch = 1});
  EXPECT_EQ(out(u, "concatenate"), (Shape{1, 768, 52, 76}));
  EXPECT_EQ(out(u, "zero_padding2d_3"), (Shape{1, 192, 210, 306}));
  EXPECT_EQ(out(u, "conv2d_4.convolution"), (Shape{1, 19, 208, 304}));
  // VGG blocks 1-4 have 10 convolutions, each with its ReLU; the decoder 4 + 1.
  counts(u, {{"aten.convolution", 10 + 5},
             {"aten.relu", 10 + 4},
             {"aten.cat", 3},
             {"aten.constant_pad_nd", 4},
             {"aten.native_batch_norm", 4},
             {"aten.max_pool2d_with_indices", 4},
             {"aten.upsample_nearest2d", 3}});
}

TEST(Zoo, NonSquareImages) {
  const Graph square = BuildZooModel("segnet", {.batch = 1, .image = 64});
  EXPECT_EQ(FindTensor(square, "images").shape, (Shape{1, 3, 64, 64}));
  EXPECT_EQ(square.metadata.count("width"), 0u);
  const Graph wide = BuildZooModel("vgg-unet", {.batch = 1, .image = 32, .width = 96});
  EXPECT_EQ(FindTensor(wide, "masks").shape, (Shape{1, 16, 48}));
  EXPECT_EQ(FindTensor(BuildZooModel("resnet-18", {.batch = 1, .image = 64, .width = 64}), "images").shape,
            (Shape{1, 3, 64, 64}));
}

TEST(Zoo, DensenetAndMobilenetShapes) {
  const Graph d = BuildZooModel("densenet121", {.batch = 2});
  EXPECT_EQ(FindTensor(d, "flatten").shape, (Shape{2, 1024}));
  EXPECT_EQ(FindTensor(d, "features.denseblock4.denselayer16.conv2.weight").shape, (Shape{32, 128, 3, 3}));
  const Graph m = BuildZooModel("mobilenet-v2", {.batch = 2});
  EXPECT_EQ(FindTensor(m, "flatten").shape, (Shape{2, 1280}));
  EXPECT_EQ(FindTensor(m, "features.2.conv.1.0.weight").shape, (Shape{96, 1, 3, 3}));  // depthwise
  EXPECT_EQ(CountOps(m, "aten.hardtanh"), 35);
  const Graph v = BuildZooModel("vgg16", {.batch = 2});
  EXPECT_EQ(FindTensor(v, "avgpool.flatten").shape, (Shape{2, 25088}));
  EXPECT_EQ(FindTensor(v, "features.28.weight").shape, (Shape{512, 512, 3, 3}));
}

void ExpectError(std::string_view model, const ZooOptions& options, std::string_view fragment) {
  try {
    BuildZooModel(model, options);
    ADD_FAILURE() << "building " << model << " did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(std::string(fragment))) << e.what();
  }
}

TEST(Zoo, Errors) {
  ExpectError("bert-huge", {}, "unknown zoo model 'bert-huge'; known models: bert-base, bert-large");
  ExpectError("resnet-50", {.batch = -1}, "batch = -1 must be positive");
  ExpectError("bert-base", {.seq = 513}, "seq = 513 exceeds the 512 position embeddings");
  ExpectError("gpt2-small", {.seq = 1025}, "exceeds the 1024 position embeddings");
  ExpectError("bert-base", {.seq = -4}, "seq = -4 must be positive");
  ExpectError("resnet-50", {.image = 16}, "image = 16 is too small for the network (minimum 32)");
  ExpectError("vit-base", {.image = 200}, "image = 200 must be a multiple of 16");
  ExpectError("vit-huge", {.image = 230}, "image = 230 must be a multiple of 14");
  ExpectError("unet", {.image = 40}, "multiple of 16");
  ExpectError("resnet-18", {.image = 64, .width = 96}, "width = 96 differs from image = 64; the model takes square");
  ExpectError("fcn8", {.width = 400}, "width = 400 must be a multiple of 32");
  ExpectError("segnet", {.width = -1}, "width = -1 must be positive");
  ExpectError("vgg-unet", {.image = 64, .width = 8}, "width = 8 is too small for the network (minimum 16)");
  ExpectError("vgg16", {.dropout = 1.0}, "dropout = 1 must be in [0, 1)");
  ExpectError("mlp", {.dtype = DType::kI64}, "dtype i64 is not a floating-point type");
}

TEST(Zoo, IrrelevantOptionsAreIgnored) {
  const Graph g = BuildZooModel("bert-tiny", {.batch = 2, .seq = 8, .image = 999});
  EXPECT_EQ(g.metadata.count("image"), 0u);
  const Graph r = BuildZooModel("resnet-18", {.batch = 2, .seq = 9999, .image = 32});
  EXPECT_EQ(r.metadata.count("seq"), 0u);
}

}  // namespace
}  // namespace memfit
