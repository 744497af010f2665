// Regression tests of issue 15 (reliability): deep searches, overlapping
// pinned offsets, overflowing alignments and sizes, huge or invalid time
// limits, node budgets and determinism.
#include <gtest/gtest.h>
#include <pthread.h>

#include <chrono>
#include <functional>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "alloc/exact_search.h"
#include "alloc/planner.h"
#include "check/plan_and_check.h"
#include "test_util.h"
#include "util/checked_math.h"
#include "util/deadline.h"
#include "util/error.h"

namespace memfit::alloc {
namespace {

using Clock = std::chrono::steady_clock;
using testing::B;
using testing::Fixed;

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

// A chain: buffer i lives [i, i + 2) with size 1 + i % 3, so each overlaps
// its two neighbours only and the lower bound is the largest sum of two
// neighbours (5). Every placement opens a cut, and the search nests one
// level per buffer: a single dive 30,000 levels deep.
Problem Chain(int n) {
  Problem p;
  for (int i = 0; i < n; ++i) p.buffers.push_back(B(std::to_string(i), i, i + 2, 1 + i % 3));
  return p;
}

// Runs `body` on a thread with a stack of `stack_bytes`.
void RunWithStack(size_t stack_bytes, const std::function<void()>& body) {
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, stack_bytes), 0);
  pthread_t thread;
  auto run = [](void* arg) -> void* {
    (*static_cast<const std::function<void()>*>(arg))();
    return nullptr;
  };
  ASSERT_EQ(pthread_create(&thread, &attr, run, const_cast<std::function<void()>*>(&body)), 0);
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
}

// The recursive search needed a few hundred bytes of stack per level (its
// 18,000-level dive through pangu_2.6B overflowed 8 MB); on a 256 KB stack it
// would have died within about a thousand levels.
TEST(DeepSearchTest, DivesTensOfThousandsDeepRunOnASmallStack) {
  for (const bool decomposition : {false, true}) {
    // Without decomposition every node scans all that is left: fewer levels.
    const int n = decomposition ? 30'000 : 12'000;
    const Problem p = Chain(n);
    ASSERT_EQ(LowerBound(p), 5);
    ExactOptions o;
    o.decomposition = decomposition;
    ExactResult r;
    RunWithStack(256 << 10, [&] { r = SolveExact(p, 5, 1, o, Clock::time_point::max()); });
    ASSERT_EQ(r.outcome, ExactOutcome::kFound) << "decomposition " << decomposition;
    const Solution s{r.offsets, HeightOf(p, r.offsets)};
    EXPECT_EQ(s.height_bytes, 5);
    EXPECT_EQ(testing::Violations(p, s, 1), "");
    EXPECT_GE(r.nodes, n);
  }
}

// Same through PlanOffsets(): the exact planner alone, minimizing.
TEST(DeepSearchTest, PlanReachesTheBoundOnALongChain) {
  PlanOptions o;
  o.planner = PlannerKind::kExact;
  o.alignment_bytes = 1;
  o.deterministic = true;
  const PlanResult r = check::PlanAndCheck(Chain(30'000), o);
  ASSERT_EQ(r.status, PlanStatus::kSolved);
  EXPECT_EQ(r.solution->height_bytes, 5);
  EXPECT_TRUE(r.proven_optimal);
}

TEST(PinnedOffsetsTest, OverlappingPinsAreAUserErrorNamingBoth) {
  Problem p;
  // a and b are both alive in [2, 4), pinned at [0, 4) and [2, 6).
  p.buffers = {Fixed("a", 0, 4, 4, 0), B("free", 0, 9, 1), Fixed("b", 2, 6, 4, 2)};
  for (PlannerKind kind : {PlannerKind::kNaive, PlannerKind::kBestFit, PlannerKind::kExact,
                           PlannerKind::kAuto}) {
    PlanOptions o;
    o.planner = kind;
    try {
      check::PlanAndCheck(p, o);
      ADD_FAILURE() << ToString(kind) << " accepted overlapping pinned buffers";
    } catch (const Error& e) {
      EXPECT_STREQ(e.what(),
                   "buffers a and b are both alive in [2, 4) but fixed at overlapping bytes [0, 4) "
                   "and [2, 6)");
    }
  }
}

TEST(PinnedOffsetsTest, PinsThatShareBytesAtDifferentTimesAreFine) {
  Problem p;
  // a [0,2) and b [2,4) both at 0 (half-open lifetimes: never together);
  // c [0,4) at 4.
  p.buffers = {Fixed("a", 0, 2, 4, 0), Fixed("b", 2, 4, 4, 0), Fixed("c", 0, 4, 2, 4), B("d", 1, 3, 1)};
  EXPECT_EQ(FindFixedClash(p), std::nullopt);
  PlanOptions o;
  o.alignment_bytes = 1;
  const PlanResult r = check::PlanAndCheck(p, o);
  ASSERT_EQ(r.status, PlanStatus::kSolved);
  EXPECT_EQ(r.solution->height_bytes, 7);  // d above c
  p.buffers.push_back(Fixed("e", 3, 5, 1, 5));  // Clashes with c [4, 6) in [3, 4).
  EXPECT_EQ(FindFixedClash(p), (std::pair<size_t, size_t>{2, 4}));
}

TEST(CheckedMathTest, SaturatesInsteadOfOverflowing) {
  EXPECT_EQ(SaturatingAdd(kMax - 1, 1), kMax);
  EXPECT_EQ(SaturatingAdd(kMax, 5), kSaturatedBytes);
  EXPECT_EQ(SaturatingAlignUp(5, int64_t{1} << 62), int64_t{1} << 62);
  EXPECT_EQ(SaturatingAlignUp((int64_t{1} << 62) + 1, int64_t{1} << 62), kSaturatedBytes);
  EXPECT_EQ(SaturatingAlignUp(4, kMax), kMax);  // kMax is itself a multiple of kMax.
  EXPECT_EQ(SaturatingAlignUp(kMax - 3, 8), kSaturatedBytes);
  EXPECT_EQ(CheckedAlignUp(kMax - 3, 8), std::nullopt);
  EXPECT_EQ(CheckedAlignUp(17, 8), 24);
  EXPECT_EQ(CheckedAdd(kMax, 1), std::nullopt);
  EXPECT_EQ(SaturatingMul(int64_t{1} << 40, int64_t{1} << 40), kSaturatedBytes);
}

// a [0,4) 4, b [0,2) 2, c [2,4) 2, d [1,3) 1: a, c and d are alive together
// at time 2, so three distinct offsets, all multiples of the alignment.
Problem Four() {
  Problem p;
  p.buffers = {B("a", 0, 4, 4), B("b", 0, 2, 2), B("c", 2, 4, 2), B("d", 1, 3, 1)};
  return p;
}

TEST(AlignmentOverflowTest, HugeAlignmentsFailCleanlyOrPlaceCorrectly) {
  for (PlannerKind kind : {PlannerKind::kNaive, PlannerKind::kGreedySize, PlannerKind::kGreedyBreadth,
                           PlannerKind::kBestFit, PlannerKind::kExact, PlannerKind::kAuto}) {
    PlanOptions o;
    o.planner = kind;
    o.time_limit_seconds = 5;
    // 2^62: the third offset would be 2^63, past INT64_MAX; 2^63 - 1: the
    // second would end past it.
    for (const int64_t alignment : {int64_t{1} << 62, kMax}) {
      o.alignment_bytes = alignment;
      EXPECT_THROW(check::PlanAndCheck(Four(), o), Error) << ToString(kind) << " " << alignment;
    }
    // 2^61: offsets 0, 2^61 and 2^62 fit; the height is 2^62 + 1 (d on top)
    // or + 2 (c on top), never below the lower bound.
    o.alignment_bytes = int64_t{1} << 61;
    const PlanResult r = check::PlanAndCheck(Four(), o);
    ASSERT_EQ(r.status, PlanStatus::kSolved) << ToString(kind);
    EXPECT_GE(r.solution->height_bytes, (int64_t{1} << 62) + 1) << ToString(kind);
    if (kind != PlannerKind::kNaive) {  // Naive: 0, 2^61, 2^62, 3 * 2^61.
      EXPECT_LE(r.solution->height_bytes, (int64_t{1} << 62) + 4) << ToString(kind);
    }
    if (kind == PlannerKind::kExact || kind == PlannerKind::kAuto) {
      EXPECT_EQ(r.solution->height_bytes, (int64_t{1} << 62) + 1) << ToString(kind);
    }
  }
}

TEST(AlignmentOverflowTest, FittingAtTheLargestCapacityNeverAcceptsASaturatedHeight) {
  Problem p = Four();
  p.capacity_bytes = kMax;
  PlanOptions o;
  o.objective = Objective::kFitCapacity;
  o.alignment_bytes = kMax;
  o.time_limit_seconds = 5;
  const PlanResult r = check::PlanAndCheck(p, o);
  EXPECT_NE(r.status, PlanStatus::kSolved);
}

TEST(SizeOverflowTest, SizesThatSumPastInt64AreAUserError) {
  Problem p;
  p.buffers = {B("a", 0, 2, kMax / 2 + 1), B("b", 4, 6, kMax / 2 + 1)};
  PlanOptions o;
  EXPECT_THROW(PlanOffsets(p, o), Error);
  p.buffers = {Fixed("a", 0, 2, 8, kMax - 4)};
  EXPECT_THROW(PlanOffsets(p, o), Error);
  p.buffers = {B("a", std::numeric_limits<int64_t>::min(), kMax, 8)};
  EXPECT_THROW(PlanOffsets(p, o), Error);
}

TEST(TimeLimitTest, DeadlinesSaturate) {
  const Clock::time_point now = Clock::now();
  EXPECT_EQ(DeadlineAfter(1e10, "t", now), Clock::time_point::max());
  EXPECT_EQ(DeadlineAfter(1e300, "t", now), Clock::time_point::max());
  EXPECT_EQ(DeadlineAfter(HUGE_VAL, "t", now), Clock::time_point::max());
  EXPECT_EQ(DeadlineAfter(2.0, "t", now), now + std::chrono::seconds(2));
  EXPECT_EQ(DeadlineAfter(0.0, "t", now), now);
  EXPECT_THROW(DeadlineAfter(std::nan(""), "t", now), Error);
  EXPECT_THROW(DeadlineAfter(-1.0, "t", now), Error);
}

// Huge limits used to convert to a deadline in the past: no search ran and
// a fit at the lower bound timed out. Now they mean no deadline.
TEST(TimeLimitTest, HugeLimitsStillSearch) {
  for (uint32_t seed = 0; seed < 5; ++seed) {
    Problem p = testing::RandomProblem(seed, 30, 20, 1000);
    p.capacity_bytes = LowerBound(p) + 1000;  // Tight: greedy rarely fits, the search decides.
    PlanOptions o = testing::ExactFit(1);
    const PlanResult reference = check::PlanAndCheck(p, o);
    ASSERT_NE(reference.status, PlanStatus::kTimeout) << seed;
    for (const double limit : {1e10, 1e12, HUGE_VAL}) {
      o.time_limit_seconds = limit;
      const PlanResult r = check::PlanAndCheck(p, o);
      EXPECT_EQ(r.status, reference.status) << seed << " " << limit;
      EXPECT_EQ(r.search_nodes, reference.search_nodes) << seed << " " << limit;
      EXPECT_GT(r.search_nodes, 0) << seed << " " << limit;
    }
  }
  PlanOptions o;
  o.time_limit_seconds = std::nan("");
  EXPECT_THROW(PlanOffsets(testing::RandomProblem(0, 5, 5, 5), o), Error);
}

TEST(NodeBudgetTest, BudgetCoversAllProbes) {
  const Problem p = testing::RandomProblem(7, 60, 40, 1000);
  PlanOptions o;
  o.planner = PlannerKind::kExact;
  o.alignment_bytes = 1;
  o.exact.max_nodes = 50;
  const PlanResult r = check::PlanAndCheck(p, o);
  EXPECT_LE(r.search_nodes, 50);
  o.exact.max_nodes = -1;
  EXPECT_THROW(PlanOffsets(p, o), Error);
}

TEST(DeterminismTest, DeterministicRunsAgreeWithEachOther) {
  // A challenging-suite-like random problem, with a small node budget that
  // stops the search midway: the result must not depend on timing.
  const Problem p = testing::RandomProblem(11, 300, 200, 5000);
  PlanOptions o;
  o.alignment_bytes = 8;
  o.deterministic = true;
  o.exact.max_nodes = 3000;
  o.time_limit_seconds = 0;  // Ignored.
  const PlanResult first = check::PlanAndCheck(p, o);
  ASSERT_EQ(first.status, PlanStatus::kSolved);
  for (int run = 0; run < 3; ++run) {
    const PlanResult again = check::PlanAndCheck(p, o);
    EXPECT_EQ(again.solution->offsets_bytes, first.solution->offsets_bytes);
    EXPECT_EQ(again.search_nodes, first.search_nodes);
    EXPECT_EQ(again.planner, first.planner);
  }
}

}  // namespace
}  // namespace memfit::alloc

namespace memfit::alloc {
namespace {

// 20,000 buffers alive together: 400 million overlapping pairs, 1.6 GB of
// pair lists. The search refuses to prepare them (a bounded answer,
// kTimeout) instead of allocating them; PlanOffsets() keeps its greedy placement.
TEST(SearchMemoryTest, HugeOverlapCountsAreNotPrepared) {
  Problem p;
  for (int i = 0; i < 20'000; ++i) p.buffers.push_back(B(std::to_string(i), i % 7, 100 + i % 5, 1 + i % 3));
  const ExactResult r = SolveExact(p, LowerBound(p), 1, ExactOptions{}, Clock::time_point::max());
  EXPECT_EQ(r.outcome, ExactOutcome::kTimeout);
  EXPECT_EQ(r.nodes, 0);
}

}  // namespace
}  // namespace memfit::alloc
