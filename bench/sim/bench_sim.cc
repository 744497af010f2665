// bench_sim: simulated latency and peak of zoo training graphs (program
// order, roofline costs at the default efficiencies) on a100 and h200, and
// how long the simulator takes: "prep" builds the Simulator (per-op
// latencies, storage tables; once per graph), "run" replays the plan (what
// an optimizer's search loop pays per candidate; mean of repeated runs).
#include <fmt/format.h>

#include <chrono>
#include <string>
#include <vector>

#include "analysis/liveness.h"
#include "analysis/stats.h"
#include "autodiff/training_graph.h"
#include "models/zoo.h"
#include "plan/steps.h"
#include "sim/device.h"
#include "sim/simulator.h"

namespace {

using Clock = std::chrono::steady_clock;
double MsSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

struct Case {
  std::string label;
  std::string model;
  memfit::ZooOptions options;
};

}  // namespace

int main() {
  using namespace memfit;
  const std::vector<Case> cases = {
      {"bert-base bs32 seq512", "bert-base", {.batch = 32, .seq = 512}},
      {"resnet-50 bs64", "resnet-50", {.batch = 64}},
      {"vit-base bs64", "vit-base", {.batch = 64}},
      {"gpt2-medium bs8 seq128", "gpt2-medium", {}},
  };
  fmt::print("{:<24} {:<6} {:>6} {:>6} {:>12} {:>11} {:>10} {:>9} {:>9}\n", "graph", "device", "ops", "steps",
             "latency_ms", "peak", "= liveness", "prep_ms", "run_ms");
  for (const Case& c : cases) {
    const Graph g = BuildTrainingGraph(BuildZooModel(c.model, c.options));
    const int64_t liveness_peak = ComputeLiveness(g).peak_bytes;
    const Steps plan = ProgramOrderSteps(g);
    for (const char* name : {"a100", "h200"}) {
      const sim::DeviceProfile& device = sim::FindDevice(name);
      const Clock::time_point t0 = Clock::now();
      const sim::Simulator simulator(g, device);
      const double prep_ms = MsSince(t0);
      constexpr int kRuns = 20;
      sim::SimResult r;
      const Clock::time_point t1 = Clock::now();
      for (int i = 0; i < kRuns; ++i) r = simulator.Run(plan);
      const double run_ms = MsSince(t1) / kRuns;
      fmt::print("{:<24} {:<6} {:>6} {:>6} {:>12.3f} {:>11} {:>10} {:>9.2f} {:>9.3f}\n", c.label, name, g.num_ops(),
                 plan.steps.size(), r.latency_ms(), FormatBytes(r.peak_bytes),
                 r.peak_bytes == liveness_peak ? "yes" : "NO", prep_ms, run_ms);
    }
  }
  return 0;
}
