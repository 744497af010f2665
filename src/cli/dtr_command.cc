// `memfit dtr`: replay a DTR operator log, or a memfit graph run eagerly in
// program order, under a memory budget with one eviction heuristic (or sweep
// the budget ratios 0.1..1.0; with --report, every heuristic is swept and
// drawn as overhead against budget, like DTR's figures). --verbose prints
// each decision of the replay (evictions, recomputations), with --json also
// kept as "decisions"; a progress line shows the sweep's place when stderr
// is a terminal (not with --quiet).
#include <fmt/format.h>

#include <cmath>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cli/command.h"
#include "analysis/liveness.h"
#include "dtr/graph_program.h"
#include "dtr/program.h"
#include "dtr/simulator.h"
#include "io/graph_json.h"
#include "report/html_page.h"
#include "report/pareto_data.h"
#include "sim/cost_model.h"
#include "sim/device.h"
#include "util/byte_count.h"
#include "util/error.h"
#include "util/file.h"
#include "util/progress.h"

namespace memfit::cli {
namespace {

struct DtrArgs {
  std::string path;
  std::optional<double> budget_ratio;
  std::string budget;  // --budget: bytes, or with a unit (util/byte_count.h)
  std::string heuristic = "dtr";
  bool sweep = false;
  bool json = false;
  bool no_eager = false;
  bool banishing = false;
  double overhead_limit = 2.0;
  uint64_t seed = 1;
  std::string device = "a100";
  std::string costs_path;
  std::string report;  // --sweep --report: an HTML page of every heuristic's overhead against budget
  bool verbose = false;
  bool quiet = false;
};

// One decision of the replay (dtr::SimResult::events) as a readable line.
std::string DecisionLine(std::string_view event, std::string_view heuristic) {
  const size_t space = event.find(' ');
  const std::string_view what = event.substr(0, space);
  const std::string_view name = space == std::string_view::npos ? "" : event.substr(space + 1);
  if (what == "evict") return fmt::format("evict      {}: the {} heuristic's pick when memory ran short", name, heuristic);
  if (what == "release") return fmt::format("release    {}: freed on its last release (eager eviction)", name);
  if (what == "recompute") return fmt::format("recompute  {}: read again after it was evicted", name);
  if (what == "oom") return "oom        out of memory: nothing evictable frees enough for the next op";
  if (what == "exceeded") return "stop       the overhead passed --overhead-limit";
  return std::string(event);
}

bool IsGraphPath(const std::string& path) {
  return path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
}

// A DTR log, or a memfit graph (*.json) in program order with each op's
// latency on the device (roofline, or the measured cost table).
dtr::Program LoadInput(const DtrArgs& args) {
  if (!IsGraphPath(args.path)) {
    if (!args.costs_path.empty()) Fail("--costs applies to a memfit graph; a DTR log carries its own op times");
    return dtr::LoadProgram(args.path);
  }
  const Graph graph = LoadGraph(args.path);
  std::optional<sim::CostTable> costs;
  if (!args.costs_path.empty()) costs = sim::CostTable::Load(args.costs_path);
  const sim::DeviceProfile device = sim::ResolveDevice(args.device);
  // The op times come from the graph's ops, the device and the cost table:
  // an error names those files.
  try {
    const std::vector<double> us = sim::LatenciesUs(sim::ComputeOpLatencies(graph, device, costs ? &*costs : nullptr));
    return dtr::ProgramFromGraph(graph, ProgramOrder(graph), us);
  } catch (const Error& e) {
    Fail("{}: {}", LatencyInputs(args.path, args.device, args.costs_path), e.what());
  }
}

nlohmann::json ToJson(const dtr::SimResult& r, std::string_view heuristic, std::optional<double> ratio) {
  nlohmann::json j;
  j["heuristic"] = heuristic;
  if (ratio) j["budget_ratio"] = *ratio;
  j["budget_bytes"] = r.budget_bytes;
  j["status"] = dtr::ToString(r.status);
  j["overhead"] = r.overhead;
  j["compute_ns"] = r.compute_ns;
  j["recompute_ns"] = r.recompute_ns;
  j["peak_bytes"] = r.peak_bytes;
  j["evictions"] = r.evictions;
  j["eager_evictions"] = r.eager_evictions;
  j["recomputations"] = r.recomputations;
  j["ops_replayed"] = r.ops_replayed;
  j["unconstrained_peak_bytes"] = r.baseline.peak_bytes;
  j["unconstrained_compute_ns"] = r.baseline.compute_ns;
  return j;
}

std::string OverheadCell(const dtr::SimResult& r) {
  switch (r.status) {
    case dtr::SimStatus::kOk: return fmt::format("{:.3f}", r.overhead);
    case dtr::SimStatus::kOom: return "OOM";
    case dtr::SimStatus::kOverheadExceeded: return "exceeded";
  }
  return "?";
}

int RunDtr(const DtrArgs& args) {
  std::optional<dtr::Heuristic> heuristic = dtr::ParseHeuristic(args.heuristic);
  if (!heuristic) {
    Fail("--heuristic: unknown heuristic '{}' (expected dtr, dtr-eq, dtr-local, msps, lru, largest, random)",
         args.heuristic);
  }
  std::optional<int64_t> budget_bytes;
  if (!args.budget.empty()) budget_bytes = ParseByteCount(args.budget, "--budget");
  if (!args.sweep && !args.budget_ratio && !budget_bytes) {
    Fail("give --budget-ratio R or --budget BYTES (or --sweep)");
  }
  if (args.budget_ratio && !(*args.budget_ratio > 0 && std::isfinite(*args.budget_ratio))) {
    Fail("--budget-ratio must be a positive number (got {})", *args.budget_ratio);
  }
  if (!(std::isfinite(args.overhead_limit) && (args.overhead_limit == 0 || args.overhead_limit >= 1))) {
    Fail("--overhead-limit must be at least 1, or 0 for no limit (got {})", args.overhead_limit);
  }
  if (!args.report.empty() && !args.sweep) Fail("--report draws a sweep: add --sweep");
  if (!args.report.empty()) CheckWritable(args.report);

  dtr::Program program = LoadInput(args);
  dtr::SimOptions options;
  options.heuristic = *heuristic;
  options.eager_eviction = !args.no_eager;
  options.banishing = args.banishing;
  options.seed = args.seed;
  if (args.overhead_limit == 0) {
    options.overhead_limit.reset();
  } else {
    options.overhead_limit = args.overhead_limit;
  }

  if (args.sweep) {
    const std::vector<double> ratios = dtr::PaperRatios();
    // With --report every heuristic is swept (the one asked for first); the
    // table and JSON show the one asked for.
    std::vector<dtr::Heuristic> heuristics = {*heuristic};
    if (!args.report.empty()) {
      for (dtr::Heuristic h : dtr::AllHeuristics()) {
        if (h != *heuristic) heuristics.push_back(h);
      }
    }
    ProgressLine progress(StderrIsTerminal() && !args.quiet);
    const dtr::Baseline base = dtr::MeasureBaseline(program);
    std::vector<dtr::SimResult> results;
    report::DtrSweep sweep;
    sweep.trace = args.path;
    sweep.unconstrained_peak_bytes = base.peak_bytes;
    sweep.unconstrained_compute_ns = base.compute_ns;
    size_t run = 0;
    for (dtr::Heuristic h : heuristics) {
      dtr::SimOptions o = options;
      o.heuristic = h;
      o.budget_bytes.reset();
      for (double ratio : ratios) {
        progress.Update(fmt::format("dtr sweep: {} at {:.1f} of the peak ({} of {})", dtr::ToString(h), ratio, ++run,
                                    heuristics.size() * ratios.size()));
        o.budget_ratio = ratio;
        dtr::SimResult r = dtr::Simulate(program, o, base);
        sweep.points.push_back({std::string(dtr::ToString(h)), ratio, r.budget_bytes, std::string(dtr::ToString(r.status)),
                                r.overhead, r.peak_bytes, r.evictions, r.recomputations});
        if (h != *heuristic) continue;
        if (args.verbose) {
          progress.Finish();
          fmt::print(stderr, "{} at {:.1f} of the peak (budget {} bytes): {}, overhead {:.3f}, {} evictions, {} "
                             "recomputations\n",
                     dtr::ToString(h), ratio, r.budget_bytes, dtr::ToString(r.status), r.overhead, r.evictions,
                     r.recomputations);
        }
        results.push_back(std::move(r));
      }
    }
    progress.Finish();
    if (!args.report.empty()) WriteFileAtomically(args.report, report::HtmlPage(report::DtrSweepData(sweep)));
    if (args.json) {
      nlohmann::json out = nlohmann::json::array();
      for (size_t i = 0; i < ratios.size(); ++i) out.push_back(ToJson(results[i], args.heuristic, ratios[i]));
      std::cout << out.dump(2) << "\n";
      return 0;
    }
    if (!args.report.empty()) fmt::print("wrote {}\n", args.report);
    fmt::print("{}: heuristic {}, unconstrained peak {} bytes, compute {} ns\n", args.path, args.heuristic,
               results.front().baseline.peak_bytes, results.front().baseline.compute_ns);
    fmt::print("{:>5} {:>14} {:>9} {:>10} {:>10} {:>14}\n", "ratio", "budget bytes", "overhead",
               "evictions", "remats", "peak bytes");
    for (size_t i = 0; i < ratios.size(); ++i) {
      const dtr::SimResult& r = results[i];
      fmt::print("{:>5.1f} {:>14} {:>9} {:>10} {:>10} {:>14}\n", ratios[i], r.budget_bytes, OverheadCell(r),
                 r.evictions, r.recomputations, r.peak_bytes);
    }
    return 0;
  }

  if (budget_bytes) {
    options.budget_bytes = *budget_bytes;
  } else {
    options.budget_ratio = *args.budget_ratio;
  }
  options.record_events = args.verbose;
  dtr::SimResult r = dtr::Simulate(program, options);
  if (args.verbose) {
    for (const std::string& e : r.events) fmt::print(stderr, "{}\n", DecisionLine(e, args.heuristic));
  }
  if (args.json) {
    nlohmann::json j = ToJson(r, args.heuristic, budget_bytes ? std::nullopt : args.budget_ratio);
    if (args.verbose) j["decisions"] = r.events;
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  fmt::print("{}: heuristic {}, budget {} bytes ({:.3f} of the unconstrained peak {})\n", args.path,
             args.heuristic, r.budget_bytes,
             r.baseline.peak_bytes > 0 ? static_cast<double>(r.budget_bytes) / r.baseline.peak_bytes : 0.0,
             r.baseline.peak_bytes);
  fmt::print("status {}  overhead {:.4f}  compute {} ns  recompute {} ns\n", dtr::ToString(r.status),
             r.overhead, r.compute_ns, r.recompute_ns);
  fmt::print("peak {} bytes  evictions {} (+{} on release)  recomputations {}  ops replayed {}\n",
             r.peak_bytes, r.evictions, r.eager_evictions, r.recomputations, r.ops_replayed);
  return 0;
}

const Registrar kDtr = Subcommand<DtrArgs>(
    "dtr", "Replay a DTR operator log under a memory budget (dynamic rematerialization)", RunDtr,
    [](CLI::App& cmd, DtrArgs& args) {
      cmd.add_option("trace", args.path, "DTR log (JSON lines), or a memfit graph (*.json) replayed in program order")
          ->required();
      cmd.add_option(
             "--device", args.device,
             fmt::format("a memfit graph's op times: device profile ({}, or DEVICE.json)", sim::BuiltinDeviceNames()))
          ->capture_default_str();
      cmd.add_option("--costs", args.costs_path, "a memfit graph's op times: measured cost table (COSTS.json)");
      auto* ratio =
          cmd.add_option("--budget-ratio", args.budget_ratio, "budget as a fraction of the unconstrained peak");
      auto* bytes = cmd.add_option("--budget", args.budget, "budget: bytes, or with a unit (512MiB, 8GiB, 2GB)");
      ratio->excludes(bytes);
      cmd.add_option("--heuristic", args.heuristic, "dtr, dtr-eq, dtr-local, msps, lru, largest, random")
          ->capture_default_str();
      auto* sweep = cmd.add_flag("--sweep", args.sweep, "run the ratios 0.1, 0.2, ..., 1.0");
      sweep->excludes(ratio)->excludes(bytes);
      cmd.add_flag("--json", args.json, "print JSON (an array with --sweep)");
      cmd.add_option("--report", args.report,
                     "with --sweep: write an HTML page of every heuristic's overhead against "
                     "budget (docs/report.md)");
      cmd.add_flag("-v,--verbose", args.verbose,
                   "print each decision of the replay on stderr (evictions, recomputations; with "
                   "--sweep, one line per budget); with --json, also as \"decisions\"");
      AddQuietFlag(cmd, args.quiet);
      cmd.add_flag("--no-eager", args.no_eager, "keep released storages resident until evicted by the heuristic");
      cmd.add_flag("--banishing", args.banishing,
                   "free released storages for good once nothing evicted depends on them");
      cmd.add_option("--overhead-limit", args.overhead_limit, "stop once overhead passes this (0: never)")
          ->capture_default_str();
      cmd.add_option("--seed", args.seed, "seed of the random heuristic")->capture_default_str();
    });

}  // namespace
}  // namespace memfit::cli
