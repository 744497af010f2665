// A 3-layer perceptron on flattened square images (MNIST at the default
// 28x28): fc1 -> ReLU -> fc2 -> ReLU -> fc3 to 10 classes, hidden width 1024.
#include "models/families.h"
#include "models/layers.h"

namespace memfit::models {
namespace {

constexpr int64_t kHidden = 1024;
constexpr int64_t kClasses = 10;

}  // namespace

Graph BuildMlp(const ZooRequest& r) {
  GraphBuilder b(r.model, r.dtype);
  TensorId x = b.Input("images", {r.batch, r.image * r.image});
  TensorId labels = b.Input("labels", {r.batch}, DType::kI64);
  x = Relu(b, Linear(b, "fc1", x, kHidden));
  x = Relu(b, Linear(b, "fc2", x, kHidden));
  x = Linear(b, "fc3", x, kClasses);
  return FinishZooGraph(b, CrossEntropy(b, x, labels), r, /*has_seq=*/false, /*has_image=*/true);
}

}  // namespace memfit::models
