// Every zoo model's training step (SGD with momentum, Adam for the BERTs),
// at small sizes: the longest runs of ops that can be split along the batch split
// into 2 and 3 parts into a graph that validates (every op's shapes inferred
// again), keeps the step's results by name and shape, and simulates.
#include <gtest/gtest.h>

#include "autodiff/training_graph.h"
#include "ir/validate.h"
#include "models/zoo.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "test_util.h"
#include "transform/fission.h"
#include "util/error.h"

namespace memfit {
namespace {

class ZooFission : public ::testing::TestWithParam<ZooModel> {};

TEST_P(ZooFission, EveryBatchRegionSplitsIntoAValidGraph) {
  const ZooModel& m = GetParam();
  ZooOptions zoo;
  zoo.batch = 6;
  if (m.default_seq) zoo.seq = 8;
  if (m.default_image) zoo.image = 32;
  Graph fwd;
  try {
    fwd = BuildZooModel(m.name, zoo);
  } catch (const Error& e) {
    GTEST_SKIP() << "not buildable this small: " << e.what();
  }
  TrainingOptions training;
  training.optimizer = m.family == "bert" ? OptimizerKind::kAdam : OptimizerKind::kSgd;
  training.momentum = 0.9;
  const Graph g = BuildTrainingGraph(fwd, training);
  const DimensionGraph dims = ComputeDimensions(g);
  int tried = 0;
  for (const Dimension& d : dims.dims) {
    if (d.kind != "batch") continue;
    auto regions = FissionRegions(g, dims, d.id);
    if (regions.size() > 6) regions.resize(6);  // the longest six (DenseNet has dozens between its BatchNorms)
    for (const auto& region : regions) {
      for (int parts : {2, 3}) {
        FissionResult r;
        try {
          r = ApplyFission(g, dims, {region, d.id, parts});
        } catch (const Error& e) {
          // A refusal must name what it refuses; it is never a crash.
          EXPECT_NE(std::string(e.what()).find("fission"), std::string::npos) << e.what();
          continue;
        }
        ++tried;
        SCOPED_TRACE(ToString(r.record));
        ASSERT_NO_THROW(Validate(r.graph));
        ASSERT_EQ(r.graph.outputs.size(), g.outputs.size());
        for (size_t i = 0; i < g.outputs.size(); ++i) {
          EXPECT_EQ(r.graph.tensor(r.graph.outputs[i]).name, g.tensor(g.outputs[i]).name);
          EXPECT_EQ(r.graph.tensor(r.graph.outputs[i]).shape, g.tensor(g.outputs[i]).shape);
        }
        EXPECT_GT(sim::Simulate(r.graph, ProgramOrderSteps(r.graph), sim::FindDevice("a100")).latency_us, 0);
      }
    }
  }
  EXPECT_GT(tried, 0) << "no batch region of " << m.name << " could be split";
}

// The small models: the large ones have the same layers, more of them.
std::vector<ZooModel> SmallModels() {
  std::vector<ZooModel> models;
  for (const ZooModel& m : ZooModels()) {
    if (m.published_params == 0 || m.published_params < 30'000'000) models.push_back(m);
  }
  return models;
}

INSTANTIATE_TEST_SUITE_P(Zoo, ZooFission, ::testing::ValuesIn(SmallModels()),
                         [](const ::testing::TestParamInfo<ZooModel>& info) { return testing::TestName(info.param.name); });

}  // namespace
}  // namespace memfit
