// memfit optimize GRAPH.json (--mem-limit BYTES | --mem-limit-ratio R | --lat-limit-ratio R)
//     [--device NAME] [--costs COSTS.json] [--time-budget S] [--method NAME]
//     [--no-swap] [--no-recompute] [--no-reorder] [--no-rng-replay]
//     [-o PLAN.json] [--csv RESULTS.csv] [--pareto] [--json] [--report REPORT.html] [--quiet]
//
// Fits a training step under a memory limit (optimize/optimizer.h): the
// fastest plan found whose simulated peak and arena stay within the limit,
// written as PLAN.json (docs/plan-format.md). An unreachable limit is an
// error naming the smallest memory memfit reaches. --pareto sweeps the
// memory limit ratios 0.3..0.9 and prints the memory/latency front.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "analysis/stats.h"
#include "cli/command.h"
#include "io/graph_json.h"
#include "optimize/fission_search.h"
#include "optimize/latency_bound.h"
#include "optimize/magis_csv.h"
#include "optimize/optimizer.h"
#include "plan/plan_json.h"
#include "plan/steps.h"
#include "report/html_page.h"
#include "report/pareto_data.h"
#include "report/report_data.h"
#include "sim/cost_model.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "transform/fission.h"
#include "transform/out_of_place.h"
#include "util/byte_count.h"
#include "util/deadline.h"
#include "util/error.h"
#include "util/file.h"
#include "util/progress.h"

namespace memfit::cli {
namespace {

struct OptimizeArgs {
  std::string graph_path;
  std::string mem_limit;
  std::optional<double> mem_limit_ratio;
  std::optional<double> lat_limit_ratio;
  bool no_fission = false;
  std::string device = "a100";
  std::string costs_path;
  double time_budget = 10;
  bool deterministic = false;
  std::optional<int64_t> work_budget;
  std::string method = "auto";
  bool no_swap = false, no_recompute = false, no_reorder = false, no_rng_replay = false;
  std::string output;
  std::string csv;
  bool pareto = false;
  bool json = false;
  bool verbose = false;
  std::string report;  // --report: an HTML page of the plan (or of the --pareto sweep)
  bool quiet = false;
};

OptimizeOptions ToOptions(const OptimizeArgs& args) {
  OptimizeOptions o;
  if (!args.mem_limit.empty()) o.mem_limit_bytes = ParseByteCount(args.mem_limit, "--mem-limit");
  o.mem_limit_ratio = args.mem_limit_ratio;
  o.lat_limit_ratio = args.lat_limit_ratio;
  const auto method = ParseRematMethod(args.method);
  if (!method) Fail("--method: unknown method '{}' (auto, heuristic, milp, checkpoint-blocks, sqrt-n)", args.method);
  o.method = *method;
  o.allow_swap = !args.no_swap;
  o.allow_recompute = !args.no_recompute;
  o.reorder = !args.no_reorder;
  o.recompute_random = !args.no_rng_replay;
  if (!(args.time_budget > 0 && args.time_budget <= 86400)) Fail("--time-budget must be in (0, 86400] seconds");
  o.time_budget_seconds = OptimizeOptions::SearchSeconds(args.time_budget);
  if (args.work_budget && *args.work_budget < 1) Fail("--work-budget must be at least 1 (got {})", *args.work_budget);
  if (args.deterministic || args.work_budget) {
    o.work_budget = args.work_budget.value_or(o.DefaultWorkBudget());
  }
  return o;
}

// Under a latency limit: the least memory any plan of the graph as given
// needs within it (optimize/latency_bound.h).
std::optional<LatencyBound> BoundOf(const OptimizeResult& r, const Graph& graph, const sim::DeviceProfile& device,
                                    const sim::CostTable* costs) {
  if (r.latency_limit_us <= 0) return std::nullopt;
  return MemoryBoundAtLatency(sim::Simulator(graph, device, costs), r.latency_limit_us);
}

// Whether the plan's arena fits the device's memory (a profile without a
// capacity: always).
bool FitsDevice(const OptimizeResult& r, const sim::DeviceProfile& device) {
  return device.memory_bytes <= 0 || r.plan.placement.arena_bytes <= device.memory_bytes;
}

void PrintResult(const OptimizeResult& r, const Graph& graph, const sim::DeviceProfile& device,
                 const std::optional<LatencyBound>& bound) {
  // Shares of the unoptimized peak (0 for a graph that holds nothing, not NaN).
  const auto of_peak = [&](int64_t bytes) {
    return r.original.peak_bytes > 0 ? double(bytes) / r.original.peak_bytes : 0.0;
  };
  fmt::print("graph:      {} ({} ops) on {}\n", graph.name, graph.num_ops(), device.name);
  fmt::print("original:   latency {:.3f} ms, peak {} ({} bytes)\n", r.original.latency_us * 1e-3,
             FormatBytes(r.original.peak_bytes), r.original.peak_bytes);
  if (r.latency_limit_us > 0) {
    fmt::print("limit:      latency {:.3f} ms\n", r.latency_limit_us * 1e-3);
  } else {
    fmt::print("limit:      {} ({} bytes, {:.3f} of the peak)\n", FormatBytes(r.limit_bytes), r.limit_bytes,
               of_peak(r.limit_bytes));
  }
  fmt::print("optimized:  latency {:.3f} ms (overhead {}), peak {} ({} bytes, {:.3f} of the peak)\n",
             r.optimized.latency_us * 1e-3, FormatChange(r.overhead()), FormatBytes(r.optimized.peak_bytes),
             r.optimized.peak_bytes, of_peak(r.optimized.peak_bytes));
  fmt::print("arena:      {} bytes (lower bound {}{}{})\n", r.plan.placement.arena_bytes,
             r.plan.placement.lower_bound_bytes, r.plan.placement.proven_optimal ? ", proven optimal" : "",
             r.placements > 1 ? fmt::format("; {} plans placed: faster ones did not pack into the limit", r.placements)
                              : "");
  if (!FitsDevice(r, device)) {
    fmt::print("note:       the arena is more than {}'s {} of memory; --mem-limit {} asks for a plan that fits it\n",
               device.name, FormatBytes(device.memory_bytes), device.memory_bytes);
  }
  fmt::print("method:     {}{}; recompute {:.3f} ms, swapped {}\n", r.method,
             r.milp_proven_optimal ? " (MILP optimum)" : "", r.optimized.recompute_us * 1e-3,
             FormatBytes(r.optimized.swap_bytes));
  if (bound) {
    fmt::print(
        "bound:      no plan of the graph as given needs less than {} ({:.3f} of the peak) within the limit: "
        "{} cross op '{}', of which the host link takes at most {} before it and recomputing at most {} in {:.3f} ms\n",
        FormatBytes(bound->bytes), of_peak(bound->bytes), FormatBytes(bound->crossing_bytes),
        graph.op(bound->cut).name, FormatBytes(bound->swapped_bytes), FormatBytes(bound->freed_bytes),
        bound->recompute_us * 1e-3);
  }
  for (const std::string& f : RecordedRewrites(r.plan.graph)) fmt::print("rewrite:    {}\n", f);
  for (const std::string& f : RecordedFissions(r.plan.graph)) fmt::print("fission:    {}\n", f);
  fmt::print("steps:      {} ({} plans simulated in {:.2f} s)\n", r.plan.steps.steps.size(), r.candidates, r.seconds);
}

nlohmann::ordered_json ToJson(const OptimizeResult& r, const std::optional<LatencyBound>& bound) {
  nlohmann::ordered_json j;
  j["method"] = r.method;
  j["scheduler"] = r.scheduler;
  j["limit_bytes"] = r.limit_bytes;
  if (r.latency_limit_us > 0) j["latency_limit_ms"] = r.latency_limit_us * 1e-3;
  j["original"] = {{"latency_ms", r.original.latency_us * 1e-3}, {"peak_bytes", r.original.peak_bytes}};
  j["optimized"] = {{"latency_ms", r.optimized.latency_us * 1e-3},
                    {"peak_bytes", r.optimized.peak_bytes},
                    {"recompute_ms", r.optimized.recompute_us * 1e-3},
                    {"swap_out_bytes", r.optimized.swap_bytes},
                    {"arena_bytes", r.plan.placement.arena_bytes}};
  j["overhead"] = r.overhead();
  if (bound) j["latency_bound_bytes"] = bound->bytes;
  j["rewrites"] = RecordedRewrites(r.plan.graph);
  j["fissions"] = RecordedFissions(r.plan.graph);
  j["weight_bytes"] = r.weight_bytes;
  j["milp_proven_optimal"] = r.milp_proven_optimal;
  j["placements"] = r.placements;
  j["search_budget_bytes"] = r.search_budget_bytes;
  j["seconds"] = r.seconds;
  j["heuristic_runs"] = r.heuristic_runs;
  return j;
}

int RunOptimize(const OptimizeArgs& args) {
  const SteadyClock::time_point start = SteadyClock::now();
  OptimizeOptions options = ToOptions(args);
  const int limits = options.mem_limit_bytes.has_value() + options.mem_limit_ratio.has_value() +
                     options.lat_limit_ratio.has_value();
  if (args.pareto) {
    if (limits) Fail("--pareto sweeps the memory limit itself; drop --mem-limit / --mem-limit-ratio / --lat-limit-ratio");
    if (!args.output.empty()) Fail("--pareto writes no plan; drop -o (optimize one limit to get a PLAN.json)");
  } else if (limits != 1) {
    Fail("give exactly one of --mem-limit, --mem-limit-ratio, --lat-limit-ratio (or --pareto)");
  }
  for (const std::string& out : {args.output, args.report, args.csv}) {
    if (!out.empty()) CheckWritable(out);
  }
  const sim::DeviceProfile device = sim::ResolveDevice(args.device);
  std::optional<sim::CostTable> costs;
  if (!args.costs_path.empty()) costs = sim::CostTable::Load(args.costs_path);
  const Graph graph = GraphFromJson(ReadFile(args.graph_path), args.graph_path);
  const sim::CostTable* table = costs ? &*costs : nullptr;
  // The search as asked: with fission unless --no-fission.
  auto optimize = [&](const OptimizeOptions& o, bool fission) {
    return fission ? OptimizeWithFission(graph, device, table, o) : Optimize(graph, device, table, o);
  };
  // The budget covers the whole command: loading a large graph spends it too.
  options.budget_start = start;
  // Every decision is recorded (PLAN.json keeps them as "decisions", --report
  // draws them); --verbose prints each on stderr as it is made. Otherwise a
  // progress line when stderr is a terminal.
  DecisionTrace trace;
  ProgressLine progress(StderrIsTerminal() && !args.quiet && !args.verbose);
  if (args.verbose) fmt::print(stderr, "{}", DecisionTraceLegend());
  options.on_event = [&](const SearchEvent& e) {
    trace.Add(e);
    if (args.verbose) fmt::print(stderr, "{}\n", ToString(e, trace.reference_latency_us));
    progress.Update(fmt::format("optimize: {:.1f} s, {} steps of the search; {} {}", e.seconds, trace.events.size(),
                                ToString(e.stage), e.outcome));
  };

  // The op latencies come from the graph's ops, the device and the cost
  // table: an error names those files (here, before any search).
  const std::vector<sim::OpLatency> latencies = [&] {
    try {
      return sim::ComputeOpLatencies(graph, device, table);  // checks they are finite and sum in range
    } catch (const Error& e) {
      Fail("{}: {}", LatencyInputs(args.graph_path, args.device, args.costs_path), e.what());
    }
  }();
  CsvContext context{graph.name, device.memory_bytes, false};
  if (table) {
    context.profiled = true;
    for (const sim::OpLatency& l : latencies) {
      context.profiled = context.profiled && l.source != sim::LatencySource::kRoofline;
    }
  }

  if (args.pareto) {
    std::vector<std::string> rows;
    nlohmann::ordered_json front = nlohmann::ordered_json::array();
    if (!args.json) {
      fmt::print("{:>6} {:>14} {:>12} {:>10} {:>9}  {}\n", "ratio", "peak_bytes", "latency_ms", "overhead", "seconds",
                 "method");
    }
    // With --report, the checkpointing baselines are swept too (drawn, not
    // printed), so that the page compares the fronts.
    std::vector<RematMethod> methods = {options.method};
    if (!args.report.empty()) {
      for (RematMethod m : {RematMethod::kCheckpointBlocks, RematMethod::kSqrtN}) {
        if (m != options.method) methods.push_back(m);
      }
    }
    auto label = [](RematMethod m) {
      return m == RematMethod::kAuto ? std::string("memfit") : std::string(ToString(m));
    };
    report::ParetoSweep sweep;
    sweep.graph = graph.name;
    sweep.device = device.name;
    {
      const sim::SimResult reference = sim::Simulate(graph, ProgramOrderSteps(graph), device, table);
      sweep.original_peak_bytes = reference.peak_bytes;
      sweep.original_latency_ms = reference.latency_ms();
    }
    // The sweep shares the time budget among its limits (and methods).
    constexpr int kFirstTenth = 3, kLastTenth = 9;
    const int runs = (kLastTenth - kFirstTenth + 1) * static_cast<int>(methods.size());
    int run = 0;
    for (RematMethod method : methods) {
      const bool printed = method == options.method;
      for (int tenth = kFirstTenth; tenth <= kLastTenth; ++tenth) {
        OptimizeOptions o = options;
        o.method = method;
        o.mem_limit_ratio = tenth / 10.0;
        o.time_budget_seconds = options.time_budget_seconds / runs;
        o.budget_start.reset();  // each limit's share starts when its search does
        if (!args.verbose) o.on_event = nullptr;  // the progress line shows the sweep's place instead
        report::ParetoPoint point;
        point.method = label(method);
        point.ratio = *o.mem_limit_ratio;
        point.limit_bytes = static_cast<int64_t>(*o.mem_limit_ratio * static_cast<double>(sweep.original_peak_bytes));
        progress.Update(fmt::format("pareto: {} at {:.1f} of the peak ({} of {})", point.method, point.ratio, ++run, runs));
        try {
          // memfit's own front with fission, as a single limit is (the
          // tightest limits need it: VGG16 bs32 on rtx3090 has no plan of the
          // graph as given at 0.3-0.5 of its peak); the baselines drawn
          // beside it as users apply them, to the graph as written.
          const OptimizeResult r = optimize(o, printed && !args.no_fission);
          point.limit_bytes = r.limit_bytes;
          point.peak_bytes = r.optimized.peak_bytes;
          point.arena_bytes = r.plan.placement.arena_bytes;
          point.latency_ms = r.optimized.latency_us * 1e-3;
          point.found_by = r.method;
          point.seconds = r.seconds;
          sweep.points.push_back(point);
          if (!printed) continue;
          rows.push_back(MagisCsvRow(r, o, context));
          nlohmann::ordered_json j = ToJson(r, std::nullopt);
          j["ratio"] = *o.mem_limit_ratio;
          front.push_back(std::move(j));
          if (!args.json) {
            progress.Finish();
            fmt::print("{:>6.1f} {:>14} {:>12.3f} {:>10} {:>9.2f}  {}\n", *o.mem_limit_ratio, r.optimized.peak_bytes,
                       r.optimized.latency_us * 1e-3, FormatChange(r.overhead()), r.seconds, r.method);
          }
        } catch (const Error& e) {
          point.error = e.what();
          sweep.points.push_back(point);
          if (!printed) continue;
          front.push_back({{"ratio", *o.mem_limit_ratio}, {"error", e.what()}});
          progress.Finish();
          if (!args.json) fmt::print("{:>6.1f}  infeasible: {}\n", *o.mem_limit_ratio, e.what());
        }
      }
    }
    progress.Finish();
    if (args.json) fmt::print("{}\n", front.dump(1));
    if (!args.csv.empty()) AppendMagisCsv(args.csv, rows);
    if (!args.report.empty()) {
      WriteFileAtomically(args.report, report::HtmlPage(report::ParetoData(sweep)));
      if (!args.json) fmt::print("wrote {}\n", args.report);
    }
    return 0;
  }

  const OptimizeResult result = optimize(options, !args.no_fission);
  progress.Finish();
  const std::optional<LatencyBound> bound = BoundOf(result, graph, device, table);
  // Deterministic output does not depend on the machine: no seconds.
  const bool with_seconds = !options.work_budget;
  if (!args.output.empty()) WriteFileAtomically(args.output, PlanToJson(result.plan, ToJson(trace, with_seconds)));
  if (!args.report.empty()) {
    report::ReportPlan plan;
    plan.label = args.output.empty() ? args.graph_path : args.output;
    plan.plan = result.plan;
    plan.solve.limit_bytes = result.limit_bytes;
    if (result.latency_limit_us > 0) plan.solve.latency_limit_ms = result.latency_limit_us * 1e-3;
    plan.solve.method = result.method;
    plan.solve.scheduler = result.scheduler;
    plan.solve.seconds = result.seconds;
    for (const SearchEvent& e : trace.events) plan.solve.trace.push_back(report::ToTraceEvent(e));
    report::ReportOptions report_options;
    report_options.device = device;
    report_options.costs = table;
    WriteFileAtomically(args.report, report::HtmlPage(report::ReportData(plan, report_options)));
  }
  if (!args.csv.empty()) AppendMagisCsv(args.csv, {MagisCsvRow(result, options, context)});
  if (args.json) {
    nlohmann::ordered_json j = ToJson(result, bound);
    j["device_memory_bytes"] = device.memory_bytes;
    j["fits_device"] = FitsDevice(result, device);
    if (args.verbose) j["trace"] = ToJson(trace, with_seconds);
    fmt::print("{}\n", j.dump(1));
  } else {
    PrintResult(result, graph, device, bound);
    if (!args.output.empty()) fmt::print("wrote {}\n", args.output);
    if (!args.report.empty()) fmt::print("wrote {}\n", args.report);
  }
  return 0;
}

const Registrar kOptimize = Subcommand<OptimizeArgs>(
    "optimize", "Fit a training step under a memory limit (scheduling, rematerialization, swapping)", RunOptimize,
    [](CLI::App& cmd, OptimizeArgs& args) {
      cmd.add_option("graph", args.graph_path, "graph JSON (memfit zoo/import/capture)")->required();
      cmd.add_option("--mem-limit", args.mem_limit, "device memory limit: bytes, or with a unit (8GiB, 512MB)");
      cmd.add_option("--mem-limit-ratio", args.mem_limit_ratio, "memory limit as a fraction of the unoptimized peak");
      cmd.add_option("--lat-limit-ratio", args.lat_limit_ratio,
                     "smallest memory whose latency is within this multiple of the unoptimized one");
      cmd.add_option("--device", args.device,
                     fmt::format("{}, or a device .json (default a100)", sim::BuiltinDeviceNames()));
      AddCostsOption(cmd, args.costs_path);
      cmd.add_option("--time-budget", args.time_budget,
                     "seconds for the whole command, the plan written (default 10; --pareto shares it)");
      cmd.add_flag("--deterministic", args.deterministic,
                   "bound the search by work, not time: the same plan on any machine and load (--time-budget is "
                   "then not kept)");
      cmd.add_option("--work-budget", args.work_budget,
                     fmt::format("with --deterministic (implied): runs of the remat heuristic (default {}; {} with "
                                 "--lat-limit-ratio)",
                                 OptimizeOptions::kDefaultWorkBudget,
                                 OptimizeOptions::kDefaultWorkBudget * OptimizeOptions::kLatencyWorkBudgetFactor));
      cmd.add_option("--method", args.method, "auto, heuristic, milp, checkpoint-blocks, sqrt-n (default auto)");
      cmd.add_flag("--no-swap", args.no_swap,
                   "do not swap to host memory (never swapped on a device whose host memory is its own: cpu)");
      cmd.add_flag("--no-recompute", args.no_recompute, "do not recompute");
      cmd.add_flag("--no-reorder", args.no_reorder, "keep program order (no memory-aware scheduling)");
      cmd.add_flag("--no-rng-replay", args.no_rng_replay, "never recompute random ops (dropout)");
      cmd.add_flag("--no-fission", args.no_fission, "never split ops along a dimension (transform/fission.h)");
      cmd.add_option("-o,--output", args.output, "write PLAN.json");
      cmd.add_option("--csv", args.csv, "append a row with MAGIS's result columns");
      cmd.add_flag("--pareto", args.pareto, "sweep memory limit ratios 0.3..0.9 and print the front");
      cmd.add_flag("--json", args.json, "print JSON");
      cmd.add_option("--report", args.report,
                     "write an HTML page of the plan, or with --pareto of the fronts (docs/report.md)");
      AddQuietFlag(cmd, args.quiet);
      cmd.add_flag("-v,--verbose", args.verbose,
                   "print every decision of the search on stderr as it is made (with --json, also as \"trace\"; "
                   "PLAN.json keeps them as \"decisions\")");
    });

}  // namespace
}  // namespace memfit::cli
