#include "ir/op.h"

#include <fmt/format.h>

#include <array>

namespace memfit {
namespace {

constexpr std::array<std::string_view, 3> kPhaseNames = {"forward", "backward", "optimizer"};

template <typename T>
std::string JoinIds(const std::vector<T>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ", ";
    out += fmt::format("t{}", ids[i].value);
  }
  return out;
}

}  // namespace

std::string ToString(const AttrValue& value) {
  struct Visitor {
    std::string operator()(std::monostate) const { return "None"; }
    std::string operator()(bool b) const { return b ? "True" : "False"; }
    std::string operator()(int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const { return fmt::format("{}", d); }
    std::string operator()(const std::string& s) const { return fmt::format("'{}'", s); }
    std::string operator()(const std::vector<int64_t>& v) const {
      return fmt::format("[{}]", fmt::join(v, ", "));
    }
    std::string operator()(const std::vector<double>& v) const {
      return fmt::format("[{}]", fmt::join(v, ", "));
    }
  };
  return std::visit(Visitor{}, value);
}

std::string_view ToString(Phase phase) { return kPhaseNames[static_cast<size_t>(phase)]; }

std::optional<Phase> ParsePhase(std::string_view name) {
  for (size_t i = 0; i < kPhaseNames.size(); ++i) {
    if (kPhaseNames[i] == name) return static_cast<Phase>(i);
  }
  return std::nullopt;
}

std::string Op::qualified_type() const {
  return overload.empty() ? type : type + "." + overload;
}

std::string ToString(const Op& op) {
  return fmt::format("op{} '{}' {}({}) -> ({})", op.id.value, op.name, op.qualified_type(),
                     JoinIds(op.inputs), JoinIds(op.outputs));
}

std::ostream& operator<<(std::ostream& os, const Op& op) { return os << ToString(op); }

}  // namespace memfit
