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
#include <set>
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
  // The ops copied, in order: their ids are the same in `graph` (they precede the copies).
  std::vector<OpId> originals;
};

// Copies, right before the first op of `run` (ops of `graph`, any order),
// the forward ops that make what the run reads (the rule above), and makes
// every later reader read the copies. nullopt when the run reads nothing
// they can make. The copies are named op.name + ".recompute", in the
// backward phase; graph.metadata records the step ("fission.K"). With
// `dims` (of `graph`) and the dimension `dim` the run is split along,
// nothing is copied through a tensor that carries another batch dimension
// and not `dim` (another tower's embedding, which a contrastive loss's
// backward reads, is read as the forward left it: copied, the other tower
// would run again whole), nor through an op that reduces `dim` (VICReg's
// variance over the batch, which no part can make: copied, it would end
// the run the copies must join).
std::optional<RecomputeResult> RecomputeForwardOf(const Graph& graph, std::vector<OpId> run,
                                                  const DimensionGraph* dims = nullptr, int dim = -1);

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
  std::set<std::string> originals, copy_names;  // the ops copied and their copies, by name
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

// The runs of `run`'s dimension that begin in the forward (one may hold a
// backward op made early, a transposed weight) and hold ops the copies
// copy, the most of them first: the forward whose saved maps the copies
// replace, whose maps die in it once they do, so that splitting it too
// lowers the forward's peak (a contrastive loss, `z @ z.t()`, ends the
// forward's run before the backward's; Barlow Twins' two views are two
// runs, each ended by its BatchNorm).
std::vector<std::vector<OpId>> ForwardRunsBefore(const RecomputedRun& run);

// The same for RecomputeBeforeEach's result: the forward's runs of `r.dim`
// (up to the first copy in them) that hold ops copied before any run, the
// most of them first.
std::vector<std::vector<OpId>> ForwardRunsOfCopies(const RecomputedRuns& r);

// `run` and `forward` (ForwardRunsBefore's) split in `parts`, the copies'
// run first. The record is the last split's.
FissionResult SplitWithForward(const RecomputedRun& run, const std::vector<std::vector<OpId>>& forward, int parts);

// The batch dimensions of `dims` (kind "batch") whose longest runs are not
// an earlier one's (a batch seen from the labels reaches the images' run:
// once), by reach.
std::vector<int> BatchesWithRunsOfTheirOwn(const Graph& graph, const DimensionGraph& dims);

// Each of the batch dimensions `names` (of `dims`, the graph's) split in
// `parts`, in turn: two
// towers, or one encoder run on each view of a contrastive loss, where each
// input's batch is a dimension of its own and the similarity of every pair
// ends each one's runs at the loss. The longest run of a dimension that
// holds backward ops and that RecomputeBefore copies for is split with its
// copies, and ForwardRunsBefore's runs too; where there is none (a run over
// the whole step reads nothing the forward made before it), the longest run
// is split, without its heavy sums. The record is the last split's; the
// graph's metadata records each.
FissionResult SplitEachBatch(const Graph& graph, const DimensionGraph& dims, const std::vector<std::string>& names,
                             int parts);

}  // namespace memfit
