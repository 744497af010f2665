// The Checkmate MILP as a pipeline:
//   1. check the options and the warm start; return kInfeasible at once when
//      some node cannot fit (its inputs and the pinned results resident);
//   2. build the model (milp_model.h) in size units;
//   3. turn the warm start into its Checkmate form (per stage: distinct
//      nodes in index order) and hand its R and S to CBC as a MIP start;
//   4. run CBC's standard driver (presolve, cuts, heuristics) to the deadline;
//   5. read the sequence from R, check it with Evaluate, and keep the warm
//      start instead if CBC found nothing cheaper.
#include "remat/milp.h"

#include <CbcModel.hpp>
#include <CbcSolver.hpp>
#include <CoinPackedMatrix.hpp>
#include <OsiClpSolverInterface.hpp>

#include <algorithm>
#include <chrono>
#include <optional>
#include <cmath>
#include <limits>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "remat/milp_model.h"
#include "util/child_process.h"
#include "util/enum_names.h"
#include "util/error.h"

namespace memfit::remat {
namespace {

using milp_internal::Binary;
using milp_internal::CheckmateModel;
using milp_internal::NodeFacts;
using milp_internal::SizeUnits;
using Status = MilpResult::Status;
using MipStart = std::vector<std::pair<std::string, double>>;

constexpr double kInf = std::numeric_limits<double>::infinity();

void CheckOptions(const Problem& problem, const MilpOptions& options) {
  if (options.budget_bytes < 0) Fail("problem '{}': budget_bytes must not be negative", problem.name);
  if (!(options.time_limit_seconds > 0)) Fail("problem '{}': time_limit_seconds must be positive", problem.name);
  if (options.threads < 1) Fail("problem '{}': threads must be at least 1", problem.name);
  if (options.max_size_units < 1) Fail("problem '{}': max_size_units must be at least 1", problem.name);
  if (options.warm_start.empty()) return;
  if (const Evaluation warm = Evaluate(problem, options.warm_start); !warm.valid) {
    Fail("problem '{}': the warm start is not a valid sequence: {}", problem.name, warm.problem);
  }
}

// Why no sequence fits, if it shows at one node: computing node k needs its
// inputs, itself, its workspace and every pinned result resident at once.
std::optional<std::string> ObviouslyInfeasible(const Problem& problem, int64_t budget_bytes) {
  if (problem.fixed_bytes > budget_bytes) {
    return fmt::format("fixed_bytes {} alone exceed the budget of {} bytes", problem.fixed_bytes, budget_bytes);
  }
  const auto n = static_cast<uint32_t>(problem.size());
  const NodeFacts facts = milp_internal::Analyze(problem);
  // pinned[k]: the bytes of the results pinned at stage k, by a sweep over
  // each result's pinned stages (last_eval, last reader or end].
  std::vector<int64_t> pinned(n + 1, 0);
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t end = problem.nodes[i].keep_to_end ? n - 1 : facts.max_reader[i];
    if (end > facts.last_eval[i]) {
      pinned[facts.last_eval[i] + 1] += problem.nodes[i].bytes;
      pinned[end + 1] -= problem.nodes[i].bytes;
    }
  }
  int64_t pinned_bytes = 0;
  for (uint32_t k = 0; k < n; ++k) {
    pinned_bytes += pinned[k];
    const Node& node = problem.nodes[k];
    int64_t need = problem.fixed_bytes + pinned_bytes + node.bytes + node.workspace_bytes;
    for (uint32_t i : node.inputs) {
      if (!facts.Pinned(problem, i, k)) need += problem.nodes[i].bytes;
    }
    if (need > budget_bytes) {
      return fmt::format("node {} '{}' needs {} bytes with its inputs, workspace and the results that cannot be "
                         "recomputed, over the budget of {} bytes",
                         k, node.name, need, budget_bytes);
    }
  }
  return std::nullopt;
}

// The Checkmate form of a valid sequence: stage t evaluates, in index order,
// the distinct nodes the sequence evaluates after the first evaluation of
// t-1 and up to that of t (evaluations after the last one join the last
// stage), less the recomputations the model has no column for (useless
// ones: nothing can read them, or the result is free to keep).
std::vector<std::vector<bool>> CheckmateForm(const CheckmateModel& model, std::span<const uint32_t> sequence) {
  const size_t n = model.n();
  std::vector<std::vector<bool>> r(n, std::vector<bool>(n, false));
  size_t next_new = 0;  // the node whose first evaluation ends the current stage
  for (uint32_t v : sequence) {
    const size_t stage = std::min(next_new, n - 1);
    if (v == next_new) ++next_new;
    if (v == stage || model.R(stage, v).column) r[stage][v] = true;
  }
  return r;
}

std::vector<uint32_t> ToSequence(const std::vector<std::vector<bool>>& r) {
  std::vector<uint32_t> sequence;
  for (size_t t = 0; t < r.size(); ++t) {
    for (uint32_t i = 0; i <= t; ++i) {
      if (r[t][i]) sequence.push_back(i);
    }
  }
  return sequence;
}

// R and S of a Checkmate-form sequence for CBC, S being the residency the
// sequence implies: the result of i is resident at the start of stage t if
// stage t does not evaluate i again and reads it, or it is resident at the
// start of stage t+1 (at the end, if kept to the end).
MipStart ToMipStart(const Problem& problem, const CheckmateModel& model, const std::vector<std::vector<bool>>& r) {
  const size_t n = model.n();
  MipStart start;
  std::vector<bool> next(n), current(n), read(n);
  for (size_t i = 0; i < n; ++i) next[i] = problem.nodes[i].keep_to_end;
  for (size_t t = n; t-- > 0;) {
    std::fill(read.begin(), read.end(), false);
    for (size_t j = 0; j <= t; ++j) {
      if (!r[t][j]) continue;
      for (uint32_t i : problem.nodes[j].inputs) read[i] = true;
    }
    for (size_t i = 0; i < n; ++i) current[i] = i < t && !r[t][i] && (read[i] || next[i]);
    for (size_t i = 0; i <= t; ++i) {
      if (const Binary b = model.R(t, i); b.column) start.emplace_back(model.names[*b.column], r[t][i] ? 1 : 0);
      if (const Binary b = model.S(t, i); b.column) start.emplace_back(model.names[*b.column], current[i] ? 1 : 0);
    }
    next.swap(current);
  }
  return start;
}

struct CbcOutcome {
  bool optimal = false, infeasible = false;
  std::vector<double> solution;  // empty if none
  double bound = -kInf;          // without the model's objective constant
  int crashes = 0;               // child processes CBC crashed in (RunCbc)
  bool killed = false;           // stopped for running past its time limit (RunCbc)
};

// CBC's stand-alone driver (CbcMain0/CbcMain1) with its default strategy,
// or without its preprocessing.
CbcOutcome SolveHere(const CheckmateModel& model, const MilpOptions& options, double seconds, const MipStart& start,
                     bool preprocess) {
  CoinPackedMatrix matrix(false, model.row_of.data(), model.column_of.data(), model.value.data(),
                          static_cast<CoinBigIndex>(model.value.size()));
  // Trailing empty rows and columns are not in the triplets.
  matrix.setDimensions(static_cast<int>(model.row_lower.size()), static_cast<int>(model.col_lower.size()));
  OsiClpSolverInterface solver;
  solver.messageHandler()->setLogLevel(options.log ? 1 : 0);
  solver.loadProblem(matrix, model.col_lower.data(), model.col_upper.data(), model.objective.data(),
                     model.row_lower.data(), model.row_upper.data());
  solver.setInteger(model.integer_columns.data(), static_cast<int>(model.integer_columns.size()));
  for (int c : model.integer_columns) solver.setColName(c, model.names[c]);

  CbcModel cbc(solver);
  CbcSolverUsefulData data;
  CbcMain0(cbc, data);
  if (!start.empty()) cbc.setMIPStart(start);
  const std::string log = options.log ? "1" : "0", sec = fmt::format("{}", seconds);
  const std::string threads = fmt::format("{}", options.threads);
  const std::string nodes = options.max_nodes ? fmt::format("{}", *options.max_nodes) : "";
  // The objective leaves out the cost every sequence has (each node once).
  const std::string cutoff =
      options.cutoff_us ? fmt::format("{}", *options.cutoff_us - model.objective_constant) : "";
  std::vector<const char*> args{"memfit", "-log", log.c_str(), "-sec", sec.c_str(), "-timeMode", "elapsed"};
  if (options.max_nodes) args.insert(args.end(), {"-maxNodes", nodes.c_str()});
  if (options.cutoff_us) args.insert(args.end(), {"-cutoff", cutoff.c_str()});
  if (options.threads > 1) args.insert(args.end(), {"-threads", threads.c_str()});
  if (!preprocess) args.insert(args.end(), {"-preprocess", "off"});
  args.insert(args.end(), {"-solve", "-quit"});
  CbcMain1(static_cast<int>(args.size()), args.data(), cbc, [](CbcModel*, int) { return 0; }, data);

  CbcOutcome out;
  out.infeasible = cbc.isProvenInfeasible();
  if (const double* best = cbc.bestSolution(); best && !out.infeasible) {
    out.solution.assign(best, best + model.col_lower.size());
    out.optimal = cbc.isProvenOptimal();
  }
  out.bound = cbc.getBestPossibleObjValue();
  return out;
}

// CBC reads its time limit between branch-and-bound nodes; its preprocessing
// and root cuts do not look at the clock (Checkmate's random n100 graph at
// 0.5 of its peak: 7.2 s given, 10.3 s taken). A solve still running this
// long past its limit (kKillGraceShare of the limit, at least
// kKillGraceSeconds) is killed, and has no solution.
constexpr double kKillGraceShare = 0.05;
constexpr double kKillGraceSeconds = 0.2;

// A CbcOutcome as doubles, for the pipe from the child process, and back.
std::vector<double> ToDoubles(const CbcOutcome& out) {
  std::vector<double> values{double(out.optimal), double(out.infeasible), out.bound};
  values.insert(values.end(), out.solution.begin(), out.solution.end());
  return values;
}
CbcOutcome FromDoubles(const std::vector<double>& values) {
  CbcOutcome out;
  out.optimal = values.at(0) != 0;
  out.infeasible = values.at(1) != 0;
  out.bound = values.at(2);
  out.solution.assign(values.begin() + 3, values.end());
  return out;
}

// CBC can crash: Checkmate's vgg_unet at 0.4 of its peak segfaults in Clp's
// presolve under CglPreProcess::postProcess. So every solve runs in a child
// process; after a crash it runs once more without CBC's preprocessing, and
// a second crash is no solution. The driver keeps global state, hence the
// lock.
CbcOutcome RunCbc(const CheckmateModel& model, const MilpOptions& options, double seconds, const MipStart& start) {
  static std::mutex cbc_mutex;
  const std::lock_guard lock(cbc_mutex);
  const auto begin = std::chrono::steady_clock::now();
  int crashes = 0;
  for (const bool preprocess : {true, false}) {
    const double spent = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    const double left = std::max(1e-3, seconds - spent);
    const double grace = std::max(kKillGraceSeconds, kKillGraceShare * left);
    const ChildResult child =
        RunInChild([&] { return ToDoubles(SolveHere(model, options, left, start, preprocess)); }, left + grace);
    if (child.end == ChildEnd::kDone && child.values.size() >= 3) {
      CbcOutcome out = FromDoubles(child.values);
      out.crashes = crashes;
      return out;
    }
    if (child.end == ChildEnd::kKilled) {
      CbcOutcome none;
      none.crashes = crashes;
      none.killed = true;
      none.bound = 0;  // no cost is negative
      return none;
    }
    ++crashes;
  }
  CbcOutcome none;
  none.crashes = crashes;
  return none;
}

bool Value(const Binary& b, const std::vector<double>& solution) {
  return b.column ? solution[*b.column] > 0.5 : b.constant == 1;
}

// The sequence of a CBC solution; a recomputation of a result the solution
// holds resident anyway is dropped (CBC keeps such redundancies only when
// they cost nothing, and the MILP counted both copies).
std::vector<uint32_t> Extract(const CheckmateModel& model, const std::vector<double>& solution) {
  const size_t n = model.n();
  std::vector<std::vector<bool>> r(n, std::vector<bool>(n, false));
  for (size_t t = 0; t < n; ++t) {
    for (size_t i = 0; i <= t; ++i) {
      r[t][i] = Value(model.R(t, i), solution) && !(i < t && Value(model.S(t, i), solution));
    }
  }
  return ToSequence(r);
}

// The MILP's peak for a solution: its U plus workspace where R is 1.
int64_t MilpPeakBytes(const Problem& problem, const CheckmateModel& model, const SizeUnits& sizes,
                      const std::vector<double>& solution) {
  int64_t peak_units = 0;
  for (const auto& m : model.memory) {
    if (!Value(model.R(m.stage, m.node), solution)) continue;
    const auto u = static_cast<int64_t>(std::llround(solution[m.column]));
    peak_units = std::max(peak_units, u + sizes.workspace[m.node]);
  }
  return problem.fixed_bytes + peak_units * sizes.unit_bytes;
}

}  // namespace

constexpr EnumName<Status> kStatusNames[] = {
    {Status::kOptimal, "optimal"}, {Status::kFeasible, "feasible"}, {Status::kInfeasible, "infeasible"},
    {Status::kNoSolution, "no solution"}};

std::string_view ToString(Status status) { return NameOf(kStatusNames, status); }

MilpResult SolveCheckmateMilp(const Problem& problem, const MilpOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(); };
  Validate(problem);
  CheckOptions(problem, options);
  MilpResult result;
  auto finish = [&](std::vector<uint32_t> sequence, Status status) {
    const Evaluation ev = Evaluate(problem, sequence);
    if (!ev.valid || ev.peak_bytes > options.budget_bytes) {
      throw std::logic_error(fmt::format("Checkmate MILP for '{}': the sequence fails its check ({}, peak {} of {})",
                                         problem.name, ev.problem, ev.peak_bytes, options.budget_bytes));
    }
    result.status = status;
    result.sequence = std::move(sequence);
    result.cost_us = ev.total_us();
    result.peak_bytes = ev.peak_bytes;
  };

  // 1. The obvious cases.
  if (auto why = ObviouslyInfeasible(problem, options.budget_bytes)) {
    result.status = Status::kInfeasible;
    result.lower_bound_us = kInf;
    result.detail = *why;
    result.seconds = elapsed();
    return result;
  }
  if (problem.size() == 0) {
    finish({}, Status::kOptimal);
    result.seconds = elapsed();
    return result;
  }

  // 2. The model.
  const SizeUnits sizes = milp_internal::ToSizeUnits(problem, options.budget_bytes, options.max_size_units,
                                                     options.lower_bound_only);
  const CheckmateModel model(problem, sizes);
  result.size_unit_bytes = sizes.unit_bytes;
  result.variables = model.col_lower.size();
  result.constraints = model.row_lower.size();
  if (options.lower_bound_only) {
    const CbcOutcome cbc = RunCbc(model, options, std::clamp(options.time_limit_seconds - elapsed(), 1e-3, 1e9), {});
    result.lower_bound_us = cbc.infeasible ? kInf : model.objective_constant + cbc.bound;
    result.status = cbc.infeasible         ? Status::kInfeasible
                    : cbc.optimal          ? Status::kOptimal
                    : cbc.solution.empty() ? Status::kNoSolution
                                           : Status::kFeasible;
    result.detail = fmt::format("the relaxed model's bound (sizes rounded down to multiples of {} bytes)",
                                sizes.unit_bytes);
    result.seconds = elapsed();
    return result;
  }

  // 3. The warm start: its Checkmate form when that fits (it is then at
  // least as cheap), else the sequence as given, else none.
  std::optional<std::vector<uint32_t>> fallback;
  MipStart start;
  if (!options.warm_start.empty()) {
    const auto r = CheckmateForm(model, options.warm_start);
    std::vector<uint32_t> form = ToSequence(r);
    if (Evaluate(problem, form).peak_bytes <= options.budget_bytes) {
      start = ToMipStart(problem, model, r);
      fallback = std::move(form);
    } else if (Evaluate(problem, options.warm_start).peak_bytes <= options.budget_bytes) {
      fallback = options.warm_start;
    }
  }

  // 4. CBC.
  // CBC reads the limit as text: an infinite one becomes a billion seconds.
  const double seconds = std::clamp(options.time_limit_seconds - elapsed(), 1e-3, 1e9);
  const CbcOutcome cbc = RunCbc(model, options, seconds, start);
  result.lower_bound_us =
      cbc.infeasible ? options.cutoff_us.value_or(kInf) : model.objective_constant + cbc.bound;

  // 5. The sequence.
  const std::string rounded =
      sizes.exact ? "" : fmt::format(" (sizes rounded up to multiples of {} bytes)", sizes.unit_bytes);
  if (!cbc.solution.empty()) {
    finish(Extract(model, cbc.solution), cbc.optimal ? Status::kOptimal : Status::kFeasible);
    result.milp_peak_bytes = MilpPeakBytes(problem, model, sizes, cbc.solution);
    result.detail = fmt::format("CBC's {} solution{}", ToString(result.status), rounded);
  }
  if (fallback) {
    const double warm_us = Evaluate(problem, *fallback).total_us();
    if (result.sequence.empty() || warm_us < result.cost_us - 1e-9 * std::max(1.0, std::abs(warm_us))) {
      finish(*fallback, Status::kFeasible);
      result.milp_peak_bytes.reset();
      result.lower_bound_us = std::min(result.lower_bound_us, result.cost_us);
      result.detail = "the warm start: CBC found nothing cheaper";
    }
  }
  if (result.sequence.empty()) {
    // With rounded sizes, infeasibility is the rounded model's, not the
    // problem's; with a cutoff, it says only that nothing beats the cutoff.
    result.status = cbc.infeasible && sizes.exact && !options.cutoff_us ? Status::kInfeasible : Status::kNoSolution;
    result.detail = cbc.infeasible && options.cutoff_us
                        ? fmt::format("CBC proved nothing cheaper than the cutoff of {:.0f} us", *options.cutoff_us)
                    : cbc.infeasible  ? "CBC proved the model infeasible" + rounded
                    : cbc.killed      ? fmt::format("CBC ran past its time limit of {:.3g} s and was stopped", seconds)
                    : cbc.crashes > 0 ? "CBC crashed, with and without its preprocessing"
                    : options.max_nodes
                        ? fmt::format("CBC found no solution within {} branch-and-bound nodes", *options.max_nodes)
                        : fmt::format("CBC found no solution within {:.3g} s", seconds);
  }
  result.seconds = elapsed();
  return result;
}

}  // namespace memfit::remat
