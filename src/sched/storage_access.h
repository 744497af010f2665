// Which storages each op touches, and whether it writes them.
//
// A storage is a Graph::StorageRoot with all its views and in-place
// versions. An op touches the storages of its inputs and outputs. It writes
// a storage when it creates it (an output with new storage), updates it in
// place (output 0 of an in-place op: aten.add_, relu_) or mutates an input
// without an output of its own (BatchNorm's running statistics, see
// MutatedInputs). Views only read. An output aliasing an input of an op the
// registry does not know is taken as a write: without a schema memfit cannot
// tell a view from an update, and a spurious write only adds constraints.
#pragma once

#include <vector>

#include "ir/graph.h"

namespace memfit::sched {

struct StorageAccess {
  TensorId storage;  // Graph::StorageRoot
  bool writes = false;
};

// Per op (indexed by OpId), the storages it touches, each once, sorted by id.
std::vector<std::vector<StorageAccess>> ComputeStorageAccesses(const Graph& graph);

}  // namespace memfit::sched
