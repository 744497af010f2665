// Internal to the zoo: one builder per model family (bert.cc, gpt.cc, ...),
// called by BuildZooModel (zoo.cc) with options already resolved and checked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "ir/builder.h"
#include "ir/graph.h"
#include "util/error.h"

namespace memfit::models {

// Options after defaults are applied and ranges are checked.
struct ZooRequest {
  std::string model;  // zoo name, selects the configuration inside a family
  int64_t batch = 0;
  int64_t seq = 0;
  int64_t image = 0;  // image height (the side of a square image)
  int64_t width = 0;  // image width; equals image for square-only models
  DType dtype = DType::kF32;
  double dropout = 0;
};

Graph BuildBert(const ZooRequest& request);
Graph BuildGpt2(const ZooRequest& request);
Graph BuildGptNeo(const ZooRequest& request);
Graph BuildVit(const ZooRequest& request);
Graph BuildResnet(const ZooRequest& request);
Graph BuildVgg(const ZooRequest& request);
Graph BuildUnet(const ZooRequest& request);
Graph BuildDensenet(const ZooRequest& request);
Graph BuildMobilenet(const ZooRequest& request);
Graph BuildMlp(const ZooRequest& request);
// keras_segmentation's fcn_8_vgg, segnet and vgg_unet (segmentation.cc).
Graph BuildFcn8(const ZooRequest& request);
Graph BuildSegnet(const ZooRequest& request);
Graph BuildVggUnet(const ZooRequest& request);

// Marks `loss` as the graph's output (role kOutput), fills graph.metadata
// (model, batch, seq or image — and width when it differs —, dtype, dropout)
// and returns the graph.
Graph FinishZooGraph(GraphBuilder& builder, TensorId loss, const ZooRequest& request, bool has_seq, bool has_image);

// The inputs of an image classifier, created in this order: RGB images
// [batch, 3, image, image] and int64 labels [batch].
struct ClassifierInputs {
  TensorId images;
  TensorId labels;
};
ClassifierInputs AddClassifierInputs(GraphBuilder& builder, const ZooRequest& request);

// The entry of a family's `configs` whose `name` is `model`; `family` names
// the family in the error ("no ResNet configuration named 'resnet-7'").
template <typename Config, std::size_t N>
const Config& FindConfig(const Config (&configs)[N], std::string_view model, std::string_view family) {
  for (const Config& c : configs) {
    if (c.name == model) return c;
  }
  Fail("no {} configuration named '{}'", family, model);
}

}  // namespace memfit::models
