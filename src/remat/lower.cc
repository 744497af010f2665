#include "remat/lower.h"

#include <algorithm>

#include <fmt/format.h>

namespace memfit::remat {

std::vector<Event> EventsFromSequence(std::span<const uint32_t> sequence) {
  std::vector<Event> events;
  events.reserve(sequence.size());
  for (uint32_t v : sequence) events.push_back({EventKind::kEval, v});
  return events;
}

std::vector<uint32_t> EvalSequence(std::span<const Event> events) {
  std::vector<uint32_t> seq;
  seq.reserve(events.size());
  for (const Event& e : events) {
    if (e.kind == EventKind::kEval) seq.push_back(e.node);
  }
  return seq;
}

std::string CheckEvents(const Problem& problem, std::span<const Event> events) {
  std::vector<uint8_t> evaluated(problem.size(), 0);
  for (size_t p = 0; p < events.size(); ++p) {
    const Event& e = events[p];
    if (e.node >= problem.size()) return fmt::format("event {}: node {} does not exist", p, e.node);
    if (e.kind == EventKind::kSwapIn && !evaluated[e.node]) {
      return fmt::format("event {}: swap-in of node {} '{}' before it is computed", p, e.node,
                         problem.nodes[e.node].name);
    }
    evaluated[e.node] = 1;
  }
  const std::vector<uint32_t> seq = EvalSequence(events);
  Evaluation ev = Evaluate(problem, seq);
  return ev.valid ? std::string() : "evaluations: " + ev.problem;
}

namespace {

struct Instance {
  uint32_t storage = 0;
  size_t start = 0;
  int64_t last_read = -1;
  bool swapped_in = false;
};

}  // namespace

Steps LowerToSteps(const Graph& graph, const GraphProblem& gp, std::span<const Event> events) {
  const size_t num_tensors = graph.num_tensors();
  // Storages pinned to the end (graph outputs), as BuildGraphProblem found
  // them (its parts follow node_storages).
  std::vector<uint8_t> is_output(num_tensors, 0);
  for (size_t v = 0; v < gp.node_storages.size(); ++v) {
    const std::vector<Node::Part>& parts = gp.problem.nodes[v].parts;
    for (size_t k = 0; k < gp.node_storages[v].size() && k < parts.size(); ++k) {
      is_output[gp.node_storages[v][k].index()] = parts[k].keep_to_end;
    }
  }

  // Pass 1: instances and their last reads.
  std::vector<Instance> instances;
  std::vector<std::vector<uint32_t>> by_storage(num_tensors);
  std::vector<uint32_t> current(num_tensors, kNone);
  for (size_t p = 0; p < events.size(); ++p) {
    const Event& e = events[p];
    if (e.kind == EventKind::kEval) {
      for (TensorId r : gp.node_reads[e.node]) {
        if (current[r.index()] != kNone) instances[current[r.index()]].last_read = static_cast<int64_t>(p);
      }
    }
    for (TensorId s : gp.node_storages[e.node]) {
      current[s.index()] = static_cast<uint32_t>(instances.size());
      by_storage[s.index()].push_back(current[s.index()]);
      instances.push_back({static_cast<uint32_t>(s.index()), p, -1, e.kind == EventKind::kSwapIn});
    }
  }

  // Pass 2: what ends each instance, and where. A swap-in nobody reads is
  // not made.
  auto made = [&](const Instance& in) { return !in.swapped_in || in.last_read >= 0; };
  std::vector<uint8_t> swap_in_here(instances.size(), 0);
  std::vector<std::vector<Step>> after(events.size());
  for (size_t s = 0; s < num_tensors; ++s) {
    const auto& list = by_storage[s];
    for (size_t k = 0; k < list.size(); ++k) {
      const Instance& in = instances[list[k]];
      if (!made(in)) continue;
      swap_in_here[list[k]] = in.swapped_in;
      const Instance* next = nullptr;
      for (size_t j = k + 1; j < list.size() && !next; ++j) {
        if (made(instances[list[j]])) next = &instances[list[j]];
      }
      const size_t end = in.last_read >= 0 ? static_cast<size_t>(in.last_read) : in.start;
      if (next && next->swapped_in) {
        after[end].push_back(Step::SwapOut(TensorId(static_cast<uint32_t>(s))));
      } else if (next || !is_output[s]) {
        after[end].push_back(Step::Free(TensorId(static_cast<uint32_t>(s))));
      }
    }
  }

  // Pass 3: emit.
  Steps plan;
  std::vector<uint8_t> computed(gp.node_ops.size(), 0);
  size_t inst = 0;
  for (size_t p = 0; p < events.size(); ++p) {
    const Event& e = events[p];
    if (e.kind == EventKind::kSwapIn) {
      for (size_t k = 0; k < gp.node_storages[e.node].size(); ++k, ++inst) {
        if (swap_in_here[inst]) plan.steps.push_back(Step::SwapIn(TensorId(instances[inst].storage)));
      }
    } else {
      inst += gp.node_storages[e.node].size();
      const bool again = computed[e.node];
      computed[e.node] = 1;
      for (OpId op : gp.node_ops[e.node]) {
        plan.steps.push_back(again ? Step::Recompute(op) : Step::Compute(op));
      }
    }
    auto& steps = after[p];
    std::sort(steps.begin(), steps.end(), [](const Step& a, const Step& b) {
      return a.storage->index() < b.storage->index();
    });
    plan.steps.insert(plan.steps.end(), steps.begin(), steps.end());
  }
  return plan;
}

}  // namespace memfit::remat
