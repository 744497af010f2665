// BatchNorm's backward written as its two passes, so that fission can split
// the second one.
//
// With batch statistics, BatchNorm's grad_input reads two sums per channel
// over the batch and every position, Σdy and Σdy·x̂ (x̂ = (x - mean)·invstd):
// the registry links it kWhole, and fission refuses it along the batch. ATen
// computes those sums in a first pass over dy and x and grad_input in a
// second, element-wise one. Written as two passes in the graph:
//
//   sums:  native_batch_norm_backward(dy, x, ..., output_mask [0, 1, 1])
//          -> (Σdy·x̂, Σdy): the weight and bias gradients, which sum over
//          the batch (kSum: parts add up);
//   coefficients, per channel ([C] ops, viewed as [1, C, 1, ...]), M the
//          elements per channel:
//          k = w·invstd,  b = -k·invstd·Σdy·x̂ / M,  c = -k·Σdy / M - b·mean;
//   grad_input = (c + dy·k) + x·b: two addcmul, element-wise.
//
// This is grad_input = k·(dy - Σdy/M - x̂·Σdy·x̂/M), the same formula as
// ATen's (rounded in another order: within 1e-15 in f64). A fission of the
// batch then runs the element-wise pass and what reads grad_input (the
// convolution's backward before the BatchNorm) in parts: the whole
// grad_input, which sat beside dy and x (three full maps at one op: segnet's
// first block at 416x608, 1.93 GiB each), is never made. The sums stay a
// barrier: every part's dy comes before any part's grad_input.
#pragma once

#include <vector>

#include "ir/graph.h"

namespace memfit {

// Whether `op` is a BatchNorm backward that TwoPassBatchNormBackward
// rewrites: batch statistics (train), grad_input asked for, saved mean and
// inverse std given, and statistics in the input's dtype (f32, f64: for
// half inputs ATen keeps them in f32, and the coefficients would promote
// grad_input).
bool HasTwoPassBackward(const Graph& graph, const Op& op);

// The graph with every BatchNorm backward of `ops` (every one
// HasTwoPassBackward accepts, when `ops` is empty) written as its two
// passes. The sums op keeps the original op's name (its weight and bias
// gradients keep theirs), the element-wise pass is "<name>.grad_input";
// graph.metadata records the rewrite ("fission.K": "batchnorm backward in
// two passes: N ops"). Returns the graph unchanged (no record) when there
// is nothing to rewrite.
Graph TwoPassBatchNormBackward(const Graph& graph, const std::vector<OpId>& ops = {});

// What graph.metadata records before the count.
inline constexpr std::string_view kTwoPassRecordPrefix = "batchnorm backward in two passes: ";

// BatchNorm's forward in two passes, for the same reason. With batch
// statistics a BatchNorm's output reads the mean and variance of its whole
// input over the batch and every position; written as
//
//   stats:     batch_norm_update_stats(x, running_mean, running_var)
//              -> (mean, var), the running statistics updated as before;
//   per channel: invstd = rsqrt(var + eps) (the saved inverse std),
//              k = w·invstd, c = b - mean·k;
//   y = c + x·k: one addcmul, element-wise (ATen's own formula on CPU).
//
// the element-wise pass no longer depends on the batch: a forward that
// reads a BatchNorm's output can be made again in parts in the backward
// (transform/recompute_forward.h) from its input and the kept statistics,
// where a whole BatchNorm would have to be recomputed whole.
bool HasTwoPassForward(const Graph& graph, const Op& op);

// The graph with every BatchNorm forward of `ops` (every one
// HasTwoPassForward accepts — batch statistics, f32 or f64, per-channel
// arguments in the input's dtype — when `ops` is empty) in two passes. The
// statistics op keeps the original's name and its saved mean and inverse
// std keep theirs, the output is made by "<name>.normalize" under its name;
// graph.metadata records the rewrite ("batchnorm forward in two passes: N
// ops"). Returns the graph unchanged when there is nothing to rewrite.
Graph TwoPassBatchNormForward(const Graph& graph, const std::vector<OpId>& ops = {});

inline constexpr std::string_view kTwoPassForwardRecordPrefix = "batchnorm forward in two passes: ";

}  // namespace memfit
