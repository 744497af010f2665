// The optimizer with fission: where a split breaks the one-op floor, the plan
// of the fissioned graph is kept, passes the independent checker, and round
// trips through PLAN.json; where it cannot help, the graph as given wins.
#include "optimize/fission_search.h"

#include <algorithm>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "autodiff/training_graph.h"
#include "io/graph_json.h"
#include "ir/validate.h"
#include "models/zoo.h"
#include "optimize/search_trace.h"
#include "plan/plan_check.h"
#include "plan/plan_json.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "test_util.h"
#include "transform/fission.h"
#include "transform/out_of_place.h"
#include "util/error.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;

// An MLP at batch 8192: the activations of one layer dwarf the weights, and
// without fission no plan gets below about 0.65 of the peak.
Graph WideBatchMlp() {
  ZooOptions zoo;
  zoo.batch = 8192;
  return BuildTrainingGraph(BuildZooModel("mlp", zoo));
}

OptimizeOptions Deterministic(double ratio) {
  OptimizeOptions o;
  o.mem_limit_ratio = ratio;
  o.work_budget = 200;
  return o;
}

TEST(FissionSearch, BreaksTheOneOpFloor) {
  const Graph g = WideBatchMlp();
  const sim::DeviceProfile& a100 = sim::FindDevice("a100");
  const OptimizeOptions o = Deterministic(0.5);
  EXPECT_THAT(testing::ErrorOf([&] { Optimize(g, a100, nullptr, o); }), HasSubstr("smallest memory"));

  const OptimizeResult r = OptimizeWithFission(g, a100, nullptr, o);
  EXPECT_LE(r.optimized.peak_bytes, r.limit_bytes);
  EXPECT_LE(r.plan.placement.arena_bytes, r.limit_bytes);
  EXPECT_THAT(r.method, HasSubstr("fission images[0] x"));
  // The limit and the overhead are the untransformed graph's.
  EXPECT_EQ(r.original.peak_bytes, sim::Simulate(g, ProgramOrderSteps(g), a100).peak_bytes);
  EXPECT_GT(r.overhead(), 0);
  const auto fissions = RecordedFissions(r.plan.graph);
  ASSERT_EQ(fissions.size(), 1u);
  EXPECT_THAT(fissions[0], HasSubstr("images[0] (batch)"));
  // The independent checker accepts it, and PLAN.json carries the split graph.
  EXPECT_THAT(CheckPlacement(r.plan.graph, r.plan.steps, r.plan.placement), ::testing::IsEmpty());
  const Plan back = PlanFromJson(PlanToJson(r.plan), "plan");
  EXPECT_EQ(RecordedFissions(back.graph), fissions);
  EXPECT_EQ(back.graph.num_ops(), r.plan.graph.num_ops());
  // The parts' sums (the loss) accumulate in place, as the split made them:
  // only the graph given is written out of place (it has nothing to).
  EXPECT_THAT(RecordedRewrites(r.plan.graph), ::testing::IsEmpty());
  EXPECT_TRUE(std::any_of(r.plan.graph.ops().begin(), r.plan.graph.ops().end(),
                          [](const Op& op) { return op.type == "aten.add_" && op.name.find(".sum") != std::string::npos; }));
  // So is a split graph given to Optimize (`memfit fission ... -o G`, then
  // `memfit optimize G --no-fission`): vit-tiny split in 4 took over a
  // minute to place with its sums out of place, and a slower plan.
  OptimizeOptions same_limit = o;
  same_limit.mem_limit_ratio.reset();
  same_limit.mem_limit_bytes = r.limit_bytes;
  const OptimizeResult again = Optimize(r.plan.graph, a100, nullptr, same_limit);
  EXPECT_THAT(RecordedRewrites(again.plan.graph), ::testing::IsEmpty());
}

// Without recomputation (--no-recompute) no variant copies forward ops to
// run them again: that is recomputation written into the graph (ResNet-50
// bs64 at 0.5 of its peak with --no-recompute --no-swap took such a plan,
// at +290%). Where the limit cannot be met, the floor variants are
// prepared too; with recomputation allowed, some of them copy forwards.
TEST(FissionSearch, NoRecomputeMeansNoForwardCopies) {
  ZooOptions zoo;
  zoo.batch = 32;
  zoo.image = 128;
  const Graph g = BuildTrainingGraph(BuildZooModel("resnet-18", zoo));
  for (const bool recompute : {true, false}) {
    OptimizeOptions o = Deterministic(0.2);
    o.allow_recompute = recompute;
    o.allow_swap = false;
    o.work_budget = 20;
    bool copies = false;
    o.on_event = [&](const SearchEvent& e) {
      copies = copies || ToString(e).find("again") != std::string::npos;
    };
    try {
      OptimizeWithFission(g, sim::FindDevice("a100"), nullptr, o);
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("smallest memory")) << recompute;
    }
    EXPECT_EQ(copies, recompute);
  }
}

TEST(FissionSearch, KeepsTheGraphWhenNothingIsGained) {
  const Graph g = WideBatchMlp();
  const OptimizeResult r = OptimizeWithFission(g, sim::FindDevice("a100"), nullptr, Deterministic(1.0));
  EXPECT_THAT(r.method, ::testing::Not(HasSubstr("fission")));
  EXPECT_TRUE(RecordedFissions(r.plan.graph).empty());
  EXPECT_EQ(r.plan.graph.num_ops(), g.num_ops());
}

TEST(FissionSearch, NamesTheSmallestMemoryWithFission) {
  const Graph g = WideBatchMlp();
  const std::string error =
      testing::ErrorOf([&] { OptimizeWithFission(g, sim::FindDevice("a100"), nullptr, Deterministic(0.05)); });
  EXPECT_THAT(error, HasSubstr("with fission: the smallest memory it reaches is"));
}

// Under a latency limit the graph as given gets the whole work budget first
// and the variants share what its converged bisection left: a deterministic
// search with fission never keeps more memory than one without.
TEST(FissionSearch, UnderALatencyLimitTheGraphAsGivenGoesFirst) {
  const Graph g = WideBatchMlp();
  const sim::DeviceProfile& a100 = sim::FindDevice("a100");
  OptimizeOptions o;
  o.lat_limit_ratio = 1.1;
  o.work_budget = 300;
  const OptimizeResult alone = Optimize(g, a100, nullptr, o);
  const OptimizeResult with = OptimizeWithFission(g, a100, nullptr, o);
  EXPECT_LE(with.optimized.peak_bytes, alone.optimized.peak_bytes);
  EXPECT_LE(with.optimized.latency_us, with.latency_limit_us);
  EXPECT_LE(alone.heuristic_runs, *o.work_budget);
  // A deterministic search names no budget: three times the default under a
  // latency limit (each probe of its bisection is a memory-limit search).
  OptimizeOptions d;
  EXPECT_EQ(d.DefaultWorkBudget(), OptimizeOptions::kDefaultWorkBudget);
  d.lat_limit_ratio = 1.05;
  EXPECT_EQ(d.DefaultWorkBudget(), 3 * OptimizeOptions::kDefaultWorkBudget);
}

// The graph as given alone and with fission, under a latency limit of +10%
// and a work budget, with the fission search's decisions.
struct LatencySearch {
  OptimizeResult alone, with;
  std::vector<SearchEvent> events;
};
LatencySearch UnderLatencyLimit(const Graph& g, const sim::DeviceProfile& device, int64_t work_budget) {
  OptimizeOptions o;
  o.lat_limit_ratio = 1.1;
  o.work_budget = work_budget;
  LatencySearch r{Optimize(g, device, nullptr, o), {}, {}};
  o.on_event = [&](const SearchEvent& e) { r.events.push_back(e); };
  r.with = OptimizeWithFission(g, device, nullptr, o);
  return r;
}

// Under a latency limit the variants within the limit are prepared before
// the graph as given is searched. When the first of them halves the peak in
// program order (the wide MLP micro-batched x4: 71 of 160 MiB), it is
// searched first, on half the work: each probe of a bisection is a whole
// memory-limit search, and the graph as given, searched first, spent its
// share reaching what the variant needs in program order. The graph as given
// is then searched only below the plan in hand, and like a variant that
// cannot beat it, dropped after one probe. The plan kept needs less than the
// graph as given reaches with the whole budget.
TEST(FissionSearch, UnderALatencyLimitAPromisingVariantGoesFirst) {
  const auto [alone, with, events] = UnderLatencyLimit(WideBatchMlp(), sim::FindDevice("a100"), 300);
  const auto stop = std::find_if(events.begin(), events.end(),
                                 [](const SearchEvent& e) { return e.stage == SearchStage::kStop; });
  ASSERT_NE(stop, events.end());
  EXPECT_EQ(stop->schedule, "images[0] x4") << "the first search to stop is the variant's";
  EXPECT_THAT(stop->outcome, HasSubstr("(150 heuristic runs)"));
  EXPECT_THAT(with.method, HasSubstr("fission images[0] x"));  // x6 since the search tries 6 parts too
  EXPECT_LT(with.optimized.peak_bytes, alone.optimized.peak_bytes);
  EXPECT_LE(with.optimized.latency_us, with.latency_limit_us);
  auto dropped = [&](std::string_view what) {
    return std::any_of(events.begin(), events.end(), [&](const SearchEvent& e) {
      return e.outcome.find(what) != std::string::npos &&
             e.outcome.find("no plan within the latency limit needs less") != std::string::npos;
    });
  };
  EXPECT_TRUE(dropped("the graph as given dropped"));
  EXPECT_TRUE(dropped("dropped: "));
}

// GPT-2 small at batch 16, sequence 128: its vocabulary head and loss
// ([2048, 50257] logits, 393 MiB each) hold more than any layer. Under a
// latency limit the band of those 13 ops (PeakBand) is searched before the
// graph as given, on half the budget, and the search keeps a plan that needs
// less memory than the graph as given alone reaches on the whole budget.
TEST(FissionSearch, UnderALatencyLimitACheapPeakBandGoesFirst) {
  ZooOptions zoo;
  zoo.batch = 16;
  zoo.seq = 128;
  const Graph g = BuildTrainingGraph(BuildZooModel("gpt2-small", zoo));
  const auto [alone, with, events] = UnderLatencyLimit(g, sim::FindDevice("rtx3090"), 120);

  // The first variant searched (not only prepared) is the band, before any
  // event of the graph as given's own search.
  const auto first = std::find_if(events.begin(), events.end(), [](const SearchEvent& e) {
    return e.stage == SearchStage::kFission && e.outcome.starts_with("fits");
  });
  ASSERT_NE(first, events.end());
  EXPECT_THAT(first->method, HasSubstr("band (lm_head.mm .. bwd.lm_head.mm_3)"));
  const auto base = std::find_if(events.begin(), events.end(), [](const SearchEvent& e) {
    return e.stage == SearchStage::kSearch && e.schedule.find("band") == std::string::npos;
  });
  EXPECT_LT(first - events.begin(), base - events.begin());
  EXPECT_LT(with.optimized.peak_bytes, alone.optimized.peak_bytes);
  EXPECT_LE(with.optimized.latency_us, with.latency_limit_us);
  EXPECT_THAT(CheckPlacement(with.plan.graph, with.plan.steps, with.plan.placement), ::testing::IsEmpty());
}

// One high-resolution image: the batch cannot be split, tiles along H can.
// VGG-16 at batch 1, 1024x1024: without fission no plan gets below about
// 0.87 of the peak; the features' backward and forward tiled reach 0.60.
TEST(FissionSearch, TilesAnImageWhereTheBatchCannotBeSplit) {
  ZooOptions zoo;
  zoo.batch = 1;
  zoo.image = 1024;
  const Graph g = BuildTrainingGraph(BuildZooModel("vgg16", zoo));
  const auto candidates = FissionCandidates(g, ComputeDimensions(g));
  int spatial = 0;
  for (const FissionCandidate& c : candidates) spatial += c.name.rfind("H (spatial", 0) == 0;
  EXPECT_EQ(spatial, 3);  // the features' forward, their backward, both
  const sim::DeviceProfile& gpu = sim::FindDevice("rtx3090");
  const OptimizeOptions o = Deterministic(0.75);
  EXPECT_THAT(testing::ErrorOf([&] { Optimize(g, gpu, nullptr, o); }), HasSubstr("cannot be met"));
  const OptimizeResult r = OptimizeWithFission(g, gpu, nullptr, o);
  EXPECT_LE(r.optimized.peak_bytes, r.limit_bytes);
  EXPECT_THAT(r.method, HasSubstr("fission H (spatial"));
  EXPECT_THAT(CheckPlacement(r.plan.graph, r.plan.steps, r.plan.placement), ::testing::IsEmpty());
}

// VGG-U-Net at batch 32: its encoder's backward reads the encoder's saved
// activations (two 1.93 GiB ReLU outputs in its first block), held whole
// however the backward is split, and its decoder's BatchNorms keep the
// encoder's forward and backward apart. Copied before the backward, the
// BatchNorm-free encoder forward splits with it: 0.3 of the peak fits.
TEST(FissionSearch, RecomputesAnEncoderInPartsBeforeItsBackward) {
  const Graph g = BuildTrainingGraph(BuildZooModel("vgg-unet", {}));
  const sim::DeviceProfile& gpu = sim::FindDevice("rtx3090");
  OptimizeOptions o = Deterministic(0.3);
  o.work_budget = 1500;  // the variants go after the graph as given, most added time last
  FissionSearchOptions without;
  without.recompute = false;
  EXPECT_THAT(testing::ErrorOf([&] { OptimizeWithFission(g, gpu, nullptr, o, without); }), HasSubstr("cannot be met"));
  const OptimizeResult r = OptimizeWithFission(g, gpu, nullptr, o);
  EXPECT_LE(r.optimized.peak_bytes, r.limit_bytes);
  EXPECT_THAT(r.method, HasSubstr("forward ops (block1_conv1.convolution .."));
  const auto fissions = RecordedFissions(r.plan.graph);
  ASSERT_GE(fissions.size(), 2u);  // and the decoder's backward tiled along H (nested: at the peak)
  EXPECT_THAT(fissions[0], ::testing::StartsWith("recompute: "));
  EXPECT_THAT(fissions[1], HasSubstr("images[0] (batch)"));
  for (size_t i = 2; i < fissions.size(); ++i) EXPECT_THAT(fissions[i], HasSubstr("H (spatial)"));
  EXPECT_THAT(CheckPlacement(r.plan.graph, r.plan.steps, r.plan.placement), ::testing::IsEmpty());
}

// Nesting: a VGG-U-Net at batch 4, 64x64, split in 2 along the batch has
// its program-order peak in part 0's encoder backward. The nested candidate
// tiles, inside each part, the run along H that holds that op: one batch
// fission, then one spatial fission per part.
TEST(FissionSearch, TilesTheRunAtThePeakInsideEachPart) {
  ZooOptions zoo;
  zoo.batch = 4;
  zoo.image = 64;
  const Graph g = BuildTrainingGraph(BuildZooModel("vgg-unet", zoo));
  const DimensionGraph dims = ComputeDimensions(g);  // the candidates refer to it
  const auto candidates = FissionCandidates(g, dims);
  const auto nested = std::find_if(candidates.begin(), candidates.end(), [](const FissionCandidate& c) {
    return c.name == "images[0] (then H x4 at the peak)";
  });
  ASSERT_NE(nested, candidates.end());
  const FissionResult r = nested->apply(2);
  Validate(r.graph);
  // A transformer's attention [B, heads, S, S] tiles along H too, but no
  // convolution does: no nested candidate (each would cost a whole split
  // to be refused).
  ZooOptions small;
  small.batch = 2;
  const Graph bert = BuildTrainingGraph(BuildZooModel("bert-tiny", small));
  const DimensionGraph bert_dims = ComputeDimensions(bert);
  for (const FissionCandidate& c : FissionCandidates(bert, bert_dims)) {
    EXPECT_EQ(c.name.find("then H"), std::string::npos) << c.name;
  }
  const auto fissions = RecordedFissions(r.graph);
  ASSERT_EQ(fissions.size(), 3u);
  EXPECT_THAT(fissions[0], HasSubstr("images[0] (batch) x2"));
  EXPECT_THAT(fissions[1], HasSubstr("H (spatial) x4"));
  EXPECT_THAT(fissions[1], HasSubstr(".part0)"));
  EXPECT_THAT(fissions[2], HasSubstr(".part1)"));
}

// Options out of range are refused as Optimize refuses them, before any
// variant is made (not with "the smallest memory fission reaches").
TEST(FissionSearch, RefusesOptionsOutOfRangeBeforeSearching) {
  const Graph g = WideBatchMlp();
  const std::string error =
      testing::ErrorOf([&] { OptimizeWithFission(g, sim::FindDevice("a100"), nullptr, Deterministic(0)); });
  EXPECT_THAT(error, HasSubstr("memory limit ratio 0 is out of range"));
  EXPECT_THAT(error, ::testing::Not(HasSubstr("with fission")));
}

// No variant is searched either: splitting ops moves no weight off the
// device. A ratio so small that the limit rounds to 0 bytes is such a limit
// too (it searched every variant, then named "the smallest memory with
// fission").
TEST(FissionSearch, LimitsBelowTheWeightsAreRefusedAtOnce) {
  const Graph g = WideBatchMlp();
  OptimizeOptions bytes = Deterministic(0.5);
  bytes.mem_limit_ratio.reset();
  bytes.mem_limit_bytes = 1024;
  for (const OptimizeOptions& o : {bytes, Deterministic(1e-12)}) {
    const std::string error = testing::ErrorOf([&] { OptimizeWithFission(g, sim::FindDevice("a100"), nullptr, o); });
    EXPECT_THAT(error, HasSubstr("parameters, buffers and optimizer state alone"));
    EXPECT_THAT(error, ::testing::Not(HasSubstr("with fission"))) << error;
  }
}

}  // namespace
}  // namespace memfit
