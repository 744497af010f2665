// memfit plan GRAPH.json|PLAN.json [--planner NAME] [--time-limit S] [--alignment N]
//                                  [--device NAME] [--json] [-o PLAN.json] [--verbose]
//
// Places every storage instance in one arena, checks the placement
// independently, simulates it, and reports the arena against the lower
// bound. A graph runs in program order with frees at last use; a PLAN.json
// keeps its steps (recompute, swap_out, swap_in, free) and is placed anew
// (its buffers and times, if any, are ignored). The device times the steps:
// the arena holds a swapped-out storage until its copy ends there.
// --verbose prints its decisions (the steps placed, the lower bound and
// where it is set, the planner's arena and whether it is proven optimal) in
// the form `memfit optimize --verbose` does (optimize/search_trace.h); -o
// keeps them in PLAN.json as "decisions".
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "analysis/stats.h"
#include "cli/command.h"
#include "io/graph_json.h"
#include "optimize/search_trace.h"
#include "plan/placement.h"
#include "plan/plan_json.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "util/error.h"
#include "util/file.h"

namespace memfit::cli {
namespace {

struct PlanArgs {
  std::string graph_path;
  std::string planner = "auto";
  double time_limit = 5.0;
  std::optional<int64_t> max_nodes;
  bool deterministic = false;
  int64_t alignment = 64;
  std::string device = "a100";
  bool json = false;
  std::string output;
  bool verbose = false;
};

// The step at which the most (aligned) bytes are reserved: where the lower
// bound is set.
size_t FullestStep(const Placement& m, size_t steps) {
  std::vector<int64_t> delta(steps + 1, 0);
  for (const PlacedBuffer& b : m.buffers) {
    if (b.start < 0 || b.end <= b.start || static_cast<size_t>(b.end) > steps) continue;
    delta[b.start] += b.size_bytes;
    delta[b.end] -= b.size_bytes;
  }
  size_t fullest = 0;
  int64_t reserved = 0, most = -1;
  for (size_t i = 0; i < steps; ++i) {
    reserved += delta[i];
    if (reserved > most) most = reserved, fullest = i;
  }
  return fullest;
}

// What `plan` decided, as optimize's decision trace records it.
DecisionTrace PlanDecisions(const PlanArgs& args, const Plan& file, bool from_plan, const sim::SimResult& sim) {
  DecisionTrace trace;
  const Placement& m = file.placement;
  size_t recomputes = 0, swaps = 0;
  for (const Step& s : file.steps.steps) {
    recomputes += s.kind == StepKind::kRecompute;
    swaps += s.kind == StepKind::kSwapOut;
  }
  trace.Add({0, SearchStage::kReference, from_plan ? "the plan's steps" : "program-order", "", 0, sim.peak_bytes,
             sim.latency_us,
             from_plan ? fmt::format("{} steps as the plan gives them ({} recomputations, {} swaps out), placed anew",
                                     file.steps.steps.size(), recomputes, swaps)
                       : "the program as written: every op once, in order, each storage freed after its last use"});
  const size_t fullest = FullestStep(m, file.steps.steps.size());
  std::string at = fmt::format("step {}", fullest);
  if (fullest < file.steps.steps.size() && file.steps.steps[fullest].op) {
    at += fmt::format(" ({})", file.graph.op(*file.steps.steps[fullest].op).name);
  }
  trace.Add({0, SearchStage::kBudget, "", "", m.lower_bound_bytes, {}, {},
             fmt::format("the lower bound: the most bytes reserved at one step (aligned to {}), at {}", m.alignment_bytes,
                         at)});
  const double ratio = m.lower_bound_bytes ? static_cast<double>(m.arena_bytes) / m.lower_bound_bytes : 1.0;
  std::string outcome =
      m.arena_bytes == m.lower_bound_bytes
          ? "at the lower bound: optimal"
          : fmt::format("{:.4f} of the lower bound (+{}); {}", ratio, FormatBytes(m.arena_bytes - m.lower_bound_bytes),
                        m.proven_optimal ? "proven optimal: nothing lower fits"
                        : args.deterministic
                            ? "not proven optimal: the search stopped at its node budget (--max-nodes)"
                            : "not proven optimal: the search stopped at its time limit (--time-limit)");
  trace.Add({m.plan_seconds, SearchStage::kPlacement, "", fmt::format("{} (asked: {})", m.planner, args.planner),
             m.lower_bound_bytes, m.arena_bytes, {}, std::move(outcome)});
  trace.Add({m.plan_seconds, SearchStage::kResult, "", m.planner, 0, sim.peak_bytes, sim.latency_us,
             fmt::format("kept: {} buffers in an arena of {}", m.buffers.size(), FormatBytes(m.arena_bytes))});
  return trace;
}

int RunPlan(const PlanArgs& args) {
  const auto planner = alloc::ParsePlannerKind(args.planner);
  if (!planner) Fail("--planner: unknown planner '{}' (naive, greedy-size, greedy-breadth, best-fit, exact, auto)", args.planner);
  if (!(args.time_limit > 0)) Fail("--time-limit must be positive (got {})", args.time_limit);
  if (args.alignment < 1) Fail("--alignment must be at least 1 (got {})", args.alignment);
  if (args.max_nodes && *args.max_nodes < 0) Fail("--max-nodes must be >= 0 (got {})", *args.max_nodes);
  const sim::DeviceProfile device = sim::ResolveDevice(args.device);

  const std::string text = ReadFile(args.graph_path);
  Plan file;
  const bool from_plan = LooksLikePlan(text);
  if (from_plan) {
    file = PlanStepsFromJson(text, args.graph_path);
  } else {
    file.graph = GraphFromJson(text, args.graph_path);
    file.steps = ProgramOrderSteps(file.graph);
  }
  // The op latencies come from the graph's ops and the device: an error
  // names those files.
  const sim::Simulator simulator = [&] {
    try {
      return sim::Simulator(file.graph, device);
    } catch (const Error& e) {
      Fail("{}: {}", LatencyInputs(args.graph_path, args.device, ""), e.what());
    }
  }();
  PlacementOptions options;
  options.planner = *planner;
  options.time_limit_seconds = args.time_limit;
  options.max_search_nodes = args.max_nodes;
  options.deterministic = args.deterministic;
  options.alignment_bytes = args.alignment;
  options.simulator = &simulator;
  file.placement = PlaceSteps(file.graph, file.steps, options);
  const sim::SimResult sim = simulator.Run(file.steps);
  file.simulated = SimulatedFigures{device.name, sim.latency_ms(), sim.peak_bytes};
  const DecisionTrace trace = PlanDecisions(args, file, from_plan, sim);
  if (args.verbose) fmt::print(stderr, "{}", trace.ToText());
  // Deterministic output does not depend on the machine: no seconds.
  if (!args.output.empty()) WriteFileAtomically(args.output, PlanToJson(file, ToJson(trace, !args.deterministic)));

  const Placement& m = file.placement;
  const double ratio = m.lower_bound_bytes ? static_cast<double>(m.arena_bytes) / static_cast<double>(m.lower_bound_bytes) : 1.0;
  if (args.json) {
    nlohmann::ordered_json j;
    j["graph"] = file.graph.name;
    j["steps"] = file.steps.steps.size();
    j["buffers"] = m.buffers.size();
    j["arena_bytes"] = m.arena_bytes;
    j["lower_bound_bytes"] = m.lower_bound_bytes;
    j["ratio"] = ratio;
    j["proven_optimal"] = m.proven_optimal;
    j["planner"] = m.planner;
    if (!args.deterministic) j["plan_seconds"] = m.plan_seconds;  // The rest is machine-independent.
    j["device"] = device.name;
    j["latency_ms"] = sim.latency_ms();
    j["peak_bytes"] = sim.peak_bytes;
    fmt::print("{}\n", j.dump(1));
  } else {
    fmt::print("graph        {}\nsteps        {}\nbuffers      {}\narena        {} ({} bytes)\nlower bound  {} ({} bytes)\n"
               "ratio        {:.6f}{}\nplanner      {}\nsimulated    {:.3f} ms on {}, peak {}\n",
               file.graph.name, file.steps.steps.size(), m.buffers.size(), FormatBytes(m.arena_bytes), m.arena_bytes,
               FormatBytes(m.lower_bound_bytes), m.lower_bound_bytes, ratio, m.proven_optimal ? " (optimal)" : "",
               args.deterministic ? m.planner : fmt::format("{} ({:.3f} s)", m.planner, m.plan_seconds), sim.latency_ms(), device.name, FormatBytes(sim.peak_bytes));
  }
  return 0;
}

const Registrar kPlan = Subcommand<PlanArgs>(
    "plan",
    "Place every tensor of a graph (program order) or of a PLAN.json's steps in one arena, check and simulate it",
    RunPlan, [](CLI::App& cmd, PlanArgs& args) {
      cmd.add_option("file", args.graph_path, "graph JSON, or PLAN.json whose steps to place")->required();
      cmd.add_option("--planner", args.planner, "naive, greedy-size, greedy-breadth, best-fit, exact, auto");
      cmd.add_option("--time-limit", args.time_limit, "seconds for the searching planners (inf: none)");
      cmd.add_option("--max-nodes", args.max_nodes, "stop the exact offset search after this many nodes");
      cmd.add_flag("--deterministic", args.deterministic,
                   "no wall clock: ignore --time-limit, stop the search at its node budget (--max-nodes, "
                   "default 1000000); identical output on any machine, no planning time reported");
      cmd.add_option("--alignment", args.alignment, "offset and size alignment in bytes");
      cmd.add_option("--device", args.device,
                     fmt::format("device profile that times the steps (and the simulated figures): "
                                 "{}, or a device .json",
                                 sim::BuiltinDeviceNames()));
      AddJsonFlag(cmd, args.json);
      cmd.add_option("-o,--output", args.output, "write PLAN.json (with --verbose's decisions)");
      cmd.add_flag("-v,--verbose", args.verbose,
                   "print the decisions on stderr: the steps placed, the lower bound and where it "
                   "is set, the planner's arena");
    });

}  // namespace
}  // namespace memfit::cli
