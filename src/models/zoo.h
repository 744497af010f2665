// The model zoo: forward graphs of real models in PyTorch's ATen vocabulary.
//
// Every graph is what torch's make_fx / aot_autograd would capture for one
// training-mode forward pass of the model (dropout active, BatchNorm using
// batch statistics and updating its running statistics), ending in a scalar
// loss. Parameters follow the PyTorch / HuggingFace module paths
// ("bert.encoder.layer.0.attention.self.query.weight", "layer1.0.conv1.weight")
// so that a state_dict maps onto them. Building a graph allocates no data, so
// even gpt2-xl builds in milliseconds. docs/zoo.md lists the models, their
// defaults, parameter and op counts.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "ir/dtype.h"
#include "ir/graph.h"

namespace memfit {

struct ZooOptions {
  int64_t batch = 0;      // batch size; 0: the model's default
  int64_t seq = 0;        // sequence length for text models; 0: default
  int64_t image = 0;      // image side (the height) for vision models (and the MLP); 0: default
  // Image width for the models that take non-square images (the Keras
  // segmentation nets, default 416x608); 0: `image` when it is given, else the
  // model's default width. A square-only model refuses a width != image.
  int64_t width = 0;
  DType dtype = DType::kF32;  // floating dtype of parameters and activations
  double dropout = 0.1;   // dropout probability where the model has dropout; 0 omits the dropout ops
};

struct ZooModel {
  std::string name;         // "bert-base"
  std::string family;       // "bert", "gpt2", "gpt-neo", "vit", "resnet", ...
  std::string description;  // one line
  int64_t default_batch = 0;
  int64_t default_seq = 0;    // 0 for models without a sequence
  int64_t default_image = 0;  // 0 for models without an image (its height when non-square)
  int64_t published_params = 0;  // parameter count published for the model; 0 if none
  int64_t default_width = 0;  // default image width of a model that takes non-square images; 0: square only
};
// Prints the name ("bert-base"): what a test parameterized by models shows.
inline std::ostream& operator<<(std::ostream& os, const ZooModel& model) { return os << model.name; }

// Every zoo model, sorted by name.
const std::vector<ZooModel>& ZooModels();

// Builds the forward graph of `name`, ending in a scalar loss (role kOutput,
// the only graph output). Options that do not apply to the model (seq for a
// vision model, image for a text model) are ignored. Throws memfit::Error
// for an unknown name (listing the known ones) and for bad options: batch,
// seq or image negative, seq above the model's position table, an image
// too small for (or not divisible by what) the network needs, a width on a
// square-only model, dropout outside
// [0, 1), a non-floating dtype.
Graph BuildZooModel(std::string_view name, const ZooOptions& options = {});

// Trainable parameter count of `graph`: the sum of numel over source tensors
// (no producer, not a view) of role kParameter. Views of parameters
// (aten.t(weight)) inherit the role and are not counted again; a tied weight
// is one tensor and counts once.
int64_t CountParameters(const Graph& graph);

}  // namespace memfit
