// The ordering constraints of a graph: a DAG over its ops, in CSR form.
//
// An edge a -> b means that a must run before b in every schedule:
//   - data: b reads a tensor that a produces;
//   - storage hazards: for a storage updated in place (a write other than
//     the one creating it: aten.add_ on a parameter, relu_, BatchNorm's
//     running statistics), every op touching any alias of it keeps its
//     program-order position relative to each writer of it. A read after
//     writer w depends on w, the next writer depends on every read since w,
//     and writers are chained; transitively, reads before a write stay
//     before it, reads after stay after, and writes keep their order;
//   - the random number generator: random ops (dropout) keep their program
//     order among themselves, so a schedule draws what eager draws (the
//     masks fission draws before its parts have no data order between
//     them: a memory-aware schedule drew them in another order).
// Every edge goes forward in program order, so program order is always a
// valid schedule. Linear in the size of the graph (plus sorting each op's
// edge list).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ir/graph.h"

namespace memfit::sched {

struct Dependencies {
  // Edges of op i: preds[pred_begin[i] .. pred_begin[i + 1]), sorted by id,
  // without duplicates; the same for succs.
  std::vector<uint32_t> pred_begin;
  std::vector<OpId> preds;
  std::vector<uint32_t> succ_begin;
  std::vector<OpId> succs;

  size_t num_ops() const { return pred_begin.empty() ? 0 : pred_begin.size() - 1; }
  size_t num_edges() const { return preds.size(); }
  std::span<const OpId> predecessors(OpId op) const {
    return {preds.data() + pred_begin[op.index()], preds.data() + pred_begin[op.index() + 1]};
  }
  std::span<const OpId> successors(OpId op) const {
    return {succs.data() + succ_begin[op.index()], succs.data() + succ_begin[op.index() + 1]};
  }
};

Dependencies ComputeDependencies(const Graph& graph);

}  // namespace memfit::sched
