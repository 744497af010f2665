// Ordering constraints: data edges, in-place hazards, views, and the checker.
#include "sched/dependencies.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "autodiff/training_graph.h"
#include "models/zoo.h"
#include "sched/schedule_check.h"
#include "sched_test_util.h"

namespace memfit::sched {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::Compute;

std::vector<uint32_t> Preds(const Dependencies& deps, uint32_t op) {
  std::vector<uint32_t> ids;
  for (OpId p : deps.predecessors(OpId(op))) ids.push_back(p.value);
  return ids;
}

std::vector<OpId> Order(std::initializer_list<uint32_t> ids) {
  std::vector<OpId> order;
  for (uint32_t id : ids) order.push_back(OpId(id));
  return order;
}

TEST(DependenciesTest, DataEdges) {
  GraphBuilder b("chain");
  const TensorId x = b.Input("x", {4});
  const TensorId a = Compute(b, {x}, 4);     // op0
  const TensorId c = Compute(b, {a}, 4);     // op1
  Compute(b, {a, c}, 4);                     // op2
  const Dependencies deps = ComputeDependencies(b.graph());
  EXPECT_THAT(Preds(deps, 0), ElementsAre());
  EXPECT_THAT(Preds(deps, 1), ElementsAre(0));
  EXPECT_THAT(Preds(deps, 2), ElementsAre(0, 1));
  EXPECT_EQ(deps.num_edges(), 3u);
  EXPECT_THAT(deps.successors(OpId(0)), ElementsAre(OpId(1), OpId(2)));
}

TEST(DependenciesTest, InPlaceUpdateOfAParameterKeepsReadersOnTheirSide) {
  GraphBuilder b("sgd");
  const TensorId x = b.Input("x", {4});
  const TensorId w = b.Parameter("w", {4});
  const TensorId view = b.Call("aten.alias", {w});  // op0: a view reads w
  Compute(b, {x, view}, 4);                         // op1: reads w through the view
  const TensorId g = Compute(b, {x}, 4);            // op2
  b.Call("aten.add_.Tensor", {w, g});               // op3: writes w
  Compute(b, {view}, 4);                            // op4: reads the new w
  const Dependencies deps = ComputeDependencies(b.graph());
  // op3 follows every earlier toucher of w; op4 follows op3 (and op0 by data).
  EXPECT_THAT(Preds(deps, 3), ElementsAre(0, 1, 2));
  EXPECT_THAT(Preds(deps, 4), ElementsAre(0, 3));
  EXPECT_TRUE(CheckSchedule(b.graph(), Order({0, 2, 1, 3, 4})).empty());
  // Updating w before op1 reads it gives op1 the new value.
  EXPECT_THAT(CheckSchedule(b.graph(), Order({0, 2, 3, 1, 4})),
              ElementsAre("op 'add_' (op3) writes storage t1 'w' before op 'test.op' (op1) touches it, unlike "
                          "program order"));
}

// AdamW's decay, param.mul_(1 - lr * wd), reads nothing the step made: no
// data edge keeps it after the backward pass, and the bias it decays is last
// read by the forward. Hoisted there, it would forbid remat to recompute the
// forward op that reads the bias (it would read the decayed value), so it
// stays after the backward ops before it. An update that reads what the
// step made (the gradient) and a write into state no forward or backward op
// reads get no such edge.
TEST(DependenciesTest, ADecayOfAParameterStaysAfterTheBackwardPass) {
  GraphBuilder b("adamw");
  const TensorId x = b.Input("x", {4});
  const TensorId bias = b.Parameter("bias", {4});
  const TensorId step = b.Source("bias.step", {}, DType::kF32, TensorRole::kOptimizerState);
  const TensorId y = Compute(b, {x, bias}, 4);  // op0: the forward reads the bias
  b.set_phase(Phase::kBackward);
  const TensorId g = Compute(b, {y}, 4);        // op1
  Compute(b, {g}, 4);                           // op2: the last backward op
  b.set_phase(Phase::kOptimizer);
  b.Call("aten.add_.Scalar", {step}, {{"other", 1.0}});   // op3: the step count
  b.Call("aten.mul_.Scalar", {bias}, {{"other", 0.99}});  // op4: the decay
  b.Call("aten.add_.Tensor", {bias, g});                  // op5: the update
  const Dependencies deps = ComputeDependencies(b.graph());
  EXPECT_THAT(Preds(deps, 3), ElementsAre());
  EXPECT_THAT(Preds(deps, 4), ElementsAre(0, 2));
  EXPECT_THAT(Preds(deps, 5), ElementsAre(1, 4));  // the gradient, and the decay before it
}

TEST(DependenciesTest, ViewsAreNotWrites) {
  GraphBuilder b("views");
  const TensorId w = b.Parameter("w", {4});
  const TensorId v1 = b.Call("aten.alias", {w});  // op0
  Compute(b, {v1}, 4);                            // op1
  const TensorId v2 = b.Call("aten.alias", {w});  // op2
  Compute(b, {v2}, 4);                            // op3
  const Dependencies deps = ComputeDependencies(b.graph());
  EXPECT_THAT(Preds(deps, 2), ElementsAre());
  EXPECT_THAT(Preds(deps, 3), ElementsAre(2));
  EXPECT_TRUE(CheckSchedule(b.graph(), Order({2, 3, 0, 1})).empty());
}

TEST(DependenciesTest, WritesKeepTheirOrderAndReadsStayBetweenThem) {
  GraphBuilder b("relu_");
  const TensorId x = b.Input("x", {4});
  const TensorId a = Compute(b, {x}, 4);  // op0 creates a
  Compute(b, {a}, 4);                     // op1 reads a
  b.Call("aten.relu_", {a});              // op2 writes a
  Compute(b, {a}, 4);                     // op3 reads the new a
  b.Call("aten.relu_", {a});              // op4 writes a again
  const Dependencies deps = ComputeDependencies(b.graph());
  EXPECT_THAT(Preds(deps, 2), ElementsAre(0, 1));
  EXPECT_THAT(Preds(deps, 3), ElementsAre(0, 2));
  EXPECT_THAT(Preds(deps, 4), ElementsAre(0, 2, 3));
  const auto problems = CheckSchedule(b.graph(), Order({0, 1, 2, 4, 3}));
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0], HasSubstr("op 'relu__1' (op4) writes storage"));
  EXPECT_THAT(problems[0], HasSubstr("before op 'test.op_2' (op3)"));
}

TEST(DependenciesTest, BatchNormRunningStatisticsAreWrites) {
  GraphBuilder b("bn");
  const TensorId x = b.Input("x", {2, 3, 4, 4});
  const TensorId mean = b.Buffer("running_mean", {3});
  const TensorId var = b.Buffer("running_var", {3});
  Compute(b, {mean}, 3);  // op0 reads the old statistics
  b.CallMulti("aten.native_batch_norm", {x, mean, var},
              {{"weight", std::monostate{}}, {"bias", std::monostate{}}, {"training", true},
               {"momentum", 0.1}, {"eps", 1e-5}});  // op1 updates them
  Compute(b, {mean}, 3);  // op2 reads the new ones
  const Dependencies deps = ComputeDependencies(b.graph());
  EXPECT_THAT(Preds(deps, 1), ElementsAre(0));
  EXPECT_THAT(Preds(deps, 2), ElementsAre(1));
}

TEST(DependenciesTest, EdgesGoForwardAndProgramOrderIsValid) {
  for (uint32_t seed = 1; seed <= 30; ++seed) {
    const Graph g = testing::RandomGraph(seed, {.num_ops = 25});
    const Dependencies deps = ComputeDependencies(g);
    for (const Op& op : g.ops()) {
      for (OpId p : deps.predecessors(op.id)) EXPECT_LT(p, op.id);
    }
    EXPECT_THAT(CheckSchedule(g, ProgramOrder(g)), ElementsAre()) << "seed " << seed;
  }
}

// A permutation is accepted by the checker iff it is a topological order of
// the dependencies: the two are written independently.
// Two dropouts with no data between them (masks fission draws before its
// parts) keep their program order: a schedule draws what eager draws.
TEST(DependenciesTest, RandomOpsKeepTheirOrder) {
  GraphBuilder b("masks");
  const TensorId x = b.Input("x", {4});
  const TensorId y = b.Input("y", {4});
  b.CallMulti("aten.native_dropout", {x}, {{"p", 0.5}, {"train", true}}, "drop_x");  // op0
  b.CallMulti("aten.native_dropout", {y}, {{"p", 0.5}, {"train", true}}, "drop_y");  // op1
  const Dependencies deps = ComputeDependencies(b.graph());
  EXPECT_THAT(Preds(deps, 1), ElementsAre(0));
  EXPECT_THAT(CheckSchedule(b.graph(), Order({1, 0})),
              ElementsAre(HasSubstr("op 'drop_y' (op1) draws random numbers before op 'drop_x' (op0)")));
  EXPECT_TRUE(CheckSchedule(b.graph(), Order({0, 1})).empty());
}

TEST(DependenciesTest, CheckerAgreesWithTheDependencies) {
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    const Graph g = testing::RandomGraph(seed, {.num_ops = 6, .view_chance = 0.2, .inplace_chance = 0.3});
    const Dependencies deps = ComputeDependencies(g);
    std::vector<OpId> order = ProgramOrder(g);
    do {
      std::vector<size_t> pos(order.size());
      for (size_t i = 0; i < order.size(); ++i) pos[order[i].index()] = i;
      bool topological = true;
      for (const Op& op : g.ops()) {
        for (OpId p : deps.predecessors(op.id)) topological = topological && pos[p.index()] < pos[op.id.index()];
      }
      ASSERT_EQ(CheckSchedule(g, order).empty(), topological) << "seed " << seed;
    } while (std::next_permutation(order.begin(), order.end()));
  }
}

TEST(ScheduleCheckTest, ReportsMissingRepeatedAndUnknownOps) {
  GraphBuilder b("three");
  const TensorId x = b.Input("x", {4});
  const TensorId a = Compute(b, {x}, 4, "first");
  Compute(b, {a}, 4, "second");
  Compute(b, {x}, 4, "third");
  EXPECT_THAT(CheckSchedule(b.graph(), Order({0, 0, 9})),
              ElementsAre("op 'first' (op0) runs twice, at steps 0 and 1", "step 2 runs op9, which does not exist",
                          "op 'second' (op1) never runs", "op 'third' (op2) never runs"));
  EXPECT_THAT(CheckSchedule(b.graph(), Order({1, 0, 2})),
              ElementsAre("op 'second' (op1) runs before op 'first' (op0), which produces its input t1 'first'"));
}

TEST(ScheduleCheckTest, SgdTrainingGraphOfTheZooMlp) {
  const Graph g = BuildTrainingGraph(BuildZooModel("mlp", {.batch = 4}));
  EXPECT_THAT(CheckSchedule(g, ProgramOrder(g)), ElementsAre());
  // Moving the first parameter update to the front runs it before the
  // forward pass reads the parameter.
  std::vector<OpId> order = ProgramOrder(g);
  const auto update = std::find_if(order.begin(), order.end(), [&](OpId id) { return g.op(id).type == "aten.add_"; });
  ASSERT_NE(update, order.end());
  std::rotate(order.begin(), update, update + 1);
  const auto problems = CheckSchedule(g, order);
  ASSERT_FALSE(problems.empty());
  EXPECT_THAT(problems[0], HasSubstr("optimizer."));
}

}  // namespace
}  // namespace memfit::sched
