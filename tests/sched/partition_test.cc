// Cut points and the partitioned scheduler.
#include "sched/partition.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "autodiff/training_graph.h"
#include "hand_graphs.h"
#include "models/zoo.h"
#include "sched/scheduler.h"
#include "sched_test_util.h"

namespace memfit::sched {
namespace {

using ::testing::ElementsAre;

// nw(v) = |U| - |anc(v) in U| - |desc(v) in U| - 1 over the unflagged ops U
// (all ops when `contract` is empty), by following edges.
std::vector<OpId> NarrowWaistZero(const Dependencies& deps, const std::vector<bool>& contract = {}) {
  const size_t n = deps.num_ops();
  auto counted = [&](OpId op) { return contract.empty() || !contract[op.index()]; };
  auto reach = [&](OpId from, bool forward) {
    std::vector<bool> seen(n, false);
    std::vector<OpId> stack = {from};
    size_t count = 0;
    while (!stack.empty()) {
      const OpId op = stack.back();
      stack.pop_back();
      for (OpId next : forward ? deps.successors(op) : deps.predecessors(op)) {
        if (!seen[next.index()]) {
          seen[next.index()] = true;
          count += counted(next);
          stack.push_back(next);
        }
      }
    }
    return count;
  };
  size_t u = 0;
  for (size_t v = 0; v < n; ++v) u += counted(OpId(v));
  std::vector<OpId> cuts;
  for (size_t v = 0; v < n; ++v) {
    const OpId op(static_cast<uint32_t>(v));
    if (counted(op) && u - reach(op, false) - reach(op, true) - 1 == 0) cuts.push_back(op);
  }
  return cuts;
}

TEST(CutPointsTest, EqualNarrowWaistZero) {
  for (uint32_t seed = 1; seed <= 60; ++seed) {
    const Graph g = testing::RandomGraph(seed, {.num_ops = 3 + static_cast<int>(seed % 25)});
    const Dependencies deps = ComputeDependencies(g);
    EXPECT_EQ(CutPoints(deps), NarrowWaistZero(deps)) << "seed " << seed;
    std::vector<bool> contract(g.num_ops());
    std::mt19937 rng(seed);
    for (size_t i = 0; i < contract.size(); ++i) contract[i] = rng() % 3 == 0;
    EXPECT_EQ(CutPoints(deps, contract), NarrowWaistZero(deps, contract)) << "seed " << seed;
  }
}

// Three two-branch blocks in a row (each block's out feeds the next): a cut
// after each out, each piece solved exactly to the single block's optimum.
TEST(PartitionTest, ChainedBlocksAreSolvedPieceByPiece) {
  GraphBuilder b("blocks");
  TensorId out = testing::TwoBranches(b);
  out = testing::TwoBranches(b, out);
  out = testing::TwoBranches(b, out);
  b.MarkOutput(out);
  const Graph g = b.Finish();
  const Dependencies deps = ComputeDependencies(g);
  EXPECT_THAT(CutPoints(deps), ElementsAre(OpId(4), OpId(9), OpId(14)));

  const MemoryModel model(g, {});
  const PartitionResult r = SchedulePartitioned(model, deps, {});
  EXPECT_EQ(r.pieces, 3u);
  EXPECT_EQ(r.largest_piece_ops, 5u);
  EXPECT_EQ(r.peak_bytes, testing::kTwoBranchesOptimalPeak);
  EXPECT_TRUE(r.proven_optimal);
  EXPECT_EQ(ComputeLiveness(g).peak_bytes, testing::kTwoBranchesProgramPeak);
  const ScheduleResult scheduled = Schedule(g, {.scheduler = SchedulerKind::kPartitioned});
  EXPECT_EQ(scheduled.peak_bytes, testing::kTwoBranchesOptimalPeak);
  EXPECT_THAT(scheduled.note, ::testing::HasSubstr("3 pieces"));
}

// Pieces too large to search keep their list schedule; the result is not
// proven then (the blocks' greedy orders are not optimal).
TEST(PartitionTest, LargePiecesFallBackToListScheduling) {
  GraphBuilder b("blocks");
  b.MarkOutput(testing::TwoBranches(b));
  const Graph g = b.Finish();
  const ScheduleResult r = Schedule(g, {.scheduler = SchedulerKind::kPartitioned, .max_exact_ops = 2});
  EXPECT_EQ(r.peak_bytes, testing::kTwoBranchesProgramPeak);
  EXPECT_FALSE(r.proven_optimal);
}

// Cut points are forced in every order, so partitioning loses nothing: on
// random graphs it finds the exact optimum whenever both searches finish.
TEST(PartitionTest, MatchesTheWholeGraphExactSearch) {
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    const Graph g = testing::RandomGraph(seed, {.num_ops = 10});
    const ScheduleResult exact = Schedule(g, {.scheduler = SchedulerKind::kExact});
    const ScheduleResult partitioned = Schedule(g, {.scheduler = SchedulerKind::kPartitioned});
    ASSERT_TRUE(exact.proven_optimal) << exact;
    ASSERT_TRUE(partitioned.proven_optimal) << partitioned;
    EXPECT_EQ(partitioned.peak_bytes, exact.peak_bytes) << "seed " << seed;
  }
}

// Parameter views and optimizer updates float across the whole step; with
// them contracted the MLP's training step splits into pieces, each small
// enough to search, so the whole step is proven optimal.
TEST(PartitionTest, ZooMlpTrainingStepSplitsAtContractedCutPoints) {
  const Graph g = BuildTrainingGraph(BuildZooModel("mlp", {.batch = 8}));
  const Dependencies deps = ComputeDependencies(g);
  EXPECT_TRUE(CutPoints(deps).size() <= 1);
  const MemoryModel model(g, {});
  const PartitionResult r = SchedulePartitioned(model, deps, {});
  EXPECT_GT(r.pieces, 3u);
  EXPECT_TRUE(r.proven_optimal);
  const ScheduleResult exact = Schedule(g, {.scheduler = SchedulerKind::kExact});
  ASSERT_TRUE(exact.proven_optimal);
  EXPECT_EQ(r.peak_bytes, exact.peak_bytes);
}

}  // namespace
}  // namespace memfit::sched
