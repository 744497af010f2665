// Reproduces the DTR paper's simulated evaluation (simrd) on the two shared
// traces: for each heuristic x trace x budget ratio, our overhead next to the
// published figure (../shared/data/dtr/simrd_reference.txt), the relative
// difference and a verdict; then the replay speed and the time of a full sweep
// (10 budgets x 7 heuristics) per trace.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/stats.h"
#include "dtr/program.h"
#include "dtr/simulator.h"
#include "util/error.h"
#include "util/file.h"

namespace {

using namespace memfit::dtr;

const std::string kDataDir = MEMFIT_SOURCE_DIR "/../shared/data/dtr";

struct TraceCase {
  std::string label;  // as in the reference file
  std::string file;
};

// Reference cell: a number, "OOM" or ">2x".
struct Cell {
  std::optional<double> overhead;
  std::string verdict;  // "ok", "OOM", ">2x"
};

// reference[heuristic][trace label][ratio index]
using Reference = std::map<std::string, std::map<std::string, std::vector<Cell>>>;

Reference ReadReference(const std::string& path) {
  Reference ref;
  std::istringstream in(memfit::ReadFile(path));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::istringstream ls(line);
    std::string heuristic, model, batch, cell;
    ls >> heuristic >> model >> batch;
    std::string label = model + " " + batch;
    std::vector<Cell>& cells = ref[heuristic][label];
    while (ls >> cell) {
      std::string value = cell.substr(cell.find(':') + 1);
      if (value == "OOM" || value == ">2x") {
        cells.push_back({std::nullopt, value});
      } else {
        cells.push_back({std::stod(value), "ok"});
      }
    }
  }
  return ref;
}

std::string Verdict(const SimResult& r) {
  switch (r.status) {
    case SimStatus::kOk: return "ok";
    case SimStatus::kOom: return "OOM";
    case SimStatus::kOverheadExceeded: return ">2x";
  }
  return "?";
}

}  // namespace

int main() try {
  const std::vector<TraceCase> traces = {{"ResNet-32 (56)", "resnet32-56.log"},
                                         {"U-Net (6)", "unet-6.log"}};
  const std::vector<std::pair<std::string, Heuristic>> names = {
      {"DTR", Heuristic::kDtr},         {"DTREqClass", Heuristic::kDtrEqClass},
      {"DTRLocal", Heuristic::kDtrLocal}, {"LRU", Heuristic::kLru},
      {"LargestStorage", Heuristic::kLargest}, {"MSPS", Heuristic::kMsps}};
  Reference ref = ReadReference(kDataDir + "/simrd_reference.txt");
  std::vector<double> ratios = PaperRatios();

  int cells = 0, matched = 0, verdicts_same = 0, numeric = 0, within = 0;
  double worst = 0;
  fmt::print("{:<15} {:<15} {:>5} {:>9} {:>9} {:>9}  {}\n", "heuristic", "trace", "ratio", "memfit",
             "simrd", "rel.diff", "verdict");
  for (const auto& [ref_name, heuristic] : names) {
    for (const TraceCase& tc : traces) {
      Program program = LoadProgram(kDataDir + "/" + tc.file);
      SimOptions options;
      options.heuristic = heuristic;
      std::vector<SimResult> results = Sweep(program, options, ratios);
      const std::vector<Cell>& expected = ref.at(ref_name).at(tc.label);
      for (size_t i = 0; i < ratios.size(); ++i) {
        const SimResult& r = results[i];
        const Cell& e = expected[i];
        std::string ours = r.status == SimStatus::kOk ? fmt::format("{:.3f}", r.overhead) : Verdict(r);
        std::string theirs = e.overhead ? fmt::format("{:.3f}", *e.overhead) : e.verdict;
        std::string diff = "";
        bool same_verdict = Verdict(r) == e.verdict;
        bool ok = same_verdict;
        ++cells;
        if (same_verdict) ++verdicts_same;
        if (e.overhead && r.status == SimStatus::kOk) {
          double rel = (r.overhead - *e.overhead) / *e.overhead;
          diff = memfit::FormatChange(rel);
          ++numeric;
          // Target: within 1% relative of the published figure.
          bool in = std::abs(rel) <= 0.01;
          if (in) ++within;
          ok = ok && in;
          worst = std::max(worst, std::abs(rel));
        }
        if (ok) ++matched;
        fmt::print("{:<15} {:<15} {:>5.1f} {:>9} {:>9} {:>9}  {}\n", ref_name, tc.label, ratios[i], ours,
                   theirs, diff, ok ? "match" : "MISMATCH");
      }
    }
  }
  fmt::print("\nverdict: {}/{} cells match (same OOM/>2x verdict in {}/{}; {}/{} numeric cells within 1%, "
             "worst {:.3f}%)\n",
             matched, cells, verdicts_same, cells, within, numeric, 100 * worst);

  fmt::print("\n{:<15} {:>12} {:>10} {:>14} {:>16}\n", "trace", "peak bytes", "ops", "sweep (ms)",
             "replayed ops/s");
  for (const TraceCase& tc : traces) {
    auto t0 = std::chrono::steady_clock::now();
    Program program = LoadProgram(kDataDir + "/" + tc.file);
    auto t1 = std::chrono::steady_clock::now();
    int64_t replayed = 0;
    for (Heuristic h : AllHeuristics()) {
      SimOptions options;
      options.heuristic = h;
      for (const SimResult& r : Sweep(program, options, ratios)) replayed += r.ops_replayed;
    }
    auto t2 = std::chrono::steady_clock::now();
    double sweep_s = std::chrono::duration<double>(t2 - t1).count();
    fmt::print("{:<15} {:>12} {:>10} {:>14.1f} {:>16.3g}   (parse {:.1f} ms)\n", tc.label,
               MeasureBaseline(program).peak_bytes, program.ops.size(), 1000 * sweep_s,
               replayed / sweep_s, 1000 * std::chrono::duration<double>(t1 - t0).count());
  }
  return 0;
} catch (const memfit::Error& e) {
  fmt::print(stderr, "bench_dtr: {}\n", e.what());
  return 1;
}
