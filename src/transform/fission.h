// Fission: run a sub-graph on parts of one dimension, one part after the
// other, so that only one part's intermediates are alive at once.
//
// A fission F = (S, d, n) names a set S of ops, a graph-level dimension d
// (analysis/dims.h) and a number of parts n. The transformed graph runs
// every op of S n times, on the ranges [k*L/n, (k+1)*L/n) of d (the last
// part takes the remainder):
//
//   inputs of S that carry d      -> aten.slice of the part (a view along the
//                                    leading axis, else a contiguous clone;
//                                    d held in blocks, as the heads in
//                                    [B*heads, S, dh]: the same rows of each
//                                    block, through a [blocks, L] view)
//   inputs that do not            -> shared by every part
//   outputs used outside S that
//     carry d                     -> aten.cat of the parts along d
//     are sums over d             -> the parts' partial results added up
//                                    (weight gradients, contractions); a
//                                    weight or bias gradient's parts add
//                                    into the sum in their GEMM (addmm_)
//
// The result is a plain memfit graph of registered ATen ops, so liveness,
// the schedulers, remat, swapping, offsets, the simulator, the checker and
// the PyTorch executor run it as they run any other graph.
//
// Exactness. Every op of S must compute each part of d from the same part
// of its inputs: the registry's dimension links say which output axes are
// indexed like which input axes, and its reductions say whether parts of a
// reduced dimension add up (PartialCombine::kSum) or need the whole of it
// (kWhole: a mean, BatchNorm's batch statistics, a max, a contraction plus a
// bias). An op is refused for d when it
//   - reads d without a link or a summing reduction (softmax along its
//     normalized axis, a gather along d),
//   - reduces d in a way parts cannot rebuild (kWhole),
//   - draws random numbers (a split draw would differ from the unsplit one),
//   - writes state shared by the parts (BatchNorm's running statistics, an
//     in-place op on a tensor from outside S),
//   - changes meaning when its shape attributes are rescaled (a slice along
//     d, an arange of d's length): every part's output types are inferred
//     again by the registry and must equal the original's with d's extent
//     replaced by the part's.
// S must also be convex (no path leaves S and comes back), and a partial
// sum may only leave S, never feed another op of S.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "analysis/dims.h"
#include "ir/graph.h"

namespace memfit {

struct FissionSpec {
  std::vector<OpId> ops;  // S, any order
  int dim = -1;           // index into DimensionGraph::dims of the input graph
  int parts = 2;          // n >= 2, at most d's length
};

// What one applied fission did, for PLAN.json and the CLI.
struct FissionRecord {
  std::string dim_name;  // the dimension's name ("images[0]")
  std::string dim_kind;  // its kind guess ("batch"), may be empty
  int64_t length = 0;
  int parts = 0;
  int num_ops = 0;          // |S|
  std::string first_op;     // the first and last op of S in program order
  std::string last_op;
  int64_t sliced_inputs = 0;    // inputs of S sliced per part
  int64_t joined_outputs = 0;   // outputs concatenated after the parts
  int64_t summed_outputs = 0;   // outputs accumulated over the parts
};

// "images[0] (batch) x4 over 37 ops (conv1 .. relu5)".
std::string ToString(const FissionRecord& record);

// The name of part k of op `name` ("name.part<k>"), and back: the op's name
// and part, or nullopt for a name that is no part's.
std::string PartName(std::string_view name, int64_t k);
std::optional<std::pair<std::string, int64_t>> SplitPartName(std::string_view name);

// Why `op` cannot run on parts of dimension `dim`, or nullopt when it can.
// The per-op rule of ApplyFission, for searches that grow S op by op.
std::optional<std::string> WhyNotSplittable(const Graph& graph, const DimensionGraph& dims, OpId op, int dim);

// The maximal runs of consecutive ops (in program order) that can run on
// parts of `dim`: every op of a run is splittable along it or does not touch
// it (those stay whole and are left out of the run's ops). A run is convex
// by construction (program order is topological). Runs of fewer than
// `min_ops` splittable ops are dropped; longest first.
std::vector<std::vector<OpId>> FissionRegions(const Graph& graph, const DimensionGraph& dims, int dim,
                                              size_t min_ops = 2);

// `run` (ops that can run on parts of `dim`) without the ops whose results
// are all sums over the dimension, larger than the parts of it they read: a
// classifier's weight gradient (392 MiB summed from 3 MiB of rows of
// VGG-16 at batch 32). Left out, such an op runs once after the parts on
// their joined inputs, and its sum is never held across the parts (the
// parts of a region add up every partial sum in a running total). The rest
// stays convex: a partial sum only leaves a region.
std::vector<OpId> WithoutHeavySums(const Graph& graph, const DimensionGraph& dims, int dim, std::vector<OpId> run);

// The band of `run` (a run of `dim`) around its heaviest op: the ops of the
// run from the first to the last whose working set along the dimension (the
// bytes of the storages it reads and writes that carry it, which the parts
// divide, and its workspace) is at least `share` of the heaviest one's.
// MAGIS scores sub-graphs by what they hold at the peak; a run is often a
// whole step (micro-batching, which adds a launch per op and part), while
// the memory sits in a few ops: GPT's vocabulary head and loss (4.6 GiB of
// 47.7 for gpt-neo-1.3b at batch 32, where no layer op reaches 0.8). A band
// of a run is convex (program order is topological, and whatever the run
// reads from outside it was made before it). Empty when the band is the
// whole run.
std::vector<OpId> PeakBand(const Graph& graph, const DimensionGraph& dims, int dim, const std::vector<OpId>& run,
                           double share = 0.25);

// The runs of `dim` in the backward (FissionRegions, each WithoutHeavySums)
// whose heaviest op holds at least `share` of what the heaviest op of any
// of them holds along the dimension (PeakBand's measure), in program order:
// where the memory floor of a step that BatchNorms cut into short runs is
// set (segnet's first block at 416x608: a ReLU's gradient beside its saved
// output and BatchNorm's gradient, 1.93 GiB each). Runs of the forward are
// left out: their results are saved for the backward, joined whole, and
// splitting them made floors worse (ResNet-50 bs64 with BatchNorm's
// backward in two passes: 784 MiB without a split, 918 MiB with the heavy
// backward runs split x4, 1016 MiB with the forward's too).
std::vector<std::vector<OpId>> HeavyBackwardRuns(const Graph& graph, const DimensionGraph& dims, int dim,
                                                 double share = 0.5);
// The same among every run, the forward's too: where the forward's runs end
// in sums over the dimension and save little for the backward (a GNN's
// messages along its edges, summed into its nodes), splitting them with
// the backward's lowers the floor.
std::vector<std::vector<OpId>> HeavyRuns(const Graph& graph, const DimensionGraph& dims, int dim,
                                         double share = 0.5);

// WhyNotSplittable for every op of the graph, by op id.
std::vector<std::optional<std::string>> Refusals(const Graph& graph, const DimensionGraph& dims, int dim);

struct FissionResult {
  Graph graph;
  FissionRecord record;
};

// Applies `spec` to `graph` (whose dimensions are `dims`). Throws Error
// naming the op and the reason when the fission is not exact or S is not
// convex. Ops outside S keep their relative order; S's parts run where S's
// last op ran, after everything S needs and before everything that needs S.
FissionResult ApplyFission(const Graph& graph, const DimensionGraph& dims, const FissionSpec& spec);

// ApplyFission of each of `runs` (disjoint runs of `dim` in `graph`), one
// after the other, each in `parts` parts: the runs between a step's
// BatchNorms. After the first, each run is split along the dimension of
// that name where it spans the run's ops, else along one of its length and
// kind that does. The record sums the regions' (ops, slices, joins, sums),
// from the first run's first op to the last run's last; the graph's
// metadata records each.
FissionResult ApplyFissions(const Graph& graph, const DimensionGraph& dims, int dim,
                            const std::vector<std::vector<OpId>>& runs, int parts);

// The ops of `graph` named `names` (a run found again after a transform of
// the graph that keeps the names of the ops it does not touch); throws
// Error naming the first one missing "after `after`".
std::vector<OpId> OpsNamed(const Graph& graph, const std::vector<std::string>& names, std::string_view after);

// The fissions recorded in a graph's metadata ("fission.0", ...), in order.
std::vector<std::string> RecordedFissions(const Graph& graph);

}  // namespace memfit
