// The exact search against brute force, under every combination of its
// switches.
#include "alloc/exact_search.h"

#include <gtest/gtest.h>

#include <functional>

#include "alloc/planner.h"
#include "check/plan_and_check.h"
#include "test_util.h"

namespace memfit::alloc {
namespace {

using Clock = std::chrono::steady_clock;

// Does a placement within `capacity` exist? Tries every offset of every
// buffer (a multiple of its alignment, default 1; no fixed offsets).
bool BruteForceFits(const Problem& p, int64_t capacity) {
  const size_t n = p.buffers.size();
  std::vector<int64_t> off(n, 0);
  std::function<bool(size_t)> place = [&](size_t i) {
    if (i == n) return true;
    const Buffer& b = p.buffers[i];
    for (int64_t o = 0; o + b.size_bytes <= capacity; o += b.alignment_bytes.value_or(1)) {
      bool ok = true;
      for (size_t j = 0; j < i && ok; ++j) {
        const Buffer& c = p.buffers[j];
        ok = !(b.lifetime.Overlaps(c.lifetime) && o < off[j] + c.size_bytes &&
               off[j] < o + b.size_bytes);
      }
      if (!ok) continue;
      off[i] = o;
      if (place(i + 1)) return true;
    }
    return false;
  };
  return place(0);
}

int64_t BruteForceMinHeight(const Problem& p) {
  int64_t h = LowerBound(p);
  while (!BruteForceFits(p, h)) ++h;
  return h;
}

ExactOptions Switches(int mask) {
  ExactOptions o;
  o.section_inference = mask & 1;
  o.unallocated_floor = mask & 2;
  o.dominance = mask & 4;
  o.decomposition = mask & 8;
  o.restarts = mask & 16;
  o.hatless = mask & 32;
  return o;
}

class ExactSwitchesTest : public ::testing::TestWithParam<int> {};

TEST_P(ExactSwitchesTest, MatchesBruteForceOnTinyProblems) {
  const ExactOptions switches = Switches(GetParam());
  for (uint32_t seed = 1; seed <= 25; ++seed) {
    const Problem p = testing::RandomProblem(seed, 3 + seed % 4, 6, 4);
    const int64_t best = BruteForceMinHeight(p);
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " optimum " << best);
    const Deadline far = Clock::now() + std::chrono::seconds(30);
    const ExactResult fits = SolveExact(p, best, 1, switches, far);
    ASSERT_EQ(fits.outcome, ExactOutcome::kFound);
    Solution s{fits.offsets, HeightOf(p, fits.offsets)};
    EXPECT_LE(s.height_bytes, best);
    EXPECT_EQ(testing::Violations(p, s, 1), "");
    if (best > 0) {
      EXPECT_EQ(SolveExact(p, best - 1, 1, switches, far).outcome, ExactOutcome::kInfeasible);
    }
    // Through the planner: minimizing proves the optimum.
    PlanOptions o;
    o.planner = PlannerKind::kExact;
    o.alignment_bytes = 1;
    o.exact = switches;
    const PlanResult r = check::PlanAndCheck(p, o);
    ASSERT_EQ(r.status, PlanStatus::kSolved);
    EXPECT_EQ(r.solution->height_bytes, best);
    EXPECT_TRUE(r.proven_optimal);
  }
}

// Buffers with their own alignments: all 2 (the search then raises a whole
// section at once) or a mix of 1, 2 and 3 (it rescans the sections instead).
TEST_P(ExactSwitchesTest, MatchesBruteForceWithAlignments) {
  const ExactOptions switches = Switches(GetParam());
  for (uint32_t seed = 1; seed <= 16; ++seed) {
    Problem p = testing::RandomProblem(seed, 3 + seed % 3, 6, 5);
    for (size_t i = 0; i < p.buffers.size(); ++i) {
      p.buffers[i].alignment_bytes = seed % 2 == 0 ? 2 : 1 + static_cast<int64_t>(i % 3);
    }
    const int64_t best = BruteForceMinHeight(p);
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " optimum " << best);
    const Deadline far = Clock::now() + std::chrono::seconds(30);
    const ExactResult fits = SolveExact(p, best, 1, switches, far);
    ASSERT_EQ(fits.outcome, ExactOutcome::kFound);
    EXPECT_EQ(testing::Violations(p, Solution{fits.offsets, HeightOf(p, fits.offsets)}, 1), "");
    EXPECT_EQ(SolveExact(p, best - 1, 1, switches, far).outcome, ExactOutcome::kInfeasible);
  }
}

INSTANTIATE_TEST_SUITE_P(AllSwitches, ExactSwitchesTest, ::testing::Range(0, 64));

TEST(ExactSearchTest, ProvesOptimalityOnSmallProblems) {
  for (uint32_t seed = 100; seed < 110; ++seed) {
    Problem p = testing::RandomProblem(seed, 25, 20, 64);
    PlanOptions o;
    o.planner = PlannerKind::kExact;
    o.alignment_bytes = 1;
    o.time_limit_seconds = 10;
    const PlanResult r = check::PlanAndCheck(p, o);
    ASSERT_EQ(r.status, PlanStatus::kSolved);
    EXPECT_TRUE(r.proven_optimal) << r;
    // Nothing lower fits.
    if (r.solution->height_bytes > r.lower_bound_bytes) {
      EXPECT_EQ(SolveExact(p, r.solution->height_bytes - 1, 1, {}, Clock::now() + std::chrono::seconds(10))
                    .outcome,
                ExactOutcome::kInfeasible);
    }
  }
}

TEST(ExactSearchTest, MatchesBruteForceOnAHandMadeProblem) {
  // x [0,2) 3 bytes, y [1,4) 2, z [3,5) 3, w [2,5) 1: live sums 3, 5, 3, 6, 4
  // -> lower bound 6 (at t=3: y + z + w); the optimum is found by brute force.
  Problem p;
  p.buffers = {testing::B("x", 0, 2, 3), testing::B("y", 1, 4, 2), testing::B("z", 3, 5, 3),
               testing::B("w", 2, 5, 1)};
  const int64_t best = BruteForceMinHeight(p);
  PlanOptions o;
  o.planner = PlannerKind::kExact;
  o.alignment_bytes = 1;
  const PlanResult r = check::PlanAndCheck(p, o);
  EXPECT_EQ(r.solution->height_bytes, best);
  EXPECT_TRUE(r.proven_optimal);
}

TEST(ExactSearchTest, HatlessRuleLooksAtTheBufferItTried) {
  // Live sums 10, 10, 8, 10, 7, 7 at t = 0..5: lower bound 10, which brute
  // force reaches. The rule once read the flag of the deepest buffer placed
  // below the candidate it tried; with every other switch off it then gave
  // up on this problem at 10.
  Problem p;
  p.buffers = {testing::B("0", 0, 6, 3), testing::B("1", 1, 4, 3), testing::B("2", 2, 6, 1),
               testing::B("3", 3, 6, 2), testing::B("4", 1, 6, 1), testing::B("5", 0, 1, 4),
               testing::B("6", 0, 2, 3)};
  ASSERT_EQ(BruteForceMinHeight(p), 10);
  const ExactOptions hatless_only = Switches(32);
  const ExactResult r = SolveExact(p, 10, 1, hatless_only, Clock::now() + std::chrono::seconds(30));
  ASSERT_EQ(r.outcome, ExactOutcome::kFound);
  EXPECT_EQ(testing::Violations(p, Solution{r.offsets, HeightOf(p, r.offsets)}, 1), "");
}

TEST(ExactSearchTest, HonoursFixedOffsetsAndAlignment) {
  // f pinned at 64..96 while alive [0,4); a and b (32 bytes each, alignment
  // 32) live with it; they fit below f at 0 and 32: height 96 = lower bound.
  //   bytes 64..96 f | 32..64 b | 0..32 a
  Problem p;
  p.buffers = {testing::Fixed("f", 0, 4, 32, 64), testing::B("a", 0, 4, 32),
               testing::B("b", 1, 3, 32)};
  p.capacity_bytes = 96;
  PlanOptions o = testing::ExactFit(32);
  const PlanResult r = check::PlanAndCheck(p, o);
  ASSERT_EQ(r.status, PlanStatus::kSolved);
  EXPECT_EQ(r.solution->offsets_bytes, (std::vector<int64_t>{64, 0, 32}));
}

TEST(ExactSearchTest, TimesOutWithANodeLimit) {
  Problem p = testing::RandomProblem(7, 60, 40, 1000);
  ExactOptions o;
  o.max_nodes = 5;
  o.restarts = false;
  // Well below the optimum, the search cannot finish in 5 nodes.
  const ExactResult r =
      SolveExact(p, LowerBound(p) + 1, 1, o, Clock::now() + std::chrono::seconds(10));
  EXPECT_NE(r.outcome, ExactOutcome::kFound);
}

// One prepared solver answers at several capacities as fresh searches do.
TEST(ExactSearchTest, ReusedSolverMatchesFreshSearches) {
  const auto far = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (uint32_t seed = 0; seed < 10; ++seed) {
    const Problem p = testing::RandomProblem(seed, 12, 12, 16);
    const ExactOptions options;
    ExactSolver solver(p, 1, options, far);
    const int64_t low = LowerBound(p);
    for (int64_t cap = low + 8; cap >= low - 1; --cap) {
      const ExactResult fresh = SolveExact(p, cap, 1, options, far);
      const ExactResult reused = solver.Solve(cap);
      EXPECT_EQ(reused.outcome, fresh.outcome) << "seed " << seed << " capacity " << cap;
      EXPECT_EQ(reused.offsets, fresh.offsets) << "seed " << seed << " capacity " << cap;
    }
  }
}

}  // namespace
}  // namespace memfit::alloc
