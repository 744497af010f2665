// The data of the sweep pages. A pareto page (`memfit optimize --pareto
// --report`): memory against latency per method over a sweep of memory
// limits, with the unoptimized program order as the reference; the page's
// script draws one front per method and a table of every point. A DTR page
// (`memfit dtr TRACE --sweep --report`): compute overhead against the memory
// budget per eviction heuristic, as in DTR's figures (docs/report.md).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace memfit::report {

struct ParetoPoint {
  std::string method;  // the method asked for: "memfit", "checkpoint-blocks", "sqrt-n", ...
  double ratio = 0;    // the memory limit, as a fraction of the unoptimized peak
  int64_t limit_bytes = 0;
  // Set when a plan was found.
  std::optional<int64_t> peak_bytes;
  std::optional<int64_t> arena_bytes;
  std::optional<double> latency_ms;
  std::string found_by;  // what produced it ("partitioned+heuristic+swap", ...)
  std::optional<double> seconds;
  std::string error;     // why no plan was found
};

struct ParetoSweep {
  std::string graph;
  std::string device;
  int64_t original_peak_bytes = 0;
  double original_latency_ms = 0;
  std::vector<ParetoPoint> points;
};

// {"format": "memfit.pareto", "version": 1, "title", "device", "original": {...},
//  "points": [{"method", "ratio", "limit_bytes", "peak_bytes", "arena_bytes",
//              "latency_ms", "overhead", "found_by", "seconds", "error"}, ...]}
nlohmann::ordered_json ParetoData(const ParetoSweep& sweep);

struct DtrSweepPoint {
  std::string heuristic;  // "dtr", "lru", ... (dtr/simulator.h)
  double ratio = 0;       // the budget, as a fraction of the unconstrained peak
  int64_t budget_bytes = 0;
  std::string status;     // "ok", "oom", "exceeded" (dtr::SimStatus)
  double overhead = 0;    // total compute over the unconstrained run's (status ok)
  int64_t peak_bytes = 0;
  int64_t evictions = 0;
  int64_t recomputations = 0;
};

struct DtrSweep {
  std::string trace;  // the file replayed
  int64_t unconstrained_peak_bytes = 0;
  int64_t unconstrained_compute_ns = 0;
  std::vector<DtrSweepPoint> points;
};

// {"format": "memfit.dtr-sweep", "version": 1, "title", "unconstrained": {"peak_bytes", "compute_ns"},
//  "points": [{"heuristic", "ratio", "budget_bytes", "status", "overhead" (null unless ok),
//              "peak_bytes", "evictions", "recomputations"}, ...]}
nlohmann::ordered_json DtrSweepData(const DtrSweep& sweep);

}  // namespace memfit::report
