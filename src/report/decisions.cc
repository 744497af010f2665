#include "report/decisions.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

#include "analysis/stats.h"
#include "transform/fission.h"
#include "transform/recompute_forward.h"
#include "util/enum_names.h"

namespace memfit::report {

constexpr EnumName<DecisionKind> kDecisionKindNames[] = {
    {DecisionKind::kRecompute, "recompute"}, {DecisionKind::kSwap, "swap"}, {DecisionKind::kReorder, "reorder"},
    {DecisionKind::kFission, "fission"}};

std::string_view ToString(DecisionKind kind) { return NameOf(kDecisionKindNames, kind); }

std::vector<int> FissionParts(const Graph& graph) {
  std::vector<int> parts(graph.num_ops(), -1);
  if (RecordedFissions(graph).empty()) return parts;
  for (const Op& op : graph.ops()) {
    // "<name>.part<k>", or "<name>.part<k>_<n>" when the name was taken.
    std::string_view name = op.name;
    const size_t at = name.rfind(".part");
    if (at == std::string_view::npos) continue;
    std::string_view digits = name.substr(at + 5);
    if (const size_t underscore = digits.find('_'); underscore != std::string_view::npos) {
      digits = digits.substr(0, underscore);
    }
    if (digits.empty() || digits.size() > 6 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      continue;
    }
    parts[op.id.index()] = std::stoi(std::string(digits));
  }
  return parts;
}

std::vector<Decision> PlanDecisions(const Graph& graph, const Steps& steps,
                                    const std::vector<sim::TimelineEntry>& timeline) {
  const std::vector<Step>& s = steps.steps;
  auto time_ms = [&](size_t i) { return i < timeline.size() ? timeline[i].start_us * 1e-3 : 0.0; };
  // The next op step at or after `from` that reads storage `root`.
  auto next_reader = [&](size_t from, TensorId root) -> std::optional<size_t> {
    for (size_t j = from; j < s.size(); ++j) {
      if (!IsOpStep(s[j].kind) || !s[j].op) continue;
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
    if (s[i].kind == StepKind::kCompute && s[i].op) compute_steps.push_back(i);
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
  // Fissions: each at the compute step of part 0 of its first op ("... (first .. last)");
  // forward ops copied before a run (transform/recompute_forward.h,
  // "recompute: N forward ops (first .. last) again before op") at the
  // first step of the first copy ("first.recompute", split or not).
  const std::vector<int> parts = FissionParts(graph);
  for (const std::string& record : RecordedFissions(graph)) {
    std::optional<size_t> at;
    const bool copies = record.starts_with(kRecomputeRecordPrefix);
    const size_t open = record.rfind(" (");
    const size_t dots = record.rfind(" .. ");
    const std::string first =
        open != std::string::npos && dots != std::string::npos && dots > open ? record.substr(open + 2, dots - open - 2) : "";
    for (size_t i = 0; i < s.size() && !at; ++i) {
      if (s[i].kind != StepKind::kCompute || !s[i].op) continue;
      const std::string& name = graph.op(*s[i].op).name;
      if (copies) {
        if (!first.empty() && name.starts_with(first + ".recompute")) at = i;
      } else if (parts[s[i].op->index()] == 0 && (first.empty() || name.starts_with(first + ".part0"))) {
        at = i;
      }
    }
    if (!at) {  // the record's first op is not found by name: the first part-0 step
      for (size_t i = 0; i < s.size() && !at; ++i) {
        if (s[i].kind == StepKind::kCompute && s[i].op && parts[s[i].op->index()] == 0) at = i;
      }
    }
    decisions.push_back({DecisionKind::kFission, at.value_or(0), std::nullopt, std::nullopt, std::nullopt, 0,
                         copies ? record : "split: " + record});
  }
  std::optional<size_t> previous_compute;
  for (size_t i = 0; i < s.size(); ++i) {
    const Step& step = s[i];
    if (step.kind == StepKind::kCompute && step.op) {
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
    } else if (step.kind == StepKind::kRecompute && step.op) {
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
    } else if (step.kind == StepKind::kSwapOut && step.storage) {
      const TensorId root = graph.StorageRoot(*step.storage);
      Decision d{DecisionKind::kSwap, i, std::nullopt, std::nullopt, root, graph.tensor(root).size_bytes(), ""};
      for (size_t j = i + 1; j < s.size(); ++j) {
        if (s[j].kind == StepKind::kSwapIn && s[j].storage && graph.StorageRoot(*s[j].storage) == root) {
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
