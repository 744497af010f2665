// Internal to the Checkmate MILP (milp.cc): the model's columns and rows,
// built once as arrays for OsiClpSolverInterface::loadProblem.
//
// Per stage t (0..n-1), with sizes in units (see SizeUnits):
//   R[t,i]   binary: node i is evaluated in stage t (i <= t, R[t,t] = 1)
//   S[t,i]   binary: the result of i is resident at the start of stage t
//            (i < t); S[n,i] = keep_to_end(i) closes the last stage
//   F[t,i,k] continuous: i is freed right after k is evaluated in stage t
//            (k = i, or a reader of i)
//   H        continuous: some reader of i after k is evaluated in stage t
//   U[t,k]   continuous: memory right after k is evaluated, before the frees
// Checkmate's FREE = R[t,k] (1 - S[t+1,i]) prod_{later readers j} (1 - R[t,j])
// is bounded from above only (F <= each factor, the later readers through
// H): memory appears only in "<= budget" rows, so a solver always frees
// what it may, and an F below the product only over-counts memory. That
// keeps F continuous and its LP relaxation tighter than the paper's big-M.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "remat/problem.h"

namespace memfit::remat::milp_internal {

// What each node allows, from the problem alone.
struct NodeFacts {
  std::vector<std::vector<uint32_t>> readers;  // ascending
  std::vector<uint32_t> last_eval;   // the last stage that may evaluate the node
  std::vector<uint32_t> read_until;  // the last stage that may read it (n-1 if kept to the end)
  std::vector<uint32_t> max_reader;  // the last reader's index (the node itself if none)
  // Whether i must be resident throughout stage t (i < t) in every sequence:
  // it can no longer be evaluated, and a later first evaluation or the end
  // still needs it.
  bool Pinned(const Problem& problem, uint32_t i, uint32_t t) const;
};
NodeFacts Analyze(const Problem& problem);

// Node sizes and the budget in a common unit, rounded conservatively (what
// the model accepts fits), or, `relaxed`, generously (what fits, the model
// accepts).
struct SizeUnits {
  int64_t unit_bytes = 1;
  bool exact = true;               // every size is a multiple of unit_bytes
  std::vector<int64_t> bytes;      // per node, rounded up (relaxed: down)
  std::vector<int64_t> workspace;  // per node, rounded up (relaxed: down)
  int64_t budget = 0;              // (budget_bytes - fixed_bytes) rounded down, less a margin for CBC's tolerances
                                   // (relaxed: no margin)
};
SizeUnits ToSizeUnits(const Problem& problem, int64_t budget_bytes, int64_t max_size_units, bool relaxed = false);

// A 0/1 quantity of the model: a column, or a constant fixed by the reductions.
struct Binary {
  std::optional<int> column;
  int constant = 0;  // the value when there is no column
  bool IsConstant(int value) const { return !column && constant == value; }
};

class CheckmateModel {
 public:
  CheckmateModel(const Problem& problem, const SizeUnits& sizes);

  size_t n() const { return n_; }
  Binary R(size_t t, size_t i) const { return r_[t * n_ + i]; }  // i <= t < n
  Binary S(size_t t, size_t i) const { return s_[t * n_ + i]; }  // i < n, t <= n

  // Columns.
  std::vector<double> col_lower, col_upper, objective;
  std::vector<int> integer_columns;        // R and S
  std::vector<std::string> names;          // per column: R<t>_<i>, S<t>_<i>, empty for the rest
  double objective_constant = 0;           // the costs of the fixed R[t,t] = 1
  // Rows as (row, column, value) triplets with bounds.
  std::vector<int> row_of, column_of;
  std::vector<double> value, row_lower, row_upper;

  // The U column of (t,k) for every node k that stage t may evaluate.
  struct Memory {
    uint32_t stage, node;
    int column;
  };
  std::vector<Memory> memory;

 private:
  struct Term {
    double coefficient;
    Binary binary;
  };
  int AddColumn(double lower, double upper, double cost);
  void AddRow(const std::vector<Term>& terms, double lower, double upper);
  void AddStage(const SizeUnits& sizes, uint32_t t);
  Binary Hazard(uint32_t t, const std::vector<uint32_t>& readers, size_t from, std::vector<Binary>& memo);

  size_t n_;
  std::vector<std::vector<uint32_t>> readers_;  // per node, ascending
  std::vector<Binary> r_;  // n x n, row-major by stage
  std::vector<Binary> s_;  // (n+1) x n
};

}  // namespace memfit::remat::milp_internal
