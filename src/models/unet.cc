// U-Net (Ronneberger et al. 2015) in the layout of the widely used PyTorch
// port (milesial/Pytorch-UNet, bilinear=False): DoubleConv blocks
// (3x3 conv, padding 1, no bias, BatchNorm, ReLU, twice) with 64..1024
// channels, 2x2 max pooling down, 2x2 stride-2 transposed convolutions up,
// skip connections concatenated on the channel dim, a 1x1 output conv to 2
// classes and per-pixel cross-entropy. RGB input; the image side must be a
// multiple of 16 so that the skip connections line up without padding.
#include <string>

#include "models/families.h"
#include "models/layers.h"

namespace memfit::models {
namespace {

constexpr int64_t kChannels = 3;
constexpr int64_t kClasses = 2;
constexpr int64_t kBaseWidth = 64;
constexpr int64_t kLevels = 4;

// DoubleConv: double_conv.{0 conv, 1 BN, 2 ReLU, 3 conv, 4 BN, 5 ReLU}.
TensorId DoubleConv(GraphBuilder& b, TensorId x, int64_t out_channels) {
  ModuleScope scope(b, "double_conv");
  x = Relu(b, BatchNorm2d(b, "1", Conv2d(b, "0", x, out_channels, 3, {.padding = 1})));
  return Relu(b, BatchNorm2d(b, "4", Conv2d(b, "3", x, out_channels, 3, {.padding = 1})));
}

}  // namespace

Graph BuildUnet(const ZooRequest& r) {
  GraphBuilder b(r.model, r.dtype);
  TensorId x = b.Input("images", {r.batch, kChannels, r.image, r.image});
  TensorId masks = b.Input("masks", {r.batch, r.image, r.image}, DType::kI64);
  std::vector<TensorId> skips;
  {
    ModuleScope inc(b, "inc");
    x = DoubleConv(b, x, kBaseWidth);
  }
  for (int64_t level = 1; level <= kLevels; ++level) {
    skips.push_back(x);
    ModuleScope down(b, "down" + std::to_string(level));
    ModuleScope seq(b, "maxpool_conv");
    {
      ModuleScope pool(b, "0");
      x = MaxPool2d(b, x, 2, 2, 0);
    }
    ModuleScope conv(b, "1");
    x = DoubleConv(b, x, kBaseWidth << level);
  }
  for (int64_t level = 1; level <= kLevels; ++level) {
    ModuleScope up(b, "up" + std::to_string(level));
    const int64_t out_channels = kBaseWidth << (kLevels - level);
    x = Conv2d(b, "up", x, out_channels, 2, {.stride = 2, .bias = true, .transposed = true});
    x = b.Call("aten.cat", {skips[kLevels - level], x}, {{"dim", int64_t{1}}});
    ModuleScope conv(b, "conv");
    x = DoubleConv(b, x, out_channels);
  }
  TensorId logits;
  {
    ModuleScope outc(b, "outc");
    logits = Conv2d(b, "conv", x, kClasses, 1, {.bias = true});
  }
  return FinishZooGraph(b, PixelCrossEntropy(b, logits, masks), r, /*has_seq=*/false, /*has_image=*/true);
}

}  // namespace memfit::models
