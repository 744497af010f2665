// In-place ops written out of place, so that what they make can be
// recomputed: the inverse of transform/inplace.h, for the planner's sake.
//
// PyTorch programs write activations in place (ReLU6, SiLU, Hardswish with
// inplace=True in MobileNet and EfficientNet). Where autograd reads the
// op's input, tracing copies it first:
//
//   c = clone(x)          the value the backward will read
//   y = hardtanh_(x)      y lives in x's storage
//   ...  convolution(y) ...  hardtanh_backward(dy, c)
//
// The copy costs what an out-of-place op would, and y, in the storage a
// BatchNorm made x in, can only be made again by re-running the BatchNorm
// and the op into one storage, which the planner does not do: it keeps or
// swaps y. Written as
//
//   y = hardtanh(x)       a storage of its own; x keeps its value
//   ...  convolution(y) ...  hardtanh_backward(dy, x)
//
// the copy is gone, every value is the same (bit for bit), the step never
// needs more memory at once (x lives as the copy did; between the copy and
// the op one tensor fewer), runs one op fewer, and y is recomputed from x.
// Captured MobileNet-v2 bs32 128x128 on rtx3090 at 0.5 of its peak: +334%
// in place, +0.18% out of place.
//
// An op whose input was not copied (ReLU(inplace=True): autograd reads its
// result) can be written out of place too (only_copied off); its working
// set then holds its input and result at once. It helps some programs and
// not others (captured DenseNet-121 at 0.5 of its peak: +32.5% -> +9.5%;
// captured ResNet-18 at 0.55: +16.5% -> +46.1%), so the optimizer searches
// the step both ways (optimize/optimizer.h, PlanOutOfPlace).
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
//
// Dropout masks as PyTorch 1.13 traces them are drawn out of place too:
//
//   n = empty_like(x); m = bernoulli_(n, p); s = div_(m, p)
//     ->  t = expand(empty([]), n's shape); m = bernoulli(t, p); s = div(m, p)
//
// ATen's bernoulli.p is empty_like(t, contiguous).bernoulli_(p): the same
// numbers, drawn one per element of a contiguous tensor of the same shape
// from the same generator state. The template holds one element, so the
// step holds no more than before but at each scale (its input and result at
// once), and the mask, which the planner could only keep or swap (4 bytes
// per element of every dropout), is recomputed (the executor replays the
// generator). Where: the allocation is contiguous (empty, or empty_like of
// a contiguous x or in contiguous_format), floating point, read by the draw
// alone and not a result; each scale (div_ / mul_ by a number) is the only
// reader of what it scales; the storage holds nothing else but views of the
// last. Such chains are rewritten whatever `only_copied` says.
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
// those whose input was copied first, and the dropout masks) and its
// input's copies dropped;
// graph.metadata records the rewrite ("rewrite.K": "in-place ops out of
// place: N (copies dropped: M)"). The graph unchanged (no record) when
// there is none.
OutOfPlaceResult WriteOutOfPlace(const Graph& graph, bool only_copied);

// The graph rewrites recorded in a graph's metadata ("rewrite.0", ...), in
// order: rewrites that change no value, made before any search.
std::vector<std::string> RecordedRewrites(const Graph& graph);

inline constexpr std::string_view kOutOfPlaceRecordPrefix = "in-place ops out of place: ";

}  // namespace memfit
