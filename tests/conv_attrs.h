// The attributes of 2-D convolutions (forward and backward) and of batch
// norm in hand-built test graphs.
#pragma once

#include <cstdint>
#include <variant>
#include <vector>

#include "ir/op.h"

namespace memfit::testing {

// Square stride and padding; no bias, one group, no dilation, no output
// padding.
inline Attrs ConvAttrs(int64_t stride, int64_t padding, bool transposed = false) {
  return {{"stride", std::vector<int64_t>{stride, stride}}, {"padding", std::vector<int64_t>{padding, padding}},
          {"dilation", std::vector<int64_t>{1, 1}},        {"transposed", transposed},
          {"output_padding", std::vector<int64_t>{0, 0}}, {"groups", int64_t{1}},
          {"bias", std::monostate{}}};
}

// aten.convolution_backward's, with the same square stride and padding:
// `bias_channels` is the bias's length, `output_mask` which of the input,
// weight and bias gradients are computed ({1, 1, 0}: no bias gradient).
inline Attrs ConvBackwardAttrs(int64_t stride, int64_t padding, int64_t bias_channels,
                               std::vector<int64_t> output_mask, bool transposed = false) {
  return {{"bias_sizes", std::vector<int64_t>{bias_channels}},
          {"stride", std::vector<int64_t>{stride, stride}},
          {"padding", std::vector<int64_t>{padding, padding}},
          {"dilation", std::vector<int64_t>{1, 1}},
          {"transposed", transposed},
          {"output_padding", std::vector<int64_t>{0, 0}},
          {"groups", int64_t{1}},
          {"output_mask", std::move(output_mask)}};
}

// aten.native_batch_norm's in training mode without running statistics
// (the batch's own mean and variance; momentum 0.1, eps 1e-5).
inline Attrs BatchNormTrainingAttrs() {
  return {{"running_mean", std::monostate{}}, {"running_var", std::monostate{}},
          {"training", true},                 {"momentum", 0.1},
          {"eps", 1e-5}};
}

}  // namespace memfit::testing
