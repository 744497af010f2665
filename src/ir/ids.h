// Small strong id types, so that a tensor id can never be passed as an op id.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <ostream>

namespace memfit {

template <typename Tag>
struct Id {
  uint32_t value = 0;
  constexpr Id() = default;
  constexpr explicit Id(uint32_t v) : value(v) {}
  constexpr auto operator<=>(const Id&) const = default;
  constexpr size_t index() const { return value; }
};

using TensorId = Id<struct TensorTag>;
using OpId = Id<struct OpTag>;

inline std::ostream& operator<<(std::ostream& os, TensorId id) { return os << "t" << id.value; }
inline std::ostream& operator<<(std::ostream& os, OpId id) { return os << "op" << id.value; }

}  // namespace memfit

template <typename Tag>
struct std::hash<memfit::Id<Tag>> {
  size_t operator()(memfit::Id<Tag> id) const noexcept { return std::hash<uint32_t>()(id.value); }
};
