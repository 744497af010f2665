// Fast one-pass planners. Each returns one offset per Problem::buffers entry
// (fixed buffers at their fixed offset, zero-size buffers at 0) and never
// fails: when a capacity is set it is ignored here; PlanOffsets() compares the
// height with it.
//
// All but the naive planner take a deadline: once it has passed, the buffers
// not yet placed are stacked above everything (a valid but poor placement),
// so that the planners return soon after it even on huge problems.
//
// Offsets and tops saturate at kSaturatedBytes (util/checked_math.h) where
// they would overflow int64_t (huge alignments or sizes); PlanOffsets() rejects
// such a height.
//
// All but the naive planner place buffers one by one in a planner-specific
// order, each into the smallest gap between already placed, time-overlapping
// buffers that holds it (aligned), or on top of the highest of them.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "alloc/problem.h"
#include "util/checked_math.h"

namespace memfit::alloc {

using Deadline = std::chrono::steady_clock::time_point;

// Bump allocation in id order: no reuse at all.
std::vector<int64_t> PlanNaive(const Problem& problem, int64_t alignment_bytes);

// Pisarchyk & Lee's greedy by size: size descending, ties by id.
std::vector<int64_t> PlanGreedyBySize(const Problem& problem, int64_t alignment_bytes,
                                      Deadline deadline = Deadline::max());

// Pisarchyk & Lee's greedy by breadth: time points by the sum of live sizes
// descending; at each, its unplaced buffers by size descending.
std::vector<int64_t> PlanGreedyByBreadth(const Problem& problem, int64_t alignment_bytes,
                                         Deadline deadline = Deadline::max());

// TFLite/XLA best fit: buffers that live through the whole problem first,
// then size descending, then longer lifetime, ties by id.
std::vector<int64_t> PlanBestFit(const Problem& problem, int64_t alignment_bytes,
                                 Deadline deadline = Deadline::max());

// Rounds `value` (>= 0) up to a multiple of `alignment` (>= 1), saturating
// at kSaturatedBytes (util/checked_math.h) instead of overflowing.
inline int64_t AlignUp(int64_t value, int64_t alignment) { return SaturatingAlignUp(value, alignment); }

}  // namespace memfit::alloc
