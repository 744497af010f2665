// In-place ops written out of place, so that what they make can be
// recomputed: the inverse of transform/inplace.h, for the planner's sake.
//
// PyTorch programs write activations in place (ReLU(inplace=True) in
// ResNet and DenseNet, ReLU6 / SiLU / Hardswish in MobileNet and
// EfficientNet): y = relu_(x) puts y in x's storage, where a BatchNorm
// made x. y can then only be made again by re-running the BatchNorm and
// the op into one storage, which the planner does not do: it keeps or swaps
// y. Written out of place, y = relu(x) is a storage of its own, x dies at
// the op (nothing after it reads x), and y is recomputed like any chain
// (the BatchNorm from its kept input, then the op). Captured DenseNet-121
// bs32 128x128 on rtx3090 at 0.5 of its peak: +32.5% in place, +9.0% out
// of place.
//
// Where autograd reads the op's input (ReLU6, SiLU, Hardswish), tracing
// copies it first:
//
//   c = clone(x); y = hardtanh_(x); ... hardtanh_backward(dy, c)
//
// Out of place, x keeps its value and the copy is dropped (its readers
// read x): the step never needs more memory at once (x lives as the copy
// did; between the copy and the op one tensor fewer) and runs one op
// fewer. Captured MobileNet-v2 bs32 128x128 on rtx3090 at 0.5: +585% in
// place, +0.18% out of place.
//
// Without a copy, the op's working set grows by its result (x and y at
// once), which may raise the peak of program order; the optimizer keeps
// such rewrites only where it does not (optimize/optimizer.h,
// RewriteBeforePlanning). Every value is the same, bit for bit.
//
// An op is rewritten only where that cannot change a value:
//   - its type has an out-of-place twin with the same arguments (relu_,
//     hardtanh_, silu_, hardswish_, add_, mul_, ...; never a random fill
//     such as bernoulli_, whose out-of-place form means something else),
//     and that twin infers the same shape and dtype for the result;
//   - its input x is a storage made in the step (not a source, not a view,
//     not a result of the step), whose storage holds only x, the op's
//     result and what aliases that result, that no other op writes, and
//     that no op after this one reads;
//   - a copy of x (aten.clone, same layout) made before the op is dropped
//     where it is not a result of the step, has no view and is written by
//     nothing: its readers read x instead.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ir/graph.h"

namespace memfit {

struct OutOfPlaceResult {
  Graph graph;
  int rewritten = 0;       // in-place ops now out of place
  int copies_dropped = 0;  // clones whose readers read the input instead
};

// The graph with every such op out of place (with `only_copied`, only
// those whose input was copied first) and its input's copies dropped;
// graph.metadata records the rewrite ("rewrite.K": "in-place ops out of
// place: N (copies dropped: M)"). The graph unchanged (no record) when
// there is none.
OutOfPlaceResult WriteOutOfPlace(const Graph& graph, bool only_copied = false);

// The graph rewrites recorded in a graph's metadata ("rewrite.0", ...), in
// order: rewrites that change no value, made before any search.
std::vector<std::string> RecordedRewrites(const Graph& graph);

inline constexpr std::string_view kOutOfPlaceRecordPrefix = "in-place ops out of place: ";

}  // namespace memfit
