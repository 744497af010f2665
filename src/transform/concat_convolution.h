// A convolution of a concatenation along the channels, written as one
// convolution per concatenated piece, summed.
//
// A U-Net's decoder block convolves cat([skip, upsampled], dim=1): the
// concatenation is a third copy of both pieces, saved from the forward to
// the backward for the convolution's weight gradient, and its gradient is
// made whole and read in two slices (a view of the whole, so the whole lives
// as long as the skip's half: from the last decoder block to the first
// encoder block's backward). At U-Net bs32 256x256 the last block's
// concatenation and its gradient are 1 GiB each, at the op where the step's
// floor is set. Convolution is linear in its input channels, so with W_i the
// weight's slice for piece i (dim 1; dim 0 of a transposed convolution's
// weight):
//
//   y = conv(cat(a_1, .., a_k), W, bias) = conv(a_1, W_1, bias) + conv(a_2, W_2) + ...
//
// and in the backward each piece gets its own convolution_backward from the
// same grad_output: grad a_i (what the slice of the whole gradient was) and
// grad W_i, joined by a cat of the small weight gradients (grad bias from the
// first piece). The concatenation is never made, the pieces (made before it
// anyway) are saved instead, and each piece's gradient is a tensor of its
// own that dies when its reader is done. Same FLOPs; the copy into the
// concatenation becomes an add of the pieces' outputs.
//
// Exact up to the order of rounding: conv(cat) sums over all input channels
// in one accumulation, the rewrite in k sums of partial accumulations
// (within 1e-15 in f64, as fission's partial weight gradients).
#pragma once

#include <string_view>

#include "ir/graph.h"

namespace memfit {

// Whether `op` is a concatenation SplitConcatenatedConvolutions rewrites:
// aten.cat along dim 1 of 2 or more non-empty pieces, read by exactly one
// aten.convolution (its input; groups 1) and by at most one
// aten.convolution_backward of the same weight and attributes (its input),
// whose grad_input, if asked for, is read only by slices along dim 1, each
// exactly one piece. Neither the concatenation nor its gradient is a result
// of the step, and nothing writes into a piece after the concatenation (the
// rewrite reads the pieces where the original read its copy of them).
bool HasConcatenatedConvolution(const Graph& graph, const Op& op);

// The graph with every such convolution (its forward and backward) written
// per piece. The forward's sum keeps the convolution's name and result, the
// backward's weight-gradient cat keeps the backward's name and the weight
// gradient; pieces are "<name>.cat<i>". graph.metadata records the rewrite
// ("fission.K": "convolutions of concatenations split: N"). The graph
// unchanged (no record) when there is nothing to rewrite.
Graph SplitConcatenatedConvolutions(const Graph& graph);

inline constexpr std::string_view kConcatRecordPrefix = "convolutions of concatenations split: ";

}  // namespace memfit
