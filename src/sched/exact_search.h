// Exact scheduling: best-first search over frontier states.
//
// A state is the set of ops already run (a bitset over the problem's ops);
// the bytes live in a state depend only on the set, so the best peak of a
// state is min over its last op v of max(best peak of the state without v,
// the bytes of v's step). The search expands states in order of that peak
// (Dijkstra with max instead of +; ties: more ops run first, to reach a
// complete order sooner), so the first complete state it pops is optimal.
// It prunes every state whose peak reaches the incumbent's, so an empty
// queue proves the incumbent optimal.
//
// Reduction: when a ready op allocates nothing and has no workspace, only
// that op is expanded. Running it first cannot hurt: its step holds just the
// bytes already live (no more than the step before), and it only frees or
// keeps storages, so every later step of any completion is no higher.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "sched/problem.h"

namespace memfit::sched {

struct ExactSearchOptions {
  // Give up after storing this many states; each takes about m/8 + 40
  // bytes for a problem of m ops, plus its queue entries.
  int64_t max_states = 100'000;
  // Give up at this time.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

struct ExactSearchResult {
  std::vector<uint32_t> order;  // local op indices
  int64_t peak_bytes = 0;
  bool proven_optimal = false;  // false: a limit stopped the search
  int64_t states = 0;           // states stored
};

// The best order of `problem`, starting from `incumbent` (a valid order)
// with peak `incumbent_peak_bytes`.
ExactSearchResult SolveExact(const Problem& problem, std::vector<uint32_t> incumbent, int64_t incumbent_peak_bytes,
                             const ExactSearchOptions& options);

}  // namespace memfit::sched
