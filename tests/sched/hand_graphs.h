// Small graphs with known optimal schedules, the bytes worked out in
// comments. Every tensor is f32, so n elements take 4n bytes.
#pragma once

#include "ir/builder.h"
#include "sched_test_util.h"

namespace memfit::sched::testing {

// Two branches from one input, program order running the wrong one first:
//
//   x (4 B) -> b1 (200 B) -> b2 (160 B) --+
//   x       -> a1 (400 B) -> a2 ( 40 B) --+--> out (4 B, output)
//
// Program order b1 b2 a1 a2 out peaks at a2: b2 + a1 + a2 = 600 B (x is
// freed after a1). Branch a frees more (a1 shrinks to a2), so running it
// first is best: a1 a2 b1 b2 out peaks at a2: x + a1 + a2 = 444 B; any
// order running a1 after b2 has b2 live through a2 (>= 600 B). The greedy
// rules pick b1 first (it allocates less) and so end at 600 B too.
// `after`, when given, takes x's place, so blocks can be chained.
inline TensorId TwoBranches(GraphBuilder& b, std::optional<TensorId> after = std::nullopt) {
  const TensorId x = after ? *after : b.Input("x", {1});
  const TensorId b1 = Compute(b, {x}, 50, "b1");
  const TensorId b2 = Compute(b, {b1}, 40, "b2");
  const TensorId a1 = Compute(b, {x}, 100, "a1");
  const TensorId a2 = Compute(b, {a1}, 10, "a2");
  return Compute(b, {b2, a2}, 1, "out");
}
inline constexpr int64_t kTwoBranchesProgramPeak = 600;
inline constexpr int64_t kTwoBranchesOptimalPeak = 444;

// Breadth-first program order of two independent chains:
//
//   x (4 B) -> p1 (400 B) -> q1 (40 B) --+
//   x       -> p2 (400 B) -> q2 (40 B) --+--> out (4 B, output)
//
// Program order p1 p2 q1 q2 out peaks at q1: p1 + p2 + q1 = 840 B (x is
// freed after p2). Greedy runs q1 right after p1 (it frees p1): p1 q1 p2 q2
// out peaks at q2: q1 + p2 + q2 = 480 B, optimal (q2's step needs p2, q2
// and, since out has not run, the other chain's result).
inline Graph BreadthFirstChains() {
  GraphBuilder b("chains");
  const TensorId x = b.Input("x", {1});
  const TensorId p1 = Compute(b, {x}, 100, "p1");
  const TensorId p2 = Compute(b, {x}, 100, "p2");
  const TensorId q1 = Compute(b, {p1}, 10, "q1");
  const TensorId q2 = Compute(b, {p2}, 10, "q2");
  b.MarkOutput(Compute(b, {q1, q2}, 1, "out"));
  return b.Finish();
}
inline constexpr int64_t kChainsProgramPeak = 840;
inline constexpr int64_t kChainsOptimalPeak = 480;

// A diamond with a long arm:
//
//   x (4 B) -> a (400 B) -> b1 (800 B) -> b2 (40 B) --+
//              a         -> c  (200 B) ---------------+--> d (4 B, output)
//
// Program order a c b1 b2 d peaks at b1: a + c + b1 = 1400 B. Running the
// long arm first, a b1 b2 c d, peaks at b2: a + b1 + b2 = 1240 B, optimal
// (b1 needs a and itself live, and whatever of the c arm has run).
inline Graph Diamond() {
  GraphBuilder b("diamond");
  const TensorId x = b.Input("x", {1});
  const TensorId a = Compute(b, {x}, 100, "a");
  const TensorId c = Compute(b, {a}, 50, "c");
  const TensorId b1 = Compute(b, {a}, 200, "b1");
  const TensorId b2 = Compute(b, {b1}, 10, "b2");
  b.MarkOutput(Compute(b, {b2, c}, 1, "d"));
  return b.Finish();
}
inline constexpr int64_t kDiamondProgramPeak = 1400;
inline constexpr int64_t kDiamondOptimalPeak = 1240;

}  // namespace memfit::sched::testing
