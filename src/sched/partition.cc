#include "sched/partition.h"

#include <algorithm>

#include "sched/greedy.h"

namespace memfit::sched {

std::vector<OpId> CutPoints(const Dependencies& deps, const std::vector<bool>& contract) {
  const auto n = static_cast<int64_t>(deps.num_ops());
  auto contracted = [&](int64_t op) { return !contract.empty() && contract[op]; };
  // The earliest unflagged successor of each op and its latest unflagged
  // predecessor, through flagged ops (n and -1 when there is none).
  std::vector<int64_t> first_succ(n, n), last_pred(n, -1);
  for (int64_t op = n - 1; op >= 0; --op) {
    for (OpId s : deps.successors(OpId(op))) {
      first_succ[op] = std::min(first_succ[op], contracted(s.value) ? first_succ[s.value] : s.value);
    }
  }
  for (int64_t op = 0; op < n; ++op) {
    for (OpId p : deps.predecessors(OpId(op))) {
      last_pred[op] = std::max(last_pred[op], contracted(p.value) ? last_pred[p.value] : p.value);
    }
  }
  std::vector<bool> ok_before(n);
  int64_t latest_first_succ = -1;  // over the unflagged ops before p
  for (int64_t p = 0; p < n; ++p) {
    if (contracted(p)) continue;
    ok_before[p] = latest_first_succ <= p;
    latest_first_succ = std::max(latest_first_succ, first_succ[p]);
  }
  std::vector<OpId> cuts;
  int64_t earliest_last_pred = n;  // over the unflagged ops after p
  for (int64_t p = n - 1; p >= 0; --p) {
    if (contracted(p)) continue;
    if (ok_before[p] && earliest_last_pred >= p) cuts.push_back(OpId(p));
    earliest_last_pred = std::min(earliest_last_pred, last_pred[p]);
  }
  std::reverse(cuts.begin(), cuts.end());
  return cuts;
}

namespace {

// The ops of each piece, ascending: an op that allocates belongs to the
// piece of its program position (cut points close pieces); a free op to the
// piece in which its last predecessor runs, or the next one after a cut.
std::vector<std::vector<OpId>> Pieces(const Dependencies& deps, const std::vector<bool>& free) {
  const size_t n = deps.num_ops();
  std::vector<bool> is_cut(n, false);
  for (OpId cut : CutPoints(deps, free)) is_cut[cut.index()] = true;
  std::vector<uint32_t> piece_of(n, 0);
  std::vector<std::vector<OpId>> pieces(1);
  uint32_t current = 0;
  for (uint32_t op = 0; op < n; ++op) {
    if (!free[op]) {
      piece_of[op] = current;
      if (is_cut[op]) ++current;
    } else {
      for (OpId p : deps.predecessors(OpId(op))) {
        piece_of[op] = std::max(piece_of[op], piece_of[p.index()] + (is_cut[p.index()] ? 1 : 0));
      }
    }
    if (piece_of[op] >= pieces.size()) pieces.resize(piece_of[op] + 1);
    pieces[piece_of[op]].push_back(OpId(op));
  }
  std::erase_if(pieces, [](const std::vector<OpId>& piece) { return piece.empty(); });
  return pieces;
}

}  // namespace

PartitionResult SchedulePartitioned(const MemoryModel& model, const Dependencies& deps,
                                    const PartitionOptions& options) {
  PartitionResult result;
  std::vector<bool> free(deps.num_ops());
  for (uint32_t op = 0; op < free.size(); ++op) free[op] = model.IsFree(OpId(op));

  struct Piece {
    Problem problem;
    std::vector<uint32_t> order;
    int64_t peak_bytes = 0;
    bool proven = false;
    bool searched = false;
  };
  std::vector<Piece> pieces;
  RunState state(model);
  for (const std::vector<OpId>& ops : Pieces(deps, free)) {
    Piece piece;
    piece.problem = BuildProblem(model, deps, ops, state);
    ListSchedule best = BestListSchedule(piece.problem);
    piece.order = std::move(best.order);
    piece.peak_bytes = best.peak_bytes;
    piece.proven = piece.peak_bytes <= LowerBound(piece.problem);
    result.largest_piece_ops = std::max(result.largest_piece_ops, ops.size());
    for (OpId op : ops) state.Run(op);  // the state after a piece does not depend on its order
    pieces.push_back(std::move(piece));
  }
  result.pieces = pieces.size();

  auto peak_of = [](const Piece& p) { return p.peak_bytes; };
  while (!pieces.empty()) {
    const int64_t peak = std::ranges::max_element(pieces, {}, peak_of)->peak_bytes;
    if (std::ranges::any_of(pieces, [&](const Piece& p) { return p.peak_bytes == peak && p.proven; })) {
      result.proven_optimal = true;
      break;
    }
    Piece& top = *std::ranges::find(pieces, peak, peak_of);
    if (top.searched || top.problem.ops.size() > options.max_exact_ops ||
        std::chrono::steady_clock::now() >= options.exact.deadline) {
      break;
    }
    top.searched = true;
    ++result.searched_pieces;
    ExactSearchResult exact = SolveExact(top.problem, top.order, top.peak_bytes, options.exact);
    result.states += exact.states;
    top.order = std::move(exact.order);
    top.peak_bytes = exact.peak_bytes;
    top.proven = exact.proven_optimal;
  }

  result.order.reserve(deps.num_ops());
  for (const Piece& piece : pieces) {
    result.peak_bytes = std::max(result.peak_bytes, piece.peak_bytes);
    for (uint32_t op : piece.order) result.order.push_back(piece.problem.ops[op].id);
  }
  return result;
}

}  // namespace memfit::sched
