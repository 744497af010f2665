#include "sched/problem.h"

#include <algorithm>
#include <optional>
#include <unordered_map>

#include "analysis/storage_table.h"

namespace memfit::sched {

MemoryModel::MemoryModel(const Graph& graph, const LivenessOptions& options) {
  const size_t n = graph.num_ops();
  const StorageTable table(graph);
  op_storages_.resize(n);
  workspace_bytes_.assign(n, 0);
  for (const StorageInfo& info : table.storages()) {
    const bool whole = options.sources_live_throughout && info.persistent;
    if (!info.touched() && !whole) continue;  // never live
    Storage s;
    s.size_bytes = info.size_bytes;
    s.live_at_start = info.source;
    s.live_at_end = whole || (options.outputs_live_to_end && info.output);
    if (s.live_at_start && s.live_at_end) {
      pinned_bytes_ += s.size_bytes;
      continue;
    }
    const auto index = static_cast<uint32_t>(storages_.size());
    for (OpId op : info.touchers) op_storages_[op.index()].push_back(index);
    s.touchers = info.touchers;
    storages_.push_back(std::move(s));
  }
  if (options.count_workspace) {
    for (const Op& op : graph.ops()) {
      workspace_bytes_[op.id.index()] = OpWorkspaceBytes(graph, op, options.workspace_bytes);
    }
  }
}

bool MemoryModel::IsFree(OpId op) const {
  if (workspace_bytes_[op.index()] != 0) return false;
  return std::ranges::none_of(op_storages_[op.index()], [&](uint32_t s) {
    return !storages_[s].live_at_start && storages_[s].touchers.front() == op && storages_[s].size_bytes > 0;
  });
}

RunState::RunState(const MemoryModel& model)
    : model_(model), started_(model.num_storages()), remaining_(model.num_storages()),
      live_bytes_(model.pinned_bytes()) {
  for (uint32_t s = 0; s < model.num_storages(); ++s) {
    const MemoryModel::Storage& storage = model.storage(s);
    started_[s] = storage.live_at_start;
    remaining_[s] = static_cast<uint32_t>(storage.touchers.size());
    if (storage.live_at_start) live_bytes_ += storage.size_bytes;
  }
}

void RunState::Run(OpId op) {
  for (uint32_t s : model_.storages_of(op)) {
    const MemoryModel::Storage& storage = model_.storage(s);
    if (!started_[s]) live_bytes_ += storage.size_bytes;
    started_[s] = true;
    if (--remaining_[s] == 0 && !storage.live_at_end) live_bytes_ -= storage.size_bytes;
  }
}

Problem BuildProblem(const MemoryModel& model, const Dependencies& deps, std::span<const OpId> ops,
                     const RunState& before) {
  Problem problem;
  problem.initial_bytes = before.live_bytes();
  problem.ops.resize(ops.size());
  auto local_op = [&](OpId id) -> std::optional<uint32_t> {
    const auto it = std::lower_bound(ops.begin(), ops.end(), id);
    if (it == ops.end() || *it != id) return std::nullopt;
    return static_cast<uint32_t>(it - ops.begin());
  };
  std::unordered_map<uint32_t, uint32_t> local_storage;  // model storage -> problem storage
  std::vector<uint32_t> model_storage;                  // problem storage -> model storage
  for (uint32_t i = 0; i < ops.size(); ++i) {
    Problem::Op& op = problem.ops[i];
    op.id = ops[i];
    // Predecessors outside the set have run (the caller's contract);
    // successors outside it run later.
    for (OpId pred : deps.predecessors(op.id)) {
      if (auto p = local_op(pred)) op.preds.push_back(*p);
    }
    for (OpId succ : deps.successors(op.id)) {
      if (auto s = local_op(succ)) op.succs.push_back(*s);
    }
    op.workspace_bytes = model.workspace_bytes(op.id);
    for (uint32_t s : model.storages_of(op.id)) {
      auto [it, inserted] = local_storage.try_emplace(s, static_cast<uint32_t>(problem.storages.size()));
      op.storages.push_back(it->second);
      if (inserted) {
        model_storage.push_back(s);
        problem.storages.push_back({model.storage(s).size_bytes, before.started(s), false, {}});
      }
      problem.storages[it->second].touchers.push_back(i);
    }
  }
  for (size_t j = 0; j < problem.storages.size(); ++j) {
    Problem::Storage& s = problem.storages[j];
    const uint32_t m = model_storage[j];
    s.kept = model.storage(m).live_at_end || before.remaining(m) > s.touchers.size();
  }
  return problem;
}

Problem BuildWholeProblem(const MemoryModel& model, const Dependencies& deps) {
  std::vector<OpId> all(model.num_ops());
  for (uint32_t i = 0; i < all.size(); ++i) all[i] = OpId(i);
  return BuildProblem(model, deps, all, RunState(model));
}

Tracker::Tracker(const Problem& problem)
    : problem_(problem), started_(problem.storages.size()), remaining_(problem.storages.size()),
      live_bytes_(problem.initial_bytes) {
  for (size_t s = 0; s < problem.storages.size(); ++s) {
    started_[s] = problem.storages[s].started;
    remaining_[s] = static_cast<uint32_t>(problem.storages[s].touchers.size());
  }
}

int64_t Tracker::AllocBytes(uint32_t op) const {
  int64_t bytes = 0;
  for (uint32_t s : problem_.ops[op].storages) {
    if (!started_[s]) bytes += problem_.storages[s].size_bytes;
  }
  return bytes;
}

int64_t Tracker::FreedBytes(uint32_t op) const {
  int64_t bytes = 0;
  for (uint32_t s : problem_.ops[op].storages) {
    if (remaining_[s] == 1 && !problem_.storages[s].kept) bytes += problem_.storages[s].size_bytes;
  }
  return bytes;
}

void Tracker::Run(uint32_t op, std::vector<uint32_t>* changed) {
  live_bytes_ += AllocBytes(op) - FreedBytes(op);
  for (uint32_t s : problem_.ops[op].storages) {
    const bool allocated = !started_[s];
    started_[s] = true;
    --remaining_[s];
    if (changed && (allocated || (remaining_[s] == 1 && !problem_.storages[s].kept))) changed->push_back(s);
  }
}

int64_t PeakBytes(const Problem& problem, const std::vector<uint32_t>& order) {
  Tracker tracker(problem);
  int64_t peak = 0;
  for (uint32_t op : order) {
    peak = std::max(peak, tracker.StepBytes(op));
    tracker.Run(op);
  }
  return peak;
}

int64_t LowerBound(const Problem& problem) {
  // Storages live before the range and after it stay live throughout.
  int64_t constant = problem.initial_bytes;
  for (const Problem::Storage& s : problem.storages) {
    if (s.started && !s.kept) constant -= s.size_bytes;
  }
  int64_t bound = 0;
  for (const Problem::Op& op : problem.ops) {
    int64_t bytes = constant + op.workspace_bytes;
    for (uint32_t s : op.storages) {
      if (!(problem.storages[s].started && problem.storages[s].kept)) bytes += problem.storages[s].size_bytes;
    }
    bound = std::max(bound, bytes);
  }
  return bound;
}

std::vector<uint32_t> IdentityOrder(const Problem& problem) {
  std::vector<uint32_t> order(problem.ops.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  return order;
}

}  // namespace memfit::sched
