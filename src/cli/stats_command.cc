// memfit stats FILE.json [--json]
// memfit validate FILE.json
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "analysis/stats.h"
#include "cli/command.h"
#include "io/graph_json.h"
#include "ir/registry.h"
#include "plan/plan_json.h"
#include "util/file.h"

namespace memfit::cli {
namespace {

int RunStats(const GraphReportArgs& args) {
  const Graph graph = LoadGraph(args.path);
  const GraphStats s = ComputeStats(graph);
  if (!args.json) {
    fmt::print("{}", FormatStats(graph, s));
    return 0;
  }
  nlohmann::ordered_json j;
  j["name"] = graph.name;
  j["ops"] = s.ops;
  j["tensors"] = s.tensors;
  j["storages"] = s.storages;
  j["param_count"] = s.param_count;
  j["param_bytes"] = s.param_bytes;
  j["buffer_bytes"] = s.buffer_bytes;
  j["input_bytes"] = s.input_bytes;
  j["activation_bytes"] = s.activation_bytes;
  j["gradient_bytes"] = s.gradient_bytes;
  j["optimizer_state_bytes"] = s.optimizer_state_bytes;
  j["flops"] = s.flops;
  j["peak_bytes"] = s.peak_bytes;
  j["peak_step"] = s.peak_step;
  j["peak_op"] = s.peak_op;
  j["random_ops"] = s.random_ops;
  j["opaque_ops"] = s.opaque_ops;
  fmt::print("{}\n", j.dump(1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
  return 0;
}

const Registrar kStats = Subcommand<GraphReportArgs>(
    "stats", "Print a graph's sizes, FLOPs and program-order peak memory", RunStats, AddGraphReportOptions);

// A graph validates (ir/validate.h); a PLAN.json passes everything its
// loader checks: its graph, steps and the arena checker.
int RunValidate(const std::string& path) {
  const std::string text = ReadFile(path);
  if (LooksLikePlan(text)) {
    const Plan plan = PlanFromJson(text, path);
    fmt::print("ok: plan of {} steps, {} buffers, arena {} bytes; graph {} ops, {} tensors\n", plan.steps.steps.size(),
               plan.placement.buffers.size(), plan.placement.arena_bytes, plan.graph.num_ops(), plan.graph.num_tensors());
    return 0;
  }
  const Graph graph = GraphFromJson(text, path);
  fmt::print("ok: {} ops, {} tensors\n", graph.num_ops(), graph.num_tensors());
  return 0;
}

const Registrar kValidate("validate", "Check a graph or PLAN.json file; prints 'ok' or the first problem",
                          [](CLI::App& cmd) {
                            auto path = std::make_shared<std::string>();
                            cmd.add_option("file", *path, "graph JSON or PLAN.json")->required();
                            return [path] { return RunValidate(*path); };
                          });

const Registrar kOps("ops", "List the ATen ops memfit's registry knows", [](CLI::App& cmd) {
  return [] {
    for (const std::string& type : RegisteredOpTypes()) fmt::print("{}\n", type);
    return 0;
  };
});

}  // namespace
}  // namespace memfit::cli
