// From a memfit graph and an operator order to the node-level remat problem
// (problem.h), and the bookkeeping to turn a node sequence back into steps.
//
// Grouping. A node is one op that allocates storage, together with the view
// ops taken (transitively) of its outputs: a view costs nothing and shares
// its base's storage, so it is kept or recomputed with its base. A node owns
// the storages its op creates; its bytes are their sum. Persistent sources
// (parameters, buffers, optimizer state) are fixed bytes; each data input
// resident at start (some op reads or writes it: analysis/storage_table.h)
// is a node of its own with no ops, never recomputed (it can still be
// swapped).
//
// What may not be recomputed:
//  - an op that writes a storage it did not create (an in-place op such as
//    relu_ or an optimizer update): recomputing it would write twice; and
//    the producer of any storage written in place or as a mutated argument
//    (its recomputation would bring back the value before the write);
//  - a random op, unless options.recompute_random (memfit's executor replays
//    the RNG state of the first run, so a recomputed dropout mask equals the
//    original);
//  - a view of a storage the node does not own (its own node of 0 bytes:
//    keeping it is free).
// An op whose only writes are BatchNorm-style running statistics
// (MutatedInputs) is recomputable: the recomputation's outputs do not depend
// on those writes, and the executor discards them.
// A node that reads a storage written in place later may only be recomputed
// up to the stage of that write (Node::recompute_until).
#pragma once

#include <cstdint>
#include <vector>

#include "ir/graph.h"
#include "remat/problem.h"

namespace memfit::remat {

struct GraphProblemOptions {
  bool recompute_random = true;
  // Each op's workspace by op id (OpWorkspaceBytes; sim::Simulator::
  // workspace_bytes() has a cost table's measurements); empty: the registry's.
  std::vector<int64_t> workspace_bytes;
};

struct GraphProblem {
  Problem problem;
  std::vector<std::vector<OpId>> node_ops;           // in emission order; empty for a data input
  std::vector<std::vector<TensorId>> node_storages;  // storage roots the node owns
  std::vector<std::vector<TensorId>> node_reads;     // storage roots it reads (owned by other nodes)
  std::vector<uint32_t> node_of_op;                  // by op id
  std::vector<uint32_t> owner_of_storage;            // by tensor id (roots); kNone: fixed
};

// `op_latency_us` is indexed by op id (sim::Simulator::op_latencies()).
GraphProblem BuildGraphProblem(const Graph& graph, const std::vector<OpId>& order,
                               const std::vector<double>& op_latency_us, const GraphProblemOptions& options = {});

}  // namespace memfit::remat
