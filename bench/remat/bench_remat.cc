// bench_remat: fitting training steps under memory limits.
//
// Part 1 (the main table): model x limit x method -> simulated peak, the
// arena its offsets take, latency overhead over the unoptimized program-order
// step, and solve time, for the
// issue's models (zoo graphs at their benchmark sizes, the Checkmate graphs
// and the two DTR traces as static graphs). Methods: memfit's optimizer
// (`auto`: schedules + heuristic + swapping, the MILP on small problems),
// the heuristic with recomputation only (`heuristic --no-swap`), and the
// baselines users apply today, checkpoint-blocks and sqrt-n, which have no
// limit of their own: their row shows what they reach.
//
// Part 2: the heuristic (recomputation only) against the Checkmate MILP's
// proven optimum on the node-level problems small enough for CBC.
//
// Chains (only with --chains): the MILP alone on training chains of n unit
// nodes (f_i reads f_{i-1}; g_i reads g_{i+1} and f_i; n/2 + 1 bytes in
// order), the time it takes to prove the cheapest sequence at each budget.
//
// Part 3 (only with --part3-only): a lower bound on the overhead of any plan,
// swapping included, at 30% and 50% of the peak, for the graphs where Part 1
// misses the targets (15%, 5%) or finds no plan; "out of reach" and "no plan
// fits" are proofs (the first in the MILP's model).
//
//   build/bin/bench_remat [--device NAME] [--time-budget S] [--milp-time S]
//                         [--part1-only|--part2-only|--part3-only|--chains] [--ratios R,R,...] [MODEL ...]
//
// --ratios: Part 2's memory limits, as fractions of the in-order peak (default 0.5,0.6,0.8,0.9).
//
// MODEL: a zoo name with sizes (bert-base:32:512, resnet-50:64::224), or
// checkmate:FILE.json / dtr:FILE.log under ../shared/data.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/liveness.h"
#include "analysis/stats.h"
#include "autodiff/training_graph.h"
#include "importers/checkmate_import.h"
#include "importers/dtr_import.h"
#include "models/zoo.h"
#include "optimize/optimizer.h"
#include "remat/graph_problem.h"
#include "remat/heuristic.h"
#include "remat/lower.h"
#include "remat/milp.h"
#include "sim/simulator.h"
#include "util/error.h"
#include "../common/args.h"
#include "../common/progress.h"
#include "../common/subjects.h"

using namespace memfit;
using bench::Subject;

namespace {

struct Method {
  std::string name;
  OptimizeOptions options;
  bool baseline = false;  // no limit of its own
};

void Part1(const std::vector<std::string>& specs, const sim::DeviceProfile& device, double time_budget) {
  const std::vector<double> ratios = {0.3, 0.4, 0.5, 0.6, 0.8, 0.9};
  std::vector<Method> methods;
  {
    Method m{"memfit", {}, false};
    m.options.time_budget_seconds = time_budget;
    methods.push_back(m);
    m.name = "recompute-only";
    m.options.allow_swap = false;
    m.options.method = RematMethod::kHeuristic;
    methods.push_back(m);
    for (RematMethod b : {RematMethod::kCheckpointBlocks, RematMethod::kSqrtN}) {
      Method base{std::string(ToString(b)), {}, true};
      base.options.method = b;
      base.options.reorder = false;
      methods.push_back(base);
    }
  }
  fmt::print("== Part 1: model x limit x method (device {}) ==\n", device.name);
  fmt::print("{:<26}{:>6}  {:<16}{:>12}{:>10}{:>11}{:>11}{:>9}  {}\n", "model", "limit", "method", "peak GiB",
             "peak/ori", "arena/ori", "overhead", "seconds", "plan");
  for (const std::string& spec : specs) {
    const std::optional<Subject> loaded = bench::LoadOrSkip(spec, 26);
    if (!loaded) continue;
    const Subject& s = *loaded;
    for (const Method& m : methods) {
      const std::vector<double> limits = m.baseline ? std::vector<double>{1e6} : ratios;
      for (double ratio : limits) {
        OptimizeOptions o = m.options;
        o.mem_limit_ratio = ratio;
        const std::string limit = m.baseline ? "-" : fmt::format("{:.1f}", ratio);
        try {
          const OptimizeResult r = [&] {
            bench::Working working(fmt::format("bench_remat: {} at {} with {}", s.label, limit, m.name));
            return Optimize(s.graph, device, nullptr, o);
          }();
          fmt::print("{:<26}{:>6}  {:<16}{:>12.3f}{:>10.3f}{:>11.3f}{:>+10.2f}%{:>9.2f}  {}\n", s.label, limit, m.name,
                     r.optimized.peak_bytes / double(1 << 30),
                     double(r.optimized.peak_bytes) / r.original.peak_bytes,
                     double(r.plan.placement.arena_bytes) / r.original.peak_bytes, 100 * r.overhead(), r.seconds,
                     r.method);
        } catch (const Error& e) {
          // The error's tail names what memfit reaches instead.
          std::string why = e.what();
          std::string shown = ": " + why;
          for (const std::string reach : {"the smallest memory memfit reaches is ", "the smallest arena memfit packed is "}) {
            if (const size_t at = why.find(reach); at != std::string::npos) {
              shown = " (" + why.substr(at + reach.size()) + (reach.find("arena") != std::string::npos ? " arena)" : ")");
            }
          }
          fmt::print("{:<26}{:>6}  {:<16}  infeasible{}\n", s.label, limit, m.name, shown);
        }
        std::fflush(stdout);
      }
    }
  }
}

// A graph's node-level problem in program order, and its in-order run.
struct NodeProblem {
  remat::GraphProblem gp;
  remat::Evaluation in_order;
};
NodeProblem InProgramOrder(const Graph& graph, const sim::DeviceProfile& device) {
  const sim::Simulator simulator(graph, device);
  NodeProblem np;
  np.gp = remat::BuildGraphProblem(graph, ProgramOrder(graph), sim::LatenciesUs(simulator.op_latencies()));
  np.in_order = remat::Evaluate(np.gp.problem, remat::InOrderSequence(np.gp.problem));
  return np;
}

// Calls fn(subject, node problem, its in-order run) for each spec that loads.
template <typename Fn>
void ForEachInProgramOrder(const std::vector<std::string>& specs, const sim::DeviceProfile& device, Fn fn) {
  for (const std::string& spec : specs) {
    const std::optional<Subject> loaded = bench::LoadOrSkip(spec, 26);
    if (!loaded) continue;
    const NodeProblem np = InProgramOrder(loaded->graph, device);
    fn(*loaded, np.gp.problem, np.in_order);
  }
}

void Part2(const std::vector<std::string>& specs, const sim::DeviceProfile& device, double milp_time,
           const std::vector<double>& ratios) {
  fmt::print("\n== Part 2: heuristic (recompute only) vs the Checkmate MILP (CBC, {} s limit) ==\n", milp_time);
  fmt::print("{:<26}{:>6}{:>7}{:>19}{:>19}{:>10}{:>12}{:>10}{:>10}\n", "problem", "nodes", "limit", "heuristic us",
             "milp us", "gap", "milp status", "milp s", "heur s");
  size_t proven = 0, within = 0;
  ForEachInProgramOrder(specs, device, [&](const Subject& s, const remat::Problem& p, const remat::Evaluation& in_order) {
    const int64_t peak = in_order.peak_bytes;
    const double total_us = in_order.total_us();
    for (double ratio : ratios) {
      const int64_t budget = static_cast<int64_t>(ratio * peak);
      // The heuristic as the optimizer runs it (remat::RecomputeVariants),
      // judged by the MILP's own model (Evaluate: whole nodes): for each
      // variant the loosest internal budget whose sequence fits, and the
      // cheapest of those.
      const auto h0 = std::chrono::steady_clock::now();
      std::optional<remat::Evaluation> heuristic;
      std::vector<uint32_t> warm;
      for (remat::HeuristicOptions ho : remat::RecomputeVariants()) {
        ho.max_recompute_us = 2 * total_us;  // as the optimizer: past this it only thrashes
        for (int64_t b = budget; b > p.fixed_bytes; b -= std::max<int64_t>(budget / 100, 1)) {
          ho.budget_bytes = b;
          const remat::HeuristicResult h = remat::RunHeuristic(p, ho);
          if (!h.done()) continue;  // gave up at this budget
          const std::vector<uint32_t> seq = remat::EvalSequence(h.events);
          const remat::Evaluation ev = remat::Evaluate(p, seq);
          if (!ev.valid || ev.peak_bytes > budget) continue;
          if (!heuristic || ev.total_us() < heuristic->total_us()) heuristic = ev, warm = seq;
          break;
        }
      }
      const double heur_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - h0).count();
      remat::MilpOptions mo;
      mo.budget_bytes = budget;
      mo.time_limit_seconds = milp_time;
      mo.warm_start = warm;
      const remat::MilpResult m = remat::SolveCheckmateMilp(p, mo);
      const bool opt = m.status == remat::MilpResult::Status::kOptimal;
      std::string gap = "-";
      if (heuristic && !m.sequence.empty()) {
        const double g = heuristic->total_us() / m.cost_us - 1;
        gap = FormatChange(g);
        if (opt) proven++, within += g <= 0.02 + 1e-12;
      }
      fmt::print("{:<26}{:>6}{:>7.2f}{:>19}{:>19}{:>10}{:>12}{:>10.2f}{:>10.3f}\n", s.label, p.size(), ratio,
                 heuristic ? fmt::format("{:.1f}", heuristic->total_us()) : "none",
                 m.sequence.empty() ? "none" : fmt::format("{:.1f}", m.cost_us), gap, remat::ToString(m.status),
                 m.seconds, heur_s);
      std::fflush(stdout);
    }
  });
  fmt::print("\nheuristic within 2% of the MILP on {}/{} proven optima\n", within, proven);
}

// n/2 forward nodes f_0..f_{n/2-1} (f_i reads f_{i-1}), then the backward
// g_{n/2-1}..g_0 (g_i reads g_{i+1} and f_i); every node costs 1 and holds 1
// byte, so program order peaks at n/2 + 1 bytes, when the first g runs.
remat::Problem TrainingChainOf(uint32_t n) {
  remat::Problem p;
  p.name = fmt::format("training chain of {}", n);
  const uint32_t half = n / 2;
  for (uint32_t i = 0; i < half; ++i) {
    remat::Node f;
    f.name = fmt::format("f{}", i);
    f.cost_us = 1;
    f.bytes = 1;
    if (i > 0) f.inputs = {i - 1};
    p.nodes.push_back(f);
  }
  for (uint32_t j = 0; j < half; ++j) {  // g_{half-1-j}
    remat::Node g;
    g.name = fmt::format("g{}", half - 1 - j);
    g.cost_us = 1;
    g.bytes = 1;
    g.backward = true;
    if (j > 0) g.inputs.push_back(half + j - 1);
    g.inputs.push_back(half - 1 - j);
    p.nodes.push_back(g);
  }
  return p;
}

void Chains(double milp_time) {
  fmt::print("\n== Training chains: the Checkmate MILP alone (CBC, {} s limit, 1 thread) ==\n", milp_time);
  fmt::print("{:>6}{:>8}{:>14}{:>10}{:>10}{:>12}{:>10}\n", "nodes", "budget", "status", "cost", "in order",
             "bound", "milp s");
  const std::vector<std::pair<uint32_t, int64_t>> cases = {{8, 5},  {8, 2},  {16, 6}, {16, 5}, {16, 4},
                                                           {32, 8}, {32, 7}, {32, 6}, {32, 5}};
  for (const auto& [n, budget] : cases) {
    const remat::Problem p = TrainingChainOf(n);
    remat::MilpOptions mo;
    mo.budget_bytes = budget;
    mo.time_limit_seconds = milp_time;
    const remat::MilpResult m = remat::SolveCheckmateMilp(p, mo);
    const bool found = !m.sequence.empty();
    fmt::print("{:>6}{:>8}{:>14}{:>10}{:>10}{:>12}{:>10.2f}\n", n, budget, remat::ToString(m.status),
               found ? fmt::format("{:.0f}", m.cost_us) : "-", n,
               m.status == remat::MilpResult::Status::kFeasible ? fmt::format("{:.1f}", m.lower_bound_us) : "-",
               m.seconds);
    std::fflush(stdout);
  }
}

// Part 3: how low any plan's overhead can go, swapping included. Whatever is
// off the device at time t was copied out before t and (if it is read again)
// comes back after it, so over a step of T us the host holds at most
// bandwidth x T/2 bytes at any moment. Counting those bytes as resident turns
// a plan with swaps into a recompute-only sequence (same recomputation) under
// the limit plus that much: the MILP's lower bound there (its model, order
// fixed) bounds every plan whose step is within the target. A bound above
// the target proves the target out of reach.
void Part3(const std::vector<std::string>& specs, const sim::DeviceProfile& device, double milp_time) {
  constexpr size_t kMilpMaxNodes = 150;
  fmt::print("\n== Part 3: the least overhead any plan can have, swaps on the {:g} GB/s host link included (CBC, {} s "
             "limit) ==\n",
             device.host_bandwidth_bytes_per_s / 1e9, milp_time);
  fmt::print("{:<26}{:>7}{:>8}{:>10}{:>10}{:>13}{:>10}{:>13}  {}\n", "problem", "limit", "target", "one op", "host GiB",
             "milp status", "milp s", "overhead >=", "verdict");
  const std::pair<double, double> cells[] = {{0.3, 0.15}, {0.5, 0.05}};
  ForEachInProgramOrder(specs, device, [&](const Subject& s, const remat::Problem& p, const remat::Evaluation& in_order) {
    // Every op needs its inputs, result and workspace on the device at once.
    const double one_op = double(remat::MemoryLowerBound(p)) / in_order.peak_bytes;
    for (const auto& [ratio, target] : cells) {
      const double step_us = (1 + target) * in_order.total_us();
      const auto host = static_cast<int64_t>(device.host_bandwidth_bytes_per_s * step_us * 1e-6 / 2);
      if (one_op > ratio || p.size() > kMilpMaxNodes) {
        fmt::print("{:<26}{:>7.1f}{:>7.0f}%{:>10.3f}{:>10.4g}{:>13}{:>10}{:>13}  {}\n", s.label, ratio, 100 * target, one_op,
                   host / double(1 << 30), "-", "-", "-",
                   one_op > ratio ? "no plan fits (one op needs more)" : "too large for the MILP");
        continue;
      }
      remat::MilpOptions mo;
      mo.budget_bytes = static_cast<int64_t>(ratio * in_order.peak_bytes) + host;
      mo.time_limit_seconds = milp_time;
      mo.lower_bound_only = true;
      const remat::MilpResult m = remat::SolveCheckmateMilp(p, mo);
      const double least = m.lower_bound_us / in_order.total_us() - 1;
      std::string verdict = least > target + 1e-12 ? fmt::format("{:.0f}% out of reach", 100 * target)
                                                   : fmt::format("{:.0f}% not ruled out", 100 * target);
      if (m.status == remat::MilpResult::Status::kInfeasible) verdict = "no plan fits";
      fmt::print("{:<26}{:>7.1f}{:>7.0f}%{:>10.3f}{:>10.4g}{:>13}{:>10.2f}{:>13}  {}\n", s.label, ratio, 100 * target,
                 one_op, host / double(1 << 30), remat::ToString(m.status), m.seconds,
                 std::isfinite(m.lower_bound_us) ? FormatChange(least) : "-", verdict);
      std::fflush(stdout);
    }
  });
}

}  // namespace

int main(int argc, char** argv) {
  std::string device_name = "a100";
  double time_budget = 10, milp_time = 60;
  bool part1 = true, part2 = true, part3 = false, chains = false;
  std::vector<double> ratios = {0.5, 0.6, 0.8, 0.9};  // Part 2's limits
  std::vector<std::string> specs;
  try {
    for (bench::Args args(argc, argv); args.Next();) {
      if (args.Value("--device", device_name) || args.Value("--time-budget", time_budget) ||
          args.Value("--milp-time", milp_time)) {
        continue;
      }
      const std::string& arg = args.arg();
      if (arg == "--part1-only") {
        part2 = false;
      } else if (arg == "--part2-only") {
        part1 = false;
      } else if (arg == "--part3-only") {
        part1 = part2 = false, part3 = true;
      } else if (arg == "--chains") {
        part1 = part2 = false, chains = true;
      } else if (std::string ratio_list; args.Value("--ratios", ratio_list)) {
        ratios.clear();
        std::stringstream list(ratio_list);
        for (std::string r; std::getline(list, r, ',');) ratios.push_back(bench::Number("--ratios", r));
      } else {
        specs.push_back(arg);
      }
    }
    const sim::DeviceProfile device = sim::ResolveDevice(device_name);
    if (part1) {
      std::vector<std::string> main = specs;
      if (main.empty()) {
        main = {"resnet-50:64::224", "bert-base:32:512", "vit-base:64::224", "unet:32::256", "gpt2-medium"};
        for (const char* f : {"VGG16_256_224x224_train.json", "ResNet50_256_224x224_train.json",
                              "MobileNet_512_224x224_train.json", "fcn_8_vgg_32_416x608_train.json",
                              "segnet_32_416x608_train.json", "vgg_unet_32_416x608_train.json"}) {
          main.push_back(std::string("checkmate:") + f);
        }
        main.push_back("dtr:resnet32-56.log");
        main.push_back("dtr:unet-6.log");
      }
      Part1(main, device, time_budget);
    }
    if (part2) {
      std::vector<std::string> small = specs;
      if (small.empty()) {
        small = {"mlp",
                 "checkmate:VGG16_256_224x224_train.json",
                 "checkmate:VGG19_256_224x224_train.json",
                 "checkmate:fcn_8_vgg_32_416x608_train.json",
                 "checkmate:vgg_unet_32_416x608_train.json",
                 "checkmate:segnet_32_416x608_train.json",
                 "checkmate:random_layered_n100_w0.27_nlv0.75_ed0.2_scd0.14.json"};
      }
      Part2(small, device, milp_time, ratios);
    }
    if (chains) Chains(milp_time);
    if (part3) {
      std::vector<std::string> small = specs;
      if (small.empty()) {
        small = {"gpt2-medium", "checkmate:VGG16_256_224x224_train.json", "checkmate:fcn_8_vgg_32_416x608_train.json",
                 "checkmate:segnet_32_416x608_train.json", "checkmate:vgg_unet_32_416x608_train.json"};
      }
      Part3(small, device, milp_time);
    }
  } catch (const Error& e) {
    fmt::print(stderr, "bench_remat: {}\n", e.what());
    return 2;
  }
  return 0;
}
