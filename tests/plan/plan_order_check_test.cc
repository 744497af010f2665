// The plan checker's program-order rules: every op step sees each storage
// after the same in-place updates as in program order (a recompute sees
// what its op saw), and random ops draw in program order. Checked on
// hand-made plans, and against the scheduler's own checker
// (sched/schedule_check.h, written separately) on every order of random
// graphs with views and in-place updates.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "analysis/liveness.h"
#include "ir/builder.h"
#include "plan/plan_check.h"
#include "plan/steps.h"
#include "sched/sched_test_util.h"
#include "sched/schedule_check.h"

namespace memfit {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

bool AboutOrder(const std::string& problem) {
  return problem.find("in-place updates") != std::string::npos ||
         problem.find("draws random numbers") != std::string::npos;
}

// x -> a = relu(x) (op0); x.add_(1) (op1) updates x; out = a + x (op2) reads
// the updated x.
struct Update {
  Graph graph;
  TensorId x, a, x1, out;
};

Update MakeUpdate() {
  GraphBuilder b("update");
  Update u;
  u.x = b.Input("x", {8});
  u.a = b.Call("aten.relu", {u.x}, {}, "a");
  u.x1 = b.Call("aten.add_.Scalar", {u.x}, {{"other", 1.0}}, "bump");
  u.out = b.Call("aten.add.Tensor", {u.a, u.x1}, {}, "out");
  b.MarkOutput(u.out);
  u.graph = b.Finish();
  return u;
}

TEST(PlanOrderCheck, ProgramOrderIsSound) {
  const Update u = MakeUpdate();
  EXPECT_THAT(CheckSteps(u.graph, ProgramOrderSteps(u.graph)), IsEmpty());
}

TEST(PlanOrderCheck, AReadAfterTheUpdateIsReported) {
  const Update u = MakeUpdate();
  // relu reads x after bump added 1 to it: the plan computes relu(x + 1).
  const Steps late = {{Step::Compute(OpId(1)), Step::Compute(OpId(0)), Step::Compute(OpId(2))}};
  EXPECT_THAT(CheckSteps(u.graph, late),
              Contains(AllOf(HasSubstr("step 1 (compute op0 'a')"),
                             HasSubstr("sees 'x' after 1 of its in-place updates, 0 in program order"))));
}

TEST(PlanOrderCheck, ARecomputeAfterTheUpdateIsReported) {
  const Update u = MakeUpdate();
  // a is freed and recomputed once x holds x + 1: a wrong a.
  const Steps again = {{Step::Compute(OpId(0)), Step::Free(u.a), Step::Compute(OpId(1)), Step::Recompute(OpId(0)),
                        Step::Compute(OpId(2))}};
  EXPECT_THAT(CheckSteps(u.graph, again),
              Contains(AllOf(HasSubstr("step 3 (recompute op0 'a')"), HasSubstr("sees 'x' after 1"))));
  // Recomputed before the update, it is the same a.
  const Steps early = {{Step::Compute(OpId(0)), Step::Free(u.a), Step::Recompute(OpId(0)), Step::Compute(OpId(1)),
                        Step::Compute(OpId(2))}};
  EXPECT_THAT(CheckSteps(u.graph, early), IsEmpty());
}

TEST(PlanOrderCheck, RandomOpsDrawInProgramOrder) {
  GraphBuilder b("masks");
  const TensorId x = b.Input("x", {4});
  const TensorId y = b.Input("y", {4});
  const auto dx = b.CallMulti("aten.native_dropout", {x}, {{"p", 0.5}, {"train", true}}, "drop_x");  // op0
  const auto dy = b.CallMulti("aten.native_dropout", {y}, {{"p", 0.5}, {"train", true}}, "drop_y");  // op1
  b.MarkOutput(dx[0]);
  b.MarkOutput(dy[0]);
  const Graph g = b.Finish();
  EXPECT_THAT(CheckSteps(g, StepsFromOrder(g, {OpId(1), OpId(0)})),
              Contains(AllOf(HasSubstr("compute op0 'drop_x'"),
                             HasSubstr("draws random numbers before op 'drop_y', unlike program order"))));
  EXPECT_THAT(CheckSteps(g, StepsFromOrder(g, {OpId(0), OpId(1)})), IsEmpty());
}

// Two checkers written apart agree: on every order of small random graphs
// (views, in-place updates of activations and parameters) that respects
// data flow, the plan checker finds an order problem exactly where the
// scheduler's checker does.
TEST(PlanOrderCheck, AgreesWithTheScheduleChecker) {
  int disagreements = 0, rejected = 0, checked = 0;
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    const Graph g = sched::testing::RandomGraph(seed, {.num_ops = 6, .view_chance = 0.2, .inplace_chance = 0.3});
    std::vector<OpId> order = ProgramOrder(g);
    do {
      const std::vector<std::string> schedule = sched::CheckSchedule(g, order);
      const bool data_flow = std::none_of(schedule.begin(), schedule.end(), [](const std::string& p) {
        return p.find("which produces its input") != std::string::npos;
      });
      if (!data_flow) continue;
      const std::vector<std::string> plan = CheckSteps(g, StepsFromOrder(g, order));
      const bool plan_rejects = std::any_of(plan.begin(), plan.end(), AboutOrder);
      disagreements += plan_rejects != !schedule.empty();
      rejected += plan_rejects;
      ++checked;
    } while (std::next_permutation(order.begin(), order.end()));
  }
  EXPECT_EQ(disagreements, 0) << rejected << " of " << checked;
  EXPECT_GT(rejected, 0);  // the graphs do have orders to reject
  EXPECT_GT(checked, rejected);
}

}  // namespace
}  // namespace memfit
