// The schedulers' memory accounting equals ComputeLiveness, under every
// combination of LivenessOptions.
#include "sched/problem.h"

#include <gtest/gtest.h>

#include <random>
#include <tuple>

#include "conv_attrs.h"
#include "sched/dependencies.h"
#include "sched_test_util.h"

namespace memfit::sched {
namespace {

using testing::Compute;

using Switches = std::tuple<bool, bool, bool>;

class ProblemTest : public ::testing::TestWithParam<Switches> {
 protected:
  LivenessOptions liveness() const {
    const auto [sources, outputs, workspace] = GetParam();
    return {.sources_live_throughout = sources,
            .outputs_live_to_end = outputs,
            .count_workspace = workspace,
            .workspace_bytes = {}};
  }
};

// Random topological orders of random graphs: the model's peak of every
// order is ComputeLiveness's.
TEST_P(ProblemTest, PeakEqualsComputeLiveness) {
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    const Graph g = testing::RandomGraph(seed, {.num_ops = 20});
    const Dependencies deps = ComputeDependencies(g);
    const MemoryModel model(g, liveness());
    const Problem whole = BuildWholeProblem(model, deps);
    std::mt19937 rng(seed);
    for (int trial = 0; trial < 5; ++trial) {
      // A random topological order: repeatedly a random ready op.
      std::vector<uint32_t> waiting(g.num_ops()), ready, order;
      for (const auto& op : whole.ops) waiting[op.id.index()] = static_cast<uint32_t>(op.preds.size());
      for (uint32_t i = 0; i < g.num_ops(); ++i) {
        if (waiting[i] == 0) ready.push_back(i);
      }
      while (!ready.empty()) {
        const size_t k = std::uniform_int_distribution<size_t>(0, ready.size() - 1)(rng);
        const uint32_t op = ready[k];
        ready.erase(ready.begin() + static_cast<std::ptrdiff_t>(k));
        order.push_back(op);
        for (uint32_t s : whole.ops[op].succs) {
          if (--waiting[s] == 0) ready.push_back(s);
        }
      }
      std::vector<OpId> ids;
      for (uint32_t op : order) ids.push_back(OpId(op));
      ASSERT_EQ(PeakBytes(whole, order), ComputeLiveness(g, ids, liveness()).peak_bytes) << "seed " << seed;
      EXPECT_LE(LowerBound(whole), PeakBytes(whole, order));
    }
  }
}

// After the ops before program position p, RunState has live the storages
// that ComputeLiveness has live at both steps p-1 and p.
TEST_P(ProblemTest, RunStateMatchesLivenessBetweenSteps) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    const Graph g = testing::RandomGraph(seed, {.num_ops = 15});
    const MemoryModel model(g, liveness());
    const Liveness live = ComputeLiveness(g, liveness());
    RunState state(model);
    for (size_t p = 1; p < g.num_ops(); ++p) {
      state.Run(OpId(static_cast<uint32_t>(p - 1)));
      int64_t bytes = 0;
      for (const StorageLifetime& s : live.storages) {
        if (s.start <= static_cast<int64_t>(p) - 1 && s.end > static_cast<int64_t>(p)) bytes += s.size_bytes;
      }
      EXPECT_EQ(state.live_bytes(), bytes) << "seed " << seed << " p " << p;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllLivenessOptions, ProblemTest,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool(), ::testing::Bool()));

TEST(ProblemWorkspaceTest, ConvolutionWorkspaceCountsAtItsStep) {
  GraphBuilder b("conv");
  const TensorId x = b.Input("x", {1, 3, 8, 8});
  const TensorId w = b.Parameter("w", {4, 3, 3, 3});
  const TensorId y = b.Call("aten.convolution", {x, w}, memfit::testing::ConvAttrs(1, 1));
  Compute(b, {y}, 1);
  const Graph g = b.Finish();
  const MemoryModel model(g, {});
  ASSERT_GT(model.workspace_bytes(OpId(0)), 0);
  const Problem whole = BuildWholeProblem(model, ComputeDependencies(g));
  EXPECT_EQ(PeakBytes(whole, {0, 1}), ComputeLiveness(g).peak_bytes);
}

}  // namespace
}  // namespace memfit::sched
