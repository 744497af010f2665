// Every planner on seeded random problems, under planner x alignment x mode;
// every placement goes through the independent checker.
#include <gtest/gtest.h>

#include <algorithm>
#include <tuple>

#include "alloc/planner.h"
#include "check/plan_and_check.h"
#include "test_util.h"
#include "util/error.h"

namespace memfit::alloc {
namespace {

using Params = std::tuple<PlannerKind, int64_t, Objective>;

class PlannerRandomTest : public ::testing::TestWithParam<Params> {};

TEST_P(PlannerRandomTest, PlacementsPassTheChecker) {
  const auto [planner, alignment, objective] = GetParam();
  for (uint32_t seed = 1; seed <= 12; ++seed) {
    Problem p = testing::RandomProblem(seed, 6 + static_cast<int>(seed) * 3, 30, 100);
    if (seed % 3 == 0) {
      // Pin one buffer (aligned) to exercise fixed offsets.
      p.buffers[0].fixed_offset_bytes = alignment * 3;
    }
    if (seed % 4 == 0) p.buffers[1].alignment_bytes = 16;
    PlanOptions o;
    o.planner = planner;
    o.alignment_bytes = alignment;
    o.objective = objective;
    o.time_limit_seconds = 0.2;  // Search results may time out; they must still be valid.
    if (objective == Objective::kFitCapacity) {
      // Generous enough for every planner but naive: 1.5x the best-fit height.
      PlanOptions bf = o;
      bf.planner = PlannerKind::kBestFit;
      bf.objective = Objective::kMinimizeHeight;
      p.capacity_bytes = PlanOffsets(p, bf).solution->height_bytes * 3 / 2;
    }
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " " << ToString(p));
    const PlanResult r = check::PlanAndCheck(p, o);  // Throws on a violation.
    if (planner == PlannerKind::kNaive && objective == Objective::kFitCapacity) {
      EXPECT_TRUE(r.status == PlanStatus::kSolved || r.status == PlanStatus::kNotFound) << r;
      continue;
    }
    ASSERT_EQ(r.status, PlanStatus::kSolved) << r;
    EXPECT_EQ(testing::Violations(p, *r.solution, alignment,
                                  objective == Objective::kFitCapacity),
              "");
    EXPECT_GE(r.solution->height_bytes, r.lower_bound_bytes);
    if (r.proven_optimal && alignment == 1 && !p.buffers[0].fixed_offset_bytes) {
      EXPECT_GE(r.solution->height_bytes, LowerBound(p));
    }
  }
}

std::string Name(const ::testing::TestParamInfo<Params>& info) {
  std::string name = std::string(ToString(std::get<0>(info.param))) + "_align" +
                     std::to_string(std::get<1>(info.param)) + "_" +
                     std::string(ToString(std::get<2>(info.param)));
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

INSTANTIATE_TEST_SUITE_P(
    AllPlanners, PlannerRandomTest,
    ::testing::Combine(::testing::Values(PlannerKind::kNaive, PlannerKind::kGreedySize,
                                         PlannerKind::kGreedyBreadth, PlannerKind::kBestFit,
                                         PlannerKind::kExact, PlannerKind::kAuto),
                       ::testing::Values(int64_t{1}, int64_t{64}),
                       ::testing::Values(Objective::kFitCapacity, Objective::kMinimizeHeight)),
    Name);

TEST(PlannerTest, InfeasibleByLowerBound) {
  Problem p;
  p.buffers = {testing::B("a", 0, 2, 4), testing::B("b", 1, 3, 4)};
  p.capacity_bytes = 7;  // 8 bytes live at t=1.
  PlanOptions o;
  o.objective = Objective::kFitCapacity;
  o.alignment_bytes = 1;
  for (PlannerKind k : {PlannerKind::kBestFit, PlannerKind::kExact, PlannerKind::kAuto}) {
    o.planner = k;
    EXPECT_EQ(check::PlanAndCheck(p, o).status, PlanStatus::kInfeasible) << ToString(k);
  }
}

TEST(PlannerTest, InfeasibleByFragmentation) {
  // f is pinned at byte 1 of a 3-byte arena; b needs 2 contiguous bytes while
  // f lives: the lower bound (3) fits but no placement does.
  //   byte 2 | free |   byte 1 | f |   byte 0 | free |
  Problem p;
  p.buffers = {testing::Fixed("f", 0, 2, 1, 1), testing::B("b", 0, 2, 2)};
  p.capacity_bytes = 3;
  PlanOptions o = testing::ExactFit(1);
  const PlanResult r = check::PlanAndCheck(p, o);
  EXPECT_EQ(r.status, PlanStatus::kInfeasible) << r;
  o.planner = PlannerKind::kBestFit;
  EXPECT_EQ(check::PlanAndCheck(p, o).status, PlanStatus::kNotFound);
}

TEST(PlannerTest, AutoReachesTheBoundWhereEveryGreedyMissesIt) {
  // d [1,6) 2 bytes, a [2,3) 3, b [3,9) 3, c [7,10) 4: live sums 2, 5, 5, 5,
  // 5, 3, 7, 7, 4 at t = 1..9 -> lower bound 7 (b + c at t = 7, 8). The
  // greedy planners put c at 0 and b on it, which leaves d a 1-byte gap:
  //   greedy, height 9            auto, height 7
  //   byte  t 123456789           byte  t 123456789
  //      8    ddddd....              6    ......ccc
  //      7    ddddd....              5    ......ccc
  //      6    ..bbbbbb.              4    ddddd.ccc
  //      5    ..bbbbbb.              3    ddddd.ccc
  //      4    ..bbbbbb.              2    .abbbbbb.
  //      3    ......ccc              1    .abbbbbb.
  //      2    .a....ccc              0    .abbbbbb.
  //      1    .a....ccc
  //      0    .a....ccc
  Problem p;
  p.buffers = {testing::B("a", 2, 3, 3), testing::B("b", 3, 9, 3), testing::B("c", 7, 10, 4),
               testing::B("d", 1, 6, 2)};
  PlanOptions o;
  o.alignment_bytes = 1;
  for (PlannerKind k : {PlannerKind::kBestFit, PlannerKind::kGreedySize, PlannerKind::kGreedyBreadth}) {
    o.planner = k;
    EXPECT_EQ(check::PlanAndCheck(p, o).solution->height_bytes, 9) << ToString(k);
  }
  o.planner = PlannerKind::kAuto;
  const PlanResult r = check::PlanAndCheck(p, o);
  EXPECT_EQ(r.solution->offsets_bytes, (std::vector<int64_t>{0, 0, 3, 3}));
  EXPECT_EQ(r.solution->height_bytes, 7);
  EXPECT_TRUE(r.proven_optimal);
  EXPECT_EQ(r.planner, "exact");
}

// Four 10-byte buffers, one after the other in time: one 10-byte slot
// serves them all. With no time at all, the first greedy planner stacks
// them (40 bytes); asked to finish, it places them in that slot.
TEST(PlannerTest, FinishFirstHeuristicPlacesWhatADeadlineWouldStack) {
  Problem p;
  for (int t = 0; t < 4; ++t) p.buffers.push_back(testing::B(std::string(1, static_cast<char>('a' + t)), t, t + 1, 10));
  PlanOptions o;
  o.time_limit_seconds = 0;
  o.alignment_bytes = 1;
  EXPECT_EQ(check::PlanAndCheck(p, o).solution->height_bytes, 40);
  o.finish_first_heuristic = true;
  const PlanResult r = check::PlanAndCheck(p, o);
  EXPECT_EQ(r.solution->height_bytes, 10);
  EXPECT_TRUE(r.proven_optimal);
}

TEST(PlannerTest, UserErrorsThrow) {
  Problem p;
  p.buffers = {testing::B("a", 0, 2, 4)};
  PlanOptions o;
  o.objective = Objective::kFitCapacity;  // No capacity set.
  EXPECT_THROW(PlanOffsets(p, o), Error);
  o.objective = Objective::kMinimizeHeight;
  o.alignment_bytes = 0;
  EXPECT_THROW(PlanOffsets(p, o), Error);
  o.alignment_bytes = 1;
  p.buffers[0].lifetime = {3, 3};
  EXPECT_THROW(PlanOffsets(p, o), Error);
}

TEST(PlannerTest, TypesPrintThemselves) {
  EXPECT_EQ(ToString(PlannerKind::kGreedyBreadth), "greedy-breadth");
  EXPECT_EQ(ParsePlannerKind("best-fit"), PlannerKind::kBestFit);
  EXPECT_EQ(ParsePlannerKind("bogus"), std::nullopt);
  EXPECT_EQ(ToString(testing::B("x", 1, 5, 8)),
            "Buffer{id=x, lifetime=[1, 5), size_bytes=8}");
  EXPECT_EQ(ToString(PlanStatus::kInfeasible), "infeasible");
  EXPECT_TRUE(IdLess({"2"}, {"10"}));
  EXPECT_TRUE(IdLess({"a10"}, {"a2"}));
}

}  // namespace
}  // namespace memfit::alloc
