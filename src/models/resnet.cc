// ResNet-18/34/50/101/152 as in torchvision: a 7x7 stem with BatchNorm,
// ReLU and 3x3 max pooling, four stages of BasicBlocks (18, 34) or
// Bottlenecks (50+, stride on the 3x3 conv: "ResNet v1.5"), global average
// pooling and a 1000-class fc. BatchNorm's num_batches_tracked counter is
// omitted (it only matters with momentum=None).
#include <fmt/format.h>

#include <string>
#include <string_view>

#include "models/families.h"
#include "models/layers.h"
#include "util/error.h"

namespace memfit::models {
namespace {

struct ResnetConfig {
  std::string_view name;
  bool bottleneck;
  int64_t blocks[4];
};

constexpr ResnetConfig kConfigs[] = {
    {"resnet-18", false, {2, 2, 2, 2}},  {"resnet-34", false, {3, 4, 6, 3}},   {"resnet-50", true, {3, 4, 6, 3}},
    {"resnet-101", true, {3, 4, 23, 3}}, {"resnet-152", true, {3, 8, 36, 3}},
};
constexpr int64_t kClasses = 1000;
constexpr int64_t kBottleneckExpansion = 4;

TensorId ConvBn(GraphBuilder& b, int64_t index, TensorId x, int64_t out, int64_t kernel, int64_t stride) {
  x = Conv2d(b, fmt::format("conv{}", index), x, out, kernel, {.stride = stride, .padding = kernel / 2});
  return BatchNorm2d(b, fmt::format("bn{}", index), x);
}

// out = relu(body(x) + shortcut(x)); shortcut is downsample.0 (1x1 conv) +
// downsample.1 (BN) when the shape changes.
TensorId Block(GraphBuilder& b, TensorId x, int64_t planes, int64_t stride, bool bottleneck) {
  const int64_t in_channels = b.shape(x)[1];
  const int64_t out_channels = bottleneck ? planes * kBottleneckExpansion : planes;
  TensorId h;
  if (bottleneck) {
    h = Relu(b, ConvBn(b, 1, x, planes, 1, 1));
    h = Relu(b, ConvBn(b, 2, h, planes, 3, stride));
    h = ConvBn(b, 3, h, out_channels, 1, 1);
  } else {
    h = Relu(b, ConvBn(b, 1, x, planes, 3, stride));
    h = ConvBn(b, 2, h, planes, 3, 1);
  }
  TensorId identity = x;
  if (stride != 1 || in_channels != out_channels) {
    ModuleScope down(b, "downsample");
    identity = Conv2d(b, "0", x, out_channels, 1, {.stride = stride});
    identity = BatchNorm2d(b, "1", identity);
  }
  return Relu(b, b.Call("aten.add.Tensor", {h, identity}));
}

}  // namespace

Graph BuildResnet(const ZooRequest& r) {
  const ResnetConfig& c = FindConfig(kConfigs, r.model, "ResNet");

  GraphBuilder b(r.model, r.dtype);
  auto [x, labels] = AddClassifierInputs(b, r);
  x = Conv2d(b, "conv1", x, 64, 7, {.stride = 2, .padding = 3});
  x = Relu(b, BatchNorm2d(b, "bn1", x));
  {
    ModuleScope pool(b, "maxpool");
    x = MaxPool2d(b, x, 3, 2, 1);
  }
  for (int64_t stage = 0; stage < 4; ++stage) {
    ModuleScope layer(b, fmt::format("layer{}", stage + 1));
    const int64_t planes = int64_t{64} << stage;
    for (int64_t i = 0; i < c.blocks[stage]; ++i) {
      ModuleScope block(b, std::to_string(i));
      x = Block(b, x, planes, i == 0 && stage > 0 ? 2 : 1, c.bottleneck);
    }
  }
  {
    ModuleScope pool(b, "avgpool");
    x = GlobalAvgPoolFlatten(b, x);
  }
  TensorId logits = Linear(b, "fc", x, kClasses);
  return FinishZooGraph(b, CrossEntropy(b, logits, labels), r, /*has_seq=*/false, /*has_image=*/true);
}

}  // namespace memfit::models
