// The search for the smallest memory within a latency limit
// (`memfit optimize --lat-limit-ratio`): which memory budgets to probe, each
// probe a whole memory-limit search (optimizer.cc's FitTheLimit).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>

namespace memfit {

// Bisections over budgets stop within 1/kBisectToleranceDivisor (0.5%) of
// the upper end.
inline constexpr int64_t kBisectToleranceDivisor = 200;
// Under a latency limit the search starts with steps down from the upper
// end, the first 1/kGallopFirstStepDivisor of the range.
inline constexpr int64_t kGallopFirstStepDivisor = 8;

// What one budget of a latency-limited search gave: whether its fastest
// plan is within the latency limit, and that plan's latency (none: no plan
// fits the budget at all).
struct LatencyProbe {
  bool within = false;
  std::optional<double> latency_us;
};

// Looks for the smallest budget in [lo, hi] whose fastest plan is within
// the latency limit (`probe(b)` says, and keeps what it found). The answer
// is usually near hi (the program as written is often within a few
// percent), and budgets far below it are the slowest to refuse (every
// heuristic gives up), so the search steps down from hi, an eighth of
// [lo, hi] first, doubling the step while plans fit, then narrows [lo, hi]
// until it is within 0.5% of hi.
//
// The latencies the probes report say where the answer lies: latency grows
// as the budget shrinks, so the next budget is where the line through two
// probes meets the limit. Below the last two that fit (a secant) it is
// never further down than the step (or, once a budget failed, the midpoint)
// would go; between one that fits and one over the limit (regula falsi) it
// is kept an eighth of the interval from either end, and the midpoint is
// taken when the same end moved twice running. bert-base micro-batched x8
// at +10% on rtx3090: the probes 4.51, 4.02, 3.04 GiB fit, the secant then
// proposes 2.96 GiB where the step would try 1.08 GiB (its refusal cost
// most of the variant's work budget, and the search stopped at 3.04).
//
// The search is not monotone (a tighter budget may fit where a looser one
// did not: segnet's plans at 0.88 of the peak were all slower than the
// limit, at 0.5 one was not): when the very first step down does not fit,
// [lo, hi] stays whole.
template <typename OutOfTime, typename Probe>
void SearchLatencyLimit(int64_t lo, int64_t hi, std::optional<double> hi_latency_us, double limit_us,
                        OutOfTime out_of_time, Probe probe) {
  struct Point {
    int64_t bytes;
    double latency_us;
  };
  std::optional<Point> above;  // the fitting budget before hi, when it had a latency
  std::optional<double> lo_latency_us;
  int64_t step = std::max<int64_t>((hi - lo) / kGallopFirstStepDivisor, 1);
  bool stepping = true;  // no budget has failed yet
  bool first = true;
  int same_end = 0;  // consecutive moves of the same end (+: hi, -: lo)
  while (!out_of_time()) {
    const int64_t tolerance = std::max<int64_t>(hi / kBisectToleranceDivisor, 1);
    if (hi - lo <= tolerance) break;
    const int64_t span = hi - lo;
    int64_t b;
    if (lo_latency_us && hi_latency_us && std::abs(same_end) < 2) {
      const double t = std::clamp((limit_us - *hi_latency_us) / (*lo_latency_us - *hi_latency_us), 0.0, 1.0);
      b = hi - static_cast<int64_t>(t * static_cast<double>(span));
      b = std::clamp(b, lo + span / kGallopFirstStepDivisor, hi - span / kGallopFirstStepDivisor);
    } else {
      b = stepping ? std::max(hi - step, lo + 1) : lo + span / 2;
      if (above && hi_latency_us && *hi_latency_us > above->latency_us) {
        const double bytes_per_us = static_cast<double>(above->bytes - hi) / (*hi_latency_us - above->latency_us);
        // Clamped as a double: a near-flat line puts the prediction far out
        // of int64's range (the cast alone would be undefined).
        const double predicted = std::clamp(static_cast<double>(hi) - (limit_us - *hi_latency_us) * bytes_per_us,
                                            static_cast<double>(lo), static_cast<double>(hi));
        b = std::max(b, std::min(static_cast<int64_t>(predicted), hi - tolerance));
      }
    }
    const LatencyProbe p = probe(b);
    if (p.within) {
      if (hi_latency_us) above = Point{hi, *hi_latency_us};
      hi = b;
      hi_latency_us = p.latency_us;
      if (stepping) step *= 2;
      same_end = same_end > 0 ? same_end + 1 : 1;
    } else {
      // A first step that fails says nothing about the budgets below it.
      if (!(stepping && first)) {
        lo = b;
        lo_latency_us = p.latency_us;
      }
      stepping = false;
      same_end = same_end < 0 ? same_end - 1 : -1;
    }
    first = false;
  }
}

}  // namespace memfit
