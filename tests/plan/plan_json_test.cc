// PLAN.json reading: every field is type-checked and every error is one line
// naming the file and the JSON path (no nlohmann exception escapes).
#include "plan/plan_json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "ir/builder.h"
#include "plan/placement.h"
#include "plan/steps.h"
#include "util/error.h"
#include "test_util.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

// x -> relu -> relu, placed in program order: a valid version 2 plan.
std::string ValidPlan() {
  GraphBuilder b("chain");
  const TensorId x = b.Input("x", {16});
  b.MarkOutput(b.Call("aten.relu", {b.Call("aten.relu", {x})}));
  Plan file;
  file.graph = b.Finish();
  file.steps = ProgramOrderSteps(file.graph);
  file.placement = PlaceSteps(file.graph, file.steps);
  file.simulated = SimulatedFigures{"a100", 0.01, 192};
  return PlanToJson(file);
}

// The valid plan with `mutate` applied; "@RAW@" in a string value is then
// replaced by `raw` text (numbers and nesting json cannot hold).
std::string Mutated(const std::function<void(json&)>& mutate, const std::string& raw = "") {
  json j = json::parse(ValidPlan());
  mutate(j);
  std::string text = j.dump();
  if (const size_t at = text.find("\"@RAW@\""); at != std::string::npos) text.replace(at, 7, raw);
  return text;
}

std::string LoadError(const std::string& text) {
  return testing::ErrorOf([&] { PlanFromJson(text, "p.json"); });
}

TEST(PlanJson, ValidPlanLoads) { EXPECT_NO_THROW(PlanFromJson(ValidPlan(), "p.json")); }

TEST(PlanJson, WrongTypesAreErrorsNamingFileAndPath) {
  // These escaped as nlohmann type_error.302 out of PlanFromJson / ParseSteps.
  EXPECT_EQ(LoadError(Mutated([](json& j) { j["proven_optimal"] = "yes"; })),
            "p.json: proven_optimal: expected true or false, got \"yes\"");
  EXPECT_EQ(LoadError(Mutated([](json& j) { j["planner"] = 5; })), "p.json: planner: expected a string, got 5");
  EXPECT_EQ(LoadError(Mutated([](json& j) { j["simulated"] = 3; })),
            "p.json: simulated: expected an object, got 3");
  EXPECT_EQ(LoadError(Mutated([](json& j) { j["simulated"]["latency_ms"] = "fast"; })),
            "p.json: simulated.latency_ms: expected a number, got \"fast\"");
  EXPECT_EQ(LoadError(Mutated([](json& j) { j["simulated"]["peak_bytes"] = 1.5; })),
            "p.json: simulated.peak_bytes: expected an integer, got 1.5");
  EXPECT_EQ(LoadError(Mutated([](json& j) { j["simulated"]["device"] = json::array(); })),
            "p.json: simulated.device: expected a string, got []");
  EXPECT_EQ(LoadError(Mutated([](json& j) { j["format"] = 7; })), "p.json: format: expected \"memfit.plan\"");
  EXPECT_EQ(LoadError(Mutated([](json& j) { j["version"] = "2"; })), "p.json: version: expected an integer, got \"2\"");
  EXPECT_EQ(LoadError(Mutated([](json& j) { j["steps"][0]["kind"] = json::array({1}); })),
            "p.json: steps[0].kind: unknown step kind [1]");
  EXPECT_EQ(LoadError(Mutated([](json& j) { j["buffers"][0]["offset"] = 18446744073709551615ull; })),
            "p.json: buffers[0].offset: integer is too large: 18446744073709551615");
  EXPECT_EQ(LoadError(Mutated([](json& j) { j["buffers"][0]["colour"] = 1; })),
            "p.json: buffers[0]: unknown field 'colour'");
  EXPECT_EQ(LoadError(Mutated([](json& j) { j["alignment"] = nullptr; })),
            "p.json: alignment: expected an integer, got null");
  EXPECT_EQ(LoadError("[1]"), "p.json: top level: expected an object, got [1]");
}

TEST(PlanJson, TheEmbeddedGraphIsReadInPlace) {
  // Errors inside the graph name the plan file and the path below "graph".
  EXPECT_EQ(LoadError(Mutated([](json& j) { j["graph"]["tensors"][0]["dtype"] = "f128"; })),
            "p.json: graph.tensors[0].dtype: unknown dtype 'f128'");
  EXPECT_THAT(LoadError(Mutated([](json& j) { j["graph"]["ops"][1]["name"] = j["graph"]["ops"][0]["name"]; })),
              HasSubstr("p.json: graph: op name 'relu' is used twice"));
}

TEST(PlanJson, OutOfRangeNumbersAndDeepNestingAreErrors) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  // The version field and the graph field were dumped into error messages
  // (and the graph re-dumped to be parsed again): a stack overflow.
  for (const char* field : {"version", "graph", "planner"}) {
    const std::string e = LoadError(Mutated([&](json& j) { j[field] = "@RAW@"; }, deep));
    EXPECT_THAT(e, HasSubstr("p.json: malformed JSON: nested deeper than 512 levels")) << field;
  }
  EXPECT_THAT(LoadError(Mutated([](json& j) { j["buffers"][0]["size"] = "@RAW@"; }, "1e309")),
              HasSubstr("p.json: malformed JSON: number out of range at line 1"));
  EXPECT_THAT(LoadError(Mutated([](json& j) { j["steps"][0]["start_us"] = "@RAW@"; }, std::string(400, '7'))),
              HasSubstr("p.json: malformed JSON: number out of range"));
  EXPECT_THAT(LoadError(ValidPlan().substr(0, 100)), HasSubstr("p.json: malformed JSON: parse error"));
  EXPECT_THAT(LoadError(ValidPlan().substr(0, 100)), Not(HasSubstr("json.exception")));
}

TEST(PlanJson, LooksLikePlanFindsTheFormatAnywhere) {
  EXPECT_TRUE(LooksLikePlan(ValidPlan()));
  // A hand-edited plan with its format after the graph.
  json j = json::parse(ValidPlan());
  json moved = json::object();
  moved["graph"] = j["graph"];
  moved["z"] = 1;
  std::string text = moved.dump();
  text.replace(text.find("\"z\":1"), 5, "\"format\" :\n \"memfit.plan\"");
  EXPECT_TRUE(LooksLikePlan(text));
  EXPECT_FALSE(LooksLikePlan(j["graph"].dump()));
}

}  // namespace
}  // namespace memfit
