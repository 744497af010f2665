// ONNX import: a forward graph from an ONNX model (docs/onnx.md).
//
// Each ONNX node becomes the ATen ops PyTorch would run for it (Gemm ->
// aten.t + aten.addmm, Conv -> aten.convolution, ...), so the imported graph
// speaks the vocabulary autodiff and the planners know. Float initializers
// become parameters, integer initializers and Constant nodes are read as
// attributes where the ATen op takes them so (Reshape's shape) and become
// buffers otherwise; graph inputs become inputs with their static shapes.
//
// With `append_loss`, a loss is added after the single graph output, so that
// BuildTrainingGraph (autodiff/training_graph.h) can build the training step:
// cross entropy against an i64 "labels" input for a 2-D output, mean squared
// error against a "target" input of the output's shape otherwise.
//
// Errors a user can cause (unreadable or malformed file, unsupported ops,
// symbolic dims, unsupported attribute values) throw memfit::Error with one
// line naming the file and the node or field. Unsupported op types are all
// collected first and reported together. The result is validated
// (ir/validate.h); a graph that fails names the file too.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ir/graph.h"

namespace memfit {

struct OnnxImportOptions {
  // Replaces the first symbolic (or unknown) dimension of every graph input,
  // which is the batch dimension of exported models; 0 keeps symbolic
  // dimensions an error.
  int64_t batch = 0;
  // Appends a scalar loss after the single output (see above) and imports
  // BatchNormalization in training mode; otherwise the graph outputs are the
  // model's outputs and BatchNormalization runs in inference mode.
  bool append_loss = false;
};

// Imports the ONNX model in `path`.
Graph ImportOnnxFile(const std::string& path, const OnnxImportOptions& options = {});

// Imports a serialized onnx.ModelProto; `source` names it in error messages.
Graph ImportOnnx(std::string_view bytes, std::string_view source, const OnnxImportOptions& options = {});

// The ONNX op types (default domain) the importer maps, sorted.
std::vector<std::string> SupportedOnnxOps();

}  // namespace memfit
