// Recomputing a backward run's forward inputs next to it, so that fission
// splits them with it.
//
// A backward run reads what its forward saved: activations made long
// before it, alive from the forward to the backward whole, whatever the
// run is split into. Fission divides the run's own tensors by the parts;
// the saved activations stay whole, and they are most of its working set
// (VGG-U-Net at batch 32: the encoder's first block saves two 1.93 GiB
// ReLU outputs, and its backward reads them beside a 1.93 GiB gradient).
// Where those activations can be made again from the step's sources by
// deterministic forward ops (a BatchNorm-free encoder: convolutions,
// ReLUs, pooling from the images), copying those ops right before the run
// makes them part of it: each part recomputes its rows of the activations,
// then runs its backward, and the forward's own copies die in the forward.
// Checkpointing and micro-batching at once, as a graph transform; the
// result is a plain graph that fission (transform/fission.h) splits like
// any other.
//
// A forward op is recomputed when the run reads its result (through any
// chain of recomputed ops), it draws no random numbers, writes no state
// (BatchNorm's running statistics), writes in place only into a storage a
// recomputed op made, and reads only sources, results of recomputed ops
// and vectors (rank 0 or 1) the step reads at or after the run anyway (a
// BatchNorm's batch statistics in two passes, transform/batchnorm_two_pass.h,
// which its backward reads), none of them written in place before the run
// by an op that is not recomputed (a recomputed op must read what the
// original read).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "analysis/dims.h"
#include "ir/graph.h"
#include "transform/fission.h"

namespace memfit {

struct RecomputeRecord {
  int num_ops = 0;        // forward ops copied
  std::string first_op;   // the first and last of them
  std::string last_op;
  std::string before_op;  // the run's first op, which the copies precede
};

// "27 forward ops (block1_conv1.convolution .. conv2d.convolution) again before bwd.relu_10".
std::string ToString(const RecomputeRecord& record);

// What graph.metadata ("fission.K") records for the copies: this prefix and
// ToString(record).
inline constexpr std::string_view kRecomputeRecordPrefix = "recompute: ";

struct RecomputeResult {
  Graph graph;
  RecomputeRecord record;
  size_t first_copy = 0;  // the copies' op ids are first_copy .. first_copy + num_ops - 1; the run's first op follows
};

// Copies, right before the first op of `run` (ops of `graph`, any order),
// the forward ops that make what the run reads (the rule above), and makes
// every later reader read the copies. nullopt when the run reads nothing
// they can make. The copies are named op.name + ".recompute", in the
// backward phase; graph.metadata records the step ("fission.K").
std::optional<RecomputeResult> RecomputeForwardOf(const Graph& graph, std::vector<OpId> run);

// RecomputeForwardOf(graph, run), and the run of `dim` in the result that
// holds the copies and the run's first op, without its heavy sums
// (WithoutHeavySums): made once, split into any number of parts.
struct RecomputedRun {
  RecomputeResult copies;
  DimensionGraph dims;  // of copies.graph
  int dim = -1;         // `dim` there
  std::vector<OpId> ops;

  // ApplyFission of the run in `parts` parts.
  FissionResult Split(int parts) const { return ApplyFission(copies.graph, dims, {ops, dim, parts}); }
};

// RecomputeForwardOf before each of `runs` (ops of `graph`), the latest
// first: each run's copies read the step's sources and kept vectors, never
// an earlier run's copies. Then each run with its copies (those a run of
// `dim` can hold: a weight's view stays whole) in the result, without its
// heavy sums, ready for ApplyFissions: the floor of a
// convolutional step with BatchNorm in two passes (segnet), where every
// heavy backward run would otherwise read its forward's maps whole.
struct RecomputedRuns {
  Graph graph;
  DimensionGraph dims;  // of graph
  int dim = -1;         // `dim` there
  std::vector<std::vector<OpId>> runs;
  int copied = 0;       // runs that got copies
  int copies = 0;       // forward ops copied, in all
};
RecomputedRuns RecomputeBeforeEach(const Graph& graph, const DimensionGraph& dims, int dim,
                                   const std::vector<std::vector<OpId>>& runs);

// The run of `dim` (a dimension of the graph the copies were made in, with
// `dims`) in copies.graph that holds the copies and the run's first op.
// Throws Error when they do not form one run of the dimension.
RecomputedRun RunWithCopies(RecomputeResult copies, const DimensionGraph& dims, int dim);

// RecomputeForwardOf, then RunWithCopies; nullopt when nothing is recomputed.
std::optional<RecomputedRun> RecomputeBefore(const Graph& graph, const DimensionGraph& dims, int dim,
                                             const std::vector<OpId>& run);

}  // namespace memfit
