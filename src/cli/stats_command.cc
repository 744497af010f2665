// memfit stats FILE.json [--json]
// memfit validate FILE.json
#include <fmt/format.h>

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
  fmt::print("{}", args.json ? StatsToJson(graph, s) + "\n" : FormatStats(graph, s));
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
