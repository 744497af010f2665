// memfit simulate GRAPH.json --device NAME|DEVICE.json [--costs COSTS.json] [--json] [--timeline]
//
// Replays a plan on the two-stream simulator (sim/simulator.h) and prints its
// latency, peak device memory and per-stream busy time. The plan is the
// graph's program order with frees at last use, or the steps of a PLAN.json
// (memfit plan, memfit optimize). For a PLAN.json it also says whether its
// arena stays valid under this device's timing (CheckPlacement with the
// timeline simulated here): a swapped-out storage's bytes must stay reserved
// until its copy ends, which depends on the device.
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "analysis/stats.h"
#include "cli/command.h"
#include "io/graph_json.h"
#include "plan/plan_check.h"
#include "plan/plan_json.h"
#include "plan/steps.h"
#include "util/file.h"
#include "sim/cost_model.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "util/error.h"

namespace memfit::cli {
namespace {

struct SimulateArgs {
  std::string graph_path;
  std::string device = "a100";
  std::string costs_path;
  bool json = false;
  bool timeline = false;
  double compute_efficiency = sim::LatencyOptions{}.compute_efficiency;
  double memory_efficiency = sim::LatencyOptions{}.memory_efficiency;
};

int RunSimulate(const SimulateArgs& args) {
  if (!(args.compute_efficiency > 0 && args.compute_efficiency <= 1)) {
    Fail("--compute-efficiency must be in (0, 1] (got {})", args.compute_efficiency);
  }
  if (!(args.memory_efficiency > 0 && args.memory_efficiency <= 1)) {
    Fail("--memory-efficiency must be in (0, 1] (got {})", args.memory_efficiency);
  }
  const sim::DeviceProfile device = sim::ResolveDevice(args.device);
  std::optional<sim::CostTable> costs;
  if (!args.costs_path.empty()) costs = sim::CostTable::Load(args.costs_path);
  // A PLAN.json replays its own steps; a graph runs in program order with
  // frees at last use.
  const std::string text = ReadFile(args.graph_path);
  Graph graph;
  Steps plan;
  std::optional<Placement> memory;
  if (LooksLikePlan(text)) {
    Plan file = PlanFromJson(text, args.graph_path);
    graph = std::move(file.graph);
    plan = std::move(file.steps);
    memory = std::move(file.placement);
  } else {
    graph = GraphFromJson(text, args.graph_path);
    plan = ProgramOrderSteps(graph);
  }

  sim::LatencyOptions latency;
  latency.compute_efficiency = args.compute_efficiency;
  latency.memory_efficiency = args.memory_efficiency;
  // The op latencies come from the graph's ops (their sizes, measured
  // times), the device and the cost table: an error names those files.
  const sim::Simulator simulator = [&] {
    try {
      return sim::Simulator(graph, device, costs ? &*costs : nullptr, latency);
    } catch (const Error& e) {
      Fail("{}: {}", LatencyInputs(args.graph_path, args.device, args.costs_path), e.what());
    }
  }();
  sim::SimOptions options;
  options.record_timeline = args.timeline || memory.has_value();
  const sim::SimResult r = simulator.Run(plan, options);
  // The arena under this timeline: the first problem, if any.
  std::optional<std::string> arena_problem;
  if (memory) {
    for (size_t i = 0; i < r.timeline.size(); ++i) memory->step_times[i] = {r.timeline[i].start_us, r.timeline[i].end_us};
    const auto problems = CheckPlacement(graph, plan, *memory, 1);
    if (!problems.empty()) arena_problem = problems.front();
  }
  int64_t measured = 0;
  for (const sim::OpLatency& l : simulator.op_latencies()) measured += l.source == sim::LatencySource::kMeasured;

  if (args.json) {
    nlohmann::ordered_json j;
    j["graph"] = graph.name;
    j["device"] = device.name;
    j["plan"] = memory ? "PLAN.json" : "program-order";
    j["ops"] = graph.num_ops();
    j["steps"] = plan.steps.size();
    j["latency_ms"] = r.latency_ms();
    j["peak_bytes"] = r.peak_bytes;
    j["device_memory_bytes"] = device.memory_bytes;
    j["fits"] = r.peak_bytes <= device.memory_bytes;
    j["compute_busy_ms"] = r.compute_busy_us * 1e-3;
    j["recompute_ms"] = r.recompute_us * 1e-3;
    j["copy_busy_ms"] = r.copy_busy_us * 1e-3;
    j["swap_out_bytes"] = r.swap_out_bytes;
    j["swap_in_bytes"] = r.swap_in_bytes;
    j["measured_ops"] = measured;
    if (memory) {
      j["arena_bytes"] = memory->arena_bytes;
      j["arena_valid"] = !arena_problem.has_value();
      if (arena_problem) j["arena_problem"] = *arena_problem;
    }
    if (args.timeline) {
      nlohmann::ordered_json timeline = nlohmann::ordered_json::array();
      for (size_t i = 0; i < plan.steps.size(); ++i) {
        const Step& s = plan.steps[i];
        const sim::TimelineEntry& e = r.timeline[i];
        nlohmann::ordered_json entry;
        entry["step"] = i;
        entry["kind"] = ToString(s.kind);
        if (s.op) {
          entry["op"] = s.op->value;
          entry["name"] = graph.op(*s.op).name;
        } else if (s.storage) {
          entry["storage"] = s.storage->value;
          entry["name"] = graph.tensor(*s.storage).name;
        }
        entry["stream"] = sim::ToString(e.stream);
        entry["start_us"] = e.start_us;
        entry["end_us"] = e.end_us;
        entry["live_bytes"] = e.live_bytes_after;
        timeline.push_back(std::move(entry));
      }
      j["timeline"] = std::move(timeline);
    }
    fmt::print("{}\n", j.dump(1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
    return 0;
  }
  fmt::print("graph:        {} ({} ops, {} steps, {})\n", graph.name, graph.num_ops(), plan.steps.size(),
             memory ? "PLAN.json" : "program order");
  fmt::print("device:       {}\n", sim::ToString(device));
  if (costs) fmt::print("costs:        {} ({} entries; {} ops measured)\n", costs->source(), costs->size(), measured);
  fmt::print("latency_ms:   {:.3f}\n", r.latency_ms());
  fmt::print("peak_bytes:   {} ({}{})\n", r.peak_bytes, FormatBytes(r.peak_bytes),
             r.peak_bytes > device.memory_bytes ? ", exceeds the device's memory" : "");
  fmt::print("compute_ms:   {:.3f} busy\n", r.compute_busy_us * 1e-3);
  fmt::print("copy_ms:      {:.3f} busy\n", r.copy_busy_us * 1e-3);
  if (memory) {
    fmt::print("arena:        {} bytes, {}\n", memory->arena_bytes,
               arena_problem ? "not valid under this device's timing: " + *arena_problem : "valid under this timing");
  }
  if (args.timeline) {
    fmt::print("\n{:>6}  {:<8} {:>12} {:>12} {:>14}  {}\n", "step", "stream", "start_us", "end_us", "live_bytes",
               "what");
    for (size_t i = 0; i < plan.steps.size(); ++i) {
      const sim::TimelineEntry& e = r.timeline[i];
      fmt::print("{:>6}  {:<8} {:>12.3f} {:>12.3f} {:>14}  {}\n", i, sim::ToString(e.stream), e.start_us, e.end_us,
                 e.live_bytes_after, ToString(plan.steps[i], graph));
    }
  }
  return 0;
}

const Registrar kSimulate = Subcommand<SimulateArgs>(
    "simulate", "Simulate a graph's latency and peak memory on a device (roofline or measured op costs)", RunSimulate,
    [](CLI::App& cmd, SimulateArgs& args) {
      cmd.add_option("graph", args.graph_path, "graph JSON or PLAN.json")->required();
      cmd.add_option("--device", args.device,
                     fmt::format("{}, or a device .json file (default a100)", sim::BuiltinDeviceNames()));
      AddCostsOption(cmd, args.costs_path);
      AddJsonFlag(cmd, args.json);
      cmd.add_flag("--timeline", args.timeline, "print every step's stream, start, end and live bytes");
      cmd.add_option("--compute-efficiency", args.compute_efficiency, "fraction of peak FLOP/s reached (0.7)");
      cmd.add_option("--memory-efficiency", args.memory_efficiency, "fraction of peak bandwidth reached (0.8)");
    });

}  // namespace
}  // namespace memfit::cli
