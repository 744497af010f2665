// Rewriting a region of a graph: the machinery every region transform
// shares (batch/sequence fission, spatial tiling). A transform copies the
// graph op by op into a new one and, at the region's last op, emits its own
// replacement of the region; this file owns the copying, the naming, the
// type inference of emitted ops and the program order around the region.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "ir/graph.h"

namespace memfit {

class Rewriter {
 public:
  explicit Rewriter(const Graph& in);
  virtual ~Rewriter() = default;

  // Copies `op` (not in the region) with its inputs mapped to their wholes.
  // A whole rebuilt by the region (joined, summed) is a new contiguous
  // tensor: where the original was laid out otherwise (a transposed view),
  // an op that reads the layout is rewritten to read the values
  // (_reshape_alias -> reshape: PyTorch emits it for a reshape that can be a
  // view) or refused (as_strided), never run on the wrong elements.
  virtual void CopyOp(const Op& op);

  // Copies `op`, which the output graph has run already, once more (named
  // op.name + suffix, in `phase`): its results, laid out like the first
  // ones, stand for the originals from now on.
  void CopyAgain(const Op& op, std::string_view suffix, Phase phase);

  // The tensor that stands for input-graph tensor `t` in the output graph.
  TensorId Whole(TensorId t) const;
  // `id` stands for `t` from now on: a tensor the region made anew.
  void SetWhole(TensorId t, TensorId id);
  bool HasWhole(TensorId t) const { return whole_.at(t.index()).has_value(); }
  void MapOutput(size_t i, TensorId t) { out_.outputs.at(i) = Whole(t); }
  // The step's outputs: the wholes of the input graph's, in order.
  void MapOutputs() {
    out_.outputs.resize(in_.outputs.size());
    for (size_t i = 0; i < in_.outputs.size(); ++i) MapOutput(i, in_.outputs[i]);
  }

  Graph& out() { return out_; }
  Graph Take() { return std::move(out_); }
  const Graph& in() const { return in_; }

  // The whole of input-graph tensor `t` from its parts along `axis` (op
  // `name`, aten.cat), laid out as `t` was: where its recorded strides lay
  // it out densely in another order (a transposed view), the parts are
  // permuted into that memory order, concatenated there and permuted back.
  // The readers after the region then see the strides they saw when the
  // step was captured: an element-wise op passes its input's layout on, and
  // a kernel that is not element-wise may read memory as laid out then
  // (torch 1.13's native_group_norm_backward reads a transposed grad as if
  // it were contiguous, a wrong result).
  void Join(TensorId t, const std::vector<TensorId>& parts, int64_t axis, const std::string& name, Phase phase);

  // An op to emit: a unique name (from `name`), the ATen call, its phase.
  Op NewOp(std::string name, std::string type, std::string overload, std::vector<TensorId> inputs, Attrs attrs,
           Phase phase);

  // Appends `op` with outputs inferred by the registry, named like the
  // original tensors `like` (roles, aliasing as a builder would set them).
  // With an empty suffix a result takes its original's name, which only it
  // can have (the original was in the region and is not copied); else
  // name + suffix, made unique.
  std::vector<TensorId> Emit(Op op, const std::vector<const Tensor*>& like, const std::string& suffix);
  TensorId EmitNamed(Op op, const Tensor& like) { return Emit(std::move(op), {&like}, "")[0]; }

 protected:
  // CopyOp and CopyAgain: `op` with its inputs mapped to their wholes, in
  // `phase`; with a suffix, the op and its results are renamed (name +
  // suffix, made unique) and a copied result of the step is an intermediate.
  void Copy(const Op& op, std::string_view suffix, Phase phase);
  TensorId CopyTensor(const Tensor& t);
  std::string UniqueTensorName(const std::string& base);

  const Graph& in_;
  Graph out_;

 private:
  std::vector<std::optional<TensorId>> whole_;  // input-graph tensor -> its whole in the output graph
  std::vector<bool> relaid_;  // by input-graph tensor: its whole is laid out otherwise (SetWhole, CopyOp)
  std::unordered_set<std::string> op_names_, tensor_names_;
};

// The records a graph's metadata numbers under `key` ("fission.0",
// "fission.1", ...), in order, up to the first number missing.
std::vector<std::string> NumberedRecords(const Graph& graph, std::string_view key);

// "op 'name' (aten.x) <why>": why an op cannot be in a region.
std::string Refusal(const Op& op, std::string_view why);

// `op`'s attribute `name`: an integer (nullptr when absent or of another
// kind), a number (an integer read as one; `fallback` when absent), a list
// of integers (empty when absent).
const int64_t* IntAttr(const Op& op, std::string_view name);
// Whether `t` is a result of the step (one of graph.outputs).
bool IsResult(const Graph& graph, TensorId t);
double DoubleAttr(const Op& op, std::string_view name, double fallback);
std::vector<int64_t> IntsAttr(const Op& op, std::string_view name);
// A bool attribute (an integer reads as one); `fallback` when absent or of
// another kind.
bool BoolAttr(const Op& op, std::string_view name, bool fallback);
// A backward's output_mask as three flags (absent: all asked for).
std::vector<bool> OutputMask(const Op& op);

// Rescales, in `op`'s attributes that spell out a shape (view's "size",
// expand's "size", slice_backward's "input_sizes", upsample backward's
// "input_size"), entry `axis` from `whole` to `part`: a region transform
// runs the op on a part of that axis.
void RescaleShapeAttrs(Op& op, int axis, int64_t whole, int64_t part);
// A view, _unsafe_view or _reshape_alias made an aten.reshape of the same size
// (the same values whatever the input's layout; a copy where no view can be):
// for an input laid out otherwise than at capture. False for any other op.
bool AsReshape(Op& op);

// The runs of ops a region search (FissionRegions, SpatialRegions) collects
// as it walks a graph in program order: the search adds each op that can be
// split to the current run, marks the ops that stay whole after it, and
// closes the run where it must end. Marks are stamped with the current run's
// number, so that closing a run clears them all at once: the op is in the
// run; the op reads (through any chain) a result of the run; by storage
// root, an op of the run reads the tensor.
class RegionRuns {
 public:
  // Runs shorter than `min_ops` are dropped when they close.
  RegionRuns(const Graph& graph, size_t min_ops);

  // Adds `op` to the current run.
  void Add(const Op& op);
  // Marks `op`, kept whole, as after the run: it needs the run's results.
  void MarkAfter(OpId op) { after_run_[op.index()] = current_; }
  // Ends the current run (kept when it has min_ops or more); the next one
  // starts empty.
  void Close();
  // Closes the last run; all kept, longest first (in program order among
  // equals).
  std::vector<std::vector<OpId>> Finish();

  bool InRun(OpId op) const { return in_run_[op.index()] == current_; }
  // An input of `op` is made by an op marked after the run: the run would
  // leave and come back if `op` joined it.
  bool ReadsAfterRun(const Op& op) const;
  // An input of `op` is made by the run or by an op after it.
  bool NeedsRun(const Op& op) const;
  // `op` writes (its mutated arguments, or in place into its first input)
  // into a storage an op of the run has read.
  bool OverwritesRead(const Op& op) const;

 private:
  const Graph& graph_;
  size_t min_ops_;
  std::vector<std::vector<OpId>> regions_;
  std::vector<OpId> run_;
  int current_ = 0;
  std::vector<int> in_run_, after_run_;  // by op
  std::vector<int> read_by_run_;         // by storage root
};

// Where a region's ops stand in the graph.
struct RegionContext {
  std::vector<bool> in_s;          // by op
  std::vector<OpId> s_ops;         // program order
  std::vector<bool> used_outside;  // by tensor: an output of S read after S or a result of the step
  std::vector<std::vector<OpId>> consumers;  // by tensor
};

// Checks that S (non-empty, existing ops) is convex, and finds the outputs
// of S that leave it. `what` starts error messages ("fission along H").
RegionContext AnalyzeRegion(const Graph& graph, const std::vector<OpId>& ops, std::string_view what);

// Copies `graph` into `b` in program order with the region replaced by
// what `emit_region` emits, where S's last op ran. Ops outside S between
// S's first and last op that depend on S, or write in place, move after
// the region; a write that S needs runs before it, unless an op of S
// before it reads what it overwrites (an error naming both). Maps the
// step's outputs.
void RewriteAroundRegion(const Graph& graph, const RegionContext& region, std::string_view what, Rewriter& b,
                         const std::function<void()>& emit_region);

}  // namespace memfit
