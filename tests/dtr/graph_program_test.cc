// memfit graphs as DTR programs (dtr/graph_program.h), and `memfit dtr GRAPH.json`.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>

#include "analysis/liveness.h"
#include "autodiff/training_graph.h"
#include "dtr/graph_program.h"
#include "dtr/simulator.h"
#include "io/graph_json.h"
#include "ir/builder.h"
#include "models/zoo.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "test_util.h"
#include "util/error.h"

namespace memfit::dtr {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// x (input) and w (parameter), 64 B each:
//   op0 a = x + w        fresh, 64 B
//   op1 v = view(a)      alias of argument 0, never read
//   op2 b = relu_(a)     in-place write: copy-on-write into 64 fresh bytes
//   op3 c = b + w        fresh, 64 B; the graph output
//   op4 u = add_(w, c)   write into the pinned w: an alias of it
Graph Tiny() {
  GraphBuilder b("tiny");
  const TensorId x = b.Input("x", {16});
  const TensorId w = b.Parameter("w", {16});
  const TensorId a = b.Call("aten.add.Tensor", {x, w});
  b.Call("aten.view", {a}, {{"size", std::vector<int64_t>{4, 4}}});
  const TensorId relu = b.Call("aten.relu_", {a});
  const TensorId c = b.Call("aten.add.Tensor", {relu, w});
  b.Call("aten.add_", {w, c});
  b.MarkOutput(c);
  return b.Finish();
}

std::vector<double> Times(const Graph& g) {
  std::vector<double> us;
  for (size_t i = 0; i < g.num_ops(); ++i) us.push_back(1.5 * static_cast<double>(i + 1));
  return us;
}

TEST(GraphProgram, LowersViewsWritesAndReleases) {
  const Graph g = Tiny();
  const Program p = ProgramFromGraph(g, ProgramOrder(g), Times(g));
  ASSERT_EQ(p.ops.size(), 7u);  // two constants, five calls
  EXPECT_TRUE(p.ops[0].constant);
  EXPECT_TRUE(p.ops[1].constant);
  EXPECT_EQ(p.total_compute_ns, 1500 + 3000 + 4500 + 6000 + 7500);
  // Tensors: x, w, a, v, relu_'s copy, c, u.
  ASSERT_EQ(p.tensors.size(), 7u);
  const auto storage = [&](uint32_t t) { return p.tensors[t].storage; };
  EXPECT_EQ(p.tensors[3].alias_of_arg, 0u);  // the view
  EXPECT_EQ(storage(3), storage(2));
  EXPECT_EQ(p.tensors[3].size_bytes, 0);
  EXPECT_FALSE(p.tensors[4].alias_of_arg);  // copy-on-write
  EXPECT_NE(storage(4), storage(2));
  EXPECT_EQ(p.tensors[4].size_bytes, 64);
  EXPECT_EQ(p.tensors[6].alias_of_arg, 0u);  // the write into w aliases it
  EXPECT_EQ(storage(6), storage(1));

  std::vector<std::pair<StepKind, uint32_t>> steps;
  for (const Step& s : p.steps) steps.emplace_back(s.kind, s.id);
  using K = StepKind;
  EXPECT_THAT(steps, ElementsAre(std::pair{K::kCompute, 0u}, std::pair{K::kPin, 0u},  // x
                                 std::pair{K::kCompute, 1u}, std::pair{K::kPin, 1u},  // w
                                 std::pair{K::kCompute, 2u},                           // a
                                 std::pair{K::kCompute, 3u}, std::pair{K::kRelease, 3u},  // v, unread
                                 std::pair{K::kCompute, 4u}, std::pair{K::kRelease, 2u},  // relu_, then a
                                 std::pair{K::kCompute, 5u}, std::pair{K::kRelease, 4u},  // c, then b
                                 std::pair{K::kCompute, 6u}, std::pair{K::kRelease, 6u},  // add_, u unread
                                 std::pair{K::kPin, 5u}));                              // c: output

  // 128 pinned; a (64) and its copy (64) both live right after relu_: 256.
  const Baseline base = MeasureBaseline(p);
  EXPECT_EQ(base.peak_bytes, 256);
  EXPECT_EQ(base.compute_ns, p.total_compute_ns);
  // At 192 bytes DTR evicts a when relu_'s copy needs room... but relu_
  // reads a (locked): out of memory. At 256 nothing is evicted.
  SimOptions o;
  o.budget_bytes = 256;
  const SimResult r = Simulate(p, o);
  EXPECT_EQ(r.status, SimStatus::kOk);
  EXPECT_EQ(r.evictions, 0);
  o.budget_bytes = 192;
  EXPECT_EQ(Simulate(p, o).status, SimStatus::kOom);
}

// Storages whose recomputation would not give their value back are kept
// (never evicted by the heuristic), as the live runtime keeps them. x, w:
// 64 B sources, every op's output 64 B.
//   op0 a = x * w      reads w, which op2 updates: recomputable until op2;
//                      its last use (op1) is before: recomputable
//   op1 b = neg(a)     read by op5, after op2: recomputing b then would use
//                      the updated w, so b is kept
//   op2 w.add_(x)      the optimizer's update of a parameter
//   op3 c = neg(x)     recomputable (reads only x, never written)
//   op4 d = neg(c)     unread: released at once
//   op5 e = b + x      the graph output: kept
TEST(GraphProgram, KeepsWhatCannotBeRecomputed) {
  GraphBuilder b("update");
  const TensorId x = b.Input("x", {16});
  const TensorId w = b.Parameter("w", {16});
  const TensorId a = b.Call("aten.mul.Tensor", {x, w}, {}, "a");
  const TensorId nb = b.Call("aten.neg", {a}, {}, "b");
  b.Call("aten.add_.Tensor", {w, x}, {}, "update");
  const TensorId c = b.Call("aten.neg", {x}, {}, "c");
  b.Call("aten.neg", {c}, {}, "d");
  const TensorId e = b.Call("aten.add.Tensor", {nb, x}, {}, "e");
  b.MarkOutput(e);
  const Graph g = b.Finish();
  const Program p = ProgramFromGraph(g, ProgramOrder(g), Times(g));
  const auto kept = [&](TensorId graph_tensor) {
    for (const ProgramTensor& t : p.tensors) {
      if (p.names[t.name.index()] == g.tensor(graph_tensor).name) {
        return t.storage.index() < p.storage_kept.size() && p.storage_kept[t.storage.index()] != 0;
      }
    }
    ADD_FAILURE() << "no program tensor for " << g.tensor(graph_tensor).name;
    return false;
  };
  EXPECT_FALSE(kept(a));
  EXPECT_TRUE(kept(nb));
  EXPECT_FALSE(kept(c));
  EXPECT_TRUE(kept(e));
  // 256 bytes: at op4, x, w, b and c are resident and d needs 64 more. The
  // only candidate, b, would have to be recomputed at op5 from the updated w
  // (which the simulator did before it kept storages): out of memory instead.
  SimOptions o;
  o.budget_bytes = 256;
  const SimResult tight = Simulate(p, o);
  EXPECT_EQ(tight.status, SimStatus::kOom);
  EXPECT_EQ(tight.evictions, 0);
  Program loose = p;
  loose.storage_kept.clear();
  const SimResult wrong = Simulate(loose, o);
  EXPECT_EQ(wrong.status, SimStatus::kOk);
  EXPECT_EQ(wrong.recomputations, 2);  // b, and a from the updated w
  o.budget_bytes = 320;  // the unconstrained peak
  const SimResult fits = Simulate(p, o);
  EXPECT_EQ(fits.status, SimStatus::kOk);
  EXPECT_EQ(fits.recomputations, 0);
}

TEST(GraphProgram, RejectsBadOrdersAndTimes) {
  const Graph g = Tiny();
  std::vector<OpId> order = ProgramOrder(g);
  EXPECT_THROW(ProgramFromGraph(g, std::span(order).first(3), Times(g)), Error);
  std::vector<OpId> twice = order;
  twice[1] = twice[0];
  EXPECT_THAT(testing::ErrorOf([&] { ProgramFromGraph(g, twice, Times(g)); }), HasSubstr("twice"));
  std::vector<double> times = Times(g);
  times[2] = -1;
  EXPECT_THAT(testing::ErrorOf([&] { ProgramFromGraph(g, order, times); }), HasSubstr("relu_"));
  std::reverse(order.begin(), order.end());  // readers before writers
  EXPECT_THROW(ProgramFromGraph(g, order, Times(g)), Error);
}

// A zoo training graph: the unconstrained replay matches the simulator's
// program-order run (compute exactly up to rounding to ns, peak up to the
// workspace DTR does not model), and DTR fits it in 60% by recomputing.
TEST(GraphProgram, ZooTrainingGraphMatchesTheSimulator) {
  ZooOptions zoo;
  zoo.batch = 16;
  zoo.seq = 128;
  const Graph g = BuildTrainingGraph(BuildZooModel("bert-tiny", zoo), TrainingOptions{});
  const sim::Simulator simulator(g, sim::FindDevice("a100"));
  int64_t workspace = 0;
  for (const Op& op : g.ops()) workspace = std::max(workspace, ComputeOpCost(g, op).workspace_bytes);
  const Program p = ProgramFromGraph(g, ProgramOrder(g), sim::LatenciesUs(simulator.op_latencies()));
  const sim::SimResult eager = simulator.Run(ProgramOrderSteps(g));
  const Baseline base = MeasureBaseline(p);
  EXPECT_NEAR(static_cast<double>(base.compute_ns), eager.latency_us * 1000.0, 0.5 * static_cast<double>(g.num_ops()));
  // Copy-on-write of in-place updates of activations (gradient
  // accumulation) can add a little; workspace can take a little away.
  EXPECT_LE(base.peak_bytes, eager.peak_bytes + eager.peak_bytes / 1000);
  EXPECT_GE(base.peak_bytes, eager.peak_bytes - workspace);

  SimOptions o;
  o.budget_ratio = 1.0;
  const SimResult full = Simulate(p, o, base);
  EXPECT_EQ(full.status, SimStatus::kOk);
  EXPECT_EQ(full.recomputations, 0);
  EXPECT_DOUBLE_EQ(full.overhead, 1.0);
  o.budget_ratio = 0.6;
  const SimResult tight = Simulate(p, o, base);
  EXPECT_EQ(tight.status, SimStatus::kOk);
  EXPECT_GT(tight.recomputations, 0);
  EXPECT_LE(tight.peak_bytes, tight.budget_bytes);
  EXPECT_GT(tight.overhead, 1.0);
}

TEST(GraphProgram, CliReplaysAGraph) {
  testing::TempDir dir;
  ZooOptions zoo;
  zoo.batch = 16;
  zoo.seq = 128;
  SaveGraph(BuildTrainingGraph(BuildZooModel("bert-tiny", zoo), TrainingOptions{}), dir.File("g.json"));
  const testing::CliResult r = testing::RunCli("dtr " + dir.File("g.json") + " --budget-ratio 0.7 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("status"), "ok");
  EXPECT_LE(j.at("peak_bytes").get<int64_t>(), j.at("budget_bytes").get<int64_t>());
  EXPECT_GE(j.at("overhead").get<double>(), 1.0);

  const testing::CliResult slow = testing::RunCli("dtr " + dir.File("g.json") + " --budget-ratio 0.7 --json --device v100");
  ASSERT_EQ(slow.exit_code, 0) << slow.err;
  const nlohmann::json v100 = nlohmann::json::parse(slow.out);
  EXPECT_GT(v100.at("unconstrained_compute_ns").get<int64_t>(), j.at("unconstrained_compute_ns").get<int64_t>());

  const testing::CliResult bad = testing::RunCli("dtr " + dir.File("missing.json") + " --budget-ratio 0.5");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("missing.json"));
}

}  // namespace
}  // namespace memfit::dtr
