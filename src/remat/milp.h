// The Checkmate MILP (Jain et al., MLSys 2020, "Checkmate: Breaking the
// Memory Wall with Optimal Tensor Rematerialization"), solved with COIN-OR
// CBC: the cheapest sequence whose memory stays within a budget.
//
// Checkmate's sequences are made of stages: stage t evaluates, in index
// order and at most once each, a subset of nodes 0..t that contains t. The
// MILP chooses that subset (R) and what stays resident between stages (S);
// its memory accounting frees an input after its last use in a stage unless
// it is kept into the next one, which is exactly remat::Evaluate's accounting
// when S is the residency the sequence implies. The returned sequence has
// passed Evaluate. See docs/milp.md for the model and its reductions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "remat/problem.h"

namespace memfit::remat {

struct MilpOptions {
  int64_t budget_bytes = 0;         // peak memory allowed, fixed_bytes included
  double time_limit_seconds = 60;   // CBC stops (with its best so far) after this wall time
  // A sequence to start from (empty: none). It must be valid (Evaluate);
  // when it fits the budget, the result is never more expensive than it.
  std::vector<uint32_t> warm_start;
  int threads = 1;                  // CBC's threads; more than 1 is not deterministic
  // CBC stops (with its best so far) after this many branch-and-bound nodes;
  // absent: no limit but the time. With one thread and no time limit that
  // binds, the result does not depend on the machine's speed or load.
  std::optional<int64_t> max_nodes;
  // Only sequences cheaper than this are wanted (the cost of a plan already
  // in hand): CBC prunes every branch that cannot beat it, and without one
  // cheaper the status is kNoSolution. Absent: no cutoff.
  std::optional<double> cutoff_us;
  bool log = false;                 // print CBC's log on stdout
  // Sizes are counted in units of their greatest common divisor; when the
  // largest size would exceed this many units, the unit grows and every size
  // is rounded up to it (a conservative model: what it accepts fits).
  int64_t max_size_units = 10000;
  // Bound only: sizes rounded down instead, so the model accepts every
  // Checkmate sequence that fits (and some that do not) and CBC's bound is a
  // lower bound on the problem's own optimum. No sequence is returned; the
  // status is the relaxed model's (kInfeasible: nothing fits the problem).
  bool lower_bound_only = false;
};

struct MilpResult {
  enum class Status : uint8_t {
    kOptimal,     // proven cheapest (for the rounded model when sizes were rounded)
    kFeasible,    // a sequence within the budget, not proven cheapest
    kInfeasible,  // no Checkmate sequence fits the budget (detail says why)
    kNoSolution,  // none found: the time ran out, nothing beat the cutoff, or the rounded model is infeasible
  };
  Status status = Status::kNoSolution;
  std::vector<uint32_t> sequence;  // empty unless kOptimal or kFeasible
  double cost_us = 0;              // Evaluate's total_us of the sequence
  double lower_bound_us = 0;       // CBC's best bound on the cost (infinity if kInfeasible)
  int64_t peak_bytes = 0;          // Evaluate's peak of the sequence
  // The MILP's own accounting of the sequence's peak, never below peak_bytes;
  // absent when the sequence returned is the warm start (CBC found nothing cheaper).
  std::optional<int64_t> milp_peak_bytes;
  int64_t size_unit_bytes = 1;     // the size unit of the model (see max_size_units)
  double seconds = 0;              // wall time of the whole call
  size_t variables = 0;            // of the model given to CBC; 0 if CBC was not needed
  size_t constraints = 0;
  std::string detail;              // why kInfeasible, or which solution was returned
};

std::string_view ToString(MilpResult::Status status);

// Solves the MILP for `problem` (validated first). Throws Error on bad
// options or an invalid warm start. Returns kInfeasible without calling CBC
// when some node cannot be evaluated within the budget even with only its
// inputs and the results that can never be recomputed resident.
// Calls are serialized: CBC's driver keeps global state.
MilpResult SolveCheckmateMilp(const Problem& problem, const MilpOptions& options);

}  // namespace memfit::remat
