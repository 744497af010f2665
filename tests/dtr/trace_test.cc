// Parsing and lowering of DTR logs: the happy path and malformed logs, each
// error naming file:line and the field or tensor at fault.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "dtr/program.h"
#include "dtr/trace.h"
#include "trace_builder.h"
#include "util/error.h"

namespace memfit::dtr {
namespace {

using ::testing::HasSubstr;
using testing::TraceBuilder;

std::string LoadError(const std::string& text) {
  try {
    LowerTrace(ParseTrace(text, "bad.log"));
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(TraceTest, ParsesAndLowersEveryInstruction) {
  TraceBuilder b;
  b.Line(R"({"INSTRUCTION":"CONSTANT","NAME":"ignored_before_start"})")  // skipped: before START
      .Start()
      .Const("w", 16)
      .Copy("w2", "w")
      .Release("w")
      .Call("view", {"w2"}, {{"v", 16, 0}}, 5)  // a view of w2: owns no bytes
      .Call("mm", {"v", "w2"}, {{"y", 64}, {"z", 32}}, 100)
      .Mutate("relu_", {"y"}, {0}, 7)
      .Line(R"({"INSTRUCTION":"COPY_FROM","DST":"z","SRC":"y"})")
      .Line(R"({"INSTRUCTION":"ANNOTATE","ANNOTATION":"BACKWARD"})")
      .Release("v");
  Program p = b.Build();
  // Ops: constant w, view, mm, relu_.
  ASSERT_EQ(p.ops.size(), 4u);
  EXPECT_EQ(p.op_names[p.ops[2].name], "mm");
  EXPECT_EQ(p.ops[2].total_bytes, 96);
  EXPECT_EQ(p.ops[3].total_bytes, 64);  // the mutated copy of y
  EXPECT_EQ(p.total_compute_ns, 112);
  // Tensors: w, v (view of w: same storage), y, z, y$ (mutated y).
  ASSERT_EQ(p.tensors.size(), 5u);
  EXPECT_EQ(p.tensors[1].storage, p.tensors[0].storage);
  EXPECT_EQ(p.tensors[1].size_bytes, 0);
  EXPECT_EQ(p.storage_bytes.size(), 4u);
  // Steps: Compute w, Pin w, Get w (COPY), Release w, Compute view, Compute mm,
  // Compute relu_, Release y (old binding), Release z, Get y$ (COPY_FROM),
  // Release v, then the outputs, once per live name: w and w2 (t0), y and z (y$).
  std::vector<std::pair<StepKind, uint32_t>> steps;
  for (const Step& s : p.steps) steps.push_back({s.kind, s.id});
  std::vector<std::pair<StepKind, uint32_t>> expected = {
      {StepKind::kCompute, 0}, {StepKind::kPin, 0},     {StepKind::kGet, 0},     {StepKind::kRelease, 0},
      {StepKind::kCompute, 1}, {StepKind::kCompute, 2}, {StepKind::kCompute, 3}, {StepKind::kRelease, 2},
      {StepKind::kRelease, 3}, {StepKind::kGet, 4},     {StepKind::kRelease, 1}, {StepKind::kPin, 0},
      {StepKind::kPin, 0},     {StepKind::kPin, 4},     {StepKind::kPin, 4}};
  EXPECT_EQ(steps, expected);
}

TEST(TraceTest, AcceptsNumbersAsJsonNumbers) {
  Program p = TraceBuilder()
                  .Line(R"({"INSTRUCTION":"CONSTANT","NAME":"w"})")
                  .Line(R"({"INSTRUCTION":"MEMORY","NAME":"w","MEMORY":8})")
                  .Build();
  EXPECT_EQ(p.storage_bytes.at(0), 8);
}

TEST(TraceErrorTest, BadJson) {
  EXPECT_THAT(LoadError("{\"INSTRUCTION\":\"CONSTANT\",\n"), HasSubstr("bad.log:1: not valid JSON"));
}

TEST(TraceErrorTest, UnknownInstruction) {
  EXPECT_THAT(LoadError(TraceBuilder().Start().Line(R"({"INSTRUCTION":"FROB"})").text()),
              HasSubstr("bad.log:2: unknown instruction \"FROB\""));
}

TEST(TraceErrorTest, MissingField) {
  EXPECT_THAT(LoadError(R"({"INSTRUCTION":"CALL","NAME":"f","ARGS":[],"TIME":"1"})"),
              HasSubstr("bad.log:1: CALL: missing field \"RESULT\""));
  EXPECT_THAT(LoadError(R"({"NAME":"x"})"), HasSubstr("bad.log:1: missing field \"INSTRUCTION\""));
}

TEST(TraceErrorTest, MistypedField) {
  EXPECT_THAT(LoadError(R"({"INSTRUCTION":"CALL","NAME":"f","ARGS":[],"RESULT":[],"TIME":"12ms"})"),
              HasSubstr("bad.log:1: CALL: field \"TIME\" must be an integer, got \"12ms\""));
}

TEST(TraceErrorTest, NegativeMemory) {
  std::string text = R"({"INSTRUCTION":"CONSTANT","NAME":"w"})"
                     "\n"
                     R"({"INSTRUCTION":"MEMORY","NAME":"w","MEMORY":"-4"})";
  EXPECT_THAT(LoadError(text), HasSubstr("bad.log:2: MEMORY: field \"MEMORY\" is negative (-4)"));
}

TEST(TraceErrorTest, UndefinedArgument) {
  EXPECT_THAT(LoadError(TraceBuilder().Const("w", 4).Op("y", {"w", "ghost"}, 4, 1).text()),
              HasSubstr("bad.log:3: CALL: argument 'ghost' is not a defined tensor"));
}

TEST(TraceErrorTest, UndefinedRelease) {
  EXPECT_THAT(LoadError(TraceBuilder().Release("nobody").text()),
              HasSubstr("bad.log:1: RELEASE: 'nobody' is not a defined tensor"));
}

TEST(TraceErrorTest, MissingMemoryAfterCall) {
  std::string text = TraceBuilder()
                         .Const("w", 4)
                         .Line(R"({"INSTRUCTION":"CALL","NAME":"f","ARGS":["w"],"RESULT":["y"],"TIME":"1"})")
                         .Release("w")
                         .text();
  EXPECT_THAT(LoadError(text), HasSubstr("bad.log:4: expected MEMORY for 'y' (result of line 3), found RELEASE"));
}

TEST(TraceErrorTest, AliasIndexOutOfRange) {
  EXPECT_THAT(LoadError(TraceBuilder().Const("w", 4).Call("view", {"w"}, {{"v", 4, 1}}, 1).text()),
              HasSubstr("bad.log:5: ALIAS: 'v' aliases argument 1 but the call at line 3 has 1 argument(s)"));
}

TEST(TraceErrorTest, Redefinition) {
  EXPECT_THAT(LoadError(TraceBuilder().Const("w", 4).Op("w", {}, 4, 1).text()),
              HasSubstr("bad.log:3: CALL: result 'w' is already defined"));
  EXPECT_THAT(LoadError(TraceBuilder().Const("w", 4).Const("x", 4).Copy("x", "w").text()),
              HasSubstr("bad.log:5: COPY: DST 'x' is already defined"));
}

TEST(TraceErrorTest, ReleaseWithoutReferences) {
  EXPECT_THAT(LoadError(TraceBuilder().Const("w", 4).Release("w").Release("w").text()),
              HasSubstr("bad.log:4: RELEASE: tensor 'w' has no references left"));
}

TEST(TraceErrorTest, MutateIndexOutOfRange) {
  EXPECT_THAT(LoadError(TraceBuilder().Const("w", 4).Mutate("add_", {"w"}, {2}, 1).text()),
              HasSubstr("bad.log:3: MUTATE: MUTATE index 2 is out of range (1 argument(s))"));
}

TEST(TraceErrorTest, StrayMemoryLine) {
  EXPECT_THAT(LoadError(R"({"INSTRUCTION":"MEMORY","NAME":"w","MEMORY":"4"})"),
              HasSubstr("bad.log:1: MEMORY: 'w' does not follow a CONSTANT or CALL that defines it"));
}

TEST(TraceErrorTest, UnknownAnnotation) {
  EXPECT_THAT(LoadError(R"({"INSTRUCTION":"ANNOTATE","ANNOTATION":"LUNCH"})"),
              HasSubstr("bad.log:1: ANNOTATE: unknown annotation \"LUNCH\""));
}

TEST(TraceErrorTest, MissingFileNamesPath) {
  try {
    ReadTrace("/nonexistent/trace.log");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/trace.log"));
  }
}

}  // namespace
}  // namespace memfit::dtr

namespace memfit::dtr {
namespace {

// Each value fits int64, their sums would not: the replay's live bytes and
// compute time overflowed (a peak of 2^62 for three 2^62-byte storages,
// compute -2 ns).
TEST(TraceErrorTest, TotalsThatWouldOverflowAreErrors) {
  std::string memory;
  for (const char* name : {"a", "b"}) {
    memory += fmt::format("{{\"INSTRUCTION\":\"CONSTANT\",\"NAME\":\"{}\"}}\n", name);
    memory += fmt::format("{{\"INSTRUCTION\":\"MEMORY\",\"NAME\":\"{}\",\"MEMORY\":\"4611686018427387904\"}}\n", name);
  }
  EXPECT_THAT(LoadError(memory), HasSubstr("bad.log:4: MEMORY: the MEMORY records add up to more than 2^62 bytes"));
  const std::string time =
      R"({"INSTRUCTION":"CALL","NAME":"f","ARGS":[],"RESULT":["x"],"TIME":"9223372036854775807"})";
  EXPECT_THAT(LoadError(time), HasSubstr("bad.log:1: CALL: the TIME fields add up to more than 10^18 ns"));
}

}  // namespace
}  // namespace memfit::dtr
