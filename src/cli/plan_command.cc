// memfit plan GRAPH.json|PLAN.json [--planner NAME] [--time-limit S] [--alignment N]
//                                  [--device NAME] [--json] [-o PLAN.json]
//
// Places every storage instance in one arena, checks the placement
// independently, simulates it, and reports the arena against the lower
// bound. A graph runs in program order with frees at last use; a PLAN.json
// keeps its steps (recompute, swap_out, swap_in, free) and is placed anew
// (its buffers and times, if any, are ignored). The device times the steps:
// the arena holds a swapped-out storage until its copy ends there.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "analysis/stats.h"
#include "cli/command.h"
#include "io/graph_json.h"
#include "plan/memory_plan.h"
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
};

int RunPlan(const PlanArgs& args) {
  const auto planner = alloc::ParsePlannerKind(args.planner);
  if (!planner) Fail("--planner: unknown planner '{}' (naive, greedy-size, greedy-breadth, best-fit, exact, auto)", args.planner);
  if (!(args.time_limit > 0)) Fail("--time-limit must be positive (got {})", args.time_limit);
  if (args.alignment < 1) Fail("--alignment must be at least 1 (got {})", args.alignment);
  if (args.max_nodes && *args.max_nodes < 0) Fail("--max-nodes must be >= 0 (got {})", *args.max_nodes);
  const sim::DeviceProfile device = sim::ResolveDevice(args.device);

  const std::string text = ReadFile(args.graph_path);
  PlanFile file;
  if (LooksLikePlan(text)) {
    file = PlanStepsFromJson(text, args.graph_path);
  } else {
    file.graph = GraphFromJson(text, args.graph_path);
    file.steps = sim::ProgramOrderPlan(file.graph);
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
  MemoryPlanOptions options;
  options.planner = *planner;
  options.time_limit_seconds = args.time_limit;
  options.max_search_nodes = args.max_nodes;
  options.deterministic = args.deterministic;
  options.alignment_bytes = args.alignment;
  options.simulator = &simulator;
  file.memory = PlanMemory(file.graph, file.steps, options);
  const sim::SimResult sim = simulator.Run(file.steps);
  file.simulated = SimulatedFigures{device.name, sim.latency_ms(), sim.peak_bytes};
  if (!args.output.empty()) WriteFileAtomically(args.output, PlanToJson(file));

  const MemoryPlan& m = file.memory;
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

const Registrar kPlan("plan", "Place every tensor of a graph (program order) or of a PLAN.json's steps in one arena, check and simulate it",
                      [](CLI::App& cmd) {
                        auto args = std::make_shared<PlanArgs>();
                        cmd.add_option("file", args->graph_path, "graph JSON, or PLAN.json whose steps to place")->required();
                        cmd.add_option("--planner", args->planner, "naive, greedy-size, greedy-breadth, best-fit, exact, auto");
                        cmd.add_option("--time-limit", args->time_limit, "seconds for the searching planners (inf: none)");
                        cmd.add_option("--max-nodes", args->max_nodes, "stop the exact offset search after this many nodes");
                        cmd.add_flag("--deterministic", args->deterministic,
                                     "no wall clock: ignore --time-limit, stop the search at its node budget (--max-nodes, "
                                     "default 1000000); identical output on any machine, no planning time reported");
                        cmd.add_option("--alignment", args->alignment, "offset and size alignment in bytes");
                        cmd.add_option("--device", args->device, "device profile that times the steps (and the simulated figures)");
                        cmd.add_flag("--json", args->json, "print one JSON object");
                        cmd.add_option("-o,--output", args->output, "write PLAN.json");
                        return [args] { return RunPlan(*args); };
                      });

}  // namespace
}  // namespace memfit::cli
