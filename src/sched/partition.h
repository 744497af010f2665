// Partitioned scheduling at cut points (MAGIS's narrow waist).
//
// The narrow waist of op v is nw(v) = |V| - |anc(v)| - |desc(v)| - 1, the
// number of ops that may run on either side of it. With nw(v) = 0 (a cut
// point) every schedule runs the same set of ops before v, so the ops
// between two cut points form a piece that is scheduled on its own: its
// memory depends only on the storages live at its start (a constant offset,
// see problem.h), and the peak of the whole is the largest piece peak.
//
// Training graphs have almost no cut points as such: views of parameters
// have no predecessors and optimizer updates no successors, so they float
// across the whole step. They are free ops (MemoryModel::IsFree), and some
// optimal schedule runs every free op as soon as it is ready. So cut points
// are taken among the other ops, with paths through free ops contracted,
// and each free op joins the piece in which it becomes ready. This loses
// nothing: every concatenation of valid piece orders is valid, and the
// optimal schedule that runs free ops early is one of them.
//
// Each piece gets the best list schedule (greedy.h). Then, while time is
// left, the piece with the largest peak is searched exactly (exact_search.h)
// when it is small enough, until a piece at the largest peak is proven or
// has been searched: only such a piece can lower the whole peak, so the
// others keep their list schedules. A proven piece at the largest peak
// proves the whole.
#pragma once

#include <cstdint>
#include <vector>

#include "sched/dependencies.h"
#include "sched/exact_search.h"
#include "sched/problem.h"

namespace memfit::sched {

// Ops with narrow waist 0, ascending. With `contract` (one flag per op),
// the flagged ops are contracted away: the result is the unflagged ops
// whose narrow waist is 0 among the unflagged ops. Linear: with program
// order as the topological order, v at position p is a cut point iff every
// (unflagged) op before p has a successor at or before p, and every op after
// p a predecessor at or after p. (Going down from p-1, an op reaches v iff
// one of its successors does, and a successor after p cannot; the same
// upwards for descendants.)
std::vector<OpId> CutPoints(const Dependencies& deps, const std::vector<bool>& contract = {});

struct PartitionOptions {
  // Pieces with more ops than this skip the exact search (its states keep a
  // bit per op). The search's own limits usually stop it first.
  size_t max_exact_ops = 4096;
  // Limits of each exact search; the deadline is shared.
  ExactSearchOptions exact = {};
};

struct PartitionResult {
  std::vector<OpId> order;
  int64_t peak_bytes = 0;
  bool proven_optimal = false;
  size_t pieces = 0;
  size_t largest_piece_ops = 0;
  size_t searched_pieces = 0;    // pieces given to the exact search
  int64_t states = 0;            // states of all exact searches
};

PartitionResult SchedulePartitioned(const MemoryModel& model, const Dependencies& deps,
                                    const PartitionOptions& options);

}  // namespace memfit::sched
