// Internal to the zoo: one builder per model family (bert.cc, gpt.cc, ...),
// called by BuildZooModel (zoo.cc) with options already resolved and checked.
#pragma once

#include <cstdint>
#include <string>

#include "ir/builder.h"
#include "ir/graph.h"

namespace memfit::models {

// Options after defaults are applied and ranges are checked.
struct ZooRequest {
  std::string model;  // zoo name, selects the configuration inside a family
  int64_t batch = 0;
  int64_t seq = 0;
  int64_t image = 0;
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

// Marks `loss` as the graph's output (role kOutput), fills graph.metadata
// (model, batch, seq or image, dtype, dropout) and returns the graph.
Graph FinishZooGraph(GraphBuilder& builder, TensorId loss, const ZooRequest& request, bool has_seq, bool has_image);

}  // namespace memfit::models
