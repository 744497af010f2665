#include "remat/baselines.h"

#include "util/enum_names.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>
#include <vector>

namespace memfit::remat {
namespace {

// "bert.encoder.layer.3.attention.self.query" -> "bert.encoder.layer.3";
// "layer2.1.conv1" -> "layer2.1"; no numeric component: the first one.
std::string_view BlockOf(std::string_view name) {
  size_t begin = 0;
  while (begin <= name.size()) {
    size_t end = name.find('.', begin);
    if (end == std::string_view::npos) end = name.size();
    const std::string_view part = name.substr(begin, end - begin);
    if (!part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return name.substr(0, end);
    }
    begin = end + 1;
  }
  return name.substr(0, name.find('.'));
}

}  // namespace

constexpr EnumName<Baseline> kBaselineNames[] = {
    {Baseline::kCheckpointBlocks, "checkpoint-blocks"}, {Baseline::kSqrtN, "sqrt-n"}};

std::string_view ToString(Baseline baseline) { return NameOf(kBaselineNames, baseline); }

HeuristicResult RunBaseline(const Problem& problem, Baseline baseline) {
  const size_t n = problem.size();
  std::vector<uint32_t> forward;
  for (uint32_t v = 0; v < n; ++v) {
    if (!problem.nodes[v].backward) forward.push_back(v);
  }
  // group[v]: the block or segment of a forward node.
  std::vector<uint32_t> group(n, kNone);
  if (baseline == Baseline::kCheckpointBlocks) {
    uint32_t id = 0;
    std::string_view last;
    for (uint32_t v : forward) {
      const std::string_view block = BlockOf(problem.nodes[v].name);
      if (block != last) ++id, last = block;
      group[v] = id;
    }
  } else {
    const size_t segment = std::max<size_t>(1, static_cast<size_t>(std::ceil(std::sqrt(double(forward.size())))));
    for (size_t k = 0; k < forward.size(); ++k) group[forward[k]] = static_cast<uint32_t>(k / segment);
  }
  // Checkpoints: forward results read by a forward node of another group.
  HeuristicOptions options;
  options.drop_after_forward.assign(n, 0);
  for (uint32_t v : forward) options.drop_after_forward[v] = 1;
  for (uint32_t w : forward) {
    for (uint32_t u : problem.nodes[w].inputs) {
      if (group[u] != kNone && group[u] != group[w]) options.drop_after_forward[u] = 0;
    }
  }
  // No budget: nothing is evicted for room, results go as they die.
  options.budget_bytes = std::numeric_limits<int64_t>::max();
  options.free_parts = false;
  HeuristicResult result = RunHeuristic(problem, options);
  result.fits = true;
  return result;
}

}  // namespace memfit::remat
