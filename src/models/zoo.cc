// The zoo's table of models and BuildZooModel: resolves defaults, checks the
// options, and dispatches to the family builders (families.h).
#include "models/zoo.h"

#include <fmt/format.h>

#include <algorithm>

#include "models/families.h"
#include "util/error.h"

namespace memfit {
namespace {

using models::ZooRequest;

// Text models read batch and seq; vision models batch and image.
constexpr int64_t kTextBatch = 8;
constexpr int64_t kTextSeq = 128;
constexpr int64_t kVisionBatch = 32;
constexpr int64_t kVisionImage = 224;
constexpr int64_t kUnetBatch = 4;
constexpr int64_t kUnetImage = 256;
constexpr int64_t kMlpBatch = 64;
constexpr int64_t kMlpImage = 28;  // MNIST

struct Entry {
  ZooModel model;
  Graph (*build)(const ZooRequest&);
  int64_t max_seq = 0;         // position-table size; 0 for models without a sequence
  int64_t min_image = 0;       // smallest image side the network accepts
  int64_t image_multiple = 1;  // the image side must be a multiple of this
};

// keras_segmentation's models at Checkmate's size: batch 32, 416x608 images.
constexpr int64_t kKerasSegBatch = 32;
constexpr int64_t kKerasSegHeight = 416;
constexpr int64_t kKerasSegWidth = 608;

Entry Text(std::string name, std::string family, std::string description, int64_t published,
           Graph (*build)(const ZooRequest&), int64_t max_seq) {
  return {{std::move(name), std::move(family), std::move(description), kTextBatch, kTextSeq, 0, published}, build,
          max_seq};
}

Entry Vision(std::string name, std::string family, std::string description, int64_t published,
             Graph (*build)(const ZooRequest&), int64_t min_image, int64_t multiple = 1,
             int64_t batch = kVisionBatch, int64_t image = kVisionImage) {
  return {{std::move(name), std::move(family), std::move(description), batch, 0, image, published}, build, 0,
          min_image, multiple};
}

std::vector<Entry> MakeEntries() {
  using namespace models;
  constexpr int64_t kBertPositions = 512, kGpt2Positions = 1024, kGptNeoPositions = 2048;
  // Smallest images: 32 for the CNNs with five stride-2 stages (ending at
  // 1x1), one patch for ViT, 16 for U-Net's four poolings.
  constexpr int64_t kCnnMinImage = 32;
  std::vector<Entry> e = {
      Text("bert-tiny", "bert", "BERT L=2 H=128 (Turc et al. 2019) + 2-class head", 4'400'000, BuildBert, kBertPositions),
      Text("bert-mini", "bert", "BERT L=4 H=256 + 2-class head", 11'300'000, BuildBert, kBertPositions),
      Text("bert-small", "bert", "BERT L=4 H=512 + 2-class head", 29'100'000, BuildBert, kBertPositions),
      Text("bert-medium", "bert", "BERT L=8 H=512 + 2-class head", 41'700'000, BuildBert, kBertPositions),
      Text("bert-base", "bert", "BERT-base L=12 H=768 A=12 + 2-class head", 110'000'000, BuildBert, kBertPositions),
      Text("bert-large", "bert", "BERT-large L=24 H=1024 A=16 + 2-class head", 335'000'000, BuildBert, kBertPositions),
      Text("gpt2-small", "gpt2", "GPT-2 124M, 12 layers, 768 hidden, tied LM head", 124'000'000, BuildGpt2, kGpt2Positions),
      Text("gpt2-medium", "gpt2", "GPT-2 355M, 24 layers, 1024 hidden", 355'000'000, BuildGpt2, kGpt2Positions),
      Text("gpt2-large", "gpt2", "GPT-2 774M, 36 layers, 1280 hidden", 774'000'000, BuildGpt2, kGpt2Positions),
      Text("gpt2-xl", "gpt2", "GPT-2 1.5B, 48 layers, 1600 hidden", 1'558'000'000, BuildGpt2, kGpt2Positions),
      Text("gpt-neo-1.3b", "gpt-neo", "GPT-Neo 1.3B, 24 layers, 2048 hidden (local attention as full causal)",
           1'316'000'000, BuildGptNeo, kGptNeoPositions),
      Vision("vit-tiny", "vit", "ViT-Ti/16, 12 layers, 192 hidden", 5'700'000, BuildVit, 16, 16),
      Vision("vit-small", "vit", "ViT-S/16, 12 layers, 384 hidden", 22'100'000, BuildVit, 16, 16),
      Vision("vit-base", "vit", "ViT-B/16, 12 layers, 768 hidden", 86'600'000, BuildVit, 16, 16),
      Vision("vit-large", "vit", "ViT-L/16, 24 layers, 1024 hidden", 304'000'000, BuildVit, 16, 16),
      Vision("vit-huge", "vit", "ViT-H/14, 32 layers, 1280 hidden", 632'000'000, BuildVit, 14, 14),
      Vision("resnet-18", "resnet", "torchvision ResNet-18 (BasicBlock 2-2-2-2)", 11'700'000, BuildResnet, kCnnMinImage),
      Vision("resnet-34", "resnet", "torchvision ResNet-34 (BasicBlock 3-4-6-3)", 21'800'000, BuildResnet, kCnnMinImage),
      Vision("resnet-50", "resnet", "torchvision ResNet-50 (Bottleneck 3-4-6-3)", 25'600'000, BuildResnet, kCnnMinImage),
      Vision("resnet-101", "resnet", "torchvision ResNet-101 (Bottleneck 3-4-23-3)", 44'500'000, BuildResnet, kCnnMinImage),
      Vision("resnet-152", "resnet", "torchvision ResNet-152 (Bottleneck 3-8-36-3)", 60'200'000, BuildResnet, kCnnMinImage),
      Vision("vgg16", "vgg", "torchvision VGG-16 without BatchNorm", 138'000'000, BuildVgg, kCnnMinImage),
      Vision("unet", "unet", "U-Net 64..1024 channels, BatchNorm, transposed-conv up, 2 classes", 0, BuildUnet, 16, 16,
             kUnetBatch, kUnetImage),
      Vision("densenet121", "densenet", "torchvision DenseNet-121 (growth 32, blocks 6-12-24-16)", 8'000'000,
             BuildDensenet, kCnnMinImage),
      Vision("mobilenet-v2", "mobilenet", "torchvision MobileNet-V2 (width 1.0)", 3'500'000, BuildMobilenet,
             kCnnMinImage),
      Vision("mlp", "mlp", "MLP 784-1024-1024-10 with ReLU on flattened 28x28 images", 0, BuildMlp, 1, 1, kMlpBatch,
             kMlpImage),
  };
  // Five poolings for fcn8 (and its 2x-upsampling path lines up only then),
  // four for segnet and vgg-unet.
  for (Entry seg : {Vision("fcn8", "keras-seg", "keras_segmentation fcn_8_vgg: VGG-16 encoder, FCN-8s head, 19 classes",
                           0, BuildFcn8, 32, 32, kKerasSegBatch, kKerasSegHeight),
                    Vision("segnet", "keras-seg", "keras_segmentation segnet: vanilla encoder (level 3), BatchNorm, 19 classes",
                           0, BuildSegnet, 16, 16, kKerasSegBatch, kKerasSegHeight),
                    Vision("vgg-unet", "keras-seg", "keras_segmentation vgg_unet: VGG-16 blocks 1-4, U-Net decoder, 19 classes",
                           0, BuildVggUnet, 16, 16, kKerasSegBatch, kKerasSegHeight)}) {
    seg.model.default_width = kKerasSegWidth;
    e.push_back(std::move(seg));
  }
  std::sort(e.begin(), e.end(), [](const Entry& a, const Entry& b) { return a.model.name < b.model.name; });
  return e;
}

const std::vector<Entry>& Entries() {
  static const std::vector<Entry> entries = MakeEntries();
  return entries;
}

const Entry& FindEntry(std::string_view name) {
  for (const Entry& e : Entries()) {
    if (e.model.name == name) return e;
  }
  std::vector<std::string_view> names;
  for (const Entry& e : Entries()) names.push_back(e.model.name);
  Fail("unknown zoo model '{}'; known models: {}", name, fmt::join(names, ", "));
}

ZooRequest Resolve(const Entry& e, const ZooOptions& o) {
  const std::string& name = e.model.name;
  if (o.batch < 0) Fail("zoo model '{}': batch = {} must be positive (0 selects the default {})", name, o.batch, e.model.default_batch);
  if (o.seq < 0) Fail("zoo model '{}': seq = {} must be positive (0 selects the default)", name, o.seq);
  if (o.image < 0) Fail("zoo model '{}': image = {} must be positive (0 selects the default)", name, o.image);
  if (o.width < 0) Fail("zoo model '{}': width = {} must be positive (0 selects the default)", name, o.width);
  if (!(o.dropout >= 0 && o.dropout < 1)) Fail("zoo model '{}': dropout = {} must be in [0, 1)", name, o.dropout);
  if (!IsFloatingPoint(o.dtype)) Fail("zoo model '{}': dtype {} is not a floating-point type", name, ToString(o.dtype));
  ZooRequest r;
  r.model = name;
  r.batch = o.batch ? o.batch : e.model.default_batch;
  r.dtype = o.dtype;
  r.dropout = o.dropout;
  if (e.max_seq) {
    r.seq = o.seq ? o.seq : e.model.default_seq;
    if (r.seq > e.max_seq) Fail("zoo model '{}': seq = {} exceeds the {} position embeddings", name, r.seq, e.max_seq);
  }
  if (e.min_image) {
    r.image = o.image ? o.image : e.model.default_image;
    if (r.image < e.min_image) {
      Fail("zoo model '{}': image = {} is too small for the network (minimum {})", name, r.image, e.min_image);
    }
    if (r.image % e.image_multiple != 0) {
      Fail("zoo model '{}': image = {} must be a multiple of {}", name, r.image, e.image_multiple);
    }
    if (!e.model.default_width) {
      if (o.width && o.width != r.image) {
        Fail("zoo model '{}': width = {} differs from image = {}; the model takes square images only", name, o.width,
             r.image);
      }
      r.width = r.image;
    } else {
      r.width = o.width ? o.width : (o.image ? o.image : e.model.default_width);
      if (r.width < e.min_image) {
        Fail("zoo model '{}': width = {} is too small for the network (minimum {})", name, r.width, e.min_image);
      }
      if (r.width % e.image_multiple != 0) {
        Fail("zoo model '{}': width = {} must be a multiple of {}", name, r.width, e.image_multiple);
      }
    }
  }
  return r;
}

}  // namespace

const std::vector<ZooModel>& ZooModels() {
  static const std::vector<ZooModel> models = [] {
    std::vector<ZooModel> out;
    for (const Entry& e : Entries()) out.push_back(e.model);
    return out;
  }();
  return models;
}

Graph BuildZooModel(std::string_view name, const ZooOptions& options) {
  const Entry& entry = FindEntry(name);
  Graph graph = entry.build(Resolve(entry, options));
  graph.metadata["family"] = entry.model.family;
  return graph;
}

int64_t CountParameters(const Graph& graph) {
  int64_t total = 0;
  for (const Tensor& t : graph.tensors()) {
    if (t.role == TensorRole::kParameter && !t.producer && !t.alias_of) total += t.numel();
  }
  return total;
}

namespace models {

ClassifierInputs AddClassifierInputs(GraphBuilder& builder, const ZooRequest& request) {
  const TensorId images = builder.Input("images", {request.batch, 3, request.image, request.image});
  return {images, builder.Input("labels", {request.batch}, DType::kI64)};
}

Graph FinishZooGraph(GraphBuilder& builder, TensorId loss, const ZooRequest& request, bool has_seq, bool has_image) {
  builder.MarkOutput(loss);
  Graph graph = builder.Finish();
  graph.mutable_tensor(loss).role = TensorRole::kOutput;
  graph.metadata["model"] = request.model;
  graph.metadata["batch"] = std::to_string(request.batch);
  if (has_seq) graph.metadata["seq"] = std::to_string(request.seq);
  if (has_image) graph.metadata["image"] = std::to_string(request.image);
  if (has_image && request.width != request.image) graph.metadata["width"] = std::to_string(request.width);
  graph.metadata["dtype"] = std::string(ToString(request.dtype));
  graph.metadata["dropout"] = fmt::format("{}", request.dropout);
  return graph;
}

}  // namespace models
}  // namespace memfit
