// bench_alloc: static offset planning on MiniMalloc's challenging suite, on
// real allocation traces (shared/data/alloc/realworld, 1k to 62k buffers)
// and on large random training-step-like problems. Prints tables; every
// placement is validated by the independent checker (check::PlanAndCheck).
//
//   build/bin/bench_alloc [--time-limit S] [--skip-random] [--skip-realworld] [--only X]
#include <fmt/format.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "alloc/csv.h"
#include "alloc/planner.h"
#include "check/plan_and_check.h"
#include "../common/args.h"
#include "../common/progress.h"

namespace {

using namespace memfit;

double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

constexpr int64_t kCapacity = 1048576;
struct Reference {
  const char* name;
  double minimalloc_cpu_seconds;  // Published, measured on this kind of machine.
};
constexpr std::array<Reference, 11> kSuite = {{{"A", 4.73}, {"B", 3.68}, {"C", 0.62}, {"D", 2.76},
                                               {"E", 4.07}, {"F", 5.46}, {"G", 1.21}, {"H", 1.94},
                                               {"I", 3.64}, {"J", 0.92}, {"K", 0.69}}};

alloc::PlanResult Timed(const alloc::Problem& p, const alloc::PlanOptions& o, double* cpu) {
  const double start = CpuSeconds();
  alloc::PlanResult r = check::PlanAndCheck(p, o);
  *cpu = CpuSeconds() - start;
  return r;
}

alloc::ExactOptions g_exact;  // Ablation switches from the command line.

void RunSuite(double time_limit, const std::string& only) {
  fmt::print("MiniMalloc challenging suite, capacity {} bytes, alignment 1\n", kCapacity);
  fmt::print("{:<8} {:>7} {:>9} {:>9} {:>7} {:>10} {:>9} {:>9} {:>8} {:>8}\n", "problem",
             "buffers", "lower_bd", "best-fit", "over%", "exact", "height", "nodes", "cpu_s",
             "ref_s");
  double total_cpu = 0;
  double total_ref = 0;
  int solved = 0;
  int count = 0;
  for (const Reference& ref : kSuite) {
    if (!only.empty() && only != ref.name) continue;
    const std::string path = fmt::format("{}/../shared/data/alloc/minimalloc-challenging/{}.{}.csv",
                                         MEMFIT_SOURCE_DIR, ref.name, kCapacity);
    alloc::Problem problem = alloc::ReadProblemCsv(path);
    problem.capacity_bytes = kCapacity;
    alloc::PlanOptions greedy;
    greedy.planner = alloc::PlannerKind::kBestFit;
    greedy.objective = alloc::Objective::kMinimizeHeight;
    greedy.alignment_bytes = 1;
    double greedy_cpu = 0;
    const alloc::PlanResult g = Timed(problem, greedy, &greedy_cpu);
    alloc::PlanOptions exact;
    exact.planner = alloc::PlannerKind::kExact;
    exact.objective = alloc::Objective::kFitCapacity;
    exact.alignment_bytes = 1;
    exact.time_limit_seconds = time_limit;
    exact.exact = g_exact;
    double cpu = 0;
    const alloc::PlanResult e = [&] {
      bench::Working working(fmt::format("bench_alloc: {} exact", ref.name));
      return Timed(problem, exact, &cpu);
    }();
    const bool ok = e.status == alloc::PlanStatus::kSolved;
    solved += ok;
    ++count;
    total_cpu += cpu;
    total_ref += ref.minimalloc_cpu_seconds;
    fmt::print("{:<8} {:>7} {:>9} {:>9} {:>6.1f}% {:>10} {:>9} {:>9} {:>8.3f} {:>8.2f}\n", ref.name,
               problem.buffers.size(), g.lower_bound_bytes, g.solution->height_bytes,
               100.0 * (static_cast<double>(g.solution->height_bytes) / kCapacity - 1.0),
               alloc::ToString(e.status), ok ? std::to_string(e.solution->height_bytes) : "-",
               e.search_nodes, cpu, ref.minimalloc_cpu_seconds);
    std::fflush(stdout);
  }
  fmt::print("total: {}/{} solved at capacity, {:.3f} CPU s (MiniMalloc: {:.2f} s); speed-up {:.1f}x\n\n",
             solved, count, total_cpu, total_ref, total_cpu > 0 ? total_ref / total_cpu : 0.0);
}

// The real traces, with `memfit alloc TRACE --minimize` at its defaults
// (auto, alignment 1 as in the CSV files, the given time limit). Peak RSS
// is the process's so far (it never drops), so a trace's own peak shows
// only where it is above those before it.
void RunRealWorld(double time_limit) {
  fmt::print("Real allocation traces (idealloc), minimize height, auto, alignment 1, {} s limit\n",
             time_limit);
  fmt::print("{:<12} {:>7} {:>16} {:>16} {:>10} {:>14} {:>9} {:>8} {:>10}\n", "trace", "buffers",
             "lower_bd", "height", "ratio", "planner", "optimal", "wall_s", "peak_MB");
  for (const char* name : {"resnet50", "tiny_bert", "bert_base", "pangu_2.6B", "Y_1"}) {
    const std::string path =
        fmt::format("{}/../shared/data/alloc/realworld/{}.csv.gz", MEMFIT_SOURCE_DIR, name);
    const alloc::Problem problem = alloc::ReadProblemCsv(path);
    alloc::PlanOptions o;
    o.objective = alloc::Objective::kMinimizeHeight;
    o.alignment_bytes = 1;
    o.time_limit_seconds = time_limit;
    const auto start = std::chrono::steady_clock::now();
    const alloc::PlanResult r = [&] {
      bench::Working working(fmt::format("bench_alloc: {} ({} buffers)", name, problem.buffers.size()));
      return check::PlanAndCheck(problem, o);
    }();
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    fmt::print("{:<12} {:>7} {:>16} {:>16} {:>10.6f} {:>14} {:>9} {:>8.2f} {:>10.0f}\n", name,
               problem.buffers.size(), r.lower_bound_bytes, r.solution->height_bytes,
               static_cast<double>(r.solution->height_bytes) / static_cast<double>(r.lower_bound_bytes),
               r.planner, r.proven_optimal, wall, static_cast<double>(usage.ru_maxrss) / 1024.0);
    std::fflush(stdout);
  }
  fmt::print("\n");
}

// A training step: a forward pass over `layers` layers whose activations
// stay alive until the matching backward layer, short-lived temporaries in
// both passes, gradients that live from their backward layer to the
// optimizer step, and a few whole-step buffers (weights are not planned).
alloc::Problem RandomTrainingStep(int layers, uint32_t seed) {
  std::mt19937_64 rng(seed);
  auto size = [&](int64_t lo, int64_t hi) {
    std::uniform_int_distribution<int64_t> d(lo, hi);
    return d(rng) * 256;
  };
  std::uniform_int_distribution<int> coin(0, 3);
  alloc::Problem p;
  int id = 0;
  auto add = [&](int64_t lower, int64_t upper, int64_t bytes) {
    alloc::Buffer b;
    b.id = {std::to_string(id++)};
    b.lifetime = {lower, upper};
    b.size_bytes = bytes;
    p.buffers.push_back(std::move(b));
  };
  const int64_t steps_per_layer = 4;
  const int64_t forward_end = layers * steps_per_layer;
  const int64_t end = 2 * forward_end + 2;
  for (int l = 0; l < layers; ++l) {
    const int64_t t = l * steps_per_layer;
    const int64_t back = 2 * forward_end - t;  // The mirrored backward time.
    // Saved activations (1-3 per layer).
    for (int k = 0, n = 1 + coin(rng) % 3; k < n; ++k) add(t + k, back - k, size(64, 4096));
    // Forward temporaries.
    for (int k = 0, n = coin(rng); k < n; ++k) add(t + k, t + k + 2, size(16, 8192));
    // Backward temporaries and activation gradients.
    for (int k = 0, n = 1 + coin(rng); k < n; ++k) add(back - k - 2, back - k, size(16, 8192));
    // Buffers that outlive their layer by a random stretch (saved for a later
    // layer, recomputed, or held by a second stream), in both passes.
    std::uniform_int_distribution<int64_t> stretch(2, 40 * steps_per_layer);
    for (int k = 0, n = coin(rng) % 3; k < n; ++k) {
      const int64_t start = (k % 2 == 0 ? t : back - stretch(rng)) + coin(rng);
      add(start, std::min(end, start + stretch(rng)), size(16, 16384));
    }
    // Weight gradient: from its backward layer to the optimizer step.
    if (coin(rng) == 0) add(back - 1, end, size(16, 1024));
  }
  add(0, end, size(1024, 2048));  // e.g. the input batch
  return p;
}

void RunRandom(double time_limit) {
  fmt::print("Random training-step problems (seeded), alignment 64, minimize height\n");
  fmt::print("{:<10} {:>7} {:>12} {:>12} {:>7} {:>8} {:>12} {:>7} {:>8} {:>8}\n", "problem",
             "buffers", "lower_bd", "greedy", "gap%", "cpu_s", "auto", "gap%", "cpu_s", "optimal");
  for (const auto& [layers, seed] : std::vector<std::pair<int, uint32_t>>{
           {2000, 1}, {2000, 2}, {4000, 3}}) {
    alloc::Problem p = RandomTrainingStep(layers, seed);
    alloc::PlanOptions o;
    o.objective = alloc::Objective::kMinimizeHeight;
    o.alignment_bytes = 64;
    o.time_limit_seconds = time_limit;
    int64_t greedy_height = 0;
    double greedy_cpu = 0;
    std::string greedy_name;
    int64_t lower = 0;
    for (alloc::PlannerKind k : {alloc::PlannerKind::kBestFit, alloc::PlannerKind::kGreedySize,
                                 alloc::PlannerKind::kGreedyBreadth}) {
      o.planner = k;
      double cpu = 0;
      const alloc::PlanResult r = Timed(p, o, &cpu);
      greedy_cpu += cpu;
      lower = r.lower_bound_bytes;
      if (greedy_height == 0 || r.solution->height_bytes < greedy_height) {
        greedy_height = r.solution->height_bytes;
        greedy_name = r.planner;
      }
    }
    o.planner = alloc::PlannerKind::kAuto;
    double cpu = 0;
    const alloc::PlanResult a = Timed(p, o, &cpu);
    auto gap = [&](int64_t h) { return 100.0 * (static_cast<double>(h) / lower - 1.0); };
    fmt::print("{:<10} {:>7} {:>12} {:>12} {:>6.3f}% {:>8.2f} {:>12} {:>6.3f}% {:>8.2f} {:>8}\n",
               fmt::format("L{}s{}", layers, seed), p.buffers.size(), lower, greedy_height,
               gap(greedy_height), greedy_cpu, a.solution->height_bytes, gap(a.solution->height_bytes),
               cpu, a.proven_optimal);
    std::fflush(stdout);
  }
  fmt::print("greedy: best of best-fit, greedy-size, greedy-breadth (cpu_s: all three)\n");
}

}  // namespace

int Main(int argc, char** argv) {
  double time_limit = 60.0;
  double random_time_limit = 10.0;
  bool random = true;
  bool suite = true;
  bool realworld = true;
  double realworld_time_limit = 10.0;
  std::string only;
  for (bench::Args args(argc, argv); args.Next();) {
    if (args.Value("--time-limit", time_limit) || args.Value("--random-time-limit", random_time_limit) ||
        args.Value("--realworld-time-limit", realworld_time_limit) || args.Value("--only", only)) {
      continue;
    }
    const std::string& arg = args.arg();
    if (std::string what; args.Value("--disable", what)) {
      if (what == "inference") g_exact.section_inference = false;
      if (what == "floor") g_exact.unallocated_floor = false;
      if (what == "dominance") g_exact.dominance = false;
      if (what == "decomposition") g_exact.decomposition = false;
      if (what == "restarts") g_exact.restarts = false;
    } else if (arg == "--skip-realworld") {
      realworld = false;
    } else if (arg == "--skip-random") {
      random = false;
    } else if (arg == "--skip-suite") {
      suite = false;
    } else {
      fmt::print(stderr,
                 "usage: bench_alloc [--time-limit S] [--random-time-limit S] "
                 "[--realworld-time-limit S] [--skip-random] [--skip-suite] [--skip-realworld] "
                 "[--only A..K]\n");
      return 2;
    }
  }
  if (suite) RunSuite(time_limit, only);
  if (realworld && only.empty()) RunRealWorld(realworld_time_limit);
  if (random) RunRandom(random_time_limit);
  return 0;
}

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const memfit::Error& e) {
    fmt::print(stderr, "bench_alloc: {}\n", e.what());
    return 2;
  }
}
