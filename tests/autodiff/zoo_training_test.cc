// Every zoo model's training graph: validates, gives every trainable
// parameter exactly one gradient of its own shape, and survives a JSON round
// trip unchanged.
#include <gtest/gtest.h>

#include <set>

#include "analysis/stats.h"
#include "autodiff/training_graph.h"
#include "io/graph_json.h"
#include "ir/validate.h"
#include "models/zoo.h"
#include "test_util.h"

namespace memfit {
namespace {

// Small options so that the whole zoo runs in seconds.
ZooOptions Small(const ZooModel& m) {
  ZooOptions o;
  o.batch = 2;
  o.seq = m.default_seq ? 16 : 0;
  o.image = m.family == "unet" ? 32 : m.family == "mlp" ? 28 : m.name == "vit-huge" ? 28 : m.default_image ? 32 : 0;
  return o;
}

class ZooTrainingTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ZooTrainingTest, TrainingGraphIsValidWithOneGradientPerParameter) {
  const ZooModel& model = *std::find_if(ZooModels().begin(), ZooModels().end(),
                                        [&](const ZooModel& m) { return m.name == GetParam(); });
  const Graph forward = BuildZooModel(model.name, Small(model));
  for (OptimizerKind optimizer : {OptimizerKind::kSgd, OptimizerKind::kAdam}) {
    TrainingOptions options;
    options.optimizer = optimizer;
    const Graph train = BuildTrainingGraph(forward, options);
    ASSERT_NO_THROW(Validate(train)) << model.name;

    const auto grads = ParameterGradients(train);
    EXPECT_EQ(static_cast<int64_t>(grads.size()) > 0, true);
    int64_t params = 0;
    std::set<TensorId> storages;
    for (const auto& [param, grad] : grads) {
      params += train.tensor(param).numel();
      ASSERT_TRUE(grad.has_value()) << model.name << ": no gradient for " << train.tensor(param).name;
      EXPECT_EQ(train.tensor(*grad).shape, train.tensor(param).shape) << train.tensor(param).name;
      EXPECT_EQ(train.tensor(*grad).dtype, train.tensor(param).dtype) << train.tensor(param).name;
      EXPECT_TRUE(storages.insert(train.StorageRoot(*grad)).second) << "shared gradient storage";
    }
    EXPECT_EQ(params, CountParameters(forward));

    const GraphStats stats = ComputeStats(train);
    EXPECT_EQ(stats.param_count, CountParameters(forward));
    EXPECT_EQ(stats.optimizer_state_bytes, optimizer == OptimizerKind::kAdam ? 2 * stats.param_bytes : 0);
    EXPECT_GT(stats.peak_bytes, stats.param_bytes);

    // JSON round trip: saving the loaded graph gives the same text.
    const std::string text = GraphToJson(train);
    EXPECT_EQ(GraphToJson(GraphFromJson(text, model.name)), text);
  }
}

std::vector<std::string> ModelNames() {
  std::vector<std::string> names;
  for (const ZooModel& m : ZooModels()) names.push_back(m.name);
  return names;
}

INSTANTIATE_TEST_SUITE_P(Zoo, ZooTrainingTest, ::testing::ValuesIn(ModelNames()), [](const auto& info) {
  return testing::TestName(info.param);
});

}  // namespace
}  // namespace memfit
