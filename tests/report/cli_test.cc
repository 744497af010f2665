// memfit report on the command line: a graph, a plan with its optimizer
// output, a comparison, and one-line errors (exit 2) for bad input.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "test_util.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;
using testing::ReadAll;
using testing::RunCli;
using testing::TempDir;
using testing::ZooGraph;

// A user error (testing::ExpectUserError) whose line starts stderr and
// that prints nothing on stdout.
void ExpectOnlyUserError(const testing::CliResult& r, const std::string& needle) {
  testing::ExpectUserError(r, needle);
  EXPECT_THAT(r.err, ::testing::StartsWith("memfit: error: "));
  EXPECT_TRUE(r.out.empty()) << r.out;
}

// The JSON the page holds, between its <script type="application/json"> tags.
std::string PageData(const std::string& page) {
  const std::string open = "<script type=\"application/json\" id=\"memfit-data\">";
  const size_t begin = page.find(open);
  if (begin == std::string::npos) return "";
  const size_t end = page.find("</script>", begin);
  return page.substr(begin + open.size(), end - begin - open.size());
}

TEST(ReportCli, GraphPlanTraceAndCompare) {
  TempDir dir;
  const std::string g = ZooGraph(dir, "g.json", "mlp --batch 64 --train"), p = dir.File("p.json");
  const auto optimize = RunCli("optimize " + g + " --mem-limit-ratio 0.9 --deterministic --json --verbose -o " + p);
  ASSERT_EQ(optimize.exit_code, 0) << optimize.err;
  const std::string opt = dir.Write("opt.json", optimize.out);

  auto r = RunCli("report " + g + " -o " + dir.File("order.html"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("wrote " + dir.File("order.html")));
  std::string page = ReadAll(dir.File("order.html"));
  EXPECT_THAT(page, ::testing::StartsWith("<!doctype html>"));
  nlohmann::json data = nlohmann::json::parse(PageData(page));
  EXPECT_EQ(data["summary"][0]["method"], "program order");
  EXPECT_EQ(data["summary"][0]["peak_bytes"], data["summary"][0]["original_peak_bytes"]);
  EXPECT_TRUE(data["decisions"]["kind"].empty());

  r = RunCli("report " + p + " --trace " + opt + " --compare " + g + " -o " + dir.File("plan.html"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  data = nlohmann::json::parse(PageData(ReadAll(dir.File("plan.html"))));
  const nlohmann::json optimized = nlohmann::json::parse(ReadAll(opt));
  ASSERT_EQ(data["summary"].size(), 2u);
  EXPECT_EQ(data["summary"][0]["method"], optimized["method"]);
  EXPECT_EQ(data["summary"][0]["limit_bytes"], optimized["limit_bytes"]);
  EXPECT_EQ(data["summary"][0]["peak_bytes"], optimized["optimized"]["peak_bytes"]);
  EXPECT_EQ(data["summary"][0]["arena_bytes"], optimized["optimized"]["arena_bytes"]);
  EXPECT_EQ(data["trace"].size(), optimized["trace"].size());
  EXPECT_EQ(data["summary"][1]["label"], g);

  // --mem-limit-ratio optimizes here: the same figures as optimize's.
  r = RunCli("report " + g + " --mem-limit-ratio 0.9 --deterministic -o " + dir.File("here.html"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  data = nlohmann::json::parse(PageData(ReadAll(dir.File("here.html"))));
  EXPECT_EQ(data["summary"][0]["peak_bytes"], optimized["optimized"]["peak_bytes"]);
  EXPECT_EQ(data["summary"][0]["method"], optimized["method"]);
  EXPECT_FALSE(data["trace"].empty());

  // --device re-simulates on another device.
  r = RunCli("report " + p + " --device v100 -o " + dir.File("v100.html"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("on v100"));
}

TEST(ReportCli, OptimizeWritesThePlansPageAndThePareto) {
  TempDir dir;
  const std::string g = ZooGraph(dir, "g.json", "mlp --batch 64 --train");
  auto r = RunCli("optimize " + g + " --mem-limit-ratio 0.9 --deterministic -o " + dir.File("p.json") + " --report " +
                  dir.File("plan.html"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("wrote " + dir.File("plan.html")));
  // stderr is a file here, not a terminal: no progress line.
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  nlohmann::json data = nlohmann::json::parse(PageData(ReadAll(dir.File("plan.html"))));
  EXPECT_EQ(data["format"], "memfit.report");
  EXPECT_FALSE(data["trace"].empty());  // recorded without --verbose
  EXPECT_GT(data["summary"][0]["limit_bytes"].get<int64_t>(), 0);

  r = RunCli("optimize " + g + " --pareto --time-budget 3 --report " + dir.File("pareto.html"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << r.err;
  data = nlohmann::json::parse(PageData(ReadAll(dir.File("pareto.html"))));
  EXPECT_EQ(data["format"], "memfit.pareto");
  // Seven limits for memfit and each checkpointing baseline.
  ASSERT_EQ(data["points"].size(), 21u);
  std::set<std::string> methods;
  int found = 0;
  for (const auto& p : data["points"]) {
    methods.insert(p["method"].get<std::string>());
    if (!p["peak_bytes"].is_null()) {
      ++found;
      EXPECT_LE(p["peak_bytes"].get<int64_t>(), p["limit_bytes"].get<int64_t>());
    } else {
      EXPECT_FALSE(p["error"].get<std::string>().empty());
    }
  }
  EXPECT_EQ(methods, (std::set<std::string>{"memfit", "checkpoint-blocks", "sqrt-n"}));
  EXPECT_GT(found, 0);
  // The printed front is memfit's only, as without --report.
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1 + 7 + 1) << r.out;  // header, 7 limits, "wrote"

  ExpectOnlyUserError(RunCli("optimize " + g + " --mem-limit-ratio 0.9 --report " + dir.File("no/dir/r.html")),
                  "cannot write");
}

// The MLP's training step (batch 64) written to `dir`: its path.
std::string MlpGraph(const TempDir& dir) {
  const std::string g = ZooGraph(dir, "g.json", "mlp --batch 64 --train");
  return g;
}

// Runs memfit with `args`, expecting exit status 0.
testing::CliResult Ok(const std::string& args) {
  testing::CliResult r = RunCli(args);
  EXPECT_EQ(r.exit_code, 0) << args << ": " << r.err;
  return r;
}

// A PLAN.json from optimize carries its decisions to the page without
// --trace: the search table and the summary's method and limit.
TEST(ReportCli, PlansDecisionsReachThePage) {
  TempDir dir;
  const std::string p = dir.File("p.json"), html = dir.File("plan.html");
  const nlohmann::json optimized =
      nlohmann::json::parse(Ok("optimize " + MlpGraph(dir) + " --mem-limit-ratio 0.9 --deterministic --json -o " + p).out);
  Ok("report " + p + " -o " + html);
  const nlohmann::json plan = nlohmann::json::parse(ReadAll(p)), data = nlohmann::json::parse(PageData(ReadAll(html)));
  ASSERT_FALSE(plan["decisions"].empty());
  EXPECT_EQ(data["trace"].size(), plan["decisions"].size());
  EXPECT_EQ(data["trace"].back()["stage"], "result");
  EXPECT_EQ(data["summary"][0]["method"], optimized["method"]);
  EXPECT_EQ(data["summary"][0]["limit_bytes"], optimized["limit_bytes"]);
}

// `memfit plan --verbose`: the steps placed, the lower bound and where it is
// set, the planner's arena, in optimize's trace form; -o keeps them.
TEST(ReportCli, PlanVerbosePrintsAndKeepsItsDecisions) {
  TempDir dir;
  const std::string g = MlpGraph(dir), p = dir.File("p.json");
  const auto r = RunCli("plan " + g + " --deterministic --verbose --json -o " + p);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json out = nlohmann::json::parse(r.out);
  EXPECT_THAT(r.err, HasSubstr("reference  program-order"));
  EXPECT_THAT(r.err, HasSubstr("the lower bound: the most bytes reserved at one step"));
  EXPECT_THAT(r.err, HasSubstr("placement  " + out["planner"].get<std::string>() + " (asked: auto)"));
  const nlohmann::json decisions = nlohmann::json::parse(ReadAll(p))["decisions"];
  ASSERT_EQ(decisions.size(), 4u);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 4) << r.err;
  EXPECT_EQ(decisions[1]["budget_bytes"], out["lower_bound_bytes"]);
  EXPECT_EQ(decisions[2]["arena_bytes"], out["arena_bytes"]);
  EXPECT_FALSE(decisions[2].contains("seconds"));  // deterministic
  // Without --verbose, nothing on stderr.
  const auto quiet = RunCli("plan " + g + " --deterministic");
  ASSERT_EQ(quiet.exit_code, 0);
  EXPECT_TRUE(quiet.err.empty()) << quiet.err;
}

// `memfit dtr --sweep --report`: every heuristic over the ten budgets, drawn;
// the table printed is the heuristic asked for. --verbose: one line per
// budget of the sweep, and each decision of a single replay.
TEST(ReportCli, DtrSweepReportAndVerbose) {
  TempDir dir;
  const std::string g = MlpGraph(dir), html = dir.File("dtr.html");
  const auto plain = RunCli("dtr " + g + " --sweep --heuristic lru");
  auto r = RunCli("dtr " + g + " --sweep --heuristic lru --report " + html + " --verbose");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("wrote " + html));
  // The same table as without --report.
  EXPECT_EQ(r.out.substr(r.out.find('\n') + 1), plain.out);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 10) << r.err;
  EXPECT_THAT(r.err, HasSubstr("lru at 0.5 of the peak"));
  EXPECT_EQ(r.err.find('\r'), std::string::npos);  // not a terminal: no progress line
  const std::string page = ReadAll(html);
  EXPECT_THAT(page, ::testing::StartsWith("<!doctype html>"));
  const nlohmann::json data = nlohmann::json::parse(PageData(page));
  EXPECT_EQ(data["format"], "memfit.dtr-sweep");
  ASSERT_EQ(data["points"].size(), 70u);  // 7 heuristics x 10 budgets
  EXPECT_EQ(data["points"][0]["heuristic"], "lru");
  std::set<std::string> heuristics;
  for (const auto& p : data["points"]) {
    heuristics.insert(p["heuristic"].get<std::string>());
    if (p["status"] == "ok") {
      EXPECT_GE(p["overhead"].get<double>(), 1.0);
    } else {
      EXPECT_TRUE(p["overhead"].is_null());
    }
  }
  EXPECT_EQ(heuristics.size(), 7u);
  EXPECT_GT(data["unconstrained"]["peak_bytes"].get<int64_t>(), 0);
  // The ratio 1.0 run of the heuristic asked for matches its JSON.
  const nlohmann::json json = nlohmann::json::parse(RunCli("dtr " + g + " --sweep --heuristic lru --json").out);
  EXPECT_EQ(data["points"][9]["budget_bytes"], json[9]["budget_bytes"]);
  EXPECT_EQ(data["points"][9]["evictions"], json[9]["evictions"]);

  // At 0.9 of its peak a ViT's replay evicts and recomputes (52 evictions,
  // 19 recomputations with dtr, before it runs out of memory: the MLP's
  // weights and gradients, which DTR never evicts, leave it nothing).
  const std::string vit = ZooGraph(dir, "vit.json", "vit-tiny --batch 1 --image 32 --train");
  r = RunCli("dtr " + vit + " --budget-ratio 0.9 --verbose --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json one = nlohmann::json::parse(r.out);
  ASSERT_TRUE(one.contains("decisions"));
  EXPECT_EQ(static_cast<size_t>(std::count(r.err.begin(), r.err.end(), '\n')), one["decisions"].size());
  ASSERT_GT(one["evictions"].get<int64_t>(), 0);
  EXPECT_THAT(r.err, HasSubstr("the dtr heuristic's pick when memory ran short"));
  EXPECT_THAT(r.err, HasSubstr("read again after it was evicted"));

  ExpectOnlyUserError(RunCli("dtr " + g + " --budget-ratio 0.5 --report " + html), "--report draws a sweep");
  ExpectOnlyUserError(RunCli("dtr " + g + " --sweep --report " + dir.File("no/dir/d.html")), "cannot write");
}

// The page data of `memfit report` on a zoo graph (`zoo` args) after
// `memfit fission` (`fission` args); the unsplit graph's path in `g`.
nlohmann::json ReportOfSplit(TempDir& dir, const std::string& zoo, const std::string& fission, std::string& g) {
  g = ZooGraph(dir, "g.json", zoo + " --train");
  const std::string f = dir.File("f.json");
  const auto split = RunCli("fission " + g + " " + fission + " -o " + f);
  EXPECT_EQ(split.exit_code, 0) << split.err;
  const auto r = RunCli("report " + f + " -o " + dir.File("f.html"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(PageData(ReadAll(dir.File("f.html"))));
}

// A graph fissioned by hand: the summary lists the fission, a decision points
// at part 0 of its first op, and every part op is marked with its part.
TEST(ReportCli, FissionIsADecisionAndItsPartsAreMarked) {
  TempDir dir;
  std::string g;
  const nlohmann::json data = ReportOfSplit(dir, "mlp", "--dim batch --parts 4", g);
  ASSERT_EQ(data["summary"][0]["fissions"].size(), 1u);
  const std::string record = data["summary"][0]["fissions"][0];
  EXPECT_THAT(record, HasSubstr("x4"));
  // The zoo's step has no in-place activation to write out of place.
  ASSERT_TRUE(data["summary"][0]["rewrites"].is_array());
  EXPECT_TRUE(data["summary"][0]["rewrites"].empty());
  ASSERT_GE(data["decisions"]["kind"].size(), 1u);
  EXPECT_EQ(data["decisions"]["kind"][0], "fission");
  EXPECT_EQ(data["decisions"]["why"][0], "split: " + record);
  const size_t step = data["decisions"]["step"][0];
  const int64_t op = data["steps"]["ref"][step];
  EXPECT_EQ(data["steps"]["kind"][step], 0);  // a compute step
  EXPECT_EQ(data["ops"]["part"][op], 0);
  const std::string name = data["ops"]["name"][op];
  EXPECT_THAT(name, ::testing::EndsWith(".part0"));
  // Every part (0..3) appears; ops whose names do not end in .partK are -1.
  std::set<int> parts;
  for (size_t k = 0; k < data["ops"]["part"].size(); ++k) {
    const int part = data["ops"]["part"][k];
    const std::string op_name = data["ops"]["name"][k];
    if (part >= 0) {
      parts.insert(part);
      EXPECT_THAT(op_name, HasSubstr(".part" + std::to_string(part)));
    } else {
      EXPECT_EQ(op_name.find(".part"), std::string::npos) << op_name;
    }
  }
  EXPECT_EQ(parts, (std::set<int>{0, 1, 2, 3}));
  // The unsplit graph records no fission: no part is marked.
  ASSERT_EQ(RunCli("report " + g + " -o " + dir.File("g.html")).exit_code, 0);
  const nlohmann::json plain = nlohmann::json::parse(PageData(ReadAll(dir.File("g.html"))));
  EXPECT_TRUE(plain["summary"][0]["fissions"].empty());
  for (const auto& part : plain["ops"]["part"]) EXPECT_EQ(part, -1);
}

// Forward ops copied before a backward run, then split with it: the copies
// are a decision of their own, at the first step of the first copy.
TEST(ReportCli, RecomputedForwardIsADecisionAtItsFirstCopy) {
  TempDir dir;
  std::string g;
  const nlohmann::json data = ReportOfSplit(dir, "vgg-unet --batch 2 --image 32", "--dim batch --recompute --parts 2", g);
  ASSERT_EQ(data["summary"][0]["fissions"].size(), 2u);
  const std::string copies = data["summary"][0]["fissions"][0];
  EXPECT_THAT(copies, ::testing::StartsWith("recompute: 27 forward ops (block1_conv1.convolution .. "));
  ASSERT_GE(data["decisions"]["kind"].size(), 2u);
  EXPECT_EQ(data["decisions"]["kind"][0], "fission");
  EXPECT_EQ(data["decisions"]["why"][0], copies);
  const size_t step = data["decisions"]["step"][0];
  const int64_t op = data["steps"]["ref"][step];
  EXPECT_THAT(std::string(data["ops"]["name"][op]), ::testing::StartsWith("block1_conv1.convolution.recompute"));
}

TEST(ReportCli, BadInputIsOneLineAndExitTwo) {
  TempDir dir;
  const std::string g = ZooGraph(dir, "g.json", "mlp --train"), out = dir.File("r.html");
  ExpectOnlyUserError(RunCli("report " + g), "-o REPORT.html is required");
  ExpectOnlyUserError(RunCli("report " + dir.File("missing.json") + " -o " + out), "missing.json");
  ExpectOnlyUserError(RunCli("report " + dir.Write("bad.json", "{\"format\": ") + " -o " + out), "malformed JSON");
  ExpectOnlyUserError(RunCli("report " + g + " --device tpu9 -o " + out), "tpu9");
  ExpectOnlyUserError(RunCli("report " + g + " --trace " + dir.Write("t.json", "[{\"ratio\": 0.3}]") + " -o " + out),
                  "t.json: top level: expected the output of one");
  ExpectOnlyUserError(RunCli("report " + g + " --trace " + dir.Write("t2.json", "{\"method\": 3, \"limit_bytes\": 1}") +
                         " -o " + out),
                  "t2.json: method");
  ExpectOnlyUserError(RunCli("report " + g + " --mem-limit-ratio 0 -o " + out), "--mem-limit-ratio must be in (0, 1]");
  ExpectOnlyUserError(RunCli("report " + g + " --mem-limit-ratio 0.01 --deterministic -o " + out), "cannot be met");
  ExpectOnlyUserError(RunCli("report " + g + " --mem-limit-ratio 0.9 --trace " + g + " -o " + out), "drop --trace");
  ExpectOnlyUserError(RunCli("report " + g + " --compare " + dir.File("nope.json") + " -o " + out), "nope.json");
  ExpectOnlyUserError(RunCli("report " + g + " -o " + dir.File("no/such/dir/r.html")), "cannot write");
  const std::string empty = dir.Write("empty.json", R"({"format": "memfit.graph", "version": 1, "name": "e",
      "tensors": [{"id": 0, "name": "w", "shape": [4], "dtype": "f32", "role": "parameter"}], "ops": [], "outputs": []})");
  ExpectOnlyUserError(RunCli("report " + empty + " -o " + out), "empty.json: the graph has no ops");
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
}  // namespace memfit
