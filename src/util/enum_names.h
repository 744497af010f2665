#pragma once

// The names of an enum's values, written once as a table that serves both directions: ToString
// looks the value up, Parse looks the name up. A table lists each value once, in declaration order;
// a value missing from it prints as "?".
//
//   constexpr EnumName<Stream> kStreamNames[] = {
//       {Stream::kCompute, "compute"},
//       {Stream::kCopy, "copy"},
//   };
//   std::string_view ToString(Stream s) { return NameOf(kStreamNames, s); }

#include <cstddef>
#include <optional>
#include <string_view>

namespace memfit {

template <typename E>
struct EnumName {
  E value;
  std::string_view name;
};

template <typename E, std::size_t N>
constexpr std::string_view NameOf(const EnumName<E> (&names)[N], E value) {
  for (const EnumName<E>& row : names) {
    if (row.value == value) return row.name;
  }
  return "?";
}

template <typename E, std::size_t N>
constexpr std::optional<E> ValueNamed(const EnumName<E> (&names)[N], std::string_view name) {
  for (const EnumName<E>& row : names) {
    if (row.name == name) return row.value;
  }
  return std::nullopt;
}

}  // namespace memfit
