// Tests of the report's data: memory over time by role, the arena's
// rectangles, the decisions, the search trace reader and the HTML page, on a
// five-op chain whose bytes and microseconds are worked out by hand.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "ir/builder.h"
#include "plan/placement.h"
#include "plan/steps.h"
#include "report/arena.h"
#include "report/assets.h"
#include "report/decisions.h"
#include "report/html_page.h"
#include "report/memory_curve.h"
#include "report/pareto_data.h"
#include "report/report_data.h"
#include "report/solve_info.h"
#include "sim/simulator.h"
#include "sim_fixtures.h"
#include "test_util.h"
#include "util/error.h"

namespace memfit::report {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

using testing::Peak;
using testing::RoundDevice;

// x -> a=relu(x) -> b=relu(a) -> c=relu(b) -> e=relu(c) -> d=add(a, e).
// Every tensor is f32[250] = 1000 bytes; x is an input, the others
// activations. On RoundDevice a relu takes 2 us, the add 3 us, a host copy
// 2 us.
using Chain = testing::SkipChain;
Chain MakeChain() { return testing::MakeSkipChain("chain", {250}); }

// a freed after op1 and recomputed from x (kept) before the add.
Steps RecomputePlan(const Chain& ch) {
  Steps plan;
  plan.steps = {Step::Compute(OpId(0)), Step::Compute(OpId(1)), Step::Free(ch.a),   Step::Compute(OpId(2)),
                Step::Free(ch.b),       Step::Compute(OpId(3)), Step::Free(ch.c),   Step::Recompute(OpId(0)),
                Step::Free(ch.x),       Step::Compute(OpId(4))};
  return plan;
}

sim::SimResult Replay(const Graph& graph, const Steps& plan) {
  return sim::Simulate(graph, plan, RoundDevice(), nullptr, Peak(), {.record_timeline = true, .record_memory = true});
}

int64_t Role(const MemoryCurve& c, size_t point, ReportRole role) { return c.device[point][static_cast<size_t>(role)]; }

// Device memory, by time (releases first at equal times):
//   t=0: x (input) and a             inputs 1000, activations 1000
//   t=2: -x, +b                      activations 2000 (a, b); host +a (swap-out starts)
//   t=4: -a (its copy and op1 end), +c   activations 2000 (b, c)
//   t=6: -b, +a (swap-in), +e        activations 3000 (c, a, e)
//   t=8: -c, +d; a's host copy done  activations 3000 (a, e, d); host 0
TEST(MemoryCurve, SwapPlanByRoleAndHost) {
  const Chain ch = MakeChain();
  const Steps plan = testing::SwapRoundTrip(ch);
  const sim::SimResult r = Replay(ch.graph, plan);
  const MemoryCurve c = ComputeMemoryCurve(ch.graph, plan, r);
  EXPECT_THAT(c.time_us, ElementsAre(0, 2, 4, 6, 8));
  std::vector<int64_t> inputs, activations, workspace;
  for (size_t p = 0; p < c.time_us.size(); ++p) {
    inputs.push_back(Role(c, p, ReportRole::kInputs));
    activations.push_back(Role(c, p, ReportRole::kActivations));
    workspace.push_back(Role(c, p, ReportRole::kWorkspace));
    EXPECT_EQ(Role(c, p, ReportRole::kParameters), 0);
    EXPECT_EQ(Role(c, p, ReportRole::kGradients), 0);
  }
  EXPECT_THAT(inputs, ElementsAre(1000, 0, 0, 0, 0));
  EXPECT_THAT(activations, ElementsAre(1000, 2000, 2000, 3000, 3000));
  EXPECT_THAT(workspace, ElementsAre(0, 0, 0, 0, 0));
  EXPECT_THAT(c.host, ElementsAre(0, 1000, 1000, 1000, 0));
  EXPECT_EQ(c.peak_device_bytes, 3000);
  EXPECT_EQ(c.peak_device_bytes, r.peak_bytes);
  EXPECT_EQ(c.peak_host_bytes, 1000);
}

// Recompute plan: x stays until the recompute of a at step 7 ([8, 10]); the
// add then runs [10, 13].
//   t=0: x, a  t=2: +b  t=4: -a, +c  t=6: -b, +e  t=8: -c, +a  t=10: -x, +d
TEST(MemoryCurve, RecomputePlanPeakIsTheSimulators) {
  const Chain ch = MakeChain();
  const Steps plan = RecomputePlan(ch);
  const sim::SimResult r = Replay(ch.graph, plan);
  const MemoryCurve c = ComputeMemoryCurve(ch.graph, plan, r);
  EXPECT_THAT(c.time_us, ElementsAre(0, 2, 4, 6, 8, 10));
  std::vector<int64_t> total;
  for (const RoleBytes& b : c.device) total.push_back(b[0] + b[1] + b[2] + b[3] + b[4] + b[5]);
  EXPECT_THAT(total, ElementsAre(2000, 3000, 3000, 3000, 3000, 3000));
  EXPECT_EQ(c.peak_device_bytes, r.peak_bytes);
  EXPECT_THAT(c.host, ElementsAre(0, 0, 0, 0, 0, 0));
}

TEST(MemoryCurve, NeedsTheTimeline) {
  const Chain ch = MakeChain();
  const Steps plan = testing::SwapRoundTrip(ch);
  const sim::SimResult r = sim::Simulate(ch.graph, plan, RoundDevice(), nullptr, Peak(), {.record_memory = true});
  EXPECT_THAT(testing::ErrorOf([&] { ComputeMemoryCurve(ch.graph, plan, r); }), HasSubstr("timeline"));
}

TEST(Arena, OneRectanglePerInstanceWithItsOrigin) {
  const Chain ch = MakeChain();
  const Steps plan = testing::SwapRoundTrip(ch);
  const sim::Simulator simulator(ch.graph, RoundDevice(), nullptr, Peak());
  PlacementOptions options;
  options.simulator = &simulator;
  options.deterministic = true;
  const Placement memory = PlaceSteps(ch.graph, plan, options);
  const std::vector<ArenaRect> rects = ArenaRects(ch.graph, plan, memory);
  ASSERT_EQ(rects.size(), memory.buffers.size());
  int a_instances = 0;
  for (size_t k = 0; k < rects.size(); ++k) {
    const ArenaRect& r = rects[k];
    EXPECT_EQ(r.start, memory.buffers[k].start);
    EXPECT_EQ(r.end, memory.buffers[k].end);
    EXPECT_EQ(r.offset, memory.buffers[k].offset_bytes);
    EXPECT_EQ(r.size, memory.buffers[k].size_bytes);
    ASSERT_TRUE(r.storage.has_value());  // relu and add have no workspace
    if (*r.storage == ch.x) {
      EXPECT_EQ(r.origin, InstanceOrigin::kSource);
      EXPECT_EQ(r.role, ReportRole::kInputs);
      EXPECT_FALSE(r.op.has_value());
    } else if (*r.storage == ch.a) {
      ++a_instances;
      EXPECT_EQ(r.op, OpId(0));
      EXPECT_EQ(r.origin, r.start == 0 ? InstanceOrigin::kComputed : InstanceOrigin::kSwappedIn);
      if (r.start != 0) {
        EXPECT_EQ(r.start, 6);
      }
    } else {
      EXPECT_EQ(r.origin, InstanceOrigin::kComputed);
      EXPECT_EQ(r.role, ReportRole::kActivations);
    }
  }
  EXPECT_EQ(a_instances, 2);

  // The recomputed instance of a starts at the recompute (step 7).
  const Steps recompute = RecomputePlan(ch);
  const Placement memory2 = PlaceSteps(ch.graph, recompute, options);
  int recomputed = 0;
  for (const ArenaRect& r : ArenaRects(ch.graph, recompute, memory2)) {
    if (r.origin == InstanceOrigin::kRecomputed) {
      ++recomputed;
      EXPECT_EQ(r.storage, ch.a);
      EXPECT_EQ(r.start, 7);
    }
  }
  EXPECT_EQ(recomputed, 1);

  Placement broken = memory;
  broken.buffers[0].end = 99;
  EXPECT_THAT(testing::ErrorOf([&] { ArenaRects(ch.graph, plan, broken); }),
              HasSubstr("buffers[0]: steps [0, 99) are not an interval of the plan's 10 steps"));
}

TEST(Decisions, SwapAndRecompute) {
  const Chain ch = MakeChain();
  {
    const Steps plan = testing::SwapRoundTrip(ch);
    const std::vector<Decision> d = PlanDecisions(ch.graph, plan, Replay(ch.graph, plan).timeline);
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].kind, DecisionKind::kSwap);
    EXPECT_EQ(d[0].step, 3u);
    EXPECT_EQ(d[0].until_step, 6u);
    EXPECT_EQ(d[0].storage, ch.a);
    EXPECT_EQ(d[0].bytes, 1000);
    // Swap-out at 2 us, swap-in issued at 6 us; op4 (the add) reads it back.
    EXPECT_THAT(d[0].why, HasSubstr("on the host from 0.002 ms to 0.006 ms (steps 3..6)"));
    EXPECT_THAT(d[0].why, HasSubstr("back for '" + ch.graph.op(OpId(4)).name + "'"));
  }
  {
    const Steps plan = RecomputePlan(ch);
    const std::vector<Decision> d = PlanDecisions(ch.graph, plan, Replay(ch.graph, plan).timeline);
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].kind, DecisionKind::kRecompute);
    EXPECT_EQ(d[0].step, 7u);
    EXPECT_EQ(d[0].until_step, 9u);  // the add reads a
    EXPECT_EQ(d[0].op, OpId(0));
    EXPECT_EQ(d[0].bytes, 1000);
    EXPECT_THAT(d[0].why, HasSubstr("recomputed at 0.008 ms (1000 B)"));
  }
}

// x -> a=relu(x), b=neg(x), c=sigmoid(x), out=add(add(a, b), c). Run as
// c, a, b, ...: the fewest moves is c alone (a, b, the adds keep their order).
TEST(Decisions, ReorderNamesTheFewestMovedOps) {
  GraphBuilder g("branches");
  const TensorId x = g.Input("x", {250});
  const TensorId a = g.Call("aten.relu", {x});
  const TensorId b = g.Call("aten.neg", {x});
  const TensorId c = g.Call("aten.sigmoid", {x});
  const TensorId ab = g.Call("aten.add.Tensor", {a, b});
  g.MarkOutput(g.Call("aten.add.Tensor", {ab, c}));
  const Graph graph = g.Finish();
  const Steps plan = StepsFromOrder(graph, {OpId(2), OpId(0), OpId(1), OpId(3), OpId(4)});
  const std::vector<Decision> d = PlanDecisions(graph, plan, Replay(graph, plan).timeline);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].kind, DecisionKind::kReorder);
  EXPECT_EQ(d[0].op, OpId(2));
  EXPECT_EQ(d[0].step, 0u);
  EXPECT_THAT(d[0].why, HasSubstr("(op 2) moved out of program order: runs first"));
  // Program order: nothing to report.
  EXPECT_TRUE(PlanDecisions(graph, ProgramOrderSteps(graph), {}).empty());
}

// `steps` of the skip chain placed as simulated on RoundDevice.
Placement PlacedOnRoundDevice(const Chain& ch, const Steps& steps) {
  const sim::Simulator simulator(ch.graph, RoundDevice(), nullptr, Peak());
  PlacementOptions mo;
  mo.simulator = &simulator;
  mo.deterministic = true;
  return PlaceSteps(ch.graph, steps, mo);
}

// The skip chain's swap round trip (testing::SwapRoundTrip), placed, as
// "swap.json"; and the options that replay it on RoundDevice.
ReportPlan SwapPlan(const Chain& ch) {
  ReportPlan plan;
  plan.label = "swap.json";
  plan.plan.graph = ch.graph;
  plan.plan.steps = testing::SwapRoundTrip(ch);
  plan.plan.placement = PlacedOnRoundDevice(ch, plan.plan.steps);
  return plan;
}
ReportOptions OnRoundDevice() {
  ReportOptions options;
  options.device = RoundDevice();
  options.latency = Peak();
  return options;
}

// Under a latency limit the summary has the least memory any plan of the
// graph needs within it (optimize/latency_bound.h): on the skip chain, the
// add reads a and e and writes d, 3000 bytes whatever the plan.
TEST(ReportData, LatencyLimitBringsTheBound) {
  const Chain ch = MakeChain();
  ReportPlan plan = SwapPlan(ch);
  plan.solve.latency_limit_ms = 0.011;
  const nlohmann::ordered_json data = ReportData(plan, OnRoundDevice());
  EXPECT_EQ(data["summary"][0]["latency_bound_bytes"], 3000);
}

TEST(ReportData, SwapPlanAsTheChartsSeeIt) {
  const Chain ch = MakeChain();
  ReportPlan plan = SwapPlan(ch);
  plan.solve.limit_bytes = 3000;
  plan.solve.method = "by hand";
  plan.solve.seconds = 0.5;
  plan.solve.trace.push_back({0.25, "plan", "program-order", "by hand", "fits", 3000, 3000, std::nullopt, 0.011});
  ReportOptions options = OnRoundDevice();
  const nlohmann::ordered_json data = ReportData(plan, options);

  EXPECT_EQ(data["format"], "memfit.report");
  EXPECT_EQ(data["device"], "round");
  ASSERT_EQ(data["summary"].size(), 1u);
  const auto& s = data["summary"][0];
  EXPECT_EQ(s["label"], "swap.json");
  EXPECT_EQ(s["limit_bytes"], 3000);
  EXPECT_EQ(s["peak_bytes"], 3000);
  EXPECT_EQ(s["arena_bytes"], plan.plan.placement.arena_bytes);
  EXPECT_EQ(s["lower_bound_bytes"], plan.plan.placement.lower_bound_bytes);
  EXPECT_TRUE(s["latency_bound_bytes"].is_null());  // a memory limit
  EXPECT_DOUBLE_EQ(s["latency_ms"].get<double>(), 0.011);
  // Program order with frees at last use: 11 us, peak 3000 (a, b, c at op2).
  EXPECT_DOUBLE_EQ(s["original_latency_ms"].get<double>(), 0.011);
  EXPECT_EQ(s["original_peak_bytes"], 3000);
  EXPECT_DOUBLE_EQ(s["overhead"].get<double>(), 0.0);
  EXPECT_EQ(s["method"], "by hand");
  EXPECT_DOUBLE_EQ(s["solve_seconds"].get<double>(), 0.5);
  EXPECT_EQ(s["swap_out_bytes"], 1000);
  EXPECT_EQ(s["peak_host_bytes"], 1000);

  EXPECT_EQ(data["memory"]["time_us"], nlohmann::json({0, 2, 4, 6, 8}));
  EXPECT_EQ(data["memory"]["by_role"][static_cast<size_t>(ReportRole::kActivations)],
            nlohmann::json({1000, 2000, 2000, 3000, 3000}));
  EXPECT_EQ(data["memory"]["host"], nlohmann::json({0, 1000, 1000, 1000, 0}));
  EXPECT_EQ(data["roles"].size(), kNumReportRoles);

  // Steps: the swap-out on the copy stream [2, 4], the free on none.
  const auto& steps = data["steps"];
  ASSERT_EQ(steps["kind"].size(), 10u);
  EXPECT_EQ(steps["stream"][3], static_cast<int>(sim::Stream::kCopy));
  EXPECT_EQ(steps["kind"][3], static_cast<int>(StepKind::kSwapOut));
  EXPECT_DOUBLE_EQ(steps["start_us"][3].get<double>(), 2);
  EXPECT_DOUBLE_EQ(steps["end_us"][3].get<double>(), 4);
  EXPECT_EQ(steps["ref"][3], ch.a.value);
  EXPECT_EQ(steps["ref"][9], 4);  // op4
  EXPECT_EQ(steps["stream"][1], static_cast<int>(sim::Stream::kNone));

  EXPECT_EQ(data["arena"]["start"].size(), plan.plan.placement.buffers.size());
  EXPECT_EQ(data["decisions"]["kind"], nlohmann::json({"swap"}));
  EXPECT_EQ(data["decisions"]["step"], nlohmann::json({3}));
  EXPECT_EQ(data["decisions"]["until"], nlohmann::json({6}));
  ASSERT_EQ(data["trace"].size(), 1u);
  EXPECT_EQ(data["trace"][0]["outcome"], "fits");
  EXPECT_EQ(data["trace"][0]["arena_bytes"], nullptr);
  EXPECT_EQ(data["tensors"]["name"].size(), ch.graph.num_tensors());
  EXPECT_EQ(data["tensors"]["producer"][ch.a.value], 0);
  EXPECT_EQ(data["tensors"]["producer"][ch.x.value], -1);
  EXPECT_EQ(data["compare"], nullptr);

  // Against program order: a second summary column and its curve.
  ReportPlan other;
  other.label = "order.json";
  other.plan.graph = ch.graph;
  other.plan.steps = ProgramOrderSteps(ch.graph);
  other.plan.placement = PlacedOnRoundDevice(ch, other.plan.steps);
  options.compare = &other;
  const nlohmann::ordered_json both = ReportData(plan, options);
  ASSERT_EQ(both["summary"].size(), 2u);
  EXPECT_EQ(both["summary"][1]["label"], "order.json");
  EXPECT_EQ(both["summary"][1]["swap_out_bytes"], 0);
  EXPECT_EQ(both["compare"]["label"], "order.json");
  EXPECT_EQ(both["compare"]["total"].size(), both["compare"]["time_us"].size());
}

TEST(SolveInfo, ReadsOptimizeJsonAndItsTrace) {
  const SolveInfo info = SolveInfoFromJson(R"({"method": "partitioned+heuristic", "scheduler": "partitioned",
      "limit_bytes": 1000, "seconds": 0.5, "future_field": [1, 2],
      "trace": [{"seconds": 0.1, "stage": "placement", "schedule": "partitioned", "arena_bytes": 990,
                 "latency_ms": 1.5, "outcome": "packed"},
                {"seconds": 0.2, "stage": "result", "outcome": "kept"}]})",
                                           "opt.json");
  EXPECT_EQ(info.method, "partitioned+heuristic");
  EXPECT_EQ(info.limit_bytes, 1000);
  EXPECT_EQ(info.seconds, 0.5);
  ASSERT_EQ(info.trace.size(), 2u);
  EXPECT_EQ(info.trace[0].arena_bytes, 990);
  EXPECT_FALSE(info.trace[0].peak_bytes.has_value());
  EXPECT_EQ(info.trace[1].stage, "result");

  auto error_of = [](const std::string& text) { return testing::ErrorOf([&] { SolveInfoFromJson(text, "opt.json"); }); };
  EXPECT_THAT(error_of("[{\"ratio\": 0.3}]"), HasSubstr("opt.json: top level: expected the output of one"));
  EXPECT_THAT(error_of("{\"graph\": 1}"), HasSubstr("opt.json: top level: not the output of `memfit optimize --json`"));
  EXPECT_THAT(error_of(R"({"method": "m", "limit_bytes": -5})"), HasSubstr("opt.json: limit_bytes: expected a byte count"));
  // Seconds may be absent (deterministic runs leave them out); the stage may not.
  EXPECT_THAT(error_of(R"({"method": "m", "limit_bytes": 5, "trace": [{"seconds": 1}]})"),
              HasSubstr("opt.json: trace[0]: missing field 'stage'"));
  EXPECT_THAT(error_of(R"({"method": "m", "limit_bytes": 5, "trace": [{"stage": "guess"}]})"),
              HasSubstr("opt.json: trace[0].stage: unknown stage 'guess'"));
  EXPECT_THAT(error_of(R"({"method": "m", "limit_bytes": 5, "trace": [{"seconds": "x", "stage": "plan"}]})"),
              HasSubstr("opt.json: trace[0].seconds"));
  EXPECT_THAT(error_of("{\"method\": "), HasSubstr("opt.json: malformed JSON"));
}

// A PLAN.json from `memfit optimize` keeps its decisions: the trace, and the
// method, schedule and limit of the last result (a fission search's, after
// the variants' own).
TEST(SolveInfo, ReadsAPlansDecisions) {
  const SolveInfo info = SolveInfoFromPlanJson(R"({"format": "memfit.plan", "decisions": [
      {"stage": "reference", "schedule": "program-order", "peak_bytes": 2000, "latency_ms": 1, "outcome": "o"},
      {"stage": "result", "schedule": "x4/partitioned", "method": "partitioned", "budget_bytes": 900, "outcome": "kept"},
      {"stage": "result", "schedule": "partitioned", "method": "partitioned+heuristic + fission x2",
       "budget_bytes": 1000, "peak_bytes": 950, "outcome": "kept"}]})",
                                               "plan.json");
  ASSERT_EQ(info.trace.size(), 3u);
  EXPECT_EQ(info.trace[0].stage, "reference");
  EXPECT_EQ(info.trace[0].peak_bytes, 2000);
  EXPECT_EQ(info.method, "partitioned+heuristic + fission x2");
  EXPECT_EQ(info.scheduler, "partitioned");
  EXPECT_EQ(info.limit_bytes, 1000);
  EXPECT_FALSE(info.seconds.has_value());
  // No decisions (a plan from `memfit plan` of old): nothing.
  EXPECT_TRUE(SolveInfoFromPlanJson(R"({"format": "memfit.plan"})", "p.json").trace.empty());
  EXPECT_THAT(testing::ErrorOf([] { SolveInfoFromPlanJson(R"({"decisions": [{"outcome": 1}]})", "p.json"); }),
              HasSubstr("p.json: decisions[0]"));
}

// The DTR sweep page's data: one point per heuristic and budget; overhead
// only where the run finished.
TEST(DtrSweepData, OnePointPerRunOverheadOnlyWhenOk) {
  DtrSweep sweep;
  sweep.trace = "resnet.log";
  sweep.unconstrained_peak_bytes = 1000;
  sweep.unconstrained_compute_ns = 50;
  sweep.points.push_back({"dtr", 0.5, 500, "ok", 1.25, 480, 7, 9});
  sweep.points.push_back({"lru", 0.1, 100, "oom", 0, 100, 3, 2});
  const nlohmann::ordered_json d = DtrSweepData(sweep);
  EXPECT_EQ(d["format"], "memfit.dtr-sweep");
  EXPECT_EQ(d["unconstrained"]["peak_bytes"], 1000);
  ASSERT_EQ(d["points"].size(), 2u);
  EXPECT_EQ(d["points"][0]["heuristic"], "dtr");
  EXPECT_EQ(d["points"][0]["overhead"], 1.25);
  EXPECT_EQ(d["points"][0]["recomputations"], 9);
  EXPECT_TRUE(d["points"][1]["overhead"].is_null());
  EXPECT_EQ(d["points"][1]["status"], "oom");
}

TEST(TraceEvent, FromTheOptimizersEvent) {
  SearchEvent e;
  e.seconds = 1.5;
  e.stage = SearchStage::kPlacement;
  e.method = "heuristic";
  e.peak_bytes = 4096;
  e.latency_us = 2500;
  e.outcome = "packed";
  const TraceEvent t = ToTraceEvent(e);
  EXPECT_EQ(t.stage, "placement");
  EXPECT_EQ(t.arena_bytes, 4096);  // a placement's "peak" is its arena
  EXPECT_FALSE(t.peak_bytes.has_value());
  EXPECT_FALSE(t.budget_bytes.has_value());
  EXPECT_DOUBLE_EQ(*t.latency_ms, 2.5);
}

TEST(HtmlPage, SelfContainedAndScriptSafe) {
  nlohmann::ordered_json data = {{"name", "</script><script>alert(1)</script> <!-- x"}, {"n", 1}};
  const std::string json = ScriptSafeJson(data);
  EXPECT_EQ(json.find('<'), std::string::npos);
  EXPECT_EQ(nlohmann::ordered_json::parse(json), data);

  const std::string page = HtmlPage(data);
  EXPECT_THAT(page, HasSubstr(json));
  EXPECT_THAT(page, HasSubstr(std::string(ChartLibraryJs())));
  EXPECT_THAT(page, HasSubstr(std::string(PageScript())));
  EXPECT_THAT(page, HasSubstr(std::string(PageStyle())));
  for (const char* marker : {"@DATA@", "/*@STYLE@*/", "/*@LIBRARY@*/", "/*@SCRIPT@*/"}) {
    EXPECT_EQ(page.find(marker), std::string::npos) << marker;
  }
  // Nothing is fetched: no http(s) source or stylesheet link.
  EXPECT_EQ(page.find("src=\"http"), std::string::npos);
  EXPECT_EQ(page.find("<link"), std::string::npos);
  // The chart library is ECharts' minified build, well over 100 KB.
  EXPECT_GT(ChartLibraryJs().size(), 100'000u);
  EXPECT_THAT(std::string(ChartLibraryJs().substr(0, 2000)), HasSubstr("Apache"));
}

TEST(ParetoData, OverheadAgainstProgramOrderAndErrors) {
  ParetoSweep sweep;
  sweep.graph = "g";
  sweep.device = "a100";
  sweep.original_peak_bytes = 1000;
  sweep.original_latency_ms = 10;
  ParetoPoint fit{"memfit", 0.5, 500, 480, 512, 12.5, "heuristic", 0.25, ""};
  ParetoPoint none{"sqrt-n", 0.3, 300, std::nullopt, std::nullopt, std::nullopt, "", std::nullopt, "cannot be met"};
  sweep.points = {fit, none};
  const nlohmann::ordered_json data = ParetoData(sweep);
  EXPECT_EQ(data["format"], "memfit.pareto");
  EXPECT_EQ(data["original"]["peak_bytes"], 1000);
  ASSERT_EQ(data["points"].size(), 2u);
  EXPECT_DOUBLE_EQ(data["points"][0]["overhead"].get<double>(), 0.25);  // 12.5 ms against 10 ms
  EXPECT_EQ(data["points"][0]["arena_bytes"], 512);
  EXPECT_EQ(data["points"][1]["peak_bytes"], nullptr);
  EXPECT_EQ(data["points"][1]["overhead"], nullptr);
  EXPECT_EQ(data["points"][1]["error"], "cannot be met");
}

}  // namespace
}  // namespace memfit::report
