// The budgets a latency-limited search probes (optimize/latency_search.h),
// against made-up latency curves: where it lands, and how many probes it
// takes to get there.
#include "optimize/latency_search.h"

#include <cmath>
#include <vector>

#include <gtest/gtest.h>

namespace memfit {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

// A search against latency(b): every budget it probes, and the smallest
// within the limit.
struct Probes {
  std::vector<int64_t> probes;
  int64_t smallest = 0;
};
template <typename Latency>
Probes Search(int64_t lo, int64_t hi, double limit_us, Latency latency, int max_probes = 1000) {
  Probes run;
  run.smallest = hi;
  auto probe = [&](int64_t b) {
    run.probes.push_back(b);
    LatencyProbe p;
    p.latency_us = latency(b);
    if (p.latency_us) p.within = *p.latency_us <= limit_us;
    if (p.within) run.smallest = std::min(run.smallest, b);
    return p;
  };
  SearchLatencyLimit(lo, hi, latency(hi), limit_us,
                     [&] { return static_cast<int>(run.probes.size()) >= max_probes; }, probe);
  return run;
}

// Latency that grows ever faster as the budget shrinks (remat recomputes
// dearer tensors the less memory it has): 589 ms at 4.5 GiB, 612 ms at
// 3 GiB; the limit, 614 ms, is met down to about 2.94 GiB.
std::optional<double> Convex(int64_t b) {
  const double gib = static_cast<double>(b) / kGiB;
  return 589.0 + 23.0 * std::pow((4.5 - gib) / 1.5, 2);
}
constexpr double kLimit = 614.0;
const int64_t kAnswer = static_cast<int64_t>((4.5 - 1.5 * std::sqrt(25.0 / 23.0)) * kGiB);

TEST(LatencySearch, LandsWithinTheToleranceOfTheAnswer) {
  const Probes run = Search(kGiB, 9 * kGiB / 2, kLimit, Convex);
  EXPECT_GE(run.smallest, kAnswer);
  EXPECT_LE(run.smallest - kAnswer, run.smallest / kBisectToleranceDivisor + 1);
  for (int64_t b : run.probes) EXPECT_TRUE(b > kGiB && b < 9 * kGiB / 2) << b;
}

// The latencies place the probes: 6 here, one of them more than 5% below
// the answer (those are the costliest to refuse). Stepping down and bisecting
// without them took 10, three of them that far below.
TEST(LatencySearch, FollowsTheLatenciesToTheLimit) {
  const Probes run = Search(kGiB, 9 * kGiB / 2, kLimit, Convex);
  EXPECT_LE(run.probes.size(), 7u);
  int far_below = 0;
  for (int64_t b : run.probes) far_below += b < kAnswer - kAnswer / 20;
  EXPECT_LE(far_below, 1);
}

// Probes with no plan at all (no latency) still narrow the range, by halves.
TEST(LatencySearch, BisectsWhereProbesFindNoPlan) {
  auto cliff = [](int64_t b) -> std::optional<double> {
    if (b < 3 * kGiB) return std::nullopt;
    return 600.0;
  };
  const Probes run = Search(kGiB, 4 * kGiB, kLimit, cliff);
  EXPECT_GE(run.smallest, 3 * kGiB);
  EXPECT_LE(run.smallest - 3 * kGiB, run.smallest / kBisectToleranceDivisor + 1);
}

// The search is not monotone: when the first step down fails, the budgets
// below it are still searched (a plan within the limit may exist there).
TEST(LatencySearch, AFirstStepThatFailsLeavesTheRangeWhole) {
  auto notch = [](int64_t b) -> std::optional<double> {
    if (b > 3 * kGiB && b < 4 * kGiB) return 700.0;  // slower than the limit
    return 600.0;
  };
  const Probes run = Search(kGiB, 4 * kGiB, kLimit, notch);
  EXPECT_LT(run.smallest, 3 * kGiB);
}

// Two fitting probes one rounding step apart in latency put the line's
// crossing of the limit some 1e23 bytes down, far outside int64 (the cast
// alone would be undefined): the search stays in [lo, hi] and still lands.
TEST(LatencySearch, ANearlyFlatLineStaysInRange) {
  auto steps = [](int64_t b) -> std::optional<double> {
    if (b >= 7 * kGiB / 2) return 600.0;
    if (b >= 2 * kGiB) return std::nextafter(600.0, 1000.0);
    return 700.0;
  };
  const Probes run = Search(kGiB, 4 * kGiB, kLimit, steps);
  for (int64_t b : run.probes) EXPECT_TRUE(b > kGiB && b < 4 * kGiB) << b;
  EXPECT_GE(run.smallest, 2 * kGiB);
  EXPECT_LE(run.smallest - 2 * kGiB, run.smallest / kBisectToleranceDivisor + 1);
}

TEST(LatencySearch, StopsWhenOutOfTime) {
  const Probes run = Search(kGiB, 9 * kGiB / 2, kLimit, Convex, 2);
  EXPECT_EQ(run.probes.size(), 2u);
}

}  // namespace
}  // namespace memfit
