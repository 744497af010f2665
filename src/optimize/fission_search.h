// The optimizer with fission: the plan of the graph as given, or of a
// fissioned variant of it when that is faster within the limit (or the only
// one that fits).
//
// Fission (transform/fission.h) breaks the floor that every other technique
// shares: the working set of the largest op. The search here is the simple
// end of MAGIS's: for the graph's longest dimensions (the batch first), the
// longest run of ops that can run on parts of it, and the band of that run
// around its heaviest ops (where the memory of a step often sits: a
// language model's vocabulary head), split into 2, 4, 8 and 16 (and 6 under a latency limit)
// parts; runs of NCHW ops tiled along H; and nested variants, a split
// with the run along H at its peak tiled inside each part. Each variant is simulated in program order; those not already
// slower than the limit (or the plan in hand) go, least added time first,
// through the whole pipeline (schedules, remat, swapping, offsets) against
// the same limits, ratios of the untransformed graph's program order. The
// fastest plan that fits wins (under a latency limit: the smallest memory).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "analysis/dims.h"
#include "optimize/optimizer.h"
#include "transform/fission.h"

namespace memfit {

struct FissionSearchOptions {
  bool split_concatenations = true;    // every candidate made from the graph with its convolutions of
                                       // concatenations per piece, where that needs less memory in program
                                       // order at no more time (transform/concat_convolution.h)
  size_t max_dims = 2;                 // regions tried: one per dimension, batch kinds first, then by reach
  size_t max_spatial = 2;              // and the longest runs of NCHW ops tiled along H (spatial fission),
                                       // and the run at the program-order peak
  int nested_tiles = 4;                // and each batch split with its parts' peak runs in this many tiles
                                       // along H (1: none)
  bool peak_bands = true;              // and each dimension's peak band (PeakBand), searched as well when
                                       // none of the max_variants below is a band
  bool recompute = true;                // and the longest backward run with its forward recomputed before it
                                       // (transform/recompute_forward.h)
  bool two_pass_batchnorm = true;      // and, under a memory limit no other plan meets, BatchNorm in two
                                       // passes with the heavy backward runs of the batch split, each with
                                       // its forward copied before it (transform/batchnorm_two_pass.h,
                                       // HeavyBackwardRuns, RecomputeBeforeEach)
  size_t max_variants = 3;             // variants searched, least added time (in program order) first
  std::vector<int> parts = {2, 4, 8, 16};  // parts tried per region (at most the dimension's length)
  // Tried too under a latency limit, where each part's launches are what the
  // limit leaves no room for: vit-base bs64 at +10% on rtx3090 reaches 0.141
  // of its peak in 6 parts, 0.158 in 8 (x8's launches take 8.1% in program
  // order). Under a memory limit an intermediate count displaced the one
  // that needs less remat (VGG16 bs32 at 0.3: x6 +17.0%, x8 +10.7%).
  std::vector<int> latency_limit_parts = {6};
  // Share of the time (or work) budget the graph as given gets when there
  // are fission candidates; the candidates share the rest.
  double base_share = 0.6;
  // Under a latency limit: the share the graph as given may take when
  // variants are within the limit in program order (what its bisection
  // does not use goes to them). Each probe of a bisection is a whole
  // memory-limit search, so a variant needs a budget of the same order as
  // the graph as given: bert-base bs32 at +10% on rtx3090 with 3,000 runs
  // reached 0.200 when the graph as given took 2,600 of them.
  double latency_base_share = 0.5;
};

// A region fission can split and how: the search's candidates (and the
// benchmarks'). `apply` refers to the graph and dims it was made from.
struct FissionCandidate {
  std::string name;   // "images[0]", "H (spatial, features.0.convolution)"
  int64_t max_parts;  // at most this many parts
  std::function<FissionResult(int parts)> apply;
  bool band = false;  // the peak band of a run (PeakBand), not the whole run
  // Lowers the memory the tightest limits reach, not the program-order peak
  // (BatchNorm in two passes, the heavy backward runs split, each with its
  // forward copied before it):
  // searched only under a memory limit that no other plan meets.
  bool floor = false;
};

// The longest run of splittable ops of each dimension tried (batch kinds
// first, then by reach; dimensions that reach the same run, like a batch
// seen from the images and from the labels, count once), each followed by
// its peak band where that is less than the run (PeakBand), then (where
// ops tile along H) each split with the run along H at its program-order
// peak tiled in every part (nesting), the longest runs that tile along H
// and the run at the program-order peak (spatial fission: a single
// image's working set, where the batch cannot be split further), the
// two longest at once, and (floor) the heavy backward runs of the batch
// with BatchNorm in two passes, each with its forward copied before it.
std::vector<FissionCandidate> FissionCandidates(const Graph& graph, const DimensionGraph& dims,
                                               const FissionSearchOptions& options = {});

// Optimize(graph) and its fissioned variants. Throws Error as Optimize does
// when no variant meets the limit; the message is the untransformed graph's,
// with the smallest memory fission reached appended.
OptimizeResult OptimizeWithFission(const Graph& graph, const sim::DeviceProfile& device, const sim::CostTable* costs,
                                   const OptimizeOptions& options, const FissionSearchOptions& fission = {});

}  // namespace memfit
