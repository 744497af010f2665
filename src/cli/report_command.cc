// memfit report GRAPH.json|PLAN.json [--device NAME] [--costs COSTS.json]
//     [--compare OTHER.json] [--measured MEASURED.json] [--trace OPTIMIZE.json] [--mem-limit-ratio R]
//     [--time-budget S] [--deterministic] [--quiet] -o REPORT.html
//
// One self-contained HTML page of a plan (docs/report.md): memory over time
// stacked by role against program order, the arena's storage instances, the
// compute and copy streams, the decisions and the optimizer's search, and a
// summary table. A PLAN.json is drawn as it is; a graph runs in program
// order, or, with --mem-limit-ratio, is optimized first (its search trace
// then comes along). --trace reads what `memfit optimize --json --verbose`
// printed for the plan (limit, method, solve time, the search).
#include <fmt/format.h>

#include <memory>
#include <optional>

#include "analysis/stats.h"
#include "cli/command.h"
#include "io/graph_json.h"
#include "optimize/fission_search.h"
#include "optimize/optimizer.h"
#include "plan/placement.h"
#include "plan/plan_json.h"
#include "plan/steps.h"
#include "report/html_page.h"
#include "report/report_data.h"
#include "report/solve_info.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "util/deadline.h"
#include "util/error.h"
#include "util/file.h"
#include "util/progress.h"

namespace memfit::cli {
namespace {

struct ReportArgs {
  std::string input;
  std::string device;
  std::string costs_path;
  std::string compare;
  std::string measured;
  std::string trace;
  std::optional<double> mem_limit_ratio;
  double time_budget = 10;
  bool deterministic = false;
  bool quiet = false;
  std::string output;
};

// A plan file as it is, or a graph in program order (placed here).
report::ReportPlan LoadPlan(const std::string& path, const sim::DeviceProfile& device, const sim::CostTable* costs) {
  const std::string text = ReadFile(path);
  report::ReportPlan plan;
  plan.label = path;
  if (LooksLikePlan(text)) {
    plan.plan = PlanFromJson(text, path);
    return plan;
  }
  plan.plan.graph = GraphFromJson(text, path);
  if (plan.plan.graph.num_ops() == 0) Fail("{}: the graph has no ops: there is nothing to draw", path);
  plan.plan.steps = ProgramOrderSteps(plan.plan.graph);
  const sim::Simulator simulator(plan.plan.graph, device, costs);
  PlacementOptions options;
  options.simulator = &simulator;
  options.deterministic = true;  // the same page on any machine
  plan.plan.placement = PlaceSteps(plan.plan.graph, plan.plan.steps, options);
  plan.solve.method = "program order";
  return plan;
}

int RunReport(const ReportArgs& args) {
  const SteadyClock::time_point start = SteadyClock::now();
  if (args.output.empty()) Fail("-o REPORT.html is required");
  if (args.mem_limit_ratio && !(*args.mem_limit_ratio > 0 && *args.mem_limit_ratio <= 1)) {
    Fail("--mem-limit-ratio must be in (0, 1] (got {})", *args.mem_limit_ratio);
  }
  if (!(args.time_budget > 0 && args.time_budget <= 86400)) Fail("--time-budget must be in (0, 86400] seconds");
  if (args.mem_limit_ratio && !args.trace.empty()) {
    Fail("--mem-limit-ratio optimizes here and records its own trace; drop --trace");
  }
  std::optional<sim::CostTable> costs;
  if (!args.costs_path.empty()) costs = sim::CostTable::Load(args.costs_path);
  const sim::CostTable* table = costs ? &*costs : nullptr;

  // The device: --device, else the one a plan was simulated on, else a100.
  const std::string text = ReadFile(args.input);
  const bool is_plan = LooksLikePlan(text);
  std::string device_name = args.device;
  std::optional<Plan> plan_file;
  if (is_plan) {
    plan_file = PlanFromJson(text, args.input);
    if (device_name.empty() && plan_file->simulated) device_name = plan_file->simulated->device;
  }
  if (device_name.empty()) device_name = "a100";
  const sim::DeviceProfile device = sim::ResolveDevice(device_name);

  report::ReportPlan plan;
  plan.label = args.input;
  {
    if (is_plan) {
      if (args.mem_limit_ratio) Fail("--mem-limit-ratio optimizes a graph; {} is already a plan", args.input);
      plan.plan = std::move(*plan_file);
      plan.solve = report::SolveInfoFromPlanJson(text, args.input);  // the search's decisions, when it kept them
    } else if (args.mem_limit_ratio) {
      const Graph graph = GraphFromJson(text, args.input);
      OptimizeOptions options;
      options.mem_limit_ratio = args.mem_limit_ratio;
      options.time_budget_seconds = OptimizeOptions::SearchSeconds(args.time_budget);
      options.budget_start = start;  // the budget covers the whole command, as optimize's does
      if (args.deterministic) options.work_budget = options.DefaultWorkBudget();
      std::vector<report::TraceEvent> trace;
      ProgressLine progress(StderrIsTerminal() && !args.quiet);
      options.on_event = [&trace, &progress](const SearchEvent& e) {
        trace.push_back(report::ToTraceEvent(e));
        progress.Update(fmt::format("optimize: {:.1f} s, {} steps of the search; {} {}", e.seconds, trace.size(),
                                    ToString(e.stage), e.outcome));
      };
      const OptimizeResult result = OptimizeWithFission(graph, device, table, options);
      progress.Finish();
      plan.plan = result.plan;
      plan.solve.limit_bytes = result.limit_bytes;
      plan.solve.method = result.method;
      plan.solve.scheduler = result.scheduler;
      plan.solve.seconds = result.seconds;
      plan.solve.trace = std::move(trace);
    } else {
      plan = LoadPlan(args.input, device, table);
    }
  }
  if (!args.trace.empty()) plan.solve = report::SolveInfoFromJson(ReadFile(args.trace), args.trace);

  std::optional<report::ReportPlan> compare;
  report::ReportOptions options;
  options.device = device;
  options.costs = table;
  if (!args.compare.empty()) {
    compare = LoadPlan(args.compare, device, table);
    options.compare = &*compare;
  }
  std::optional<report::MeasuredSeries> measured;
  if (!args.measured.empty()) {
    measured = report::MeasuredFromJson(ReadFile(args.measured), args.measured);
    options.measured = &*measured;
    options.measured_source = args.measured;
  }
  const std::string page = report::HtmlPage(report::ReportData(plan, options));
  WriteFileAtomically(args.output, page);
  fmt::print("wrote {} ({}): {} steps, {} storage instances, on {}\n", args.output, FormatBytes(static_cast<int64_t>(page.size())),
             plan.plan.steps.steps.size(), plan.plan.placement.buffers.size(), device.name);
  return 0;
}

const Registrar kReport = Subcommand<ReportArgs>(
    "report", "Draw a plan as one self-contained HTML page (memory over time, the arena, the streams, the decisions)",
    RunReport, [](CLI::App& cmd, ReportArgs& args) {
      cmd.add_option("input", args.input, "PLAN.json (memfit optimize/plan) or graph JSON (program order)")->required();
      cmd.add_option("-o,--output", args.output, "write the HTML page here");
      cmd.add_option("--device", args.device,
                     fmt::format("{}, or a device .json (default: the plan's, else a100)", sim::BuiltinDeviceNames()));
      AddCostsOption(cmd, args.costs_path);
      cmd.add_option("--compare", args.compare, "a second PLAN.json (or graph) drawn against the first");
      cmd.add_option("--measured", args.measured,
                     "a real run's memory after each plan step (python3 -m memfit.report PLAN --html writes it), "
                     "drawn over the simulated curve at each step's start");
      cmd.add_option("--trace", args.trace,
                     "what `memfit optimize --json --verbose` printed for the plan: limit, method, solve time, search");
      cmd.add_option("--mem-limit-ratio", args.mem_limit_ratio,
                     "optimize the graph under this fraction of its unoptimized peak first, as `memfit optimize` "
                     "does (records the search)");
      cmd.add_option("--time-budget", args.time_budget,
                     "with --mem-limit-ratio: seconds for the whole command (default 10)");
      AddQuietFlag(cmd, args.quiet);
      cmd.add_flag("--deterministic", args.deterministic,
                   "with --mem-limit-ratio: bound the search by work, not time (the same page on any machine)");
    });

}  // namespace
}  // namespace memfit::cli
