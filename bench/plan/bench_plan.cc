// bench_plan: static memory plans of zoo training graphs (program order).
//
// For each zoo model's training step (defaults, SGD update): the number of
// buffers, the lower bound, the arena of the best-fit greedy and of memfit's
// auto planner (greedy first, then exact search until the deadline), and
// the planning time. Every plan passes the independent checker.
//
//   build/bin/bench_plan [--time-limit S] [MODEL ...]
#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/training_graph.h"
#include "models/zoo.h"
#include "plan/placement.h"
#include "plan/plan_check.h"
#include "../common/progress.h"

using namespace memfit;

int main(int argc, char** argv) {
  double time_limit = 2.0;
  std::vector<std::string> models;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--time-limit") == 0 && i + 1 < argc) {
      time_limit = std::stod(argv[++i]);
    } else {
      models.emplace_back(argv[i]);
    }
  }
  if (models.empty()) {
    for (const ZooModel& m : ZooModels()) models.push_back(m.name);
  }
  fmt::print("{:<14}{:>7}{:>16}{:>12}{:>16}{:>10}{:>16}{:>10}\n", "model", "buffers", "lower bound", "best-fit",
             "auto arena", "ratio", "planner", "seconds");
  int at_bound = 0;
  for (const std::string& name : models) {
    auto working = std::make_unique<bench::Working>(fmt::format("bench_plan: {}", name));
    const Graph g = BuildTrainingGraph(BuildZooModel(name));
    PlacementOptions greedy;
    greedy.planner = alloc::PlannerKind::kBestFit;
    const Placement best_fit = PlaceSteps(g, ProgramOrder(g), greedy);
    PlacementOptions options;
    options.time_limit_seconds = time_limit;
    const auto start = std::chrono::steady_clock::now();
    const Placement plan = PlaceSteps(g, ProgramOrder(g), options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!CheckPlacement(g, plan).empty()) {
      fmt::print("{}: plan fails the checker\n", name);
      return 1;
    }
    working.reset();  // the row replaces the progress line
    const double ratio = static_cast<double>(plan.arena_bytes) / static_cast<double>(plan.lower_bound_bytes);
    at_bound += plan.arena_bytes == plan.lower_bound_bytes;
    fmt::print("{:<14}{:>7}{:>16}{:>+11.3f}%{:>16}{:>10.6f}{:>16}{:>10.3f}\n", name, plan.buffers.size(),
               plan.lower_bound_bytes,
               100.0 * (static_cast<double>(best_fit.arena_bytes) / static_cast<double>(plan.lower_bound_bytes) - 1),
               plan.arena_bytes, ratio, plan.planner, seconds);
  }
  fmt::print("\n{}/{} models planned at the lower bound (time limit {} s; best-fit column: % over the bound)\n",
             at_bound, models.size(), time_limit);
  return 0;
}
