// In-place ops whose input was copied first, written out of place.
//
// Tracing autograd over an in-place activation whose backward reads its
// input (ReLU6 as hardtanh_, SiLU, Hardswish with inplace=True: MobileNet,
// EfficientNet) records a copy of the input before the op overwrites it:
//
//   c = clone(x)          the value the backward will read
//   y = hardtanh_(x)      y lives in x's storage
//   ...  convolution(y) ...  hardtanh_backward(dy, c)
//
// The copy costs what an out-of-place op would, and makes y impossible to
// recompute cheaply: x's storage holds y, so y can only be made again by
// re-running what made x (a BatchNorm) and the op. Written as
//
//   y = hardtanh(x)       a storage of its own; x keeps its value
//   ...  convolution(y) ...  hardtanh_backward(dy, x)
//
// the clone is gone, every value is the same (bit for bit), the step never
// needs more memory at once (x lives as long as the copy did; between the
// copy and the op one tensor fewer), and y can be recomputed from x alone.
// PyTorch's own programs ran 7x slower under half their peak without it
// (MobileNet-v2 bs32 128x128 on rtx3090: +585% against +9% for the same
// network written out of place).
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
//   - x was copied (aten.clone, same layout) before the op, and that copy
//     is not a result of the step, has no view and is written by nothing:
//     its readers read x instead.
#pragma once

#include "ir/graph.h"

namespace memfit {

struct OutOfPlaceResult {
  Graph graph;
  int rewritten = 0;      // in-place ops now out of place
  int copies_dropped = 0; // clones whose readers read the input instead
};

// The graph with every such op out of place and its input's copies
// dropped; graph.metadata records the rewrite ("rewrite.K": "in-place ops
// whose input was copied, out of place: N"). The graph unchanged (no
// record) when there is none.
OutOfPlaceResult OutOfPlaceWhereCopied(const Graph& graph);

// The graph rewrites recorded in a graph's metadata ("rewrite.0", ...), in
// order: those that change no value and no fission search chooses.
std::vector<std::string> RecordedRewrites(const Graph& graph);

inline constexpr std::string_view kOutOfPlaceRecordPrefix = "in-place ops whose input was copied, out of place: ";

}  // namespace memfit
