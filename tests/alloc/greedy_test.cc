// Hand-worked placements with exact offsets.
#include <gtest/gtest.h>

#include <chrono>

#include "alloc/greedy.h"
#include "alloc/planner.h"
#include "alloc/problem.h"
#include "check/plan_and_check.h"
#include "test_util.h"

namespace memfit::alloc {
namespace {

using testing::B;
using testing::Fixed;

// Four buffers, alignment 1:
//   a [0,4) 4 bytes, b [0,2) 2, c [2,4) 2, d [1,3) 1.
// Live sums: t0 a+b=6, t1 a+b+d=7, t2 a+c+d=7, t3 a+c=6 -> lower bound 7.
//
//   bytes 6..7 |     |  d  d  |     |
//   bytes 4..6 |  b     b  c     c  |
//   bytes 0..4 |  a     a     a   a |
//               t=0   1    2    3   4
Problem FourBuffers() {
  Problem p;
  p.buffers = {B("a", 0, 4, 4), B("b", 0, 2, 2), B("c", 2, 4, 2), B("d", 1, 3, 1)};
  return p;
}

TEST(GreedyTest, LowerBoundIsLargestLiveSum) { EXPECT_EQ(LowerBound(FourBuffers()), 7); }

TEST(GreedyTest, GreedyBySizeHandWorked) {
  // Size order a, b, c, d; b and c both stack on a; d finds no gap and goes
  // on top of b/c.
  EXPECT_EQ(PlanGreedyBySize(FourBuffers(), 1), (std::vector<int64_t>{0, 4, 4, 6}));
}

TEST(GreedyTest, BestFitHandWorked) {
  // a spans the whole problem so it goes first; then by size as above.
  EXPECT_EQ(PlanBestFit(FourBuffers(), 1), (std::vector<int64_t>{0, 4, 4, 6}));
}

TEST(GreedyTest, NaiveBumpsInIdOrder) {
  // No reuse: a 0..4, b 4..6, c 6..8, d 8..9.
  EXPECT_EQ(PlanNaive(FourBuffers(), 1), (std::vector<int64_t>{0, 4, 6, 8}));
}

TEST(GreedyTest, GreedyByBreadthHandWorked) {
  // Breadth is 7 at t1 (a, b, d) first: a 0, b 4, d 6; then t2 adds c at 4.
  EXPECT_EQ(PlanGreedyByBreadth(FourBuffers(), 1), (std::vector<int64_t>{0, 4, 4, 6}));
}

TEST(GreedyTest, AlignmentRoundsOffsetsUp) {
  // With 8-byte alignment: a 0, b 8, c 8, d 16 (above b/c, which end at 10).
  EXPECT_EQ(PlanGreedyBySize(FourBuffers(), 8), (std::vector<int64_t>{0, 8, 8, 16}));
}

TEST(GreedyTest, SmallestGapWins) {
  // x [0,3) 2 bytes fixed at 0, y [0,3) 1 byte fixed at 5, z [0,3) 4 bytes at
  // 10 (fixed): gaps [2,5) of 3 bytes and [6,10) of 4 bytes. w [0,3) 3 bytes
  // takes the 3-byte gap at 2, the best fit.
  //   bytes 10..14 z | bytes 6..10 free | 5..6 y | 2..5 w | 0..2 x
  Problem p;
  p.buffers = {Fixed("x", 0, 3, 2, 0), Fixed("y", 0, 3, 1, 5), Fixed("z", 0, 3, 4, 10), B("w", 0, 3, 3)};
  EXPECT_EQ(PlanGreedyBySize(p, 1), (std::vector<int64_t>{0, 5, 10, 2}));
}

TEST(GreedyTest, FixedBufferLeavesRoomBelow) {
  // f is pinned at 2..4; g [0,2) 2 bytes fits below it at 0; h [0,2) 1 byte
  // goes above it at 4. Height 5 = lower bound.
  //   bytes 4..5 h | 2..4 f | 0..2 g
  Problem p;
  p.buffers = {Fixed("f", 0, 2, 2, 2), B("g", 0, 2, 2), B("h", 0, 2, 1)};
  PlanOptions o;
  o.planner = PlannerKind::kExact;
  o.alignment_bytes = 1;
  const PlanResult r = check::PlanAndCheck(p, o);
  ASSERT_EQ(r.status, PlanStatus::kSolved);
  EXPECT_EQ(r.solution->offsets_bytes, (std::vector<int64_t>{2, 0, 4}));
  EXPECT_EQ(r.solution->height_bytes, 5);
  EXPECT_TRUE(r.proven_optimal);
}

// With a deadline already past, the greedy planners stack every buffer
// above the others: poor, but valid, and returned at once.
TEST(GreedyTest, PastDeadlineStillGivesValidPlacement) {
  const Problem p = testing::RandomProblem(3, 40, 30, 100);
  const Deadline past = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  for (const auto& offsets : {PlanBestFit(p, 8, past), PlanGreedyBySize(p, 8, past),
                              PlanGreedyByBreadth(p, 8, past)}) {
    const Solution s{offsets, HeightOf(p, offsets)};
    EXPECT_EQ(testing::Violations(p, s, 8, /*enforce_capacity=*/false), "");
  }
}

// The deadline does not change a placement that finishes in time.
TEST(GreedyTest, FarDeadlineSamePlacement) {
  const Problem p = testing::RandomProblem(5, 60, 40, 100);
  const Deadline far = std::chrono::steady_clock::now() + std::chrono::hours(1);
  EXPECT_EQ(PlanBestFit(p, 8, far), PlanBestFit(p, 8));
  EXPECT_EQ(PlanGreedyByBreadth(p, 8, far), PlanGreedyByBreadth(p, 8));
}

}  // namespace
}  // namespace memfit::alloc
