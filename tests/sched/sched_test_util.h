// Helpers of the scheduler tests: seeded random graphs with views and
// in-place updates, and the brute-force optimum over all permutations.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "analysis/liveness.h"
#include "ir/builder.h"
#include "sched/schedule_check.h"

namespace memfit::sched::testing {

// An opaque op reading `inputs` with one new f32 output of `elements`
// elements (4 bytes each).
inline TensorId Compute(GraphBuilder& b, std::vector<TensorId> inputs, int64_t elements, std::string_view name = {}) {
  return b.CallOpaque("test.op", std::move(inputs), {TensorType{{elements}, DType::kF32}}, {}, name)[0];
}

struct RandomGraphOptions {
  int num_ops = 6;
  // Chances that an op is a view (aten.alias) or an in-place update
  // (aten.relu_) of an earlier tensor, parameters included.
  double view_chance = 0.15;
  double inplace_chance = 0.15;
};

// A seeded random graph: an input, a parameter, then num_ops ops reading
// earlier tensors (mostly recent ones), with 1..64-element outputs; the
// last tensor and one random activation are outputs.
inline Graph RandomGraph(uint32_t seed, const RandomGraphOptions& options = {}) {
  std::mt19937 rng(seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  GraphBuilder b("random" + std::to_string(seed));
  std::vector<TensorId> tensors = {b.Input("x", {uniform(1, 64)}), b.Parameter("w", {uniform(1, 64)})};
  auto pick = [&] {
    // Half the time one of the four newest tensors, else any.
    const int n = static_cast<int>(tensors.size());
    return tensors[chance(0.5) ? uniform(std::max(0, n - 4), n - 1) : uniform(0, n - 1)];
  };
  for (int i = 0; i < options.num_ops; ++i) {
    if (chance(options.view_chance)) {
      tensors.push_back(b.Call("aten.alias", {pick()}));
    } else if (chance(options.inplace_chance)) {
      tensors.push_back(b.Call("aten.relu_", {pick()}));
    } else {
      std::vector<TensorId> inputs;
      for (int k = uniform(1, 3); k > 0; --k) inputs.push_back(pick());
      std::sort(inputs.begin(), inputs.end());
      inputs.erase(std::unique(inputs.begin(), inputs.end()), inputs.end());
      tensors.push_back(Compute(b, inputs, uniform(1, 64)));
    }
  }
  b.MarkOutput(tensors.back());
  b.MarkOutput(tensors[uniform(2, static_cast<int>(tensors.size()) - 1)]);
  return b.Finish();
}

// The lowest ComputeLiveness peak over every permutation that CheckSchedule
// accepts (feasible up to about 8 ops).
inline int64_t BruteForcePeak(const Graph& graph, const LivenessOptions& liveness = {}) {
  std::vector<OpId> order = ProgramOrder(graph);
  int64_t best = std::numeric_limits<int64_t>::max();
  do {
    if (CheckSchedule(graph, order).empty()) best = std::min(best, ComputeLiveness(graph, order, liveness).peak_bytes);
  } while (std::next_permutation(order.begin(), order.end()));
  return best;
}

}  // namespace memfit::sched::testing
