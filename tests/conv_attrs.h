// The attributes of a 2-D aten.convolution in hand-built test graphs.
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

}  // namespace memfit::testing
