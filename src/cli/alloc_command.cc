// `memfit alloc FILE.csv`: plans offsets for a MiniMalloc CSV problem. While
// the planner runs (from half a second on), a progress line on stderr names
// it, the buffers and the seconds spent, when stderr is a terminal (not with
// --quiet).
//
// Exit status: 0 when solved, 1 when infeasible / timed out / not found
// (a planning outcome, not a user error), 2 on user errors.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "alloc/csv.h"
#include "alloc/planner.h"
#include "check/plan_and_check.h"
#include "cli/command.h"
#include "util/error.h"
#include "util/file.h"
#include "util/progress.h"

namespace memfit::cli {
namespace {

struct AllocArgs {
  std::string path;
  std::string planner = "auto";
  std::optional<int64_t> capacity_bytes;
  bool minimize = false;
  double time_limit_seconds = 10.0;
  std::optional<int64_t> max_nodes;
  bool deterministic = false;
  int64_t alignment_bytes = 1;
  std::string output_path;
  bool json = false;
  bool quiet = false;
};

int RunAlloc(const AllocArgs& args) {
  alloc::PlanOptions options;
  const std::optional<alloc::PlannerKind> kind = alloc::ParsePlannerKind(args.planner);
  if (!kind) {
    Fail("--planner: unknown planner '{}' (naive, greedy-size, greedy-breadth, best-fit, exact, auto)",
         args.planner);
  }
  if (args.alignment_bytes < 1) Fail("--alignment: must be >= 1, got {}", args.alignment_bytes);
  // NaN compares false: `!(x > 0)` rejects it too. Huge values (inf) mean
  // no deadline (util/deadline.h).
  if (!(args.time_limit_seconds > 0)) {
    Fail("--time-limit: must be a number of seconds > 0, got {}", args.time_limit_seconds);
  }
  if (args.max_nodes && *args.max_nodes < 0) Fail("--max-nodes: must be >= 0, got {}", *args.max_nodes);
  if (args.capacity_bytes && *args.capacity_bytes < 0) {
    Fail("--capacity: must be >= 0, got {}", *args.capacity_bytes);
  }
  options.planner = *kind;
  options.alignment_bytes = args.alignment_bytes;
  options.time_limit_seconds = args.time_limit_seconds;
  options.exact.max_nodes = args.max_nodes;
  options.deterministic = args.deterministic;
  alloc::Problem problem = alloc::ReadProblemCsv(args.path);
  // The capacity is never guessed from the file name: without --capacity the
  // height is minimized.
  problem.capacity_bytes = args.capacity_bytes;
  options.objective =
      args.capacity_bytes ? alloc::Objective::kFitCapacity : alloc::Objective::kMinimizeHeight;

  ProgressLine progress(StderrIsTerminal() && !args.quiet);
  const alloc::PlanResult result = [&] {
    const size_t buffers = problem.buffers.size();
    const std::string limit = args.deterministic ? "no time limit (node budget)"
                                                 : fmt::format("time limit {} s", args.time_limit_seconds);
    ProgressTicker ticker(progress, [&, buffers](double seconds) {
      return fmt::format("alloc: {} planner on {} buffers, {:.1f} s ({})", args.planner, buffers, seconds, limit);
    });
    return check::PlanAndCheck(problem, options);
  }();
  const bool solved = result.status == alloc::PlanStatus::kSolved;
  if (solved && !args.output_path.empty()) {
    WriteFileAtomically(args.output_path, alloc::FormatSolutionCsv(problem, *result.solution));
  }

  std::ostream& report = args.output_path == "-" ? std::cerr : std::cout;
  if (args.json) {
    nlohmann::json j;
    j["file"] = args.path;
    j["status"] = std::string(alloc::ToString(result.status));
    j["objective"] = std::string(alloc::ToString(options.objective));
    j["buffers"] = problem.buffers.size();
    j["capacity"] = args.capacity_bytes ? nlohmann::json(*args.capacity_bytes) : nlohmann::json();
    j["height"] = result.solution ? nlohmann::json(result.solution->height_bytes) : nlohmann::json();
    j["lower_bound"] = result.lower_bound_bytes;
    j["planner"] = result.planner;
    if (!args.deterministic) j["seconds"] = result.seconds;  // The rest is machine-independent.
    j["proven_optimal"] = result.proven_optimal;
    j["search_nodes"] = result.search_nodes;
    report << j.dump() << "\n";
  } else {
    report << fmt::format("status: {}\n", alloc::ToString(result.status));
    report << fmt::format("buffers: {}\n", problem.buffers.size());
    if (args.capacity_bytes) report << fmt::format("capacity: {}\n", *args.capacity_bytes);
    if (result.solution) report << fmt::format("height: {}\n", result.solution->height_bytes);
    report << fmt::format("lower_bound: {}\n", result.lower_bound_bytes);
    report << fmt::format("planner: {}\n", result.planner);
    if (!args.deterministic) report << fmt::format("seconds: {:.3f}\n", result.seconds);
    report << fmt::format("proven_optimal: {}\n", result.proven_optimal);
  }
  report.flush();
  return solved ? 0 : 1;
}

const Registrar kAlloc = Subcommand<AllocArgs>(
    "alloc", "Plan static offsets for a MiniMalloc CSV (id,lower,upper,size[,offset])", RunAlloc,
    [](CLI::App& cmd, AllocArgs& args) {
      cmd.add_option("file", args.path, "Problem CSV (or .csv.gz): id,lower,upper,size[,offset][,alignment]")
          ->required();
      cmd.add_option("--planner", args.planner, "naive|greedy-size|greedy-breadth|best-fit|exact|auto")
          ->capture_default_str();
      auto* capacity = cmd.add_option("--capacity", args.capacity_bytes, "Fit within this many bytes (feasibility)");
      auto* minimize =
          cmd.add_flag("--minimize", args.minimize, "Minimize the height (the default without --capacity)");
      capacity->excludes(minimize);
      cmd.add_option("--time-limit", args.time_limit_seconds, "Search budget in seconds (inf: none)")
          ->capture_default_str();
      cmd.add_option("--max-nodes", args.max_nodes,
                     "Stop the exact search after this many nodes (all probes together)");
      cmd.add_flag("--deterministic", args.deterministic,
                   "No wall clock: ignore --time-limit, stop at the node budget (--max-nodes, "
                   "default 1000000); output identical on any machine, no 'seconds' reported");
      cmd.add_option("--alignment", args.alignment_bytes, "Offset alignment in bytes")->capture_default_str();
      cmd.add_option("-o,--output", args.output_path, "Write the solution CSV here ('-': stdout)");
      cmd.add_flag("--json", args.json, "Print the report as one JSON object");
      cmd.add_flag("-q,--quiet", args.quiet, "No progress line on stderr (shown only when it is a terminal)");
    });

}  // namespace
}  // namespace memfit::cli
