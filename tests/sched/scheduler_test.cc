// Every scheduler on hand-built graphs with known optima, on random graphs
// (checked, and against brute force), on zoo training graphs, and under
// tiny limits.
#include "sched/scheduler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "autodiff/training_graph.h"
#include "hand_graphs.h"
#include "models/zoo.h"
#include "sched/schedule_check.h"
#include "sched_test_util.h"
#include "test_util.h"
#include "util/error.h"

namespace memfit::sched {
namespace {

using ::testing::ElementsAre;
using testing::Compute;

constexpr SchedulerKind kAllKinds[] = {SchedulerKind::kProgramOrder, SchedulerKind::kGreedy, SchedulerKind::kExact,
                                       SchedulerKind::kPartitioned, SchedulerKind::kAuto};

// Schedules and checks what every result must satisfy.
ScheduleResult ScheduleAndCheck(const Graph& g, const ScheduleOptions& options) {
  ScheduleResult r = Schedule(g, options);
  EXPECT_THAT(CheckSchedule(g, r.order), ElementsAre()) << r;
  EXPECT_EQ(r.peak_bytes, ComputeLiveness(g, r.order, options.liveness).peak_bytes) << r;
  EXPECT_LE(r.peak_bytes, ComputeLiveness(g, options.liveness).peak_bytes) << r;
  EXPECT_GE(r.peak_bytes, r.lower_bound_bytes) << r;
  return r;
}

Graph Finish(GraphBuilder& b, TensorId output) {
  b.MarkOutput(output);
  return b.Finish();
}

TEST(SchedulerTest, TwoBranchesNeedTheExactSearch) {
  GraphBuilder b("two-branches");
  const TensorId out = testing::TwoBranches(b);
  const Graph g = Finish(b, out);
  auto peak = [&](SchedulerKind kind) { return ScheduleAndCheck(g, {.scheduler = kind}); };
  EXPECT_EQ(peak(SchedulerKind::kProgramOrder).peak_bytes, testing::kTwoBranchesProgramPeak);
  const ScheduleResult greedy = peak(SchedulerKind::kGreedy);
  EXPECT_EQ(greedy.peak_bytes, testing::kTwoBranchesProgramPeak);
  for (SchedulerKind kind : {SchedulerKind::kExact, SchedulerKind::kPartitioned, SchedulerKind::kAuto}) {
    const ScheduleResult r = peak(kind);
    EXPECT_EQ(r.peak_bytes, testing::kTwoBranchesOptimalPeak) << r;
    EXPECT_TRUE(r.proven_optimal) << r;
    // a1 a2 b1 b2 out.
    EXPECT_THAT(r.order, ElementsAre(OpId(2), OpId(3), OpId(0), OpId(1), OpId(4))) << r;
  }
}

TEST(SchedulerTest, GreedyFreesEarly) {
  const Graph g = testing::BreadthFirstChains();
  EXPECT_EQ(ScheduleAndCheck(g, {.scheduler = SchedulerKind::kProgramOrder}).peak_bytes, testing::kChainsProgramPeak);
  const ScheduleResult greedy = ScheduleAndCheck(g, {.scheduler = SchedulerKind::kGreedy});
  EXPECT_EQ(greedy.peak_bytes, testing::kChainsOptimalPeak);
  EXPECT_EQ(greedy.scheduler, "greedy:least-growth");
  // p1 q1 p2 q2 out.
  EXPECT_THAT(greedy.order, ElementsAre(OpId(0), OpId(2), OpId(1), OpId(3), OpId(4)));
  const ScheduleResult exact = ScheduleAndCheck(g, {.scheduler = SchedulerKind::kExact});
  EXPECT_EQ(exact.peak_bytes, testing::kChainsOptimalPeak);
  EXPECT_TRUE(exact.proven_optimal);
}

TEST(SchedulerTest, DiamondRunsTheLongArmFirst) {
  const Graph g = testing::Diamond();
  EXPECT_EQ(ScheduleAndCheck(g, {.scheduler = SchedulerKind::kProgramOrder}).peak_bytes,
            testing::kDiamondProgramPeak);
  const ScheduleResult greedy = ScheduleAndCheck(g, {.scheduler = SchedulerKind::kGreedy});
  EXPECT_EQ(greedy.peak_bytes, testing::kDiamondProgramPeak);
  EXPECT_EQ(greedy.scheduler, "program-order");
  EXPECT_THAT(greedy.note, ::testing::HasSubstr("kept program order"));
  const ScheduleResult r = ScheduleAndCheck(g, {.scheduler = SchedulerKind::kAuto});
  EXPECT_EQ(r.peak_bytes, testing::kDiamondOptimalPeak);
  EXPECT_TRUE(r.proven_optimal);
  // a b1 b2 c d.
  EXPECT_THAT(r.order, ElementsAre(OpId(0), OpId(2), OpId(3), OpId(1), OpId(4)));
}

// The update of w would free g (400 B) and so tempts every memory-aware
// scheduler to run it as early as it can; it must still follow r, which
// reads the old w.
TEST(SchedulerTest, InPlaceUpdateStaysAfterTheReadersOfTheOldValue) {
  GraphBuilder b("update");
  const TensorId x = b.Input("x", {1});
  const TensorId w = b.Parameter("w", {100});
  const TensorId g = Compute(b, {x}, 100, "g");        // op0
  const TensorId r = Compute(b, {x, w}, 200, "r");     // op1 reads the old w
  b.Call("aten.add_.Tensor", {w, g}, {}, "update");   // op2 writes w, frees g
  const Graph graph = Finish(b, Compute(b, {r}, 1));  // op3
  for (SchedulerKind kind : kAllKinds) {
    const ScheduleResult result = ScheduleAndCheck(graph, {.scheduler = kind});
    const auto pos = [&](uint32_t op) { return std::ranges::find(result.order, OpId(op)) - result.order.begin(); };
    EXPECT_LT(pos(1), pos(2)) << result;
  }
}

// In the SGD training graph, each parameter's aten.add_ runs after every op
// that touches the parameter (through any view) before it in program order.
TEST(SchedulerTest, ZooMlpUpdatesFollowTheReadersOfTheirParameter) {
  const Graph g = BuildTrainingGraph(BuildZooModel("mlp", {.batch = 8}));
  for (SchedulerKind kind : kAllKinds) {
    const ScheduleResult r = ScheduleAndCheck(g, {.scheduler = kind, .time_limit_seconds = 1});
    std::vector<size_t> pos(g.num_ops());
    for (size_t i = 0; i < r.order.size(); ++i) pos[r.order[i].index()] = i;
    int updates = 0;
    for (const Op& update : g.ops()) {
      if (update.type != "aten.add_") continue;
      const TensorId param = g.StorageRoot(update.inputs[0]);
      ++updates;
      for (const Op& op : g.ops()) {
        if (op.id >= update.id) break;
        const auto touches = [&](TensorId t) { return g.StorageRoot(t) == param; };
        if (std::ranges::any_of(op.inputs, touches) || std::ranges::any_of(op.outputs, touches)) {
          EXPECT_LT(pos[op.id.index()], pos[update.id.index()]) << op << " vs " << update << " under " << kind;
        }
      }
    }
    EXPECT_GT(updates, 0);
  }
}

class SchedulerRandomTest : public ::testing::TestWithParam<SchedulerKind> {};

TEST_P(SchedulerRandomTest, OrdersAreValidAndNeverWorseThanProgramOrder) {
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    const Graph g = testing::RandomGraph(seed, {.num_ops = 5 + static_cast<int>(seed)});
    ScheduleOptions options{.scheduler = GetParam(), .time_limit_seconds = 0.5};
    options.liveness.sources_live_throughout = seed % 3 != 0;
    options.liveness.outputs_live_to_end = seed % 4 != 0;
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    ScheduleAndCheck(g, options);
  }
}

INSTANTIATE_TEST_SUITE_P(AllSchedulers, SchedulerRandomTest, ::testing::ValuesIn(kAllKinds),
                         [](const auto& info) {
                           std::string name(ToString(info.param));
                           std::ranges::replace(name, '-', '_');
                           return name;
                         });

TEST(ExactSchedulerTest, EqualsBruteForceOnTinyGraphs) {
  for (uint32_t seed = 1; seed <= 80; ++seed) {
    const Graph g = testing::RandomGraph(seed, {.num_ops = 4 + static_cast<int>(seed % 4)});
    ScheduleOptions options{.scheduler = SchedulerKind::kExact};
    options.liveness.sources_live_throughout = seed % 2 == 0;
    const ScheduleResult r = ScheduleAndCheck(g, options);
    EXPECT_TRUE(r.proven_optimal) << "seed " << seed << ": " << r;
    EXPECT_EQ(r.peak_bytes, testing::BruteForcePeak(g, options.liveness)) << "seed " << seed << ": " << r;
  }
}

// A tiny time or state limit stops the searches; the result is still a
// valid order no worse than program order.
TEST(SchedulerLimitsTest, TinyLimitsStillGiveValidOrders) {
  const Graph g = testing::RandomGraph(7, {.num_ops = 80});
  for (SchedulerKind kind : {SchedulerKind::kExact, SchedulerKind::kPartitioned, SchedulerKind::kAuto}) {
    ScheduleAndCheck(g, {.scheduler = kind, .time_limit_seconds = 0});
    const ScheduleResult r = ScheduleAndCheck(g, {.scheduler = kind, .max_states = 1});
    EXPECT_LE(r.states, 2) << r;
  }
}

TEST(SchedulerLimitsTest, BadOptionsNameTheField) {
  const Graph g = testing::Diamond();
  EXPECT_THROW(Schedule(g, {.time_limit_seconds = -1}), Error);
  const std::string error = memfit::testing::ErrorOf([&] { Schedule(g, {.max_states = 0}); });
  EXPECT_EQ(error, "schedule max_states must be >= 1, got 0");
}

TEST(SchedulerTest, EmptyGraph) {
  const Graph g;
  for (SchedulerKind kind : kAllKinds) {
    const ScheduleResult r = Schedule(g, {.scheduler = kind});
    EXPECT_TRUE(r.order.empty());
    EXPECT_EQ(r.peak_bytes, 0);
  }
}

TEST(SchedulerTest, KindsPrintAndParse) {
  for (SchedulerKind kind : kAllKinds) EXPECT_EQ(ParseSchedulerKind(ToString(kind)), kind);
  EXPECT_EQ(ParseSchedulerKind("fastest"), std::nullopt);
}

// Zoo training graphs: every scheduler is valid and never above program
// order (small shapes keep the test quick).
TEST(SchedulerZooTest, TrainingGraphs) {
  for (const char* model : {"mlp", "bert-tiny", "resnet-18"}) {
    const Graph g = BuildTrainingGraph(BuildZooModel(model, {.batch = 2, .seq = 16, .image = 32}));
    for (SchedulerKind kind : {SchedulerKind::kGreedy, SchedulerKind::kPartitioned, SchedulerKind::kAuto}) {
      SCOPED_TRACE(::testing::Message() << model << " " << kind);
      ScheduleAndCheck(g, {.scheduler = kind, .time_limit_seconds = 1});
    }
  }
}

}  // namespace
}  // namespace memfit::sched
