#include "util/json.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

#include "util/error.h"

namespace memfit {
namespace {

// Longest string or number shown in a message before it is cut.
constexpr size_t kMaxShownChars = 60;
// Arrays and objects up to this size whose elements are all scalars are
// shown as JSON text; larger or nested ones are described by their size.
constexpr size_t kMaxShownElements = 8;

// Line and column (1-based) of byte `offset` of `text`.
std::string Where(std::string_view text, size_t offset) {
  offset = std::min(offset, text.size());
  size_t line = 1, line_start = 0;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return fmt::format("line {}, column {}", line, offset - line_start + 1);
}

// The byte offset at which nesting first passes kMaxJsonDepth (brackets
// inside strings do not count), or the end of `text`.
size_t DeepestOffset(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return i;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return text.size();
}

std::string Cut(std::string s) {
  if (s.size() > kMaxShownChars) {
    // Do not split a UTF-8 sequence: back up to a lead byte.
    size_t n = kMaxShownChars;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
    s.resize(n);
    s += "...";
  }
  return s;
}

// nlohmann's messages start with a tag: "[json.exception.parse_error.101] ".
std::string WithoutTag(const std::string& what) {
  const size_t at = what.find("] ");
  return what.starts_with("[json.exception.") && at != std::string::npos ? what.substr(at + 2) : what;
}

// Builds the value with nlohmann's DOM builder; records the first error
// (with its position) instead of throwing, and stops at kMaxJsonDepth.
class CheckedSax {
 public:
  using Dom = nlohmann::detail::json_sax_dom_parser<JsonValue>;

  CheckedSax(JsonValue& root, std::string_view text) : dom_(root, /*allow_exceptions=*/false), text_(text) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(JsonValue::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(JsonValue::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(JsonValue::number_float_t v, const JsonValue::string_t& s) { return dom_.number_float(v, s); }
  bool string(JsonValue::string_t& v) { return dom_.string(v); }
  bool binary(JsonValue::binary_t& v) { return dom_.binary(v); }
  bool key(JsonValue::string_t& v) { return dom_.key(v); }
  bool start_object(std::size_t n) { return Enter() && dom_.start_object(n); }
  bool end_object() {
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) { return Enter() && dom_.start_array(n); }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  bool parse_error(std::size_t position, const std::string& last_token, const nlohmann::detail::exception& e) {
    if (dynamic_cast<const nlohmann::detail::out_of_range*>(&e)) {
      // The only range error of the text parser: a number beyond double.
      const size_t start = position >= last_token.size() ? position - last_token.size() : 0;
      error_ = fmt::format("number out of range at {}: {}", Where(text_, start), Cut(last_token));
    } else {
      error_ = WithoutTag(e.what());
    }
    return false;
  }

  const std::string& error() const { return error_; }

 private:
  bool Enter() {
    if (++depth_ <= kMaxJsonDepth) return true;
    error_ = fmt::format("nested deeper than {} levels at {}", kMaxJsonDepth, Where(text_, DeepestOffset(text_)));
    return false;
  }

  Dom dom_;
  std::string_view text_;
  int depth_ = 0;
  std::string error_;
};

}  // namespace

std::optional<JsonValue> TryParseJson(std::string_view text, std::string* error) {
  JsonValue root;
  CheckedSax sax(root, text);
  bool ok = false;
  try {
    ok = JsonValue::sax_parse(text.data(), text.data() + text.size(), &sax, JsonValue::input_format_t::json,
                              /*strict=*/true);
  } catch (const JsonValue::exception& e) {
    // Not expected (errors reach parse_error), but never let one escape.
    if (error) *error = WithoutTag(e.what());
    return std::nullopt;
  }
  if (!ok || !sax.error().empty()) {
    if (error) *error = sax.error().empty() ? "malformed" : sax.error();
    return std::nullopt;
  }
  return root;
}

JsonValue ParseJson(std::string_view text, std::string_view source) {
  std::string error;
  std::optional<JsonValue> value = TryParseJson(text, &error);
  if (!value) Fail("{}: malformed JSON: {}", source, error);
  return std::move(*value);
}

std::string DescribeJson(const JsonValue& value) {
  const auto dump = [](const JsonValue& v) { return v.dump(-1, ' ', false, JsonValue::error_handler_t::replace); };
  switch (value.type()) {
    case JsonValue::value_t::array:
    case JsonValue::value_t::object: {
      const bool flat = value.size() <= kMaxShownElements &&
                        std::none_of(value.begin(), value.end(), [](const JsonValue& e) { return e.is_structured(); });
      if (flat) {
        std::string text = dump(value);
        if (text.size() <= 2 * kMaxShownChars) return text;
      }
      return fmt::format("{} of {} {}", value.is_array() ? "an array" : "an object", value.size(),
                         value.is_array() ? "elements" : "fields");
    }
    case JsonValue::value_t::string: return Cut(dump(value));
    case JsonValue::value_t::binary: return "binary data";
    case JsonValue::value_t::discarded: return "nothing";
    default: return Cut(dump(value));
  }
}

std::optional<int64_t> JsonToInt64(const JsonValue& value) {
  if (value.is_number_unsigned()) {
    const uint64_t u = *value.get_ptr<const JsonValue::number_unsigned_t*>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (value.is_number_integer()) return *value.get_ptr<const JsonValue::number_integer_t*>();
  return std::nullopt;
}

std::optional<double> JsonToDouble(const JsonValue& value) {
  if (value.is_number_float()) return *value.get_ptr<const JsonValue::number_float_t*>();
  if (value.is_number_unsigned()) return static_cast<double>(*value.get_ptr<const JsonValue::number_unsigned_t*>());
  if (value.is_number_integer()) return static_cast<double>(*value.get_ptr<const JsonValue::number_integer_t*>());
  return std::nullopt;
}

const std::string* JsonToString(const JsonValue& value) { return value.get_ptr<const JsonValue::string_t*>(); }

// ---- JsonNode ------------------------------------------------------------------

bool JsonNode::IsNull() const { return value_->is_null(); }
bool JsonNode::IsBool() const { return value_->is_boolean(); }
bool JsonNode::IsNumber() const { return value_->is_number(); }
bool JsonNode::IsInteger() const { return value_->is_number_integer(); }
bool JsonNode::IsString() const { return value_->is_string(); }
bool JsonNode::IsArray() const { return value_->is_array(); }
bool JsonNode::IsObject() const { return value_->is_object(); }
std::string JsonNode::Describe() const { return DescribeJson(*value_); }

void JsonNode::Fail(std::string_view message) const {
  memfit::Fail("{}: {}: {}", *source_, path_.empty() ? "top level" : path_, message);
}

void JsonNode::Expect(bool ok, std::string_view what) const {
  if (!ok) Fail(fmt::format("expected {}, got {}", what, Describe()));
}

void JsonNode::ExpectFields(std::initializer_list<std::string_view> allowed) const {
  Expect(IsObject(), "an object");
  for (const auto& [key, unused] : value_->items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      Fail(fmt::format("unknown field {}", Quote(key)));
    }
  }
}

bool JsonNode::Has(std::string_view key) const {
  Expect(IsObject(), "an object");
  return value_->find(key) != value_->end();
}

std::optional<JsonNode> JsonNode::Find(std::string_view key) const {
  Expect(IsObject(), "an object");
  const auto it = value_->find(key);
  if (it == value_->end()) return std::nullopt;
  return JsonNode(*it, *source_, path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key));
}

JsonNode JsonNode::Get(std::string_view key) const {
  std::optional<JsonNode> field = Find(key);
  if (!field) Fail(fmt::format("missing field {}", Quote(key)));
  return *std::move(field);
}

std::vector<std::pair<std::string, JsonNode>> JsonNode::Fields() const {
  Expect(IsObject(), "an object");
  std::vector<std::pair<std::string, JsonNode>> fields;
  fields.reserve(value_->size());
  for (const auto& [key, value] : value_->items()) {
    fields.emplace_back(key, JsonNode(value, *source_, path_.empty() ? key : fmt::format("{}.{}", path_, key)));
  }
  return fields;
}

size_t JsonNode::Size() const {
  Expect(IsArray(), "an array");
  return value_->size();
}

JsonNode JsonNode::At(size_t index) const {
  Expect(IsArray(), "an array");
  if (index >= value_->size()) Fail(fmt::format("has no element {}", index));
  return JsonNode((*value_)[index], *source_, fmt::format("{}[{}]", path_, index));
}

std::vector<JsonNode> JsonNode::Elements() const {
  const size_t n = Size();
  std::vector<JsonNode> elements;
  elements.reserve(n);
  for (size_t i = 0; i < n; ++i) elements.push_back(JsonNode((*value_)[i], *source_, fmt::format("{}[{}]", path_, i)));
  return elements;
}

std::string JsonNode::String() const {
  const std::string* s = JsonToString(*value_);
  if (!s) Expect(false, "a string");
  return *s;
}

bool JsonNode::Bool() const {
  const bool* b = value_->get_ptr<const JsonValue::boolean_t*>();
  if (!b) Expect(false, "true or false");
  return *b;
}

int64_t JsonNode::Int() const {
  if (std::optional<int64_t> i = JsonToInt64(*value_)) return *i;
  if (value_->is_number_unsigned()) Fail(fmt::format("integer is too large: {}", Describe()));
  Expect(false, "an integer");
  return 0;
}

double JsonNode::Number() const {
  if (std::optional<double> d = JsonToDouble(*value_)) return *d;
  Expect(false, "a number");
  return 0;
}

std::vector<int64_t> JsonNode::Ints() const {
  const size_t n = Size();
  std::vector<int64_t> ints;
  ints.reserve(n);
  for (size_t i = 0; i < n; ++i) ints.push_back(At(i).Int());
  return ints;
}

}  // namespace memfit
