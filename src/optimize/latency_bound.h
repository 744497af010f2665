// The least memory any plan of a graph can have within a latency limit: a
// lower bound for `memfit optimize --lat-limit-ratio`, so that a figure can
// be read against what is possible, not only against the peak.
//
// Take an op x (the cut). Its ancestors run before it and its descendants
// after it in every schedule (sched/dependencies.h's edges), so a storage
// that an ancestor (or x) makes and that x or a descendant touches (or that
// lives to the end) is on the device while x runs, unless the plan moved it
// away:
//  - swapped out: the copy starts after the op that makes it ends (at the
//    earliest, the longest path of latencies to it) and ends before x
//    starts; x starts at the latest at limit - latency(x) - latency(its
//    descendants) - r, with r the time spent recomputing. One host link
//    moves the copies one after the other: at most what a link that never
//    idles while a copy is waiting moves by then (nothing on a device whose
//    host is its own memory, the CPU, where a copy frees nothing).
//  - dropped and made again after x: the op that makes it runs once more,
//    within r. At most the bytes of a fractional knapsack over those ops
//    (value: the storages crossing x they make; cost: their latency, with a
//    share of keeping or making again those of their inputs that do not
//    cross x; inputs of inputs are taken as free: latency_bound.cc).
// The storages x itself touches, and its workspace, are on the device in
// every case. So no plan is below
//   crossing(x) - max over r in [0, limit - Σ latencies] of (swapped(r) + freed(r)),
// and the bound is the largest of these over the cuts tried: the ops where
// the program order holds the most, and those with the largest working
// sets. Each is a relaxation (both ways of leaving count in full, a swapped
// storage is not brought back, recomputing costs no more than one run of
// its op and a share of its inputs), so the bound is below what a plan
// can reach, often well below it; where it is above a target, no schedule,
// recomputation or swapping of this graph meets the target.
//
// What it does not cover: a graph that fission transforms (transform/) is
// another graph, whose parts finish (and can be copied out) earlier; the
// bound of a fissioned graph is its own.
#pragma once

#include <cstdint>
#include <optional>

#include "ir/ids.h"
#include "sim/simulator.h"

namespace memfit {

struct LatencyBound {
  int64_t bytes = 0;           // no plan within the latency limit needs less
  OpId cut;                    // the op where it holds
  int64_t crossing_bytes = 0;  // storages on the device at the cut unless swapped or recomputed (and the cut's own)
  int64_t swapped_bytes = 0;   // at most this much of them leaves over the host link before the cut
  int64_t freed_bytes = 0;     // and at most this much is recomputed after it
  double recompute_us = 0;     // with this much time for recomputation (the rest of the slack: stalls for copies)
};

// The bound for plans of `simulator.graph()` (on its device, with its
// latencies and copy times) whose simulated latency is at most `limit_us`;
// nullopt when the ops alone take longer than that (no plan is within it)
// or the graph has no op.
// Tries the `max_cuts` ops that hold the most in program order and the
// `max_cuts` with the most bytes of their own.
std::optional<LatencyBound> MemoryBoundAtLatency(const sim::Simulator& simulator, double limit_us,
                                                 size_t max_cuts = 32);

}  // namespace memfit
