// DenseNet-121 as in torchvision (memory_efficient=False): growth rate 32,
// blocks of 6/12/24/16 dense layers with bottleneck width 4 * 32, each
// layer concatenating all earlier feature maps of its block (aten.cat) before
// BN-ReLU-1x1 conv-BN-ReLU-3x3 conv; transitions halve the channels
// (compression 0.5) and 2x2 average-pool; final BN, ReLU, global pooling
// and a 1000-class classifier. drop_rate is 0 in torchvision, so no dropout.
#include <fmt/format.h>

#include <string>
#include <vector>

#include "models/families.h"
#include "models/layers.h"

namespace memfit::models {
namespace {

constexpr int64_t kGrowth = 32;
constexpr int64_t kBottleneckWidth = 4;  // bn_size
constexpr int64_t kBlocks[] = {6, 12, 24, 16};
constexpr int64_t kInitFeatures = 64;
constexpr int64_t kClasses = 1000;

TensorId DenseLayer(GraphBuilder& b, const std::vector<TensorId>& features) {
  TensorId x = features.size() == 1 ? features[0] : b.Call("aten.cat", features, {{"dim", int64_t{1}}});
  x = Relu(b, BatchNorm2d(b, "norm1", x));
  x = Conv2d(b, "conv1", x, kBottleneckWidth * kGrowth, 1, {});
  x = Relu(b, BatchNorm2d(b, "norm2", x));
  return Conv2d(b, "conv2", x, kGrowth, 3, {.padding = 1});
}

}  // namespace

Graph BuildDensenet(const ZooRequest& r) {
  GraphBuilder b(r.model, r.dtype);
  auto [x, labels] = AddClassifierInputs(b, r);
  {
    ModuleScope features(b, "features");
    x = Conv2d(b, "conv0", x, kInitFeatures, 7, {.stride = 2, .padding = 3});
    x = Relu(b, BatchNorm2d(b, "norm0", x));
    {
      ModuleScope pool(b, "pool0");
      x = MaxPool2d(b, x, 3, 2, 1);
    }
    const size_t num_blocks = std::size(kBlocks);
    for (size_t block = 0; block < num_blocks; ++block) {
      {
        ModuleScope dense(b, fmt::format("denseblock{}", block + 1));
        std::vector<TensorId> maps = {x};
        for (int64_t layer = 0; layer < kBlocks[block]; ++layer) {
          ModuleScope scope(b, fmt::format("denselayer{}", layer + 1));
          maps.push_back(DenseLayer(b, maps));
        }
        x = b.Call("aten.cat", maps, {{"dim", int64_t{1}}});
      }
      if (block + 1 == num_blocks) break;
      ModuleScope transition(b, fmt::format("transition{}", block + 1));
      x = Relu(b, BatchNorm2d(b, "norm", x));
      x = Conv2d(b, "conv", x, b.shape(x)[1] / 2, 1, {});
      ModuleScope pool(b, "pool");
      x = b.Call("aten.avg_pool2d", {x},
                 {{"kernel_size", std::vector<int64_t>{2, 2}},
                  {"stride", std::vector<int64_t>{2, 2}},
                  {"padding", std::vector<int64_t>{0, 0}},
                  {"ceil_mode", false},
                  {"count_include_pad", true},
                  {"divisor_override", AttrValue{std::monostate{}}}});
    }
    x = BatchNorm2d(b, "norm5", x);
  }
  // F.relu(features) then adaptive_avg_pool2d((1, 1)) and flatten.
  x = GlobalAvgPoolFlatten(b, Relu(b, x));
  TensorId logits = Linear(b, "classifier", x, kClasses);
  return FinishZooGraph(b, CrossEntropy(b, logits, labels), r, /*has_seq=*/false, /*has_image=*/true);
}

}  // namespace memfit::models
