// `memfit dtr`: replay a DTR operator log, or a memfit graph run eagerly in
// program order, under a memory budget with one eviction heuristic (or sweep
// the budget ratios 0.1..1.0).
#include <fmt/format.h>

#include <charconv>
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
#include "sim/cost_model.h"
#include "sim/device.h"
#include "util/error.h"

namespace memfit::cli {
namespace {

struct DtrArgs {
  std::string path;
  std::optional<double> budget_ratio;
  std::optional<int64_t> budget_bytes;
  std::string heuristic = "dtr";
  bool sweep = false;
  bool json = false;
  bool no_eager = false;
  bool banishing = false;
  double overhead_limit = 2.0;
  uint64_t seed = 1;
  std::string device = "a100";
  std::string costs_path;
};

// A CLI11 validator: "" when `text` is not an integer or fits in int64 (CLI11
// reports malformed numbers itself but saturates ones out of range).
std::string FitsInt64(const std::string& text) {
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec == std::errc::result_out_of_range) return fmt::format("{} does not fit in a 64-bit integer", text);
  return "";
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
  if (!args.sweep && !args.budget_ratio && !args.budget_bytes) {
    Fail("give --budget-ratio R or --budget BYTES (or --sweep)");
  }
  if (args.budget_ratio && !(*args.budget_ratio > 0 && std::isfinite(*args.budget_ratio))) {
    Fail("--budget-ratio must be a positive number (got {})", *args.budget_ratio);
  }
  if (args.budget_bytes && *args.budget_bytes < 0) Fail("--budget must not be negative");
  if (!(std::isfinite(args.overhead_limit) && (args.overhead_limit == 0 || args.overhead_limit >= 1))) {
    Fail("--overhead-limit must be at least 1, or 0 for no limit (got {})", args.overhead_limit);
  }

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
    std::vector<double> ratios = dtr::PaperRatios();
    std::vector<dtr::SimResult> results = dtr::Sweep(program, options, ratios);
    if (args.json) {
      nlohmann::json out = nlohmann::json::array();
      for (size_t i = 0; i < ratios.size(); ++i) out.push_back(ToJson(results[i], args.heuristic, ratios[i]));
      std::cout << out.dump(2) << "\n";
      return 0;
    }
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

  if (args.budget_bytes) {
    options.budget_bytes = *args.budget_bytes;
  } else {
    options.budget_ratio = *args.budget_ratio;
  }
  dtr::SimResult r = dtr::Simulate(program, options);
  if (args.json) {
    std::cout << ToJson(r, args.heuristic, args.budget_bytes ? std::nullopt : args.budget_ratio).dump(2)
              << "\n";
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

const Registrar kDtr("dtr", "Replay a DTR operator log under a memory budget (dynamic rematerialization)",
                     [](CLI::App& cmd) {
                       auto args = std::make_shared<DtrArgs>();
                       cmd.add_option("trace", args->path,
                                      "DTR log (JSON lines), or a memfit graph (*.json) replayed in program order")
                           ->required();
                       cmd.add_option("--device", args->device,
                                      "a memfit graph's op times: device profile (name or DEVICE.json)")
                           ->capture_default_str();
                       cmd.add_option("--costs", args->costs_path,
                                      "a memfit graph's op times: measured cost table (COSTS.json)");
                       auto* ratio = cmd.add_option("--budget-ratio", args->budget_ratio,
                                                    "budget as a fraction of the unconstrained peak");
                       auto* bytes = cmd.add_option("--budget", args->budget_bytes, "budget in bytes")
                                         ->check(FitsInt64, "an integer up to 2^63 - 1");
                       ratio->excludes(bytes);
                       cmd.add_option("--heuristic", args->heuristic,
                                      "dtr, dtr-eq, dtr-local, msps, lru, largest, random")
                           ->capture_default_str();
                       auto* sweep = cmd.add_flag("--sweep", args->sweep, "run the ratios 0.1, 0.2, ..., 1.0");
                       sweep->excludes(ratio)->excludes(bytes);
                       cmd.add_flag("--json", args->json, "print JSON (an array with --sweep)");
                       cmd.add_flag("--no-eager", args->no_eager,
                                    "keep released storages resident until evicted by the heuristic");
                       cmd.add_flag("--banishing", args->banishing,
                                    "free released storages for good once nothing evicted depends on them");
                       cmd.add_option("--overhead-limit", args->overhead_limit,
                                      "stop once overhead passes this (0: never)")
                           ->capture_default_str();
                       cmd.add_option("--seed", args->seed, "seed of the random heuristic")->capture_default_str();
                       return [args] { return RunDtr(*args); };
                     });

}  // namespace
}  // namespace memfit::cli
