#include "remat/problem.h"

#include <fmt/format.h>

#include "util/error.h"

namespace memfit::remat {

void Validate(const Problem& problem) {
  const auto n = static_cast<uint32_t>(problem.nodes.size());
  if (problem.fixed_bytes < 0) Fail("problem '{}': fixed_bytes is negative", problem.name);
  std::vector<uint32_t> seen(n, kNone);
  for (uint32_t v = 0; v < n; ++v) {
    const Node& node = problem.nodes[v];
    if (node.bytes < 0 || node.workspace_bytes < 0) Fail("node {} '{}': negative bytes", v, node.name);
    if (!(node.cost_us >= 0)) Fail("node {} '{}': cost must be a non-negative number", v, node.name);
    if (!node.parts.empty()) {
      int64_t sum = 0;
      for (const Node::Part& part : node.parts) {
        if (part.bytes < 0) Fail("node {} '{}': a part has negative bytes", v, node.name);
        sum += part.bytes;
      }
      if (sum != node.bytes) Fail("node {} '{}': parts sum to {} bytes, the node has {}", v, node.name, sum, node.bytes);
    }
    if (!node.input_parts.empty() && node.input_parts.size() != node.inputs.size()) {
      Fail("node {} '{}': {} input part masks for {} inputs", v, node.name, node.input_parts.size(), node.inputs.size());
    }
    for (uint32_t u : node.inputs) {
      if (u >= v) Fail("node {} '{}': input {} is not before it", v, node.name, u);
      if (seen[u] == v) Fail("node {} '{}': input {} listed twice", v, node.name, u);
      seen[u] = v;
    }
  }
}

std::vector<uint32_t> InOrderSequence(const Problem& problem) {
  std::vector<uint32_t> seq(problem.nodes.size());
  for (uint32_t v = 0; v < seq.size(); ++v) seq[v] = v;
  return seq;
}

Evaluation Evaluate(const Problem& problem, std::span<const uint32_t> sequence) {
  Evaluation ev;
  const size_t n = problem.nodes.size();
  const size_t len = sequence.size();
  std::vector<uint32_t> current(n, kNone);  // instance index of the node's latest evaluation
  std::vector<size_t> inst_start, inst_end;
  std::vector<uint32_t> inst_node;
  inst_start.reserve(len), inst_end.reserve(len), inst_node.reserve(len);
  uint32_t next_new = 0;
  auto fail = [&](size_t p, std::string why) {
    ev.valid = false;
    ev.problem = fmt::format("position {}: {}", p, why);
    return ev;
  };
  for (size_t p = 0; p < len; ++p) {
    const uint32_t v = sequence[p];
    if (v >= n) return fail(p, fmt::format("node {} does not exist", v));
    const Node& node = problem.nodes[v];
    if (current[v] == kNone) {
      if (v != next_new) return fail(p, fmt::format("node {} '{}' is first computed before node {}", v, node.name, next_new));
      ++next_new;
      ev.compute_us += node.cost_us;
    } else {
      if (!node.recomputable) return fail(p, fmt::format("node {} '{}' cannot be recomputed", v, node.name));
      if (next_new - 1 > node.recompute_until) {
        return fail(p, fmt::format("node {} '{}' recomputed at stage {} but only allowed up to stage {}", v, node.name,
                                   next_new - 1, node.recompute_until));
      }
      ev.recompute_us += node.cost_us;
      ++ev.recomputations;
    }
    for (uint32_t u : node.inputs) {
      if (current[u] == kNone) {
        return fail(p, fmt::format("node {} '{}' reads node {} '{}' before it is computed", v, node.name, u,
                                   problem.nodes[u].name));
      }
      inst_end[current[u]] = p;
    }
    current[v] = static_cast<uint32_t>(inst_node.size());
    inst_node.push_back(v);
    inst_start.push_back(p);
    inst_end.push_back(p);
  }
  if (next_new != n) return fail(len, fmt::format("node {} '{}' is never computed", next_new, problem.nodes[next_new].name));
  for (uint32_t v = 0; v < n; ++v) {
    if (problem.nodes[v].keep_to_end) inst_end[current[v]] = len - 1;
  }
  std::vector<int64_t> delta(len + 1, 0);
  for (size_t i = 0; i < inst_node.size(); ++i) {
    const int64_t bytes = problem.nodes[inst_node[i]].bytes;
    delta[inst_start[i]] += bytes;
    delta[inst_end[i] + 1] -= bytes;
  }
  int64_t live = problem.fixed_bytes;
  ev.peak_bytes = problem.fixed_bytes;
  for (size_t p = 0; p < len; ++p) {
    live += delta[p];
    const int64_t at = live + problem.nodes[sequence[p]].workspace_bytes;
    if (at > ev.peak_bytes) ev.peak_bytes = at, ev.peak_position = p;
  }
  ev.valid = true;
  return ev;
}

}  // namespace memfit::remat
