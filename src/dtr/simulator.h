// Dynamic Tensor Rematerialization (DTR, ICLR'21) replayed over a Program.
//
// The runtime follows the DTR paper's simulator (simrd, runtime "V2 eager
// optimized") so that its figures can be reproduced:
//  - Memory is held by storages; a view shares its base's storage. A storage
//    is resident ("material") or evicted; constants and outputs are pinned.
//  - Running an op locks its arguments' storages (recomputing evicted
//    arguments first, recursively), then, if the outputs do not fit in the
//    budget, evicts unlocked resident storages one at a time, each time the
//    one with the lowest heuristic score (ties: the later one in the pool,
//    which is kept in order of when each storage last became evictable; a
//    score of exactly 0 is taken at once).
//  - With eager eviction a storage whose last reference is released is
//    evicted at once but stays in the graph: a later recomputation may need it.
//    With banishing (simrd V1) such a storage is freed for good once no
//    evicted tensor depends on it, and its children become pinned.
//  - Time: a clock advances by each op's measured time, for model ops and
//    recomputations alike. overhead = (compute + recompute) / compute of the
//    unconstrained run. The run stops with kOverheadExceeded as soon as
//    recompute > (overhead_limit - 1) x unconstrained compute, and with kOom
//    when more memory is needed and nothing is evictable.
//  - The unconstrained peak (for budget ratios) is simrd's baseline: the
//    trace replayed with an unlimited budget, each storage freed when its last
//    reference is released; peak = the most bytes resident right after an op
//    allocates its outputs.
// Heuristic scores (lower is evicted first), for a storage s with size |s|,
// cost c(s) (the time of the ops that produced its tensors) and staleness
// (clock - the last time s was accessed):
//   dtr        (c(s) + c(evicted neighbourhood of s)) / (|s| x staleness)
//   dtr-eq     like dtr, the neighbourhood approximated by union-find
//              equivalence classes of evicted storages
//   dtr-local  c(s) / (|s| x staleness)
//   msps       (c(s) + c(evicted ancestors of s)) / |s|
//   lru        the last access time
//   largest    1 / |s|
//   random     uniform, from `seed`
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "dtr/program.h"

namespace memfit::dtr {

enum class Heuristic : uint8_t { kDtr, kDtrEqClass, kDtrLocal, kMsps, kLru, kLargest, kRandom };

// CLI names: dtr, dtr-eq, dtr-local, msps, lru, largest, random.
std::string_view ToString(Heuristic heuristic);
inline std::ostream& operator<<(std::ostream& os, Heuristic heuristic) { return os << ToString(heuristic); }
std::optional<Heuristic> ParseHeuristic(std::string_view name);
const std::vector<Heuristic>& AllHeuristics();

struct SimOptions {
  Heuristic heuristic = Heuristic::kDtr;  // eviction policy
  // Budget in bytes; when unset the budget is floor(budget_ratio x the
  // unconstrained peak), as simrd computes it.
  std::optional<int64_t> budget_bytes;
  double budget_ratio = 1.0;              // used when budget_bytes is unset
  bool eager_eviction = true;             // evict storages whose last reference is released
  bool banishing = false;                 // free such storages for good (simrd V1); implies eager
  std::optional<double> overhead_limit = 2.0;  // stop past this overhead; nullopt: never stop
  uint64_t seed = 1;                      // for Heuristic::kRandom
  bool record_events = false;             // fill SimResult::events (tests, --verbose)
};

enum class SimStatus : uint8_t {
  kOk,                // the step ran to the end within the budget
  kOom,               // memory was needed and nothing was evictable
  kOverheadExceeded,  // stopped once overhead passed overhead_limit
};
std::string_view ToString(SimStatus status);

struct Baseline {
  int64_t peak_bytes = 0;  // unconstrained peak
  int64_t compute_ns = 0;  // unconstrained compute (every op once)
};

struct SimResult {
  SimStatus status = SimStatus::kOk;
  double overhead = 0;           // (compute_ns + recompute_ns) / baseline.compute_ns
  int64_t budget_bytes = 0;
  Baseline baseline;
  int64_t compute_ns = 0;        // model ops run (all of them unless stopped)
  int64_t recompute_ns = 0;      // recomputations
  int64_t peak_bytes = 0;        // most bytes resident
  int64_t evictions = 0;         // storages evicted by the heuristic
  int64_t eager_evictions = 0;   // storages evicted/banished on their last release
  int64_t recomputations = 0;    // ops rerun
  int64_t ops_replayed = 0;      // model ops + recomputations executed
  // With SimOptions::record_events, each decision in order, naming the root
  // tensor of a storage or the recomputed tensor: "evict x", "release x"
  // (evicted or banished on its last release), "recompute x", "oom", "exceeded".
  std::vector<std::string> events;
};

// The unconstrained replay (simrd's baseline).
Baseline MeasureBaseline(const Program& program);

// Replays `program` under `options`. `baseline` may be passed to avoid
// measuring it again.
SimResult Simulate(const Program& program, const SimOptions& options,
                   const std::optional<Baseline>& baseline = std::nullopt);

// Runs Simulate at each ratio (budget_bytes of `options` is ignored).
std::vector<SimResult> Sweep(const Program& program, SimOptions options,
                             const std::vector<double>& ratios);

// The ratios 0.1, 0.2, ..., 1.0 of the DTR paper's evaluation.
std::vector<double> PaperRatios();

}  // namespace memfit::dtr
