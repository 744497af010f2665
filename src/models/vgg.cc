// VGG-16 as in torchvision (configuration "D", no BatchNorm): 13 3x3 convs
// with bias and ReLU in five stages separated by 2x2 max pooling, adaptive
// average pooling to 7x7 and the classifier 4096-4096-1000 with dropout.
#include <string>

#include "models/families.h"
#include "models/layers.h"

namespace memfit::models {
namespace {

constexpr int64_t kPool = 0;  // a max-pool entry of the feature configuration
constexpr int64_t kFeatures[] = {64, 64, kPool, 128, 128, kPool, 256, 256, 256, kPool,
                                 512, 512, 512, kPool, 512, 512, 512, kPool};
constexpr int64_t kPooledSide = 7;
constexpr int64_t kHidden = 4096;
constexpr int64_t kClasses = 1000;

}  // namespace

Graph BuildVgg(const ZooRequest& r) {
  GraphBuilder b(r.model, r.dtype);
  auto [x, labels] = AddClassifierInputs(b, r);
  {
    // Module indices follow nn.Sequential: conv i, its ReLU i + 1; a pool i.
    ModuleScope features(b, "features");
    int64_t index = 0;
    for (int64_t channels : kFeatures) {
      if (channels == kPool) {
        ModuleScope pool(b, std::to_string(index++));
        x = MaxPool2d(b, x, 2, 2, 0);
        continue;
      }
      x = Conv2d(b, std::to_string(index), x, channels, 3, {.padding = 1, .bias = true});
      index += 2;
      x = Relu(b, x);
    }
  }
  {
    ModuleScope pool(b, "avgpool");
    x = b.Call("aten._adaptive_avg_pool2d", {x}, {{"output_size", std::vector<int64_t>{kPooledSide, kPooledSide}}});
    const Shape& s = b.shape(x);
    x = b.Call("aten.view", {x}, {{"size", Shape{r.batch, s[1] * kPooledSide * kPooledSide}}}, "flatten");
  }
  {
    ModuleScope classifier(b, "classifier");
    x = Dropout(b, Relu(b, Linear(b, "0", x, kHidden)), r.dropout);
    x = Dropout(b, Relu(b, Linear(b, "3", x, kHidden)), r.dropout);
    x = Linear(b, "6", x, kClasses);
  }
  return FinishZooGraph(b, CrossEntropy(b, x, labels), r, /*has_seq=*/false, /*has_image=*/true);
}

}  // namespace memfit::models
