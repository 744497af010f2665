// Strong ids of the DTR module: names in a trace, tensors, operators and
// storages of a lowered program. Distinct types so that one can never be
// passed where another is expected.
#pragma once

#include <cstddef>
#include <cstdint>

namespace memfit::dtr {

template <typename Tag>
struct StrongId {
  uint32_t value = 0;
  constexpr StrongId() = default;
  constexpr explicit StrongId(uint32_t v) : value(v) {}
  constexpr auto operator<=>(const StrongId&) const = default;
  constexpr size_t index() const { return value; }
};

using NameId = StrongId<struct NameTag>;        // an interned trace name
using TensorId = StrongId<struct TensorTag>;    // a tensor of a Program
using OpId = StrongId<struct OpTag>;            // an operator of a Program
using StorageId = StrongId<struct StorageTag>;  // a storage of a Program

}  // namespace memfit::dtr
