// How far each node of a remat problem reaches, fixed before the heuristic
// (heuristic.h) runs: who reads it, until when it can be recomputed, and
// until when it may be read.
//
//  - horizon(v): the last stage at which v can be recomputed: its own
//    recompute_until and, unless v holds its inputs, that of every
//    recomputable ancestor. kNoLimit for a node that is never recomputed.
//  - need(v): the last stage at which v may be read, directly or to
//    recompute a reader (n for a node kept to the end).
//  - held_for_reader(v): some reader may be recomputed past v's horizon,
//    so v is held resident for it (the heuristic does not drop it past its
//    direct reads).
// Holding inputs (HeuristicOptions::hold_inputs): a node whose horizon an
// input cuts short (an ancestor overwritten in place, as by an optimizer
// update) may still be dropped past it when the inputs that cut it stay
// resident until it is last needed. Worth it when they are small next to
// it (a weight gradient and the activations it is made from): where they
// take at most half its bytes.
#pragma once

#include <cstdint>
#include <vector>

#include "remat/problem.h"

namespace memfit::remat {

struct Reach {
  // Readers of node v: readers[reader_begin[v] .. reader_begin[v + 1]),
  // ascending (stages are).
  std::vector<uint32_t> reader_begin, readers;
  // time_us[t]: when stage t starts if every node runs once in order
  // (prefix sums of cost_us; n + 1 entries).
  std::vector<double> time_us;
  std::vector<uint32_t> horizon, need;
  std::vector<uint8_t> holds_inputs;     // by node: may be dropped past its inputs' horizon (they are held)
  std::vector<uint8_t> held_for_reader;  // by node: an input so held

  // Whether v may be dropped once its direct reads are done: a
  // recomputation of a reader after them can recompute it too.
  bool RecomputableToTheEnd(const Problem& p, uint32_t v) const {
    return p.nodes[v].recomputable && !held_for_reader[v];
  }
};

// The reach of every node of `problem` (which must pass Validate).
Reach ComputeReach(const Problem& problem, bool hold_inputs);

}  // namespace memfit::remat
