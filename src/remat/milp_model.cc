#include "remat/milp_model.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include <fmt/format.h>

namespace memfit::remat::milp_internal {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kBoundTolerance = 1e-9;
constexpr double kSolverTolerance = 1e-6;

}  // namespace

NodeFacts Analyze(const Problem& problem) {
  const auto n = static_cast<uint32_t>(problem.size());
  NodeFacts f;
  f.readers.resize(n);
  f.last_eval.resize(n);
  f.read_until.resize(n);
  f.max_reader.resize(n);
  for (uint32_t j = 0; j < n; ++j) {
    const Node& node = problem.nodes[j];
    f.last_eval[j] = node.recomputable ? std::max(j, std::min(node.recompute_until, n - 1)) : j;
    for (uint32_t i : node.inputs) f.readers[i].push_back(j);  // j ascending, so readers sorted
  }
  for (uint32_t i = 0; i < n; ++i) {
    f.read_until[i] = problem.nodes[i].keep_to_end ? n - 1 : i;
    f.max_reader[i] = i;
    for (uint32_t j : f.readers[i]) {
      f.read_until[i] = std::max(f.read_until[i], f.last_eval[j]);
      f.max_reader[i] = j;
    }
  }
  return f;
}

bool NodeFacts::Pinned(const Problem& problem, uint32_t i, uint32_t t) const {
  return i < t && last_eval[i] < t && (problem.nodes[i].keep_to_end || max_reader[i] >= t);
}

SizeUnits ToSizeUnits(const Problem& problem, int64_t budget_bytes, int64_t max_size_units, bool relaxed) {
  int64_t gcd = 0, largest = 0;
  for (const Node& node : problem.nodes) {
    gcd = std::gcd(std::gcd(gcd, node.bytes), node.workspace_bytes);
    largest = std::max({largest, node.bytes, node.workspace_bytes});
  }
  SizeUnits s;
  s.unit_bytes = std::max<int64_t>(gcd, 1);
  if (largest / s.unit_bytes > max_size_units) s.unit_bytes = (largest + max_size_units - 1) / max_size_units;
  auto round = [&](int64_t b) {
    if (b % s.unit_bytes != 0) s.exact = false;
    return relaxed ? b / s.unit_bytes : (b + s.unit_bytes - 1) / s.unit_bytes;
  };
  for (const Node& node : problem.nodes) {
    s.bytes.push_back(round(node.bytes));
    s.workspace.push_back(round(node.workspace_bytes));
  }
  // CBC accepts a solution whose values are within its tolerances (about
  // 1e-7) of integers and of the rows, so a U may under-count the rounded
  // solution by up to ~1e-6 of all sizes together. Sizes being integers in
  // units, less than one unit of error is harmless; the rest is taken off
  // the budget so that what CBC accepts fits.
  int64_t all_units = 0;
  for (size_t v = 0; v < problem.size(); ++v) all_units += s.bytes[v] + s.workspace[v];
  const int64_t free_bytes = budget_bytes - problem.fixed_bytes;
  // (Relaxed: sizes that fit in bytes fit in floored units, their sum being
  // an integer at most free_bytes / unit_bytes.)
  const int64_t margin = relaxed ? 0 : static_cast<int64_t>(kSolverTolerance * all_units);
  s.budget = free_bytes < 0 ? -1 : free_bytes / s.unit_bytes - margin;
  return s;
}

CheckmateModel::CheckmateModel(const Problem& problem, const SizeUnits& sizes) : n_(problem.size()) {
  const auto n = static_cast<uint32_t>(n_);
  const NodeFacts facts = Analyze(problem);
  readers_ = facts.readers;
  r_.assign(n_ * n_, Binary{});
  s_.assign((n_ + 1) * n_, Binary{});
  auto binary_column = [&](char kind, uint32_t t, uint32_t i, double cost) {
    const int c = AddColumn(0, 1, cost);
    integer_columns.push_back(c);
    names[c] = fmt::format("{}{}_{}", kind, t, i);
    return Binary{c};
  };
  for (uint32_t t = 0; t < n; ++t) {
    for (uint32_t i = 0; i < t; ++i) {
      // S first: a result kept for free (zero bytes) or of necessity (never
      // evaluated again, read again for sure) is fixed to 1; one nobody can
      // read any more is fixed to 0.
      Binary& s = s_[t * n_ + i];
      if (t <= facts.read_until[i]) {
        s = (sizes.bytes[i] == 0 || facts.Pinned(problem, i, t)) ? Binary{{}, 1} : binary_column('S', t, i, 0);
      }
      // A recomputation is useful only if it may be read later and it is not
      // already resident for free.
      if (t <= facts.last_eval[i] && t <= facts.read_until[i] && !s.IsConstant(1)) {
        r_[t * n_ + i] = binary_column('R', t, i, problem.nodes[i].cost_us);
      }
    }
    r_[t * n_ + t] = Binary{{}, 1};
    objective_constant += problem.nodes[t].cost_us;
  }
  for (uint32_t i = 0; i < n; ++i) s_[n_ * n_ + i] = Binary{{}, problem.nodes[i].keep_to_end ? 1 : 0};

  for (uint32_t t = 0; t < n; ++t) {
    // A node evaluated in stage t reads each input evaluated earlier in the
    // stage or resident at its start.
    for (uint32_t j = 0; j <= t; ++j) {
      if (R(t, j).IsConstant(0)) continue;
      for (uint32_t i : problem.nodes[j].inputs) AddRow({{1, R(t, j)}, {-1, R(t, i)}, {-1, S(t, i)}}, -kInf, 0);
    }
    // A result resident at the start of stage t+1 was resident at the start
    // of stage t or evaluated in it.
    for (uint32_t i = 0; i <= t; ++i) {
      if (S(t + 1, i).IsConstant(0)) continue;
      AddRow({{1, S(t + 1, i)}, {-1, S(t, i)}, {-1, R(t, i)}}, -kInf, 0);
    }
    AddStage(sizes, t);
  }
}

int CheckmateModel::AddColumn(double lower, double upper, double cost) {
  col_lower.push_back(lower);
  col_upper.push_back(upper);
  objective.push_back(cost);
  names.emplace_back();
  return static_cast<int>(col_lower.size() - 1);
}

void CheckmateModel::AddRow(const std::vector<Term>& terms, double lower, double upper) {
  int columns = 0;
  for (const Term& term : terms) {
    if (term.binary.column) {
      ++columns;
    } else {
      lower -= term.coefficient * term.binary.constant;
      upper -= term.coefficient * term.binary.constant;
    }
  }
  // A row over one column is a bound on it.
  if (columns == 1) {
    for (const Term& term : terms) {
      if (!term.binary.column) continue;
      double lo = lower / term.coefficient, hi = upper / term.coefficient;
      if (term.coefficient < 0) std::swap(lo, hi);
      const int c = *term.binary.column;
      col_lower[c] = std::max(col_lower[c], lo);
      col_upper[c] = std::min(col_upper[c], hi);
    }
    return;
  }
  // A row of constants is dropped if it holds; if it does not (it never
  // does, by construction), it stays as an empty row for CBC to reject.
  if (columns == 0 && lower <= kBoundTolerance && upper >= -kBoundTolerance) return;
  const auto row = static_cast<int>(row_lower.size());
  for (const Term& term : terms) {
    if (!term.binary.column || term.coefficient == 0) continue;
    row_of.push_back(row);
    column_of.push_back(*term.binary.column);
    value.push_back(term.coefficient);
  }
  row_lower.push_back(lower);
  row_upper.push_back(upper);
}

// Whether some reader of i in readers[from..] is evaluated in stage t: the
// last one's R itself, or a column bounded below by the R of readers[from]
// and by the same quantity from the next reader on.
Binary CheckmateModel::Hazard(uint32_t t, const std::vector<uint32_t>& readers, size_t from,
                              std::vector<Binary>& memo) {
  if (from + 1 == readers.size()) return R(t, readers[from]);
  if (memo[from].column) return memo[from];
  const Binary h{AddColumn(0, 1, 0)};
  AddRow({{1, h}, {-1, R(t, readers[from])}}, 0, kInf);
  AddRow({{1, h}, {-1, Hazard(t, readers, from + 1, memo)}}, 0, kInf);
  return memo[from] = h;
}

void CheckmateModel::AddStage(const SizeUnits& sizes, uint32_t t) {
  std::vector<uint32_t> evaluable;  // the nodes stage t may evaluate, ascending
  std::vector<bool> may_evaluate(t + 1, false);
  for (uint32_t k = 0; k <= t; ++k) {
    if (!R(t, k).IsConstant(0)) evaluable.push_back(k), may_evaluate[k] = true;
  }
  // frees[k]: (node, F column) of the results that may be freed right after k.
  std::vector<std::vector<std::pair<uint32_t, Binary>>> frees(t + 1);
  std::vector<uint32_t> readers;
  std::vector<Binary> memo;
  for (uint32_t i = 0; i <= t; ++i) {
    // A result kept into the next stage, or of zero bytes, is never freed here.
    if (S(t + 1, i).IsConstant(1) || sizes.bytes[i] == 0) continue;
    readers.clear();
    for (uint32_t j : readers_[i]) {
      if (j <= t && may_evaluate[j]) readers.push_back(j);
    }
    memo.assign(readers.size(), Binary{});
    // The free points: i itself (if evaluated here) and each reader; only
    // t's, if t reads i, since t is always evaluated after the others.
    std::vector<std::pair<uint32_t, size_t>> points;  // (node, first later reader)
    if (!readers.empty() && readers.back() == t) {
      points.push_back({t, readers.size()});
    } else {
      if (may_evaluate[i]) points.push_back({i, 0});
      for (size_t a = 0; a < readers.size(); ++a) points.push_back({readers[a], a + 1});
    }
    for (auto [k, later] : points) {
      const Binary f{AddColumn(0, 1, 0)};
      AddRow({{1, f}, {-1, R(t, k)}}, -kInf, 0);
      AddRow({{1, f}, {1, S(t + 1, i)}}, -kInf, 1);
      if (later < readers.size()) AddRow({{1, f}, {1, Hazard(t, readers, later, memo)}}, -kInf, 1);
      frees[k].push_back({i, f});
    }
  }
  // U along the stage: the resident results plus each evaluated node, less
  // what the previous evaluation freed; within the budget with workspace.
  const auto budget = static_cast<double>(sizes.budget);
  std::optional<uint32_t> previous;
  for (uint32_t k : evaluable) {
    const Binary u{AddColumn(0, budget, 0)};
    std::vector<Term> terms{{1, u}, {-static_cast<double>(sizes.bytes[k]), R(t, k)}};
    if (previous) {
      terms.push_back({-1, Binary{memory.back().column}});
      for (auto [i, f] : frees[*previous]) terms.push_back({static_cast<double>(sizes.bytes[i]), f});
    } else {
      for (uint32_t i = 0; i < t; ++i) {
        if (sizes.bytes[i] != 0) terms.push_back({-static_cast<double>(sizes.bytes[i]), S(t, i)});
      }
    }
    AddRow(terms, 0, 0);
    if (sizes.workspace[k] > 0) AddRow({{1, u}, {static_cast<double>(sizes.workspace[k]), R(t, k)}}, -kInf, budget);
    memory.push_back({t, k, *u.column});
    previous = k;
  }
}

}  // namespace memfit::remat::milp_internal
