// The heuristic's eviction scores (remat/eviction.h), the copy-stream model
// (remat/copy_stream.h) and the bounded walk, on examples worked out by hand.
#include "remat/eviction.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>

#include "remat/copy_stream.h"
#include "remat/heuristic.h"
#include "remat/lower.h"
#include "remat/test_problems.h"

namespace memfit::remat {
namespace {

using ::testing::ElementsAre;

// Three results are resident when x needs room, and each score evicts a
// different one:
//
//   stage  node  cost us  bytes  reads
//     0    b       1       10
//     1    a       1       10
//     2    c       2       40
//     3    x       1       10           <- 60 B resident + x's 10 B > 65 B
//     4    rc      1        0    c
//     5    rb      1        0    b
//     6    fill   10        0
//     7    ra      1        0    a
//
// Stage starts (time_us): 0 1 2 4 5 6 7 17. At stage 3 (t = 4 us) the
// recomputation clock has counted b, a, c: 1 + 1 + 2 = 4 us, so b was last
// touched 3 us ago, a 2 us, c 0 us. Next uses: c at t = 5 (1 us away), b at
// t = 6 (2 us), a at t = 17 (13 us). Penalty = own cost (no input to bring
// back); no reader is dropped, so the evicted readers cost 0.
//
//   next-use      = penalty / (bytes x (until use + 0.001))
//     b: 1 / (10 x 2.001)  = 0.04998    a: 1 / (10 x 13.001) = 0.00769 <- min
//     c: 2 / (40 x 1.001)  = 0.04995
//   cost-per-byte = penalty / bytes
//     b: 1 / 10 = 0.1      a: 1 / 10 = 0.1      c: 2 / 40 = 0.05 <- min
//   staleness     = (penalty + evicted readers) / (bytes x (staleness + 0.001))
//     b: 1 / (10 x 3.001) = 0.0333 <- min      a: 1 / (10 x 2.001) = 0.0500
//     c: 2 / (40 x 0.001) = 50
// The victim comes back (is recomputed) at its next read: the evaluation
// sequence shows it twice. After x, 60 B less the victim stay resident, and
// bringing it back returns to 60 B <= 65 B: one eviction in all.
Problem ThreeCandidates() {
  Problem p;
  p.name = "three-candidates";
  p.nodes = {N("b", 1, 10),      N("a", 1, 10),       N("c", 2, 40),     N("x", 1, 10),
             N("rc", 1, 0, {2}), N("rb", 1, 0, {0}),  N("fill", 10, 0),  N("ra", 1, 0, {1})};
  Validate(p);
  return p;
}

std::vector<uint32_t> Sequence(EvictionScore score) {
  HeuristicOptions o;
  o.budget_bytes = 65;
  o.score = score;
  const HeuristicResult h = RunHeuristic(ThreeCandidates(), o);
  EXPECT_TRUE(h.done());
  EXPECT_TRUE(h.fits);
  EXPECT_EQ(h.peak_estimate, 60);  // 50 B after the eviction + x; 60 B when the victim is back
  EXPECT_EQ(h.recomputations, 1u);
  return EvalSequence(h.events);
}

TEST(EvictionScore, NextUseEvictsWhatIsNeededLast) {
  EXPECT_DOUBLE_EQ(NextUseScore(1, 10, 13), 1 / (10 * 13.001));
  // a (node 1) goes and is recomputed for ra (stage 7).
  EXPECT_THAT(Sequence(EvictionScore::kNextUse), ElementsAre(0, 1, 2, 3, 4, 5, 6, 1, 7));
}

TEST(EvictionScore, CostPerByteEvictsTheCheapestBytes) {
  EXPECT_DOUBLE_EQ(CostPerByteScore(2, 40), 0.05);
  // c (node 2) goes and is recomputed for rc (stage 4).
  EXPECT_THAT(Sequence(EvictionScore::kCostPerByte), ElementsAre(0, 1, 2, 3, 2, 4, 5, 6, 7));
}

TEST(EvictionScore, StalenessEvictsTheLongestUntouched) {
  EXPECT_DOUBLE_EQ(StalenessScore(1, 0, 10, 3), 1 / (10 * 3.001));
  // Dropped readers that would need the victim add their cost: 1 + 4 us.
  EXPECT_DOUBLE_EQ(StalenessScore(1, 4, 10, 3), 5 / (10 * 3.001));
  // b (node 0) goes and is recomputed for rb (stage 5).
  EXPECT_THAT(Sequence(EvictionScore::kStaleness), ElementsAre(0, 1, 2, 3, 4, 0, 5, 6, 7));
}

// A swap's penalty: the round trip's stall plus the bias. Copies of 3 us
// each way issued at t = 10 us on an idle stream for a use at t = 14 us:
// they end at 16 us, 2 us late; with a bias of 0.05 the penalty is
// 2 + 0.05 x 3 = 2.15 us. Behind a copy that ends at 12 us they end at 18 us.
TEST(EvictionScore, SwapPenaltyIsTheStallPlusTheBias) {
  CopyStream stream;
  EXPECT_DOUBLE_EQ(stream.RoundTripStall(10, 3, 14), 2);
  EXPECT_DOUBLE_EQ(stream.RoundTripStall(10, 3, 20), 0);  // fits in the gap
  EXPECT_DOUBLE_EQ(SwapPenalty(2, 3, 0.05), 2.15);
  EXPECT_DOUBLE_EQ(stream.Issue(9, 3), 12);
  EXPECT_DOUBLE_EQ(stream.RoundTripStall(10, 3, 14), 4);
}

TEST(EvictionScore, Prints) {
  EXPECT_EQ(ToString(EvictionScore::kNextUse), "next-use");
  EXPECT_EQ(ToString(EvictionScore::kStaleness), "staleness");
  EXPECT_EQ(ToString(EvictionScore::kCostPerByte), "cost-per-byte");
  EXPECT_EQ(ToString(HeuristicStatus::kDone), "done");
  EXPECT_EQ(ToString(HeuristicStatus::kOutOfTime), "out of time");
  EXPECT_EQ(ToString(HeuristicStatus::kTooMuchRecompute), "too much recomputation");
}

// Copies issued one after another; a planned swap-out's device copy is held
// until its copy ends. Out at t = 0 (4 us, 100 B) and t = 1 (2 us, 50 B):
// the second waits for the first and ends at 6 us.
TEST(CopyStream, CopiesQueueAndHeldBytesRetireWhenTheirCopyEnds) {
  CopyStream stream;
  const double first = stream.Issue(0, 4);
  const double second = stream.Issue(1, 2);
  EXPECT_DOUBLE_EQ(first, 4);
  EXPECT_DOUBLE_EQ(second, 6);
  stream.Hold(first, 100);
  stream.Hold(second, 50);
  EXPECT_EQ(stream.Retire(3.9), 0);
  EXPECT_EQ(stream.Retire(4), 100);
  EXPECT_EQ(stream.Retire(10), 50);
  EXPECT_EQ(stream.Retire(10), 0);
}

// Three swap-ins needed at t = 10, 12 and (no known use), 3 us each, margin
// 1.5, deciding at the end of a stage at t = 6 us. Latest starts, last
// first: the copy for 12 must start by 9; the one for 10 must land by
// min(10, 9) = 9 and so start by 6. Due now when latest landing - 1.5 x 3
// <= 6: the first (9 - 4.5 = 4.5) yes, the second (12 - 4.5 = 7.5) no; the
// one with no known use is left to be swapped in on demand.
TEST(CopyStream, PrefetchesAreDueByTheirLatestStartLessTheMargin) {
  const double none = std::numeric_limits<double>::infinity();
  const std::vector<double> use_us = {10, 12, none}, copy_us = {3, 3, 3};
  std::vector<uint8_t> due;
  DuePrefetches(use_us, copy_us, 1.5, 6, due);
  EXPECT_THAT(due, ElementsAre(1, 0, 0));
  DuePrefetches(use_us, copy_us, 1.5, 7.5, due);
  EXPECT_THAT(due, ElementsAre(1, 1, 0));
}

// Two results swapped out after the forward pass and first read by the same
// backward node tie on their first read; the later computed (higher id) is
// brought back first. Stages 0..6 take 1 us each: f0, f1, four fillers, then
// b (backward) reads both at t = 6 us. Copies take 1 us. Ordered f1, f0: f0's
// copy must land by 6 and f1's by 5; due when the latest landing less 1.5
// copies is before the next stage's start: f1 (3.5) as stage 3 starts (the
// next one starts at 4), f0 (4.5) as stage 4 starts.
TEST(CopyStream, SwapInsTiedOnTheirFirstReadComeBackLatestComputedFirst) {
  Problem p;
  p.nodes = {N("f0", 1, 10), N("f1", 1, 10), N("x2", 1, 0), N("x3", 1, 0),
             N("x4", 1, 0),  N("x5", 1, 0),  N("b", 1, 1, {0, 1})};
  p.nodes.back().backward = true;
  Validate(p);
  HeuristicOptions o;
  o.budget_bytes = 1000;
  o.copy_us.assign(p.size(), 1.0);
  o.evict_to_host = false;
  o.swap_after = {0, 1, kNever, kNever, kNever, kNever, kNever};  // as they are computed
  const HeuristicResult h = RunHeuristic(p, o);
  ASSERT_TRUE(h.done());
  std::vector<std::pair<EventKind, uint32_t>> events;
  for (const Event& e : h.events) events.emplace_back(e.kind, e.node);
  using enum EventKind;
  EXPECT_THAT(events, ElementsAre(std::pair(kEval, 0u), std::pair(kEval, 1u), std::pair(kEval, 2u),
                                  std::pair(kSwapIn, 1u), std::pair(kEval, 3u), std::pair(kSwapIn, 0u),
                                  std::pair(kEval, 4u), std::pair(kEval, 5u), std::pair(kEval, 6u)));
}

// The walk behind both neighbourhood prices: a chain of 30 unit-cost nodes
// walked from its end along inputs counts at most kMaxNodes (24) of them;
// with the start not counted, 24 others.
TEST(BoundedWalk, CountsAtMostItsBound) {
  Problem p;
  for (uint32_t v = 0; v < 30; ++v) {
    p.nodes.push_back(N("n" + std::to_string(v), 1, 1, v ? std::vector<uint32_t>{v - 1} : std::vector<uint32_t>{}));
  }
  BoundedWalk walk(p.size());
  auto inputs = [&](uint32_t u, auto visit) {
    for (uint32_t x : p.nodes[u].inputs) visit(x);
  };
  auto all = [](uint32_t) { return true; };
  EXPECT_DOUBLE_EQ(walk.Cost(p, 29, true, inputs, all), 24);
  EXPECT_DOUBLE_EQ(walk.Cost(p, 29, false, inputs, all), 24);
  // Short chains are priced whole: node 4 and its 4 ancestors.
  EXPECT_DOUBLE_EQ(walk.Cost(p, 4, true, inputs, all), 5);
  // `follow` stops the walk: only nodes 10..4 pass.
  EXPECT_DOUBLE_EQ(walk.Cost(p, 10, true, inputs, [](uint32_t x) { return x >= 4; }), 7);
}

}  // namespace
}  // namespace memfit::remat
