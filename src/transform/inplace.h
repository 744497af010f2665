// In-place reuse: an element-wise op whose input dies at that op writes its
// result into the input's memory (the first rule of the lecture seed).
//
// A graph rewrite to ATen's in-place variants (relu -> relu_, add -> add_,
// sub, mul, div, sqrt). The rewrite is made only where it cannot change a
// value: the input's storage
//   - is made by an op of the step (not a parameter, buffer, input or
//     optimizer state),
//   - is not a result of the step,
//   - has no view (a view would see the overwritten values: the pitfall),
//   - is read by no op after this one in program order (this op is its last
//     reader; the schedulers keep in-place writes in order with every other
//     access of the storage, sched/dependencies.h),
// and the result has the input's shape and dtype (no broadcast into a
// smaller tensor, no promotion). Chains (add -> relu -> ...) reuse one
// storage. The saving is the storage of every rewritten op's result.
#pragma once

#include <cstdint>

#include "ir/graph.h"

namespace memfit {

struct InPlaceResult {
  Graph graph;
  int rewritten = 0;        // ops now in place
  int64_t bytes_reused = 0; // storage their results no longer allocate
};

InPlaceResult ReuseDeadInputs(const Graph& graph);

}  // namespace memfit
