// The DTR runtime on hand-made logs whose evictions are worked out in the
// comments, plus golden checks against the DTR paper's published figures.
//
// Reminders for reading the worked examples:
//  - the clock starts at 1 and advances by each op's time (constants: 0);
//  - a storage's last access is set when it is created and whenever a tensor
//    on it is an argument of an op being run (before the op runs);
//  - the pool of evictable storages is in order of when each last became
//    evictable (after its computation, or when the last lock was released);
//    among equal scores the later one is evicted.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_util.h"

#include <cmath>

#include "dtr/program.h"
#include "dtr/simulator.h"
#include "trace_builder.h"
#include "util/error.h"

namespace memfit::dtr {
namespace {

using ::testing::ElementsAre;
using testing::TraceBuilder;

SimResult Replay(const Program& p, Heuristic h, int64_t budget_bytes, SimOptions options = {}) {
  options.heuristic = h;
  options.budget_bytes = budget_bytes;
  options.record_events = true;
  return Simulate(p, options);
}

// Four resident storages compete for one eviction.
//   w const 10 B | a = f(w) 100 B, 100 ns | b = g(w) 100 B, 10 ns
//   c = h(w) 150 B, 20 ns | d = k(w) 100 B, 1 ns
// Resident before d: 10+100+100+150 = 360 B; d needs 100 more and the budget
// is 400 B, so one storage of >= 60 B goes. Clock 131; last access a 101,
// b 111, c 131; pool [a, b, c].
//   dtr-local / dtr / dtr-eq (no evicted neighbours): a 100/(100*30) = .033,
//     b 10/(100*20) = .005, c staleness 0 -> inf            => b
//   msps: a 100/100 = 1, b 10/100 = .1, c 20/150 = .13        => b
//   lru: oldest access a (101)                                => a
//   largest: 1/|s|, smallest for c (150 B)                    => c
TraceBuilder FourCandidates() {
  TraceBuilder b;
  b.Start().Const("w", 10).Op("a", {"w"}, 100, 100).Op("b", {"w"}, 100, 10).Op("c", {"w"}, 150, 20);
  b.Op("d", {"w"}, 100, 1).Release("a").Release("b").Release("c").Release("d");
  return b;
}

class HeuristicChoiceTest : public ::testing::TestWithParam<std::pair<Heuristic, const char*>> {};

TEST_P(HeuristicChoiceTest, EvictsTheExpectedStorage) {
  auto [heuristic, victim] = GetParam();
  SimResult r = Replay(FourCandidates().Build(), heuristic, 400);
  EXPECT_EQ(r.status, SimStatus::kOk);
  EXPECT_EQ(r.evictions, 1);
  ASSERT_FALSE(r.events.empty());
  EXPECT_EQ(r.events.front(), std::string("evict ") + victim);
  EXPECT_EQ(r.recompute_ns, 0);
  EXPECT_DOUBLE_EQ(r.overhead, 1.0);
  EXPECT_LE(r.peak_bytes, 400);
}

INSTANTIATE_TEST_SUITE_P(AllHeuristics, HeuristicChoiceTest,
                         ::testing::Values(std::pair{Heuristic::kDtr, "b"}, std::pair{Heuristic::kDtrEqClass, "b"},
                                           std::pair{Heuristic::kDtrLocal, "b"}, std::pair{Heuristic::kMsps, "b"},
                                           std::pair{Heuristic::kLru, "a"}, std::pair{Heuristic::kLargest, "c"}),
                         [](const auto& info) {
                           std::string name(ToString(info.param.first));
                           for (char& c : name) c = c == '-' ? '_' : c;
                           return name;
                         });

TEST(SimulatorTest, RandomIsSeededAndDeterministic) {
  Program p = FourCandidates().Build();
  SimOptions options;
  options.seed = 7;
  SimResult r1 = Replay(p, Heuristic::kRandom, 400, options);
  SimResult r2 = Replay(p, Heuristic::kRandom, 400, options);
  EXPECT_EQ(r1.status, SimStatus::kOk);
  EXPECT_EQ(r1.evictions, 1);  // any one of a, b, c makes room for d
  EXPECT_EQ(r1.events, r2.events);
}

// Unconstrained peak with a view, copies and releases:
//   w 10 | a 100 (110) | v = view(a) 0 B | b = g(v) 50 (160) |
//   release a (v still holds the storage) | release v: a's storage freed (60) |
//   c = h(b) 30 (90).  Peak 160 B, compute 1+2+3+4 ns.
TEST(SimulatorTest, BaselineFollowsStorageReferences) {
  TraceBuilder b;
  b.Const("w", 10).Op("a", {"w"}, 100, 1).Call("view", {"a"}, {{"v", 100, 0}}, 2).Op("b", {"v"}, 50, 3);
  b.Release("a").Release("v").Op("c", {"b"}, 30, 4);
  Baseline base = MeasureBaseline(b.Build());
  EXPECT_EQ(base.peak_bytes, 160);
  EXPECT_EQ(base.compute_ns, 10);
}

// Recursive recomputation under LRU, budget 310 B, every op 10 ns except u.
//   w 10 | a=f(w) 100 | b=g(a) 100 | c=h(b) 100   -> 310 B, clock 31
//   e=m(c) 100: pool [a, b], last a 11, b 21      -> evict a
//   z=r(e) 100: pool [b, c], last b 21, c 31      -> evict b   (clock 51)
//   u=s(b) 10 B, 1 ns: b needs a needs w.
//     materialize a: pool [c, z, e], last 31/51/41 -> evict c, recompute a (61)
//     materialize b: pool [z, e] (a locked)        -> evict e, recompute b (71)
//     u itself: 320 > 310, pool [z, a], both last accessed at 51
//       -> tie, the later one: evict a; run u (72)
//   Releases at the end free the resident b, z, u ("release").
// Overhead (51 + 20) / 51.
TEST(SimulatorTest, RecomputesEvictedParentsRecursively) {
  TraceBuilder b;
  b.Start().Const("w", 10).Op("a", {"w"}, 100, 10).Op("b", {"a"}, 100, 10).Op("c", {"b"}, 100, 10);
  b.Op("e", {"c"}, 100, 10).Op("z", {"e"}, 100, 10).Op("u", {"b"}, 10, 1);
  for (const char* n : {"a", "b", "c", "e", "z", "u"}) b.Release(n);
  SimResult r = Replay(b.Build(), Heuristic::kLru, 310);
  EXPECT_EQ(r.status, SimStatus::kOk);
  EXPECT_THAT(r.events, ElementsAre("evict a", "evict b", "evict c", "recompute a", "evict e", "recompute b",
                                    "evict a", "release b", "release z", "release u"));
  EXPECT_EQ(r.compute_ns, 51);
  EXPECT_EQ(r.recompute_ns, 20);
  EXPECT_EQ(r.recomputations, 2);
  EXPECT_EQ(r.evictions, 5);
  EXPECT_DOUBLE_EQ(r.overhead, 71.0 / 51.0);
  EXPECT_EQ(r.peak_bytes, 310);
}

// A view shares its base's storage. Budget 210 B, LRU.
//   w 10 | a=f(w) 100 B 10 ns | v=view(a) 1 ns (0 B; a's storage last 12)
//   release a (v keeps the storage) | x=g(w) 100 B (210) | y=h(w) 100 B:
//   pool [a, x], last 12 / 22 -> evict a (the storage: v is undefined too)
//   z=k(v) 10 B: v needs a: evict x (22 < 32), recompute a (10 ns); v's
//   view is redefined by rerunning view (1 ns, no bytes); z: evict y.
TEST(SimulatorTest, ViewsShareStorageAndAreRedefined) {
  TraceBuilder b;
  b.Const("w", 10).Op("a", {"w"}, 100, 10).Call("view", {"a"}, {{"v", 100, 0}}, 1).Release("a");
  b.Op("x", {"w"}, 100, 10).Op("y", {"w"}, 100, 10).Op("z", {"v"}, 10, 1);
  b.Release("v").Release("x").Release("y").Release("z");
  Program p = b.Build();
  EXPECT_EQ(MeasureBaseline(p).peak_bytes, 320);
  SimResult r = Replay(p, Heuristic::kLru, 210);
  EXPECT_EQ(r.status, SimStatus::kOk);
  EXPECT_THAT(r.events, ElementsAre("evict a", "evict x", "recompute a", "recompute v", "evict y", "release a",
                                    "release z"));
  EXPECT_EQ(r.recompute_ns, 11);
}

// MUTATE is copy-on-write: relu_(v) on a view v of a (100 B) makes a new
// 100 B storage (the whole base), and the old binding of v is released.
//   w 10 | a 100 (110) | v = view(a) | relu_(v): +100 (210)
//   release a: a's storage still has the old v? No: MUTATE released the old v,
//   so releasing a drops the last reference -> "release a". Peak 210 B.
TEST(SimulatorTest, MutationCopiesTheWholeStorage) {
  TraceBuilder b;
  b.Const("w", 10).Op("a", {"w"}, 100, 10).Call("view", {"a"}, {{"v", 100, 0}}, 1);
  b.Mutate("relu_", {"v"}, {0}, 5).Release("a").Release("v");
  Program p = b.Build();
  EXPECT_EQ(p.ops.back().total_bytes, 100);
  EXPECT_EQ(MeasureBaseline(p).peak_bytes, 210);
  SimResult r = Replay(p, Heuristic::kDtr, 1000);
  EXPECT_THAT(r.events, ElementsAre("release a", "release v"));  // the copy is named after v
  EXPECT_EQ(r.peak_bytes, 210);
  EXPECT_EQ(r.compute_ns, 16);
}

// COPY adds a reference, RELEASE drops one; the storage goes when the last
// reference does (eager eviction), or stays resident without eager eviction.
TEST(SimulatorTest, CopiesAndReleasesCountReferences) {
  TraceBuilder b;
  b.Const("w", 10).Op("a", {"w"}, 100, 10).Copy("a2", "a").Release("a").Op("x", {"w"}, 100, 1);
  b.Release("a2").Op("y", {"w"}, 100, 1);
  Program p = b.Build();
  // Baseline: w, a, x resident (210); a freed at "release a2"; y: 210 again.
  EXPECT_EQ(MeasureBaseline(p).peak_bytes, 210);
  SimResult eager = Replay(p, Heuristic::kDtr, 210);
  EXPECT_THAT(eager.events, ElementsAre("release a"));
  EXPECT_EQ(eager.evictions, 0);
  // Without eager eviction the dead a stays resident until y needs room.
  // Clock 12, pool [a, x]: a scores 10 ns / (100 B x staleness 1) = 0.1, x
  // was just computed (staleness 0: infinite score) -> the dead a goes.
  SimOptions lazy;
  lazy.eager_eviction = false;
  SimResult r = Replay(p, Heuristic::kDtr, 210, lazy);
  EXPECT_THAT(r.events, ElementsAre("evict a"));
  EXPECT_EQ(r.evictions, 1);
}

TEST(SimulatorTest, OomWhenNothingIsEvictable) {
  TraceBuilder b;
  b.Const("w", 10).Op("a", {"w"}, 100, 10).Op("b", {"a"}, 100, 10);
  Program p = b.Build();
  // b needs w and a resident (locked) plus 100 B: 210 > 150 and the pool is empty.
  SimResult r = Replay(p, Heuristic::kDtr, 150);
  EXPECT_EQ(r.status, SimStatus::kOom);
  EXPECT_EQ(r.events.back(), "oom");
  // Even the constant does not fit.
  EXPECT_EQ(Replay(p, Heuristic::kLru, 5).status, SimStatus::kOom);
}

TEST(SimulatorTest, StopsOnceOverheadLimitIsPassed) {
  // The recursive example recomputes 20 ns of 51 ns.
  TraceBuilder b;
  b.Start().Const("w", 10).Op("a", {"w"}, 100, 10).Op("b", {"a"}, 100, 10).Op("c", {"b"}, 100, 10);
  b.Op("e", {"c"}, 100, 10).Op("z", {"e"}, 100, 10).Op("u", {"b"}, 10, 1);
  for (const char* n : {"a", "b", "c", "e", "z", "u"}) b.Release(n);
  Program p = b.Build();
  SimOptions options;
  options.overhead_limit = 1.1;  // stop once recompute > 5.1 ns: at the first recomputation
  SimResult r = Replay(p, Heuristic::kLru, 310, options);
  EXPECT_EQ(r.status, SimStatus::kOverheadExceeded);
  EXPECT_EQ(r.recomputations, 1);
  EXPECT_EQ(r.events.back(), "exceeded");
  options.overhead_limit.reset();
  EXPECT_EQ(Replay(p, Heuristic::kLru, 310, options).status, SimStatus::kOk);
}

TEST(SimulatorTest, BanishingFreesReleasedStoragesForGood) {
  TraceBuilder b;
  b.Const("w", 10).Op("a", {"w"}, 100, 10).Op("b", {"a"}, 100, 10).Release("a").Op("c", {"b"}, 100, 10);
  b.Release("b").Release("c");
  SimOptions options;
  options.banishing = true;
  SimResult r = Replay(b.Build(), Heuristic::kDtr, 210, options);
  EXPECT_EQ(r.status, SimStatus::kOk);
  // a goes when released (b, its only dependent, is resident), then b, c.
  EXPECT_THAT(r.events, ElementsAre("release a", "release b", "release c"));
  EXPECT_EQ(r.peak_bytes, 210);
}

TEST(SimulatorTest, HeuristicNamesRoundTrip) {
  for (Heuristic h : AllHeuristics()) EXPECT_EQ(ParseHeuristic(ToString(h)), h);
  EXPECT_EQ(ParseHeuristic("belady"), std::nullopt);
}

// Golden: the published simrd figures (../shared/data/dtr/simrd_reference.txt).
struct Golden {
  const char* trace;
  Heuristic heuristic;
  double ratio;
  SimStatus status;
  double overhead;  // when kOk
};

void PrintTo(const Golden& g, std::ostream* os) { *os << g.trace << " " << ToString(g.heuristic) << " " << g.ratio; }

class GoldenTest : public ::testing::TestWithParam<Golden> {};

TEST_P(GoldenTest, MatchesThePaper) {
  const Golden& g = GetParam();
  const std::string path = memfit::testing::SharedDataPath(std::string("dtr/") + g.trace);
  if (path.empty()) GTEST_SKIP() << "shared trace dtr/" << g.trace << " is not on this machine";
  Program p = LoadProgram(path);
  SimOptions options;
  options.heuristic = g.heuristic;
  options.budget_ratio = g.ratio;
  SimResult r = Simulate(p, options);
  ASSERT_EQ(r.status, g.status);
  if (g.status == SimStatus::kOk) {
    EXPECT_NEAR(r.overhead, g.overhead, 0.01 * g.overhead);
  }
  if (g.status != SimStatus::kOom) {
    EXPECT_LE(r.peak_bytes, r.budget_bytes);
  }
}

INSTANTIATE_TEST_SUITE_P(
    SharedTraces, GoldenTest,
    ::testing::Values(Golden{"resnet32-56.log", Heuristic::kDtr, 0.3, SimStatus::kOk, 1.178},
                      Golden{"resnet32-56.log", Heuristic::kDtr, 0.1, SimStatus::kOverheadExceeded, 0},
                      Golden{"resnet32-56.log", Heuristic::kDtrEqClass, 0.2, SimStatus::kOk, 1.332},
                      Golden{"resnet32-56.log", Heuristic::kLargest, 0.4, SimStatus::kOk, 1.738},
                      Golden{"resnet32-56.log", Heuristic::kLru, 0.5, SimStatus::kOverheadExceeded, 0},
                      Golden{"unet-6.log", Heuristic::kDtr, 0.4, SimStatus::kOom, 0},
                      Golden{"unet-6.log", Heuristic::kDtrLocal, 0.5, SimStatus::kOk, 1.847},
                      Golden{"unet-6.log", Heuristic::kMsps, 0.3, SimStatus::kOk, 1.585}));

}  // namespace
}  // namespace memfit::dtr
