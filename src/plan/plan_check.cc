#include "plan/plan_check.h"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>

namespace memfit {
namespace {

TensorId Root(const Graph& graph, TensorId id) {
  for (size_t hops = 0; graph.tensor(id).alias_of && hops <= graph.num_tensors(); ++hops) id = *graph.tensor(id).alias_of;
  return id;
}

std::string Name(const Graph& graph, const PlacedBuffer& b) {
  return b.storage ? fmt::format("storage '{}'", graph.tensor(*b.storage).name)
                   : fmt::format("workspace of op '{}'", graph.op(*b.workspace_of).name);
}

}  // namespace

std::vector<std::string> CheckMemoryPlan(const Graph& graph, const MemoryPlan& plan, size_t max_problems) {
  std::vector<std::string> problems;
  auto report = [&](std::string message) {
    if (problems.size() < max_problems) problems.push_back(std::move(message));
  };
  const int64_t steps = static_cast<int64_t>(plan.order.size());
  if (plan.order.size() != graph.num_ops()) {
    report(fmt::format("the order has {} steps but the graph has {} ops", plan.order.size(), graph.num_ops()));
    return problems;
  }
  std::vector<bool> seen(graph.num_ops(), false);
  for (OpId op : plan.order) {
    if (!graph.contains(op) || seen[op.index()]) {
      report(fmt::format("op {} is missing from the graph or scheduled twice", op.value));
      return problems;
    }
    seen[op.index()] = true;
  }

  // Live steps of every storage, derived here from scratch.
  std::vector<int64_t> first(graph.num_tensors(), steps), last(graph.num_tensors(), -1);
  for (int64_t step = 0; step < steps; ++step) {
    const Op& op = graph.op(plan.order[step]);
    for (const auto* list : {&op.inputs, &op.outputs}) {
      for (TensorId t : *list) {
        const size_t r = Root(graph, t).index();
        first[r] = std::min(first[r], step);
        last[r] = std::max(last[r], step);
      }
    }
  }
  for (const Tensor& t : graph.tensors()) {
    if (t.alias_of || t.producer) continue;
    const bool whole = t.role != TensorRole::kInput;
    if (whole || last[t.id.index()] >= 0) first[t.id.index()] = 0;
    if (whole) last[t.id.index()] = steps - 1;
  }
  for (TensorId out : graph.outputs) {
    const size_t r = Root(graph, out).index();
    if (last[r] >= 0) last[r] = steps - 1;
  }

  // Every live storage has a covering buffer of sufficient size.
  std::unordered_map<uint32_t, const PlacedBuffer*> by_storage;
  for (const PlacedBuffer& b : plan.buffers) {
    if (b.storage) {
      if (!graph.contains(*b.storage)) {
        report(fmt::format("a buffer names tensor {}, which does not exist", b.storage->value));
        continue;
      }
      if (!by_storage.emplace(b.storage->value, &b).second) report(fmt::format("{} is placed twice", Name(graph, b)));
    }
    if (b.offset_bytes < 0 || b.offset_bytes + b.size_bytes > plan.arena_bytes) {
      report(fmt::format("{} at [{}, {}) is outside the arena of {} bytes", Name(graph, b), b.offset_bytes,
                         b.offset_bytes + b.size_bytes, plan.arena_bytes));
    }
    if (plan.alignment_bytes > 0 && b.offset_bytes % plan.alignment_bytes != 0) {
      report(fmt::format("{} offset {} is not a multiple of {}", Name(graph, b), b.offset_bytes, plan.alignment_bytes));
    }
  }
  for (const Tensor& t : graph.tensors()) {
    if (t.alias_of || last[t.id.index()] < 0 || t.size_bytes() == 0) continue;
    auto it = by_storage.find(t.id.value);
    if (it == by_storage.end()) {
      report(fmt::format("storage '{}' is live at steps [{}, {}] but has no buffer", t.name, first[t.id.index()],
                         last[t.id.index()]));
      continue;
    }
    const PlacedBuffer& b = *it->second;
    if (b.size_bytes < t.size_bytes()) {
      report(fmt::format("storage '{}' needs {} bytes, its buffer has {}", t.name, t.size_bytes(), b.size_bytes));
    }
    if (b.start > first[t.id.index()] || b.end <= last[t.id.index()]) {
      report(fmt::format("storage '{}' is live at steps [{}, {}] but its buffer covers [{}, {})", t.name,
                         first[t.id.index()], last[t.id.index()], b.start, b.end));
    }
  }

  // No two buffers live at one step overlap: sweep by start step.
  std::vector<const PlacedBuffer*> sorted;
  for (const PlacedBuffer& b : plan.buffers) sorted.push_back(&b);
  std::sort(sorted.begin(), sorted.end(), [](const PlacedBuffer* a, const PlacedBuffer* b) { return a->start < b->start; });
  std::vector<const PlacedBuffer*> active;
  for (const PlacedBuffer* b : sorted) {
    std::erase_if(active, [&](const PlacedBuffer* a) { return a->end <= b->start; });
    for (const PlacedBuffer* a : active) {
      if (a->offset_bytes < b->offset_bytes + b->size_bytes && b->offset_bytes < a->offset_bytes + a->size_bytes) {
        report(fmt::format("{} and {} are both live at step {} and overlap in memory", Name(graph, *a), Name(graph, *b),
                           b->start));
      }
    }
    active.push_back(b);
  }
  return problems;
}

}  // namespace memfit
