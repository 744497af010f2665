#include "util/error.h"

#include <algorithm>

namespace memfit {
namespace {

// Longest user string Quote() shows in full.
constexpr size_t kMaxQuotedBytes = 200;

void AppendEscaped(std::string& out, char c) {
  switch (c) {
    case '\n': out += "\\n"; return;
    case '\r': out += "\\r"; return;
    case '\t': out += "\\t"; return;
    default: break;
  }
  const auto u = static_cast<unsigned char>(c);
  if (u < 0x20 || u == 0x7f) {
    out += fmt::format("\\x{:02x}", u);
  } else {
    out += c;
  }
}

}  // namespace

std::string OneLine(std::string_view text) {
  const bool clean = std::none_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
  if (clean) return std::string(text);
  std::string out;
  out.reserve(text.size() + 8);
  for (char c : text) AppendEscaped(out, c);
  return out;
}

std::string Quote(std::string_view s) {
  std::string out = "'";
  size_t shown = std::min(s.size(), kMaxQuotedBytes);
  // Do not split a UTF-8 sequence: end before a continuation byte.
  while (shown < s.size() && shown > 0 && (static_cast<unsigned char>(s[shown]) & 0xC0) == 0x80) --shown;
  for (size_t i = 0; i < shown; ++i) {
    if (s[i] == '\'' || s[i] == '\\') out += '\\';
    AppendEscaped(out, s[i]);
  }
  if (shown < s.size()) out += "...";
  out += "'";
  return out;
}

}  // namespace memfit
