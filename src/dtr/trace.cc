#include "dtr/trace.h"

#include <charconv>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "util/enum_names.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace memfit::dtr {

constexpr EnumName<InstrKind> kInstrKindNames[] = {
    {InstrKind::kConstant, "CONSTANT"}, {InstrKind::kMemory, "MEMORY"}, {InstrKind::kAlias, "ALIAS"},
    {InstrKind::kCall, "CALL"}, {InstrKind::kMutate, "MUTATE"}, {InstrKind::kCopy, "COPY"},
    {InstrKind::kCopyFrom, "COPY_FROM"}, {InstrKind::kRelease, "RELEASE"}, {InstrKind::kAnnotate, "ANNOTATE"}};

std::string_view ToString(InstrKind kind) { return NameOf(kInstrKindNames, kind); }

namespace {

using Json = JsonValue;

class LineParser {
 public:
  LineParser(Trace& trace) : trace_(trace) {}

  void Parse(std::string_view text, uint32_t line) {
    line_ = line;
    kind_.clear();
    std::string why;
    const std::optional<Json> parsed = TryParseJson(text, &why);
    if (!parsed) Error("not valid JSON: {}", why);
    const Json& j = *parsed;
    if (!j.is_object()) Error("expected a JSON object");
    auto it = j.find("INSTRUCTION");
    if (it == j.end()) Error("missing field \"INSTRUCTION\"");
    const std::string* kind_ptr = JsonToString(*it);
    if (!kind_ptr) Error("field \"INSTRUCTION\" must be a string");
    const std::string& kind = *kind_ptr;
    kind_ = kind;

    Instr instr;
    instr.line = line;
    if (kind == "CONSTANT") {
      instr.kind = InstrKind::kConstant;
      instr.name = Name(j, "NAME");
    } else if (kind == "MEMORY") {
      instr.kind = InstrKind::kMemory;
      instr.name = Name(j, "NAME");
      instr.value = Integer(j, "MEMORY");
      if (instr.value < 0) Error("field \"MEMORY\" is negative ({})", instr.value);
      if (instr.value > kMaxTotalMemoryBytes - memory_total_) {
        Error("the MEMORY records add up to more than 2^62 bytes (sums of live bytes would overflow)");
      }
      memory_total_ += instr.value;
    } else if (kind == "ALIAS") {
      instr.kind = InstrKind::kAlias;
      instr.name = Name(j, "NAME");
      instr.value = Integer(j, "ALIAS");
      if (instr.value < -1) Error("field \"ALIAS\" must be -1 or an argument index, got {}", instr.value);
    } else if (kind == "CALL" || kind == "MUTATE") {
      // The same fields, but a MUTATE's results are the indices of the
      // arguments it overwrites.
      const bool call = kind == "CALL";
      instr.kind = call ? InstrKind::kCall : InstrKind::kMutate;
      instr.op_name = OpName(j);
      instr.args = Names(j, "ARGS");
      instr.results = call ? Names(j, "RESULT") : Indices(j, "MUTATE");
      instr.value = Time(j);
    } else if (kind == "COPY" || kind == "COPY_FROM") {
      instr.kind = kind == "COPY" ? InstrKind::kCopy : InstrKind::kCopyFrom;
      instr.name = Name(j, "DST");
      instr.src = Name(j, "SRC");
    } else if (kind == "RELEASE") {
      instr.kind = InstrKind::kRelease;
      instr.name = Name(j, "NAME");
    } else if (kind == "ANNOTATE") {
      instr.kind = InstrKind::kAnnotate;
      const std::string* a = JsonToString(Field(j, "ANNOTATION"));
      if (!a) Error("field \"ANNOTATION\" must be a string");
      const std::string& s = *a;
      if (s == "START") {
        instr.annotation = Annotation::kStart;
      } else if (s == "BACKWARD") {
        instr.annotation = Annotation::kBackward;
      } else {
        Error("unknown annotation {} (expected START or BACKWARD)", DescribeJson(JsonValue(s)));
      }
    } else {
      kind_.clear();
      Error("unknown instruction {}", DescribeJson(*it));
    }
    trace_.instrs.push_back(instr);
  }

 private:
  template <typename... Args>
  [[noreturn]] void Error(fmt::format_string<Args...> format, Args&&... args) {
    std::string what = fmt::format(format, std::forward<Args>(args)...);
    if (kind_.empty()) Fail("{}:{}: {}", trace_.path, line_, what);
    Fail("{}:{}: {}: {}", trace_.path, line_, kind_, what);
  }

  const Json& Field(const Json& j, const char* field) {
    auto it = j.find(field);
    if (it == j.end()) Error("missing field \"{}\"", field);
    return *it;
  }

  NameId Intern(const std::string& name) {
    auto [it, inserted] = ids_.try_emplace(name, static_cast<uint32_t>(trace_.names.size()));
    if (inserted) trace_.names.push_back(name);
    return NameId(it->second);
  }

  NameId Name(const Json& j, const char* field) {
    const std::string* name = JsonToString(Field(j, field));
    if (!name) Error("field \"{}\" must be a string", field);
    return Intern(*name);
  }

  uint32_t OpName(const Json& j) {
    const std::string* name = JsonToString(Field(j, "NAME"));
    if (!name) Error("field \"NAME\" must be a string");
    const std::string& s = *name;
    auto [it, inserted] = op_ids_.try_emplace(s, static_cast<uint32_t>(trace_.op_names.size()));
    if (inserted) trace_.op_names.push_back(s);
    return it->second;
  }

  // A JSON integer, or a string holding a decimal integer.
  int64_t ToInteger(const Json& v, const char* field) {
    if (const std::optional<int64_t> i = JsonToInt64(v)) return *i;
    if (const std::string* s = JsonToString(v)) {
      int64_t out = 0;
      auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), out);
      if (ec == std::errc() && end == s->data() + s->size() && !s->empty()) return out;
      if (ec == std::errc::result_out_of_range) Error("field \"{}\" is out of range: {}", field, DescribeJson(v));
      Error("field \"{}\" must be an integer, got {}", field, DescribeJson(v));
    }
    if (v.is_number_integer()) Error("field \"{}\" is out of range: {}", field, DescribeJson(v));
    Error("field \"{}\" must be an integer, got {}", field, DescribeJson(v));
  }

  int64_t Integer(const Json& j, const char* field) { return ToInteger(Field(j, field), field); }

  int64_t Time(const Json& j) {
    int64_t t = Integer(j, "TIME");
    if (t < 0) Error("field \"TIME\" is negative ({})", t);
    if (t > kMaxTotalTimeNs - time_total_) Error("the TIME fields add up to more than 10^18 ns (31.7 years)");
    time_total_ += t;
    return t;
  }

  // The array in `field` ("an array of <what>"), each element appended to
  // trace_.lists as `item` converts it.
  template <typename Item>
  ListRef List(const Json& j, const char* field, const char* what, Item item) {
    const Json& v = Field(j, field);
    if (!v.is_array()) Error("field \"{}\" must be an array of {}", field, what);
    ListRef ref{static_cast<uint32_t>(trace_.lists.size()), static_cast<uint32_t>(v.size())};
    for (const Json& e : v) trace_.lists.push_back(item(e));
    return ref;
  }

  ListRef Names(const Json& j, const char* field) {
    return List(j, field, "names", [&](const Json& e) {
      const std::string* name = JsonToString(e);
      if (!name) Error("field \"{}\" must be an array of names", field);
      return Intern(*name).value;
    });
  }

  ListRef Indices(const Json& j, const char* field) {
    return List(j, field, "argument indices", [&](const Json& e) {
      int64_t index = ToInteger(e, field);
      if (index < 0) Error("field \"{}\" holds a negative index ({})", field, index);
      if (index > UINT32_MAX) Error("field \"{}\" holds an index out of range ({})", field, index);
      return static_cast<uint32_t>(index);
    });
  }

  // Bounds on the sums the replay computes (live bytes, compute time), so
  // that they never overflow int64.
  static constexpr int64_t kMaxTotalMemoryBytes = int64_t{1} << 62;
  static constexpr int64_t kMaxTotalTimeNs = 1'000'000'000'000'000'000;

  Trace& trace_;
  uint32_t line_ = 0;
  int64_t memory_total_ = 0;
  int64_t time_total_ = 0;
  std::string kind_;
  std::unordered_map<std::string, uint32_t> ids_;
  std::unordered_map<std::string, uint32_t> op_ids_;
};

bool IsBlank(std::string_view s) {
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\r') return false;
  }
  return true;
}

}  // namespace

Trace ParseTrace(std::string_view text, const std::string& path) {
  Trace trace;
  trace.path = path;
  LineParser parser(trace);
  uint32_t line = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    ++line;
    std::string_view content = text.substr(pos, end - pos);
    if (!IsBlank(content)) parser.Parse(content, line);
    pos = end + 1;
  }
  return trace;
}

Trace ReadTrace(const std::string& path) { return ParseTrace(ReadFile(path), path); }

}  // namespace memfit::dtr
