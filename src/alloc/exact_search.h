// The exact offset search: does a placement within a capacity exist?
// The algorithm is described at the top of exact_search.cc.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string_view>
#include <vector>

#include "alloc/planner.h"
#include "alloc/problem.h"

namespace memfit::alloc {

using Deadline = std::chrono::steady_clock::time_point;

enum class ExactOutcome {
  kFound,       // `offsets` holds a placement with height <= capacity
  kInfeasible,  // the search space was exhausted: none exists
  kTimeout,     // the deadline or ExactOptions::max_nodes stopped the search
};

std::string_view ToString(ExactOutcome outcome);
std::ostream& operator<<(std::ostream& os, ExactOutcome outcome);

struct ExactResult {
  ExactOutcome outcome = ExactOutcome::kTimeout;
  std::vector<int64_t> offsets;  // One per Problem::buffers when kFound.
  int64_t nodes = 0;             // Search nodes visited.
};

// Searches for offsets of all buffers of `problem` with every offset + size
// <= capacity_bytes, honouring alignment (Buffer::alignment_bytes or
// `alignment_bytes`) and fixed offsets. Problem::capacity_bytes is ignored.
ExactResult SolveExact(const Problem& problem, int64_t capacity_bytes, int64_t alignment_bytes,
                       const ExactOptions& options, Deadline deadline);

class ExactSearchImpl;

// The same search, prepared once (sections, overlaps: the costly part on
// large problems) and then run at several capacities, as the bisection of
// PlanOffsets() does. `problem` and `options` must outlive the solver. Preparing
// checks the deadline too: a solver whose preparation ran out of time
// answers kTimeout.
class ExactSolver {
 public:
  ExactSolver(const Problem& problem, int64_t alignment_bytes, const ExactOptions& options,
              Deadline deadline);
  ~ExactSolver();
  ExactSolver(const ExactSolver&) = delete;
  ExactSolver& operator=(const ExactSolver&) = delete;
  // `max_nodes`, when given, replaces ExactOptions::max_nodes for this call;
  // the search stops at `deadline` or the solver's, whichever comes first.
  ExactResult Solve(int64_t capacity_bytes, std::optional<int64_t> max_nodes = std::nullopt,
                    Deadline deadline = Deadline::max());

 private:
  std::unique_ptr<ExactSearchImpl> impl_;
  std::optional<int64_t> options_max_nodes_;
};

}  // namespace memfit::alloc
