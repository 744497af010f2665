// Liveness of storages under an operator order.
//
// Step i is the execution of order[i]. A storage (a tensor that owns memory
// together with all its views and in-place versions) is live over the
// half-open step interval [start, end): from the step of its first producer
// to one past the last step that reads or writes any of its aliases.
// Storages of source tensors (parameters, buffers, optimizer state, inputs)
// and of graph outputs live as LivenessOptions says; which storages those
// are is the storage table's (storage_table.h). The lower bound of any
// placement is the largest sum of bytes live at one step (plus that step's
// workspace).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ir/graph.h"

namespace memfit {

struct LivenessOptions {
  // Parameters, buffers and optimizer state exist before the step and after
  // it: live over every step.
  bool sources_live_throughout = true;
  // Graph outputs are kept until the end of the step.
  bool outputs_live_to_end = true;
  // Count each op's workspace (scratch) bytes at its step: OpWorkspaceBytes
  // with `workspace_bytes`.
  bool count_workspace = true;
  // The workspace figures by op id (sim::Simulator::workspace_bytes(), which
  // has a cost table's measurements); empty: the registry's estimates.
  std::vector<int64_t> workspace_bytes;
};

// An op's workspace (scratch bytes held while it runs), the one rule of every
// count of a plan's memory (liveness, the schedulers, remat's node problem,
// placement, the simulator): given[op] when figures are given, one per op
// (sim::Simulator::workspace_bytes(): a cost table's measured workspace where
// the table has the op), else the registry's estimate (ComputeOpCost).
int64_t OpWorkspaceBytes(const Graph& graph, const Op& op, std::span<const int64_t> given = {});

struct StorageLifetime {
  TensorId storage;  // the owning tensor (Graph::StorageRoot)
  int64_t size_bytes = 0;
  int64_t start = 0;  // first step live
  int64_t end = 0;    // one past the last step live
};

struct Liveness {
  std::vector<StorageLifetime> storages;  // sorted by storage id
  // Bytes live during each step, workspace included.
  std::vector<int64_t> live_bytes;
  int64_t peak_bytes = 0;
  int64_t peak_step = 0;  // first step reaching peak_bytes
};

// Liveness of `graph` executed in `order` (every op exactly once).
Liveness ComputeLiveness(const Graph& graph, const std::vector<OpId>& order, const LivenessOptions& options = {});
// Liveness in program order.
Liveness ComputeLiveness(const Graph& graph, const LivenessOptions& options = {});

// Program order: 0, 1, ..., n-1.
std::vector<OpId> ProgramOrder(const Graph& graph);

}  // namespace memfit
