// Planned swapping: which forward results go to the host right after their
// last forward read and come back for the backward pass.
//
// Evicting to the host only when memory runs short (the heuristic's lazy
// rule) starts copies too late to hide them: at the budget there is no room
// to prefetch, so swap-ins stall the compute stream. A training step's
// forward results, though, are idle for a known stretch, from their last
// forward read to their first backward read. PlanSwaps picks results whose
// round trips fit the copy stream in that stretch: the swap-outs, one after
// another, must finish before the backward pass begins, and the swap-ins,
// issued as late as possible, must start after it and land before their
// reads. The heuristic then moves the picked results out as soon as the
// forward pass is done with them and prefetches them back (heuristic.h),
// and recomputation covers what is still short.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "remat/problem.h"

namespace memfit::remat {

enum class SwapPriority : uint8_t {
  kCostPerByte,  // results dearest to recompute per byte first (non-recomputable ones first of all)
  kEarliest,     // in forward order: the longest idle stretches first
};

struct SwapPlanOptions {
  SwapPriority priority = SwapPriority::kCostPerByte;
  // The idle stretches: each backward segment's (a step micro-batched by
  // fission has one per part, after the part's forward: each part's results
  // go out in its forward and come back in its backward), or the whole
  // step's, where everything from the first backward node on counts as the
  // backward pass (a later part's forward read too). The two coincide on a
  // step with one backward pass.
  bool per_part = true;
  // Part of the forward pass's time the swap-outs may take together.
  double copy_fraction = 1.0;
};

// One entry per node: the stage after whose read the node goes to the host
// (its last forward read, its part's in a micro-batched step), to come back
// for its first backward read; kNever: it stays. copy_us: one-way host copy
// time per node.
std::vector<uint32_t> PlanSwaps(const Problem& problem, std::span<const double> copy_us,
                                const SwapPlanOptions& options = {});

}  // namespace memfit::remat
