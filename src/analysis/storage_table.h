// The storages of a graph and the facts every memory model needs about them,
// decided once.
//
// A storage is a tensor that owns memory together with all its aliases
// (views and in-place results: Graph::StorageRoot). For each storage the
// table keeps its root, its bytes, the ops that read and write it, and two
// facts about the step's boundaries:
//  - resident at start: it is on the device before step 0. True for the
//    persistent sources (parameters, buffers, optimizer state, whether any
//    op touches them or not) and for every data input some op touches (reads
//    or writes). An input no op touches is never allocated.
//  - pinned to the end: it must still be on the device after the last step.
//    True for the persistent sources and for the storages of graph outputs.
// Liveness, the schedulers' memory model, the simulator, step plans, memory
// plans, the remat problem and DTR's replay of a graph (dtr/graph_program.cc:
// its storages, and which are pinned: sources and outputs) all read these
// facts here. The plan checker
// (plan/plan_check.cc) decides them on its own on purpose: it is the
// independent second opinion.
#pragma once

#include <cstdint>
#include <vector>

#include "ir/graph.h"

namespace memfit {

struct StorageInfo {
  TensorId root;           // the owning tensor (Graph::StorageRoot)
  int64_t size_bytes = 0;  // the root's bytes; aliases add none
  // No op produces it: it exists before the step (a parameter, a buffer,
  // optimizer state or a data input).
  bool source = false;
  // A source other than a data input (TensorRole::kInput): it lives for the
  // whole step and after it, touched or not.
  bool persistent = false;
  // A graph output lives in it.
  bool output = false;
  // Ops with an input in the storage (through any alias), in program order,
  // each once.
  std::vector<OpId> readers;
  // Ops with an output in the storage: the op that creates it, ops that
  // update it in place, ops that take a view of it. Program order, each once.
  std::vector<OpId> writers;
  // Readers and writers merged: program order, each once.
  std::vector<OpId> touchers;

  bool touched() const { return !touchers.empty(); }
  // On the device before step 0 (see the file comment).
  bool resident_at_start() const { return source && (persistent || touched()); }
  // Must be on the device after the last step (see the file comment).
  bool pinned_to_end() const { return persistent || output; }
};

class StorageTable {
 public:
  explicit StorageTable(const Graph& graph);

  // One per storage, in the order of their roots' ids.
  const std::vector<StorageInfo>& storages() const { return storages_; }
  size_t num_storages() const { return storages_.size(); }
  const StorageInfo& storage(size_t index) const { return storages_[index]; }
  // The index in storages() of the storage that tensor `t` lives in.
  uint32_t index_of(TensorId t) const { return index_of_[t.index()]; }
  // The storage that tensor `t` lives in.
  const StorageInfo& of(TensorId t) const { return storages_[index_of_[t.index()]]; }
  // Graph::StorageRoot(t), without walking the alias chain.
  TensorId root(TensorId t) const { return of(t).root; }

 private:
  std::vector<StorageInfo> storages_;
  std::vector<uint32_t> index_of_;  // by tensor id
};

}  // namespace memfit
