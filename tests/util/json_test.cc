// The checked JSON layer: parse errors without nlohmann's tags, numbers out
// of range, nesting bounded at parse time, typed access that names the path.
#include "util/json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "util/error.h"
#include "test_util.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string ParseError(const std::string& text) {
  return testing::ErrorOf([&] { ParseJson(text, "f.json"); });
}

TEST(ParseJson, MalformedTextNamesFileAndPositionWithoutTags) {
  const std::string e = ParseError("{\"a\": \n  [1, }");
  EXPECT_THAT(e, HasSubstr("f.json: malformed JSON: parse error at line 2, column"));
  EXPECT_THAT(e, Not(HasSubstr("json.exception")));
  EXPECT_THAT(ParseError(""), HasSubstr("f.json: malformed JSON"));
  EXPECT_THAT(ParseError("{} x"), HasSubstr("f.json: malformed JSON"));
  EXPECT_THAT(ParseError("[NaN]"), HasSubstr("f.json: malformed JSON"));
}

TEST(ParseJson, NumbersBeyondDoubleAreErrorsNotAborts) {
  // nlohmann throws out_of_range.406 for these, which the loaders did not catch.
  EXPECT_EQ(ParseError("[1, 1e309]"), "f.json: malformed JSON: number out of range at line 1, column 5: 1e309");
  EXPECT_THAT(ParseError("[-1e309]"), HasSubstr("number out of range at line 1, column 2"));
  const std::string digits(400, '9');
  const std::string e = ParseError("{\"size\": " + digits + "}");
  EXPECT_THAT(e, HasSubstr("f.json: malformed JSON: number out of range at line 1, column 10: 9999"));
  EXPECT_LT(e.size(), 200u);  // the 400 digits are cut short
  // Large but representable numbers parse: 2^64 - 1 as unsigned, 1e308 as double.
  EXPECT_NO_THROW(ParseJson("[18446744073709551615, 1e308, 1e-400]", "f.json"));
}

TEST(ParseJson, NestingIsBoundedAtParseTime) {
  const auto nested = [](int depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  EXPECT_NO_THROW(ParseJson(nested(kMaxJsonDepth), "f.json"));
  EXPECT_EQ(ParseError(nested(kMaxJsonDepth + 1)), "f.json: malformed JSON: nested deeper than 512 levels at line 1, column 513");
  // 100k levels: no stack overflow, in parsing, describing or destroying.
  EXPECT_THAT(ParseError(nested(100000)), HasSubstr("nested deeper than 512 levels"));
  std::string objects;
  for (int i = 0; i < 100000; ++i) objects += "{\"a\":";
  objects += "1" + std::string(100000, '}');
  EXPECT_THAT(ParseError(objects), HasSubstr("nested deeper than 512 levels"));
  // Brackets inside strings do not count.
  EXPECT_NO_THROW(ParseJson("[\"" + std::string(1000, '[') + "\"]", "f.json"));
  EXPECT_FALSE(TryParseJson(nested(1000)).has_value());
}

TEST(JsonNode, TypedAccessNamesFileAndPath) {
  const std::string source = "f.json";
  const JsonValue v = ParseJson(R"({"ops": [{"inputs": [1, 2.5], "name": 7, "big": 9223372036854775808,
                                             "neg": -9223372036854775808, "flag": "yes"}]})",
                                source);
  const JsonNode root(v, source);
  const JsonNode op = root.Get("ops").At(0);
  EXPECT_THAT([&] { op.Get("inputs").Ints(); }, ::testing::ThrowsMessage<Error>(
                                                    "f.json: ops[0].inputs[1]: expected an integer, got 2.5"));
  EXPECT_THAT([&] { op.Get("name").String(); },
              ::testing::ThrowsMessage<Error>("f.json: ops[0].name: expected a string, got 7"));
  EXPECT_THAT([&] { op.Get("big").Int(); },
              ::testing::ThrowsMessage<Error>(HasSubstr("f.json: ops[0].big: integer is too large")));
  EXPECT_EQ(op.Get("neg").Int(), INT64_MIN);
  EXPECT_THAT([&] { op.Get("flag").Bool(); },
              ::testing::ThrowsMessage<Error>("f.json: ops[0].flag: expected true or false, got \"yes\""));
  EXPECT_THAT([&] { op.Get("missing"); },
              ::testing::ThrowsMessage<Error>("f.json: ops[0]: missing field 'missing'"));
  EXPECT_THAT([&] { op.ExpectFields({"inputs", "name"}); },
              ::testing::ThrowsMessage<Error>("f.json: ops[0]: unknown field 'big'"));
  EXPECT_THAT([&] { root.Get("ops").Get("x"); },
              ::testing::ThrowsMessage<Error>("f.json: ops: expected an object, got an array of 1 elements"));
  EXPECT_THAT([&] { op.Get("inputs").At(5); }, ::testing::ThrowsMessage<Error>("f.json: ops[0].inputs: has no element 5"));
  EXPECT_EQ(root.Get("ops").Size(), 1u);
  EXPECT_THAT([&] { JsonNode(v, source).Number(); },
              ::testing::ThrowsMessage<Error>("f.json: top level: expected a number, got an object of 1 fields"));
  EXPECT_FALSE(root.Find("nothing").has_value());
}

TEST(DescribeJson, OneBoundedLine) {
  EXPECT_EQ(DescribeJson(JsonValue("a\nb")), "\"a\\nb\"");
  EXPECT_EQ(DescribeJson(JsonValue::array({1, 2})), "[1,2]");
  EXPECT_EQ(DescribeJson(JsonValue::parse("[[1]]")), "an array of 1 elements");
  const std::string long_string = DescribeJson(JsonValue(std::string(1000, 'x')));
  EXPECT_LT(long_string.size(), 100u);
  EXPECT_THAT(long_string, HasSubstr("..."));
  // A string with invalid UTF-8 (not from a parsed file) is described, not thrown.
  EXPECT_NO_THROW(DescribeJson(JsonValue(std::string("\xff"))));
}

TEST(Quote, KeepsUserStringsOnOneLine) {
  EXPECT_EQ(Quote("relu"), "'relu'");
  EXPECT_EQ(Quote("a\nb'c\\"), "'a\\nb\\'c\\\\'");
  EXPECT_EQ(Quote(std::string("\x01", 1)), "'\\x01'");
  EXPECT_EQ(Quote(std::string(300, 'y')), "'" + std::string(200, 'y') + "...'");
  // Whatever a message holds, an Error is one line.
  const Error e("op 'a\nb' failed\r\n");
  EXPECT_STREQ(e.what(), "op 'a\\nb' failed\\r\\n");
}

}  // namespace
}  // namespace memfit
