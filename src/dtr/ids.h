// Strong ids of the DTR module: names in a trace, tensors, operators and
// storages of a lowered program. Distinct types so that one can never be
// passed where another is expected.
#pragma once

#include "ir/ids.h"

namespace memfit::dtr {

template <typename Tag>
using StrongId = memfit::Id<Tag>;  // ir/ids.h; tags below are dtr's own

using NameId = StrongId<struct NameTag>;        // an interned trace name
using TensorId = StrongId<struct TensorTag>;    // a tensor of a Program
using OpId = StrongId<struct OpTag>;            // an operator of a Program
using StorageId = StrongId<struct StorageTag>;  // a storage of a Program

}  // namespace memfit::dtr
