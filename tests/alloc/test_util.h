// Helpers shared by the alloc tests.
#pragma once

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "alloc/planner.h"
#include "alloc/problem.h"
#include "check/allocation_check.h"

namespace memfit::alloc::testing {

inline Buffer B(const std::string& id, int64_t lower, int64_t upper, int64_t size) {
  Buffer b;
  b.id = {id};
  b.lifetime = {lower, upper};
  b.size_bytes = size;
  return b;
}

inline Buffer Fixed(const std::string& id, int64_t lower, int64_t upper, int64_t size,
                    int64_t offset) {
  Buffer b = B(id, lower, upper, size);
  b.fixed_offset_bytes = offset;
  return b;
}

// A seeded random problem: `n` buffers in [0, horizon), sizes in [1, max_size].
inline Problem RandomProblem(uint32_t seed, int n, int64_t horizon, int64_t max_size) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> time(0, horizon - 1);
  std::uniform_int_distribution<int64_t> size(1, max_size);
  Problem p;
  for (int i = 0; i < n; ++i) {
    int64_t a = time(rng);
    int64_t b = time(rng);
    if (a > b) std::swap(a, b);
    p.buffers.push_back(B(std::to_string(i), a, b + 1, size(rng)));
  }
  return p;
}

// The checker's verdict as a printable string ("" when valid).
inline std::string Violations(const Problem& p, const Solution& s, int64_t alignment,
                              bool enforce_capacity = true) {
  check::AllocationCheckOptions o;
  o.alignment_bytes = alignment;
  o.enforce_capacity = enforce_capacity;
  std::string out;
  for (const auto& v : check::CheckAllocation(p, s, o)) out += check::ToString(v) + "\n";
  return out;
}

// The exact planner alone, fitting Problem::capacity_bytes.
inline PlanOptions ExactFit(int64_t alignment_bytes) {
  PlanOptions o;
  o.planner = PlannerKind::kExact;
  o.objective = Objective::kFitCapacity;
  o.alignment_bytes = alignment_bytes;
  return o;
}

}  // namespace memfit::alloc::testing
