// Spatial fission: run a sub-graph of a convolutional network on tiles of
// its images, along H (or W), one tile after the other, so that only one
// tile's intermediates are alive at once. Beyond batch fission
// (transform/fission.h), which cannot split a single image, this is what
// lets high-resolution CNNs train in a fraction of their memory.
//
// F = (S, axis, n): S a convex set of ops on NCHW tensors, `axis` 2 (H) or
// 3 (W), n tiles. Each spatial tensor of S is cut into n even row ranges
// (its "owned" rows); an op computes, for tile k, the rows its readers in S
// need for their tile k plus its own owned rows when its result leaves S.
// Reading back through a window op (convolution, max pooling), a tile needs
// a halo: the rows of its receptive field. Backward, a window op's input
// gradient rows need the output-gradient rows whose windows cover them.
//
//   forward, output rows [a, b) of a window (kernel k, stride s, padding p,
//   dilation d) read the input rows
//
//       [a*s - p,  (b-1)*s - p + d*(k-1) + 1)            ("virtual" rows:
//                                                         < 0 or >= H are padding)
//       e.g. k=3, s=1, p=1, rows [4, 8) of the output:
//
//         input   0 1 2 3 [4 5 6 7] 8 9       reads rows 3..8
//                        ^^^^^^^^^^^^^^^
//                       3            8
//
//       At the true borders the tile is padded explicitly (aten.constant_pad_nd,
//       zeros for a convolution) and the op runs with padding 0 along the axis:
//       padding only where the whole image had it.
//
//   backward, input-gradient rows [a, b) receive from the output-gradient
//   rows o with a window reaching them: o*s - p + d*j in [a, b) for some j in
//   [0, k), i.e.
//
//       [ceil((a + p - d*(k-1)) / s),  floor((b - 1 + p) / s) + 1)   clipped to [0, H_out)
//
//   The input gradient of those output rows covers the virtual input rows
//   of their windows (the forward formula); its rows in [a, b) are complete
//   (every contribution is in the tile), the rest is cut off, and rows that
//   no window reaches are zero (padded in). Overlapping tiles therefore need
//   no adding up: each tile recomputes its halo instead.
//
// Outputs of S leave it whole: the tiles' owned rows side by side
// (aten.cat). Weight and bias gradients (summed over H and W) are computed
// per tile on the tile's owned output-gradient rows and added up. Max
// pooling's indices (flat h*W + w into its input) are shifted by the tile's
// first row times W along H; along W a tile of width Wt from column c maps
// t to t + floor(t / Wt) * (W - Wt) + c.
//
// Transposed convolutions run the same arithmetic the other way round: with
// the window of the convolution they transpose, output rows [a, b) are
// reached by input rows ReachedBy([a, b)), which make the (virtual) rows
// Reads(those); the input gradient of rows [a, b) reads output-gradient
// rows Reads([a, b)). Nearest upsampling by f reads input rows
// [floor(a / f), floor((b - 1) / f) + 1) for output rows [a, b); its
// backward sums output-gradient rows [f*a, f*b). A crop along the axis
// shifts rows by its start (its backward pads zero rows).
//
// Supported: convolution (2-D, transposed too) and convolution_backward,
// max_pool2d_with_indices (without padding along the axis; along W its flat
// indices are renumbered) and its backward, avg_pool2d (counting its
// padding, no ceil_mode) and its backward, upsample_nearest2d and
// upsample_bilinear2d (corners not aligned: a row of halo each side) by a
// power of two and their backward, crops (slice with
// step 1) and their backward, and element-wise ops whose registry dimension
// links keep the axis (relu, threshold_backward, add, mul, ...; shape
// attributes such as slice_backward's input_sizes follow the tile).
// Everything else is refused with the reason (WhyNotTileable):
// normalizations with batch statistics (they reduce H and W), reshapes,
// random ops, in-place writes, a transposed convolution's bias on rows no
// input row reaches.
//
// Exact: every output element is computed by the same op from the same
// values as in the whole graph; only the order of summation inside a kernel
// and of the partial weight gradients may differ (float rounding).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "transform/fission.h"

namespace memfit {

struct SpatialSpec {
  std::vector<OpId> ops;  // S, any order
  int axis = 2;           // 2: H, 3: W (of NCHW tensors)
  int parts = 2;          // n >= 2 (tiles of a tensor with fewer rows own none of them)
};

// Why `op` cannot run on tiles along `axis`, or nullopt when it can.
std::optional<std::string> WhyNotTileable(const Graph& graph, OpId op, int axis);

// The maximal runs of consecutive ops (program order) that can run on tiles
// along `axis` (ops that need nothing of a run stay whole around it), with
// at least `min_ops` ops; longest first. A run of parts that share no
// tensor (the micro-batches of a batch fission, each a forward and a
// backward) is one run per part: tiled together, tile 0 of every part would
// run before tile 1 of any, and every part's tiles would be alive at once.
std::vector<std::vector<OpId>> SpatialRegions(const Graph& graph, int axis, size_t min_ops = 2);

// Applies `spec`; throws Error naming the op and the reason when an op
// cannot be tiled, S is not convex, or a tile would be empty. Records the
// fission in graph.metadata like ApplyFission ("H (spatial) x4 over ...").
FissionResult ApplySpatialFission(const Graph& graph, const SpatialSpec& spec);

}  // namespace memfit
