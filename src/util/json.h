// Checked reading of the JSON files users give memfit: the one place that
// calls nlohmann's parser and its throwing accessors.
//
// ParseJson() turns every failure into one memfit::Error line that names the
// file, without nlohmann's "[json.exception.parse_error.101]" tags:
//
//   g.json: malformed JSON: syntax error at line 3, column 4: ...
//   g.json: malformed JSON: number out of range at line 1, column 9 (1e309)
//   g.json: malformed JSON: nested deeper than 512 levels at line 1, column 513
//
// so that no value memfit holds is deeper than kMaxJsonDepth and nothing
// downstream can recurse deeply over it.
//
// JsonNode reads a parsed value. Every accessor checks the type (and, for
// integers, the int64 range) and names the JSON path at fault:
//
//   g.json: ops[3].inputs[1]: expected an integer, got 2.5
//   g.json: tensors[0]: unknown field 'colour'
//
// A node refers to its value and its source string; both must outlive it.
// Values in messages are described by DescribeJson (one line, bounded length,
// never a recursive dump of a large value).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace memfit {

using JsonValue = nlohmann::json;

// Deeper nesting is rejected at parse time. memfit's formats nest at most a
// handful of levels; 512 is far below what recursion over a value can take.
inline constexpr int kMaxJsonDepth = 512;

// Parses a whole JSON text; `source` names it in the error.
JsonValue ParseJson(std::string_view text, std::string_view source);

// Parses a whole JSON text; on failure returns nullopt and sets `*error` (if
// given) to the reason without a source ("syntax error at line 1, ...").
std::optional<JsonValue> TryParseJson(std::string_view text, std::string* error = nullptr);

// A value on one line for messages: a scalar as JSON text (a long string
// cut short), a small flat array or object as JSON text, any other as
// "an array of N elements" / "an object of N fields".
std::string DescribeJson(const JsonValue& value);

// Checked conversions, for readers with their own message format (the DTR
// trace). Each returns nullopt (nullptr) on a wrong type.
std::optional<int64_t> JsonToInt64(const JsonValue& value);  // an integer within int64
std::optional<double> JsonToDouble(const JsonValue& value);  // any number
const std::string* JsonToString(const JsonValue& value);

class JsonNode {
 public:
  // The root of a document read from `source` (which must outlive the node).
  JsonNode(const JsonValue& value, const std::string& source) : value_(&value), source_(&source) {}

  const JsonValue& value() const { return *value_; }
  const std::string& path() const { return path_; }
  const std::string& source() const { return *source_; }

  // "<source>: <path>: <message>" ("top level" for the root).
  [[noreturn]] void Fail(std::string_view message) const;
  // DescribeJson of this value.
  std::string Describe() const;

  bool IsNull() const;
  bool IsBool() const;
  bool IsNumber() const;
  bool IsInteger() const;  // a JSON number without fraction or exponent
  bool IsString() const;
  bool IsArray() const;
  bool IsObject() const;

  // --- Objects (each fails unless this is an object) ---
  // Fails on any field not in `allowed`: "unknown field 'x'".
  void ExpectFields(std::initializer_list<std::string_view> allowed) const;
  bool Has(std::string_view key) const;
  // The field `key`; fails with "missing field 'key'" when absent.
  JsonNode Get(std::string_view key) const;
  // The field `key`, or nullopt when absent.
  std::optional<JsonNode> Find(std::string_view key) const;
  // Every field, in key order.
  std::vector<std::pair<std::string, JsonNode>> Fields() const;

  // --- Arrays (each fails unless this is an array) ---
  size_t Size() const;
  JsonNode At(size_t index) const;
  std::vector<JsonNode> Elements() const;

  // --- Scalars ---
  std::string String() const;
  bool Bool() const;
  // An integer within int64 ("expected an integer, got 2.5"; "integer is too
  // large" beyond int64).
  int64_t Int() const;
  // Any JSON number, as a double (always finite: ParseJson rejects overflow).
  double Number() const;
  // An array of integers.
  std::vector<int64_t> Ints() const;

 private:
  JsonNode(const JsonValue& value, const std::string& source, std::string path)
      : value_(&value), source_(&source), path_(std::move(path)) {}
  void Expect(bool ok, std::string_view what) const;

  const JsonValue* value_;
  const std::string* source_;
  std::string path_;
};

}  // namespace memfit
