// Memory accounting for the schedulers: the arithmetic of ComputeLiveness,
// made incremental.
//
// A storage is allocated at the first step that touches it and freed after
// the last, except that sources (parameters, optimizer state, ...) are live
// from the start and sources and outputs to the end, as LivenessOptions say.
// The bytes of step i are the storages live then plus order[i]'s workspace.
// Storages live over every step ("pinned") only add a constant and are left
// out of the per-op lists.
//
// A Problem is the scheduling of a set of ops after the ops in a RunState
// have run (every predecessor of the set is in the one or the other), in
// local indices 0..m-1. Its memory does not depend on how the earlier ops
// were ordered: storages live at its start count as a constant offset until
// the set touches them for the last time. The whole graph is all ops after
// none.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "analysis/liveness.h"
#include "ir/graph.h"
#include "sched/dependencies.h"

namespace memfit::sched {

// The memory behaviour of a whole graph, computed once.
class MemoryModel {
 public:
  struct Storage {
    int64_t size_bytes = 0;
    bool live_at_start = false;  // a source: live before step 0
    bool live_at_end = false;    // a source or an output: live after the last step
    std::vector<OpId> touchers;  // in program order; the first creates it unless live at start
  };

  MemoryModel(const Graph& graph, const LivenessOptions& options);

  size_t num_ops() const { return op_storages_.size(); }
  size_t num_storages() const { return storages_.size(); }
  const Storage& storage(uint32_t s) const { return storages_[s]; }
  // Indices of the storages `op` touches, not pinned ones.
  const std::vector<uint32_t>& storages_of(OpId op) const { return op_storages_[op.index()]; }
  int64_t workspace_bytes(OpId op) const { return workspace_bytes_[op.index()]; }
  // Bytes of the storages live over every step.
  int64_t pinned_bytes() const { return pinned_bytes_; }
  // True when `op` never raises memory: it creates no storage and has no
  // workspace (a view, an in-place update). Running such an op as soon as
  // it is ready is never worse (see exact_search.h).
  bool IsFree(OpId op) const;

 private:
  std::vector<Storage> storages_;
  std::vector<std::vector<uint32_t>> op_storages_;
  std::vector<int64_t> workspace_bytes_;
  int64_t pinned_bytes_ = 0;
};

// The memory state after a set of ops has run.
class RunState {
 public:
  explicit RunState(const MemoryModel& model);

  bool started(uint32_t s) const { return started_[s]; }
  uint32_t remaining(uint32_t s) const { return remaining_[s]; }  // touchers not run yet
  int64_t live_bytes() const { return live_bytes_; }
  void Run(OpId op);

 private:
  const MemoryModel& model_;
  std::vector<bool> started_;
  std::vector<uint32_t> remaining_;
  int64_t live_bytes_ = 0;
};

struct Problem {
  struct Op {
    OpId id;
    std::vector<uint32_t> preds;     // local, within the set
    std::vector<uint32_t> succs;     // local, within the set
    std::vector<uint32_t> storages;  // indices into Problem::storages
    int64_t workspace_bytes = 0;
  };
  struct Storage {
    int64_t size_bytes = 0;
    bool started = false;  // live before the set (a source, or touched earlier)
    bool kept = false;     // live after the set (kept to the end, or touched later)
    std::vector<uint32_t> touchers;  // local ops, ascending
  };
  std::vector<Op> ops;
  std::vector<Storage> storages;
  int64_t initial_bytes = 0;  // live before the set's first step
};

// The problem of `ops` (ascending ids; local index i is ops[i]) after the
// ops of `before` have run.
Problem BuildProblem(const MemoryModel& model, const Dependencies& deps, std::span<const OpId> ops,
                     const RunState& before);
// The whole graph.
Problem BuildWholeProblem(const MemoryModel& model, const Dependencies& deps);

// The memory state after some of a problem's ops have run.
class Tracker {
 public:
  explicit Tracker(const Problem& problem);

  int64_t live_bytes() const { return live_bytes_; }
  // Bytes of the storages `op` would allocate (touched for the first time).
  int64_t AllocBytes(uint32_t op) const;
  // Bytes of the storages freed after `op` (their last toucher).
  int64_t FreedBytes(uint32_t op) const;
  // Bytes live while `op` runs.
  int64_t StepBytes(uint32_t op) const { return live_bytes_ + AllocBytes(op) + problem_.ops[op].workspace_bytes; }
  // Runs `op`; appends to `changed` (when given) the storages whose
  // allocation or freeing by another op changed: just allocated, or with
  // one toucher left.
  void Run(uint32_t op, std::vector<uint32_t>* changed = nullptr);

 private:
  const Problem& problem_;
  std::vector<bool> started_;
  std::vector<uint32_t> remaining_;  // touchers not run yet
  int64_t live_bytes_ = 0;
};

// The largest step bytes of running `order` (local indices, all ops).
int64_t PeakBytes(const Problem& problem, const std::vector<uint32_t>& order);

// No order of the problem peaks lower: at its step, an op has all its
// storages live, plus its workspace, plus every storage live across the
// whole set.
int64_t LowerBound(const Problem& problem);

// Local program order 0, 1, ..., m-1.
std::vector<uint32_t> IdentityOrder(const Problem& problem);

}  // namespace memfit::sched
