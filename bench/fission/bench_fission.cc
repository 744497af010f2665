// bench_fission: what fission adds to the optimizer.
//
// Table 1: model x limit x {without fission, with fission} -> simulated peak
// (of the unoptimized peak), latency overhead, solve time and what the plan
// did. Limits: memory ratios, and "lat<=R" rows: the smallest memory whose
// simulated latency stays within R of the unoptimized step (MAGIS's
// measure), with the least memory any plan of the graph as given needs
// within that latency (optimize/latency_bound.h).
// Table 2: the memory floor: the smallest memory the heuristic reaches at
// any overhead, for the graph as given and with the fissions the search
// considers (batch, sequence, spatial tiles; the two variants that need the
// least memory in program order, and the floor candidates: BatchNorm in two
// passes with the heavy backward runs split, each with its forward copied
// before it, x8 and x16).
//
//   build/bin/bench_fission [--device NAME] [--time-budget S] [--floor-only] [--zoo] [MODEL ...]
//
// MODEL: a zoo name with sizes (bert-base:32:512, resnet-50:64::224,
// fcn8:32::416x608). --zoo: every zoo model at its own sizes.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "analysis/dims.h"
#include "analysis/stats.h"
#include "models/zoo.h"
#include "optimize/fission_search.h"
#include "optimize/latency_bound.h"
#include "optimize/optimizer.h"
#include "transform/concat_convolution.h"
#include "plan/steps.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "transform/fission.h"
#include "util/error.h"
#include "../common/args.h"
#include "../common/progress.h"
#include "../common/subjects.h"

using namespace memfit;

namespace {

using Clock = std::chrono::steady_clock;

struct Limit {
  std::string label;
  std::optional<double> mem_ratio, lat_ratio;
};

std::string Cell(const std::function<OptimizeResult()>& run, double* seconds) {
  const auto start = Clock::now();
  try {
    const OptimizeResult r = run();
    *seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return fmt::format("{:>6.3f} {:>+8.2f}% {:>6.1f}s", double(r.optimized.peak_bytes) / r.original.peak_bytes,
                       100 * r.overhead(), *seconds) +
           (r.method.find(" + ") != std::string::npos ? "  " + r.method.substr(r.method.find(" + ") + 3) : "");
  } catch (const Error&) {
    *seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return fmt::format("{:>6} {:>9} {:>6.1f}s", "-", "no plan", *seconds);
  }
}

void Table1(const std::vector<std::string>& specs, const sim::DeviceProfile& device, double budget) {
  const std::vector<Limit> limits = {{"0.5", 0.5, {}}, {"0.3", 0.3, {}}, {"0.2", 0.2, {}},
                                     {"lat<=1.05", {}, 1.05}, {"lat<=1.10", {}, 1.10}};
  fmt::print("Table 1: peak (of the unoptimized), overhead, solve time; device {}, time budget {} s\n", device.name,
             budget);
  fmt::print("(bound: under a latency limit, the least memory any plan of the graph as given needs, "
             "optimize/latency_bound.h)\n");
  fmt::print("{:<22} {:<10} | {:^26} | {:^6} | {:^26}\n", "model", "limit", "without fission", "bound",
             "with fission");
  for (const std::string& spec : specs) {
    const auto subject = bench::LoadOrSkip(spec, 22);
    if (!subject) continue;
    // The simulator and program order the bound column reads, once per model.
    const sim::Simulator simulator(subject->graph, device);
    const sim::SimResult program_order = simulator.Run(ProgramOrderSteps(subject->graph));
    for (const Limit& l : limits) {
      OptimizeOptions o;
      o.mem_limit_ratio = l.mem_ratio;
      o.lat_limit_ratio = l.lat_ratio;
      o.time_budget_seconds = budget;
      double s1 = 0, s2 = 0;
      std::string without, with;
      {
        bench::Working working(fmt::format("bench_fission: {} at {}", subject->label, l.label));
        without = Cell([&] { return Optimize(subject->graph, device, nullptr, o); }, &s1);
        with = Cell([&] { return OptimizeWithFission(subject->graph, device, nullptr, o); }, &s2);
      }
      std::string bound;
      if (l.lat_ratio) {
        if (const auto b = MemoryBoundAtLatency(simulator, *l.lat_ratio * program_order.latency_us)) {
          bound = fmt::format("{:.3f}", double(b->bytes) / program_order.peak_bytes);
        }
      }
      fmt::print("{:<22} {:<10} | {:<26} | {:>6} | {}\n", subject->label, l.label, without, bound, with);
      std::fflush(stdout);
    }
  }
}

void Table2(const std::vector<std::string>& specs, const sim::DeviceProfile& device, double budget) {
  fmt::print("\nTable 2: the memory floor (smallest memory at any overhead, of the unoptimized peak)\n");
  fmt::print("{:<22} {:>10} {:>10}  {}\n", "model", "without", "fission", "best split");
  for (const std::string& spec : specs) {
    const auto subject = bench::LoadOrSkip(spec, 22);
    if (!subject) continue;
    OptimizeOptions o;
    o.mem_limit_ratio = 1.0;
    o.time_budget_seconds = budget;
    const double peak = static_cast<double>(ComputeStats(subject->graph).peak_bytes);
    const int64_t without = SmallestReachableBytes(subject->graph, device, nullptr, o);
    // The search makes every candidate from the step with its convolutions
    // of concatenations per piece where that needs less memory (at any
    // overhead, the time it adds does not matter).
    const Graph split = SplitConcatenatedConvolutions(subject->graph);
    const bool concat = ComputeStats(split).peak_bytes < peak;
    const Graph& g = concat ? split : subject->graph;
    // Every fission the search considers, in 2..16 parts; the two that need
    // the least memory in program order are bisected, and the floor
    // candidates (FissionCandidate::floor) in their two largest numbers of
    // parts, as the search tries them.
    const DimensionGraph dims = ComputeDimensions(g);
    std::vector<std::pair<int64_t, std::pair<std::string, Graph>>> variants;
    std::vector<std::pair<std::string, Graph>> floors;
    for (const FissionCandidate& c : FissionCandidates(g, dims)) {
      std::vector<std::pair<std::string, Graph>> made;
      for (int n : {2, 4, 8, 16}) {
        if (n > c.max_parts) break;
        try {
          made.push_back({fmt::format("{} x{}", c.name, n), c.apply(n).graph});
        } catch (const Error&) {
        }
      }
      if (c.floor) {
        for (size_t i = made.size() > 2 ? made.size() - 2 : 0; i < made.size(); ++i) floors.push_back(std::move(made[i]));
        continue;
      }
      for (auto& m : made) {
        const int64_t po = ComputeStats(m.second).peak_bytes;
        variants.push_back({po, std::move(m)});
      }
    }
    std::stable_sort(variants.begin(), variants.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t i = 0; i < variants.size() && i < 2; ++i) floors.push_back(std::move(variants[i].second));
    if (concat) floors.push_back({"", split});
    int64_t best = without;
    std::string label = "-";
    for (auto& [name, graph] : floors) {
      if (concat) name = name.empty() ? "concatenations split" : name + " + concatenations split";
      try {
        const int64_t b = SmallestReachableBytes(graph, device, nullptr, o);
        if (b < best) best = b, label = name;
      } catch (const Error&) {
      }
    }
    fmt::print("{:<22} {:>10.3f} {:>10.3f}  {}\n", subject->label, without / peak, best / peak, label);
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string device_name = "rtx3090";
    double budget = 10;
    bool floor_only = false;
    std::vector<std::string> specs;
    for (bench::Args args(argc, argv); args.Next();) {
      if (args.Value("--device", device_name) || args.Value("--time-budget", budget)) continue;
      const std::string& arg = args.arg();
      if (arg == "--floor-only") {
        floor_only = true;
      } else if (arg == "--zoo") {
        for (const ZooModel& m : ZooModels()) specs.push_back(m.name);
      } else if (arg.starts_with("-")) {
        const bool help = arg == "--help" || arg == "-h";
        fmt::print(help ? stdout : stderr, "usage: bench_fission [--device NAME] [--time-budget S] [--floor-only] [--zoo] [MODEL ...]\n"
                           "  MODEL: a zoo name with sizes (bert-base:32:512, resnet-50:64::224, fcn8:32::416x608)\n");
        return help ? 0 : 2;
      } else {
        specs.push_back(arg);
      }
    }
    // MAGIS's workloads (resnet-50 bs64 img224, bert-base bs32 seq512,
    // vit-base bs64, unet bs32 img256), the VGG16 of bench_remat, and one
    // high-resolution image (spatial fission's case), and the Keras
    // segmentation nets of Checkmate at 416x608 (segnet is left out: its
    // latency-limit cells overrun the 10 s budget).
    if (specs.empty()) {
      specs = {"vgg16:32",     "resnet-50:64::224", "bert-base:32:512", "vit-base:64",
               "unet:32::256", "vgg16:1::1024",     "fcn8:32",          "vgg-unet:32"};
    }
    const sim::DeviceProfile device = sim::FindDevice(device_name);
    if (!floor_only) Table1(specs, device, budget);
    Table2(specs, device, budget);
  } catch (const Error& e) {
    fmt::print(stderr, "bench_fission: {}\n", e.what());
    return 2;
  }
  return 0;
}
