// Node problems for the remat tests: a node in one line, and seeded random
// training-like problems (the MILP against an exhaustive search, the
// heuristic's invariants).
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "remat/problem.h"

namespace memfit::remat {

inline Node N(std::string name, double cost_us, int64_t bytes, std::vector<uint32_t> inputs = {}) {
  Node node;
  node.name = std::move(name);
  node.cost_us = cost_us;
  node.bytes = bytes;
  node.inputs = std::move(inputs);
  return node;
}

// Training-like: a forward half, then a backward half that reads the node
// before it and, at long range, forward results (its mirror image always).
inline Problem RandomDag(uint32_t seed, uint32_t n) {
  std::mt19937 rng(seed);
  auto chance = [&](double p) { return std::uniform_real_distribution<>(0, 1)(rng) < p; };
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<>(lo, hi)(rng); };
  Problem p;
  p.name = fmt::format("random dag {}", seed);
  p.fixed_bytes = pick(0, 2);
  for (uint32_t v = 0; v < n; ++v) {
    const int64_t bytes = pick(0, 4);  // drawn first, as the seeds' problems always were
    Node node = N(fmt::format("n{}", v), pick(1, 9), bytes);
    node.workspace_bytes = chance(0.2) ? 1 : 0;
    const uint32_t half = n / 2, mirror = n - 1 - v;
    for (uint32_t u = 0; u < v; ++u) {
      const bool near = u + 1 == v, backward = v >= half && u < half;
      if (near ? chance(0.9) : (backward && u == mirror) || chance(backward ? 0.3 : 0.15)) node.inputs.push_back(u);
    }
    node.recomputable = !chance(0.15);
    if (chance(0.2)) node.recompute_until = pick(v, n - 1);
    node.keep_to_end = v + 1 == n || chance(0.1);
    p.nodes.push_back(std::move(node));
  }
  return p;
}

}  // namespace memfit::remat
