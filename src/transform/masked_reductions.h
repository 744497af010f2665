// Masked selections that feed only a sum or a mean, written densely.
//
// torch 1.13's cross entropy with label smoothing averages its smoothing
// term over the targets not ignored:
//
//   masked_select(smooth, ~ignored).mean()
//
// and its backward puts the mean's gradient back with
//
//   masked_scatter(zeros_like(smooth), ~ignored, (g / n).expand(n))
//
// masked_select's result has as many elements as the mask sets: a shape the
// data decides, recorded at capture. A part of the batch has its own count,
// which no static shape can hold, so fission's run along the batch ended at
// the loss: the parts' forwards all ran before any backward (no
// micro-batching). Written densely, every shape is the mask's:
//
//   masked_select(x, m).sum()  = masked_fill(x, ~m, 0).sum()
//   masked_select(x, m).mean() = masked_fill(x, ~m, 0).sum() / n
//   masked_scatter(z, m, s)    = masked_fill(z, m, v)   (z zeros, every element of s equal to v)
//
// x[m] with one mask of x's shape (a loss over the valid pixels,
// `err[valid].mean()`) is such a selection too, and its backward
// index_put(zeros, [m], s) such a scatter.
//
// With class weights it sums the weights of the targets not ignored,
// sum(w.gather(0, masked_select(y, m))): the selected targets' lookups are
//
//   w.gather(0, masked_fill(y, ~m, 0)) then masked_fill(~m, 0), summed
//
// (an unselected target, -100 or 255, reads class 0 and is then zeroed).
//
// with n the count the graph recorded (the capture guards it). The zeros add
// nothing; the sum runs over more elements, so it equals the original up to
// the order of rounding, as fission's partial sums do. Only fission uses it.
#pragma once

#include <string_view>

#include "ir/graph.h"

namespace memfit {

// The graph with every such masked_select (its sums and means, its lookups)
// and masked_scatter written densely. Results keep their names; the
// masked_fill of a selection is "<masked_select>.dense". graph.metadata
// records the rewrite ("fission.K": "masked reductions written densely:
// N"). The graph unchanged (no record) when there is nothing to rewrite.
Graph WriteMaskedReductionsDensely(const Graph& graph);

inline constexpr std::string_view kMaskedRecordPrefix = "masked reductions written densely: ";

}  // namespace memfit
