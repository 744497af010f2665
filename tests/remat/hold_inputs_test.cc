// What the heuristic keeps resident for a recomputation to come:
// - holding inputs (HeuristicOptions::hold_inputs): a weight gradient made
//   from activations whose horizon an optimizer update cuts short can still
//   be dropped and recomputed, from its inputs held resident;
// - foresight (HeuristicOptions::foresee_reads): a result past its direct
//   reads stays while a dropped reader still needs it.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "remat/heuristic.h"
#include "remat/lower.h"
#include "remat/milp.h"
#include "remat/problem.h"
#include "remat/test_problems.h"
#include "util/error.h"

namespace memfit::remat {
namespace {

// Two layers and their SGD updates, sizes in bytes:
//   0 x (input, 1)   1 a(x) (1)   2 h(a) (1)   3 dh(h) (1)
//   4 dW2(h, dh) (8, 10 us)   5 dW1(a, dh) (6)   6 update1(dW1)   7 update2(dW2)
// update1 overwrites a's weight, so nothing derived from a can be
// recomputed from scratch after stage 5. In order the peak is 16, at dW1:
// {a, dh, dW2, dW1}. Within 13, dW2 has to leave while dW1 lives: it can
// come back at stage 7 only from h and dh held resident (1 + 1 bytes), never
// from x. Cost: every node once (16 us) plus dW2 again (10 us).
Problem WeightGradients() {
  Problem p;
  p.name = "weight gradients";
  p.nodes = {N("x", 0, 1),         N("a", 1, 1, {0}),      N("h", 1, 1, {1}),       N("dh", 1, 1, {2}),
             N("dW2", 10, 8, {2, 3}), N("dW1", 1, 6, {1, 3}), N("update1", 1, 0, {5}), N("update2", 1, 0, {4})};
  p.nodes[0].recomputable = false;
  p.nodes[1].recompute_until = 5;
  for (uint32_t v : {6u, 7u}) p.nodes[v].recomputable = false, p.nodes[v].backward = true;
  Validate(p);
  return p;
}

TEST(HoldInputs, RecomputesAWeightGradientFromItsHeldInputs) {
  const Problem p = WeightGradients();
  EXPECT_EQ(Evaluate(p, InOrderSequence(p)).peak_bytes, 16);
  HeuristicOptions o;
  o.budget_bytes = 13;
  o.free_parts = false;
  EXPECT_FALSE(RunHeuristic(p, o).fits);  // dW2 cannot go: nothing could bring it back
  o.hold_inputs = true;
  const HeuristicResult h = RunHeuristic(p, o);
  ASSERT_TRUE(h.fits);
  ASSERT_EQ(CheckEvents(p, h.events), "");
  const std::vector<uint32_t> seq = EvalSequence(h.events);
  EXPECT_EQ(seq, (std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 4, 7}));
  const Evaluation ev = Evaluate(p, seq);
  ASSERT_TRUE(ev.valid) << ev.problem;
  EXPECT_LE(ev.peak_bytes, 13);
  EXPECT_DOUBLE_EQ(ev.total_us(), 26);
  // The MILP's proven optimum is the same plan's cost.
  MilpOptions mo;
  mo.budget_bytes = 13;
  const MilpResult m = SolveCheckmateMilp(p, mo);
  ASSERT_EQ(m.status, MilpResult::Status::kOptimal);
  EXPECT_DOUBLE_EQ(m.cost_us, 26);
}

// 0 r (100 us) -> 1 x (50 us) -> 2 y (4 bytes); 3 f (4 bytes); 4 z(x, f);
// 5 w(y, z). Within 6 bytes y leaves when f arrives (it is the cheapest to
// get back). After z, its last direct read, x is needed only to recompute y
// at stage 5: dropping it then turns y's 1 us into r, x and y again (151 us).
TEST(ForeseeReads, KeepsWhatADroppedReaderNeedsNext) {
  Problem p;
  p.name = "foresight";
  p.nodes = {N("r", 100, 1), N("x", 50, 1, {0}), N("y", 1, 4, {1}), N("f", 1, 4), N("z", 1, 1, {1, 3}),
             N("w", 1, 1, {2, 4})};
  Validate(p);
  HeuristicOptions o;
  o.budget_bytes = 6;
  const HeuristicResult plain = RunHeuristic(p, o);
  ASSERT_TRUE(plain.fits);
  EXPECT_DOUBLE_EQ(plain.recompute_us, 151);
  o.foresee_reads = true;
  const HeuristicResult foresight = RunHeuristic(p, o);
  ASSERT_TRUE(foresight.fits);
  ASSERT_EQ(CheckEvents(p, foresight.events), "");
  EXPECT_DOUBLE_EQ(foresight.recompute_us, 1);
  const Evaluation ev = Evaluate(p, EvalSequence(foresight.events));
  ASSERT_TRUE(ev.valid) << ev.problem;
  EXPECT_LE(ev.peak_bytes, 6);
}

// On random training-like problems (in-place horizons, non-recomputable
// nodes, graph outputs) every variant either fits its budget with a valid
// sequence or says it does not; none asks for a recomputation it cannot do.
TEST(HoldInputs, EveryVariantEmitsValidSequencesOnRandomProblems) {
  size_t fitted = 0, held_fits = 0;
  for (uint32_t seed = 1; seed <= 60; ++seed) {
    const Problem p = RandomDag(seed, 8 + seed % 9);
    const int64_t peak = Evaluate(p, InOrderSequence(p)).peak_bytes;
    for (int64_t budget = MemoryLowerBound(p); budget <= peak; ++budget) {
      for (HeuristicOptions o : RecomputeVariants()) {
        SCOPED_TRACE(fmt::format("{} budget {} score {} parts {} hold {}", p.name, budget, int(o.score),
                                 o.free_parts, o.hold_inputs));
        o.budget_bytes = budget;
        HeuristicResult h;
        ASSERT_NO_THROW(h = RunHeuristic(p, o));
        ASSERT_EQ(CheckEvents(p, h.events), "");
        const Evaluation ev = Evaluate(p, EvalSequence(h.events));
        ASSERT_TRUE(ev.valid) << ev.problem;
        if (!h.fits) continue;
        ++fitted, held_fits += o.hold_inputs;
        // Whole nodes (Evaluate) never exceed what the heuristic counted.
        if (!o.free_parts) {
          EXPECT_LE(ev.peak_bytes, h.peak_estimate);
        }
      }
    }
  }
  EXPECT_GT(fitted, 0u);
  EXPECT_GT(held_fits, 0u);
}

}  // namespace
}  // namespace memfit::remat
