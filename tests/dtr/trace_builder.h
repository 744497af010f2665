// A tiny DSL that writes DTR logs for tests.
#pragma once

#include <fmt/format.h>

#include <string>
#include <vector>

#include "dtr/program.h"

namespace memfit::dtr::testing {

struct Out {
  std::string name;
  long bytes = 0;
  int alias = -1;  // -1: own storage; k: view of argument k
};

class TraceBuilder {
 public:
  TraceBuilder& Start() { return Line(R"({"INSTRUCTION":"ANNOTATE","ANNOTATION":"START"})"); }
  TraceBuilder& Const(const std::string& name, long bytes) {
    Line(fmt::format(R"({{"INSTRUCTION":"CONSTANT","NAME":"{}"}})", name));
    return Line(fmt::format(R"({{"INSTRUCTION":"MEMORY","NAME":"{}","MEMORY":"{}"}})", name, bytes));
  }
  TraceBuilder& Call(const std::string& op, const std::vector<std::string>& args,
                     const std::vector<Out>& outs, long time_ns) {
    std::vector<std::string> results;
    for (const Out& o : outs) results.push_back(Quote(o.name));
    Line(fmt::format(R"({{"INSTRUCTION":"CALL","NAME":"{}","ARGS":[{}],"RESULT":[{}],"TIME":"{}"}})", op,
                     Join(args), fmt::join(results, ","), time_ns));
    for (const Out& o : outs) {
      Line(fmt::format(R"({{"INSTRUCTION":"MEMORY","NAME":"{}","MEMORY":"{}"}})", o.name, o.bytes));
      Line(fmt::format(R"({{"INSTRUCTION":"ALIAS","NAME":"{}","ALIAS":"{}"}})", o.name, o.alias));
    }
    return *this;
  }
  // Shorthand: one output owning `bytes`.
  TraceBuilder& Op(const std::string& result, const std::vector<std::string>& args, long bytes, long time_ns) {
    return Call("op_" + result, args, {{result, bytes}}, time_ns);
  }
  TraceBuilder& Mutate(const std::string& op, const std::vector<std::string>& args,
                       const std::vector<int>& mutated, long time_ns) {
    return Line(fmt::format(R"({{"INSTRUCTION":"MUTATE","NAME":"{}","ARGS":[{}],"MUTATE":[{}],"TIME":"{}"}})",
                            op, Join(args), fmt::join(mutated, ","), time_ns));
  }
  TraceBuilder& Copy(const std::string& dst, const std::string& src) {
    return Line(fmt::format(R"({{"INSTRUCTION":"COPY","DST":"{}","SRC":"{}"}})", dst, src));
  }
  TraceBuilder& Release(const std::string& name) {
    return Line(fmt::format(R"({{"INSTRUCTION":"RELEASE","NAME":"{}"}})", name));
  }
  TraceBuilder& Line(const std::string& line) {
    text_ += line + "\n";
    return *this;
  }

  const std::string& text() const { return text_; }
  Program Build(const std::string& path = "test.log") const { return LowerTrace(ParseTrace(text_, path)); }

 private:
  static std::string Quote(const std::string& s) { return "\"" + s + "\""; }
  static std::string Join(const std::vector<std::string>& names) {
    std::string out;
    for (size_t i = 0; i < names.size(); ++i) out += (i ? "," : "") + Quote(names[i]);
    return out;
  }
  std::string text_;
};

}  // namespace memfit::dtr::testing
