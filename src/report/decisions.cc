#include "report/decisions.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

#include "analysis/stats.h"

namespace memfit::report {

std::string_view ToString(DecisionKind kind) {
  switch (kind) {
    case DecisionKind::kRecompute:
      return "recompute";
    case DecisionKind::kSwap:
      return "swap";
    case DecisionKind::kReorder:
      return "reorder";
  }
  return "?";
}

std::vector<Decision> PlanDecisions(const Graph& graph, const sim::Plan& steps,
                                    const std::vector<sim::TimelineEntry>& timeline) {
  const std::vector<sim::Step>& s = steps.steps;
  auto time_ms = [&](size_t i) { return i < timeline.size() ? timeline[i].start_us * 1e-3 : 0.0; };
  // The next op step at or after `from` that reads storage `root`.
  auto next_reader = [&](size_t from, TensorId root) -> std::optional<size_t> {
    for (size_t j = from; j < s.size(); ++j) {
      if (!sim::IsOpStep(s[j].kind) || !s[j].op) continue;
      for (TensorId t : graph.op(*s[j].op).inputs) {
        if (graph.StorageRoot(t) == root) return j;
      }
    }
    return std::nullopt;
  };

  // Reordering: the fewest ops whose moves turn program order into the
  // plan's: those off a longest increasing run of op ids (in step order).
  std::vector<size_t> compute_steps;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i].kind == sim::StepKind::kCompute && s[i].op) compute_steps.push_back(i);
  }
  std::vector<uint8_t> moved(s.size(), 0);
  {
    // Patience sorting: tails[k] is the position (in compute_steps) of the
    // smallest last op id of an increasing run of length k + 1.
    std::vector<size_t> tails, parent(compute_steps.size(), SIZE_MAX);
    auto id = [&](size_t k) { return s[compute_steps[k]].op->value; };
    for (size_t k = 0; k < compute_steps.size(); ++k) {
      const auto it = std::lower_bound(tails.begin(), tails.end(), id(k),
                                       [&](size_t t, uint32_t v) { return id(t) < v; });
      if (it != tails.begin()) parent[k] = *(it - 1);
      if (it == tails.end()) {
        tails.push_back(k);
      } else {
        *it = k;
      }
    }
    for (size_t i : compute_steps) moved[i] = 1;
    for (size_t k = tails.empty() ? SIZE_MAX : tails.back(); k != SIZE_MAX; k = parent[k]) moved[compute_steps[k]] = 0;
  }

  std::vector<Decision> decisions;
  std::optional<size_t> previous_compute;
  for (size_t i = 0; i < s.size(); ++i) {
    const sim::Step& step = s[i];
    if (step.kind == sim::StepKind::kCompute && step.op) {
      if (moved[i]) {
        const Op& op = graph.op(*step.op);
        std::string why = fmt::format("'{}' (op {}) moved out of program order", op.name, step.op->value);
        if (previous_compute) {
          const OpId before = *s[*previous_compute].op;
          why += fmt::format(": runs right after '{}' (op {})", graph.op(before).name, before.value);
        } else {
          why += ": runs first";
        }
        decisions.push_back({DecisionKind::kReorder, i, std::nullopt, step.op, std::nullopt, 0, std::move(why)});
      }
      previous_compute = i;
    } else if (step.kind == sim::StepKind::kRecompute && step.op) {
      const Op& op = graph.op(*step.op);
      Decision d{DecisionKind::kRecompute, i, std::nullopt, step.op, std::nullopt, 0, ""};
      std::optional<size_t> reader;
      for (TensorId t : op.outputs) {
        const TensorId root = graph.StorageRoot(t);
        if (root == t) d.bytes += graph.tensor(t).size_bytes();
        const std::optional<size_t> r = next_reader(i + 1, root);
        if (r && (!reader || *r < *reader)) reader = r;
      }
      d.until_step = reader;
      d.why = reader ? fmt::format("'{}' recomputed at {:.3f} ms ({}) for '{}' at step {}", op.name, time_ms(i),
                                   FormatBytes(d.bytes), graph.op(*s[*reader].op).name, *reader)
                     : fmt::format("'{}' recomputed at {:.3f} ms ({})", op.name, time_ms(i), FormatBytes(d.bytes));
      decisions.push_back(std::move(d));
    } else if (step.kind == sim::StepKind::kSwapOut && step.storage) {
      const TensorId root = graph.StorageRoot(*step.storage);
      Decision d{DecisionKind::kSwap, i, std::nullopt, std::nullopt, root, graph.tensor(root).size_bytes(), ""};
      for (size_t j = i + 1; j < s.size(); ++j) {
        if (s[j].kind == sim::StepKind::kSwapIn && s[j].storage && graph.StorageRoot(*s[j].storage) == root) {
          d.until_step = j;
          break;
        }
      }
      const std::string& name = graph.tensor(root).name;
      if (d.until_step) {
        const std::optional<size_t> reader = next_reader(*d.until_step + 1, root);
        d.why = fmt::format("'{}' ({}) on the host from {:.3f} ms to {:.3f} ms (steps {}..{}){}", name,
                            FormatBytes(d.bytes), time_ms(i), time_ms(*d.until_step), i, *d.until_step,
                            reader ? fmt::format(", back for '{}'", graph.op(*s[*reader].op).name) : "");
      } else {
        d.why = fmt::format("'{}' ({}) moved to the host at {:.3f} ms (step {}), not brought back", name,
                            FormatBytes(d.bytes), time_ms(i), i);
      }
      decisions.push_back(std::move(d));
    }
  }
  return decisions;
}

}  // namespace memfit::report
