#include "optimize/fission_search.h"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "analysis/dims.h"
#include "sim/simulator.h"
#include "transform/fission.h"
#include "util/error.h"

namespace memfit {
namespace {

using Clock = std::chrono::steady_clock;

// A plan within this overhead of the unoptimized step is not worth splitting.
constexpr double kNoGain = 0.001;

struct Candidate {
  FissionSpec spec;
  std::string label;  // "images[0] x4"
};

// Dimensions to try: batch kinds first, then by reach (dims are sorted by
// reach already).
std::vector<int> DimsToTry(const DimensionGraph& dims, size_t max_dims) {
  std::vector<int> order;
  for (size_t d = 0; d < dims.dims.size(); ++d) {
    if (dims.dims[d].kind == "batch") order.push_back(static_cast<int>(d));
  }
  for (size_t d = 0; d < dims.dims.size(); ++d) {
    if (dims.dims[d].kind != "batch") order.push_back(static_cast<int>(d));
  }
  if (order.size() > max_dims) order.resize(max_dims);
  return order;
}

// Better: faster under a memory limit; smaller under a latency limit.
bool Better(const OptimizeResult& a, const OptimizeResult& b, bool latency_limit) {
  if (latency_limit) {
    return a.optimized.peak_bytes != b.optimized.peak_bytes ? a.optimized.peak_bytes < b.optimized.peak_bytes
                                                            : a.optimized.latency_us < b.optimized.latency_us;
  }
  return a.optimized.latency_us < b.optimized.latency_us;
}

}  // namespace

OptimizeResult OptimizeWithFission(const Graph& graph, const sim::DeviceProfile& device, const sim::CostTable* costs,
                                   const OptimizeOptions& options, const FissionSearchOptions& fission) {
  const auto start = options.budget_start.value_or(Clock::now());
  auto emit = [&](SearchEvent e) {
    if (!options.on_event) return;
    e.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    options.on_event(e);
  };

  // The candidates: the longest region of each dimension tried, in parts.
  const DimensionGraph dims = ComputeDimensions(graph);
  std::vector<Candidate> candidates;
  for (int d : DimsToTry(dims, fission.max_dims)) {
    const auto regions = FissionRegions(graph, dims, d);
    if (regions.empty()) continue;
    for (int n : fission.parts) {
      if (n > dims.dims[d].length) break;
      candidates.push_back({{regions.front(), d, n}, fmt::format("{} x{}", dims.dims[d].name, n)});
    }
  }

  const bool latency_limit = options.lat_limit_ratio.has_value();
  // The graph as given first, on its share of the budget.
  OptimizeOptions base_options = options;
  base_options.budget_start = start;
  const double share = candidates.empty() ? 1.0 : fission.base_share;
  base_options.time_budget_seconds = options.time_budget_seconds * share;
  if (options.work_budget) base_options.work_budget = std::max<int64_t>(1, *options.work_budget * share);
  std::optional<OptimizeResult> best;
  std::string base_error;
  try {
    best = Optimize(graph, device, costs, base_options);
  } catch (const Error& e) {
    base_error = e.what();
  }
  // Nothing to gain: no candidates, or a plan as fast as the unoptimized
  // step (fission adds slices and joins, so it cannot be faster).
  if (best && !latency_limit && best->overhead() < kNoGain) candidates.clear();
  if (candidates.empty()) {
    if (!best) throw Error(base_error);
    return *best;
  }

  // Every variant meets the untransformed graph's limits.
  OptimizeOptions variant = options;
  const sim::SimResult reference = sim::Simulate(graph, sim::ProgramOrderPlan(graph), device, costs);
  variant.reference = PlanFigures{reference.latency_us, reference.peak_bytes, reference.recompute_us,
                                  reference.swap_out_bytes};
  for (size_t i = 0; i < candidates.size(); ++i) {
    const Candidate& c = candidates[i];
    const auto now = Clock::now();
    const double left = options.time_budget_seconds - std::chrono::duration<double>(now - start).count();
    if (!options.work_budget && left <= 0.05) {
      emit({0, SearchStage::kStop, "", "", 0, {}, {}, "time budget spent before fission " + c.label});
      break;
    }
    const size_t remaining = candidates.size() - i;
    variant.budget_start = now;
    variant.time_budget_seconds = std::max(0.05, left / static_cast<double>(remaining));
    if (options.work_budget) {
      variant.work_budget = std::max<int64_t>(1, *options.work_budget * (1 - share) / candidates.size());
    }
    FissionResult transformed;
    try {
      transformed = ApplyFission(graph, dims, c.spec);
    } catch (const Error& e) {
      emit({0, SearchStage::kFission, "", c.label, 0, {}, {}, fmt::format("refused: {}", e.what())});
      continue;
    }
    try {
      OptimizeResult r = Optimize(transformed.graph, device, costs, variant);
      const bool kept = !best || Better(r, *best, latency_limit);
      emit({0, SearchStage::kFission, r.scheduler, c.label, r.limit_bytes, r.optimized.peak_bytes,
            r.optimized.latency_us, kept ? "fits, kept" : "fits, dropped (not better)"});
      if (kept) {
        r.method = fmt::format("{} + fission {}", r.method, c.label);
        best = std::move(r);
      }
    } catch (const Error& e) {
      emit({0, SearchStage::kFission, "", c.label, 0, {}, {}, fmt::format("no plan: {}", e.what())});
    }
  }
  if (!best) throw Error(base_error + " (fission tried: no variant fits either)");
  best->seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return *best;
}

}  // namespace memfit
