// MobileNet-V2 as in torchvision: a 3x3 stride-2 stem, 17 inverted residual
// blocks (1x1 expansion with ReLU6, 3x3 depthwise conv with ReLU6, linear
// 1x1 projection; residual add when stride 1 and shapes match), a 1x1 conv
// to 1280 channels, global pooling, dropout and a 1000-class classifier.
// Every conv is followed by BatchNorm and has no bias.
#include <fmt/format.h>

#include <string>

#include "models/families.h"
#include "models/layers.h"

namespace memfit::models {
namespace {

// (expansion t, output channels c, repeats n, first stride s) per stage.
struct Stage {
  int64_t expansion, channels, repeats, stride;
};
constexpr Stage kStages[] = {{1, 16, 1, 1},  {6, 24, 2, 2},  {6, 32, 3, 2},  {6, 64, 4, 2},
                             {6, 96, 3, 1},  {6, 160, 3, 2}, {6, 320, 1, 1}};
constexpr int64_t kStemChannels = 32;
constexpr int64_t kLastChannels = 1280;
constexpr int64_t kClasses = 1000;

// Conv2dNormActivation `module`: <module>.0 conv, <module>.1 BN, ReLU6.
TensorId ConvBnRelu6(GraphBuilder& b, std::string_view module, TensorId x, int64_t out, int64_t kernel,
                     int64_t stride, int64_t groups) {
  ModuleScope scope(b, module);
  x = Conv2d(b, "0", x, out, kernel, {.stride = stride, .padding = (kernel - 1) / 2, .groups = groups});
  return Relu6(b, BatchNorm2d(b, "1", x));
}

// InvertedResidual: conv.<i> modules numbered as in torchvision.
TensorId InvertedResidual(GraphBuilder& b, TensorId x, int64_t out, int64_t stride, int64_t expansion) {
  const int64_t in = b.shape(x)[1];
  const int64_t hidden = in * expansion;
  TensorId h = x;
  int64_t index = 0;
  {
    ModuleScope conv(b, "conv");
    if (expansion != 1) h = ConvBnRelu6(b, std::to_string(index++), h, hidden, 1, 1, 1);
    h = ConvBnRelu6(b, std::to_string(index++), h, hidden, 3, stride, hidden);
    h = Conv2d(b, std::to_string(index++), h, out, 1, {});
    h = BatchNorm2d(b, std::to_string(index++), h);
  }
  if (stride == 1 && in == out) h = b.Call("aten.add.Tensor", {x, h});
  return h;
}

}  // namespace

Graph BuildMobilenet(const ZooRequest& r) {
  GraphBuilder b(r.model, r.dtype);
  auto [x, labels] = AddClassifierInputs(b, r);
  {
    ModuleScope features(b, "features");
    int64_t index = 0;
    x = ConvBnRelu6(b, std::to_string(index++), x, kStemChannels, 3, 2, 1);
    for (const Stage& stage : kStages) {
      for (int64_t i = 0; i < stage.repeats; ++i) {
        ModuleScope block(b, std::to_string(index++));
        x = InvertedResidual(b, x, stage.channels, i == 0 ? stage.stride : 1, stage.expansion);
      }
    }
    x = ConvBnRelu6(b, std::to_string(index), x, kLastChannels, 1, 1, 1);
  }
  x = GlobalAvgPoolFlatten(b, x);
  {
    ModuleScope classifier(b, "classifier");
    x = Linear(b, "1", Dropout(b, x, r.dropout), kClasses);
  }
  return FinishZooGraph(b, CrossEntropy(b, x, labels), r, /*has_seq=*/false, /*has_image=*/true);
}

}  // namespace memfit::models
