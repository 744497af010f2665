// bench_static_dynamic: dynamic rematerialization (DTR, decided at run time)
// against memfit's static plans (decided ahead of time), at the same budgets.
//
// For each subject (the two DTR traces, zoo training graphs) and each ratio r
// of the simulated program-order peak P, the budget is floor(r x P) bytes for
// every column:
//   dtr, dtr-eq, msps   DTR replayed under the budget (src/dtr): on the
//                       trace itself for DTR logs, on the graph run eagerly
//                       in program order (dtr/graph_program.h) for zoo graphs;
//                       overhead = (compute + recompute) / compute
//   static recompute    memfit optimize --no-swap (recomputation only, like
//                       DTR; the schedulers may reorder)
//   static              memfit optimize (recomputation and swapping)
// Static overhead = simulated latency / simulated program-order latency. Both
// sides take op times from the same place (the trace's TIME, or the device's
// roofline), so the columns differ only in the decisions. "OOM" / ">2x": DTR
// ran out of evictable memory / passed twice the compute; "-": no static plan
// fits. The last lines give DTR's replay speed (operations replayed per
// second, recomputations included).
//
//   build/bin/bench_static_dynamic [--device NAME] [--time-budget S] [SUBJECT ...]
//
// SUBJECT as in bench_remat: dtr:FILE.log, or a zoo name with sizes
// (bert-base:32:512, resnet-50:64::224).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../common/subjects.h"
#include "analysis/liveness.h"
#include "dtr/graph_program.h"
#include "dtr/program.h"
#include "dtr/simulator.h"
#include "optimize/optimizer.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "util/error.h"
#include "../common/progress.h"

using namespace memfit;

namespace {

using Clock = std::chrono::steady_clock;

std::string DtrCell(const dtr::SimResult& r) {
  switch (r.status) {
    case dtr::SimStatus::kOk: return fmt::format("{:+.1f}%", 100 * (r.overhead - 1));
    case dtr::SimStatus::kOom: return "OOM";
    case dtr::SimStatus::kOverheadExceeded: return ">2x";
  }
  return "?";
}

struct Speed {
  int64_t ops = 0;
  double seconds = 0;
};

void Run(const std::string& spec, const sim::DeviceProfile& device, double time_budget, Speed& speed,
         int& static_wins, int& dynamic_wins, int& cells) {
  const std::optional<bench::Subject> loaded = bench::LoadOrSkip(spec, 22);
  if (!loaded) return;
  const bench::Subject& s = *loaded;
  const sim::Simulator simulator(s.graph, device);
  const sim::SimResult eager = simulator.Run(ProgramOrderSteps(s.graph));
  dtr::Program program;
  if (spec.rfind("dtr:", 0) == 0) {
    program = dtr::LoadProgram(bench::kShared + "/dtr/" + spec.substr(4));
  } else {
    program = dtr::ProgramFromGraph(s.graph, ProgramOrder(s.graph), sim::LatenciesUs(simulator.op_latencies()));
  }
  const dtr::Baseline base = dtr::MeasureBaseline(program);
  fmt::print("{:<22}  simulated peak {} B, DTR's unconstrained peak {} B ({:.5f}); compute {:.1f} ms\n", s.label,
             eager.peak_bytes, base.peak_bytes, static_cast<double>(base.peak_bytes) / eager.peak_bytes,
             eager.latency_us / 1000);
  for (const double ratio : {0.3, 0.4, 0.5, 0.6, 0.8, 0.9}) {
    const auto budget = static_cast<int64_t>(std::floor(ratio * static_cast<double>(eager.peak_bytes)));
    auto working = std::make_unique<bench::Working>(fmt::format("bench_static_dynamic: {} at {:.1f}", s.label, ratio));
    std::vector<std::string> row;
    double best_dynamic = INFINITY;
    for (const dtr::Heuristic h : {dtr::Heuristic::kDtr, dtr::Heuristic::kDtrEqClass, dtr::Heuristic::kMsps}) {
      dtr::SimOptions o;
      o.heuristic = h;
      o.budget_bytes = budget;
      const auto start = Clock::now();
      const dtr::SimResult r = dtr::Simulate(program, o, base);
      speed.seconds += std::chrono::duration<double>(Clock::now() - start).count();
      speed.ops += r.ops_replayed;
      row.push_back(DtrCell(r));
      if (r.status == dtr::SimStatus::kOk) best_dynamic = std::min(best_dynamic, r.overhead - 1);
    }
    double best_static = INFINITY;
    for (const bool swap : {false, true}) {
      OptimizeOptions o;
      o.mem_limit_bytes = budget;
      o.allow_swap = swap;
      o.time_budget_seconds = time_budget;
      try {
        const OptimizeResult r = Optimize(s.graph, device, nullptr, o);
        row.push_back(fmt::format("{:+.1f}%", 100 * r.overhead()));
        best_static = std::min(best_static, r.overhead());
      } catch (const Error&) {
        row.push_back("-");
      }
    }
    std::string verdict = "neither fits";
    if (std::isfinite(best_static) || std::isfinite(best_dynamic)) {
      ++cells;
      if (best_static <= best_dynamic + 1e-9) {
        ++static_wins;
        verdict = std::isfinite(best_dynamic) ? fmt::format("static {:.2f}x less", (1 + best_dynamic) / (1 + best_static))
                                              : "static only";
      } else {
        ++dynamic_wins;
        verdict = std::isfinite(best_static) ? fmt::format("DTR {:.2f}x less", (1 + best_static) / (1 + best_dynamic))
                                             : "DTR only";
      }
    }
    working.reset();  // the row replaces the progress line
    fmt::print("{:<22}{:>6.1f}{:>12.2f}{:>10}{:>10}{:>10}{:>12}{:>10}  {}\n", "", ratio,
               static_cast<double>(budget) / (1 << 30), row[0], row[1], row[2], row[3], row[4], verdict);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string device_name = "a100";
  double time_budget = 10;
  std::vector<std::string> specs;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--device") && i + 1 < argc) {
      device_name = argv[++i];
    } else if (!std::strcmp(argv[i], "--time-budget") && i + 1 < argc) {
      time_budget = std::stod(argv[++i]);
    } else {
      specs.emplace_back(argv[i]);
    }
  }
  if (specs.empty()) {
    specs = {"dtr:resnet32-56.log", "dtr:unet-6.log", "bert-base:32:512", "resnet-50:64::224", "unet:32::256"};
  }
  try {
    const sim::DeviceProfile device = sim::ResolveDevice(device_name);
    fmt::print("== DTR (dynamic) vs memfit optimize (static), same budgets; overhead over the unconstrained step ==\n");
    fmt::print("{:<22}{:>6}{:>12}{:>10}{:>10}{:>10}{:>12}{:>10}  {}\n", "subject", "ratio", "budget GiB", "dtr",
               "dtr-eq", "msps", "static rc", "static", "best vs best");
    Speed speed;
    int static_wins = 0, dynamic_wins = 0, cells = 0;
    for (const std::string& spec : specs) Run(spec, device, time_budget, speed, static_wins, dynamic_wins, cells);
    fmt::print("\nstatic plan at least as fast as the best DTR heuristic in {}/{} budgets (DTR faster in {})\n",
               static_wins, cells, dynamic_wins);
    fmt::print("DTR replay: {} operations in {:.3f} s = {:.2f} M ops/s\n", speed.ops, speed.seconds,
               speed.seconds > 0 ? static_cast<double>(speed.ops) / speed.seconds / 1e6 : 0.0);
  } catch (const Error& e) {
    fmt::print(stderr, "bench_static_dynamic: {}\n", e.what());
    return 1;
  }
  return 0;
}
