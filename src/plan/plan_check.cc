#include "plan/plan_check.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "ir/registry.h"
#include "util/error.h"

namespace memfit {
namespace {

enum class Place : uint8_t { kNowhere, kDevice, kHost };

// One stay on the device of a storage (root set) or an op step's workspace.
struct Stay {
  std::optional<TensorId> root;
  std::optional<OpId> op;
  int64_t bytes = 0;
  int64_t first = 0;     // allocating step
  int64_t released = 0;  // releasing step; the step count when never released
  double release_us = 0;
};

// What program order (the graph's op order) fixes besides data flow: every
// op sees each storage after the same in-place updates as in program order
// (an update is an in-place op's output, a mutated input such as BatchNorm's
// running statistics, or an aliasing output of an op the registry does not
// know, unless it declares a view), and random ops draw in program order
// (one generator). A recompute sees what its op saw, plus its own update.
class ProgramOrder {
 public:
  explicit ProgramOrder(const Graph& graph) : g_(graph), touches_(graph.num_ops()), updates_(graph.num_ops()) {
    std::vector<int> count(graph.num_tensors(), 0);
    for (const Op& op : graph.ops()) {
      auto& touched = touches_[op.id.index()];
      for (TensorId t : op.inputs) touched.push_back({graph.StorageRoot(t), 0});
      for (TensorId t : op.outputs) touched.push_back({graph.StorageRoot(t), 0});
      std::sort(touched.begin(), touched.end());
      touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
      for (auto& [root, before] : touched) before = count[root.index()];
      auto& updated = updates_[op.id.index()];
      for (size_t i : MutatedInputs(graph, op)) updated.push_back(graph.StorageRoot(op.inputs[i]));
      const OpSchema* schema = FindOpSchema(op.type);
      for (size_t o = 0; o < op.outputs.size(); ++o) {
        if (!graph.tensor(op.outputs[o]).alias_of) continue;
        const bool update = schema ? schema->inplace && o == 0 : !DeclaresView(op);
        if (update) updated.push_back(graph.StorageRoot(op.outputs[o]));
      }
      std::sort(updated.begin(), updated.end());
      updated.erase(std::unique(updated.begin(), updated.end()), updated.end());
      for (TensorId root : updated) ++count[root.index()];
    }
    total_ = std::move(count);
    done_.assign(graph.num_tensors(), 0);
  }

  // Checks a compute or recompute step of `op` and counts its updates;
  // `report` gets each problem (the caller names the step).
  void Step(StepKind kind, const Op& op, const std::function<void(std::string)>& report) {
    const auto& updated = updates_[op.id.index()];
    for (const auto& [root, before] : touches_[op.id.index()]) {
      const size_t r = root.index();
      if (total_[r] == 0) continue;
      const bool own = kind == StepKind::kRecompute && std::binary_search(updated.begin(), updated.end(), root);
      const int want = before + (own ? 1 : 0);
      if (done_[r] != want) {
        report(fmt::format("sees '{}' after {} of its in-place updates, {} in program order", g_.tensor(root).name,
                           done_[r], want));
      }
    }
    if (kind != StepKind::kCompute) return;
    for (TensorId root : updated) ++done_[root.index()];
    if (IsRandomOp(op.type)) {
      if (last_random_ && op.id < *last_random_) {
        report(fmt::format("draws random numbers before op '{}', unlike program order", g_.op(*last_random_).name));
      }
      last_random_ = op.id;
    }
  }

 private:
  const Graph& g_;
  std::vector<std::vector<std::pair<TensorId, int>>> touches_;  // by op: (root, updates before it in program order)
  std::vector<std::vector<TensorId>> updates_;                  // by op: the roots it updates
  std::vector<int> total_;                                      // by root: its updates in the whole program
  std::vector<int> done_;                                       // by root: updates run so far
  std::optional<OpId> last_random_;
};

// Replays the steps, reporting malformed ones; with `times`, also records
// every stay and when its memory comes back. An op's workspace is
// `workspace[op]` when given (the plan's own figures, Placement::
// workspace_bytes: taken as given, like the times), else the registry's.
class Replay {
 public:
  Replay(const Graph& graph, const Steps& steps, const std::vector<StepTime>* times,
         const std::function<void(std::string)>& report, const std::vector<int64_t>* workspace = nullptr)
      : g_(graph), steps_(steps), times_(times), report_(report), workspace_(workspace) {}

  // False when a step names no op or tensor of the graph (replay stops).
  bool Run() {
    const size_t n = g_.num_tensors();
    place_.assign(n, Place::kNowhere);
    changed_at_.assign(n, -1);
    open_.assign(n, SIZE_MAX);
    computed_at_.assign(g_.num_ops(), -1);
    order_.emplace(g_);
    std::vector<bool> touched(n, false);
    for (const Op& op : g_.ops()) {
      for (TensorId t : op.inputs) touched[Root(t)] = true;
      for (TensorId t : op.outputs) touched[Root(t)] = true;
    }
    for (const Tensor& t : g_.tensors()) {
      if (!t.producer && !t.alias_of && (t.role != TensorRole::kInput || touched[t.id.index()])) Arrive(t.id.index(), 0);
    }
    for (int64_t i = 0; i < NumSteps(); ++i) {
      if (!StepAt(i)) return false;
    }
    for (const Op& op : g_.ops()) {
      if (computed_at_[op.id.index()] < 0) report_(fmt::format("op '{}' is never computed", op.name));
    }
    for (TensorId out : g_.outputs) {
      if (place_[Root(out)] != Place::kDevice) {
        report_(fmt::format("graph output '{}' is not on the device after the last step", g_.tensor(out).name));
      }
    }
    return true;
  }

  const std::vector<Stay>& stays() const { return stays_; }

 private:
  int64_t NumSteps() const { return static_cast<int64_t>(steps_.steps.size()); }
  size_t Root(TensorId t) const {
    for (size_t hops = 0; g_.tensor(t).alias_of && hops <= g_.num_tensors(); ++hops) t = *g_.tensor(t).alias_of;
    return t.index();
  }
  std::string What(int64_t i) const { return fmt::format("step {} ({})", i, ToString(steps_.steps[i], g_)); }
  const std::string& Name(size_t r) const { return g_.tensor(TensorId(static_cast<uint32_t>(r))).name; }
  double StartUs(int64_t i) const { return times_ ? (*times_)[i].start_us : 0; }
  double EndUs(int64_t i) const { return times_ ? (*times_)[i].end_us : 0; }

  void Arrive(size_t r, int64_t step) {
    place_[r] = Place::kDevice;
    changed_at_[r] = step;
    Stay s;
    s.root = TensorId(static_cast<uint32_t>(r));
    s.bytes = g_.tensor(*s.root).size_bytes();
    s.first = step;
    s.released = NumSteps();
    open_[r] = stays_.size();
    stays_.push_back(s);
  }
  void Use(size_t r, double until_us) {
    Stay& s = stays_[open_[r]];
    s.release_us = std::max(s.release_us, until_us);
  }
  void Leave(size_t r, int64_t step, double until_us, Place to) {
    Use(r, until_us);
    stays_[open_[r]].released = step;
    open_[r] = SIZE_MAX;
    place_[r] = to;
    changed_at_[r] = step;
  }
  std::string WhyAbsent(size_t r) const {
    if (place_[r] == Place::kHost) return fmt::format("is on the host (swapped out at step {})", changed_at_[r]);
    if (changed_at_[r] >= 0) return fmt::format("was freed at step {}", changed_at_[r]);
    return "was never computed";
  }

  bool StepAt(int64_t i) {
    const Step& step = steps_.steps[i];
    if (IsOpStep(step.kind)) {
      if (!step.op || !g_.contains(*step.op)) {
        report_(fmt::format("{}: names no op of the graph", What(i)));
        return false;
      }
      const Op& op = g_.op(*step.op);
      int64_t& computed = computed_at_[op.id.index()];
      if (step.kind == StepKind::kCompute && computed >= 0) {
        report_(fmt::format("{}: op '{}' is computed twice (first at step {})", What(i), op.name, computed));
      } else if (step.kind == StepKind::kRecompute && computed < 0) {
        report_(fmt::format("{}: recompute of op '{}' before its compute step", What(i), op.name));
      }
      if (step.kind == StepKind::kCompute && computed < 0) computed = i;
      // The step is described only when it has a problem (this runs for every op step).
      order_->Step(step.kind, op, [&](std::string problem) { report_(fmt::format("{}: {}", What(i), problem)); });
      for (TensorId t : op.inputs) {
        const size_t r = Root(t);
        if (place_[r] == Place::kDevice) {
          Use(r, EndUs(i));
        } else {
          report_(fmt::format("{}: reads '{}', which {}", What(i), g_.tensor(t).name, WhyAbsent(r)));
        }
      }
      for (TensorId t : op.outputs) {
        const size_t r = Root(t);
        if (place_[r] != Place::kDevice) Arrive(r, i);
        Use(r, EndUs(i));
      }
      last_op_step_ = i;
      const int64_t workspace = workspace_ && !workspace_->empty() ? (*workspace_)[op.id.index()]
                                                                    : ComputeOpCost(g_, op).workspace_bytes;
      if (workspace > 0) stays_.push_back({std::nullopt, op.id, workspace, i, i, EndUs(i)});
      return true;
    }
    if (!step.storage || !g_.contains(*step.storage)) {
      report_(fmt::format("{}: names no tensor of the graph", What(i)));
      return false;
    }
    const size_t r = Root(*step.storage);
    switch (step.kind) {
      case StepKind::kSwapOut:
        if (place_[r] != Place::kDevice) {
          report_(fmt::format("{}: swaps out '{}', which {}", What(i), Name(r), WhyAbsent(r)));
        } else {
          Leave(r, i, EndUs(i), Place::kHost);  // the copy reads it to its end
        }
        break;
      case StepKind::kSwapIn:
        if (place_[r] != Place::kHost) {
          report_(fmt::format("{}: swaps in '{}', which has no host copy", What(i), Name(r)));
        } else {
          Arrive(r, i);
          Use(r, EndUs(i));
        }
        break;
      case StepKind::kFree:
        if (place_[r] == Place::kDevice) {
          // Stream-ordered: after the compute step issued before the free.
          Leave(r, i, last_op_step_ >= 0 ? EndUs(last_op_step_) : 0, Place::kNowhere);
        } else if (place_[r] == Place::kHost) {
          place_[r] = Place::kNowhere;
          changed_at_[r] = i;
        } else {
          report_(fmt::format("{}: frees '{}', which {}", What(i), Name(r), WhyAbsent(r)));
        }
        break;
      default:
        break;
    }
    return true;
  }

  const Graph& g_;
  const Steps& steps_;
  const std::vector<StepTime>* times_;
  const std::function<void(std::string)>& report_;
  const std::vector<int64_t>* workspace_;
  std::vector<Place> place_;
  std::vector<int64_t> changed_at_;  // by root: the step that last moved it
  std::vector<size_t> open_;         // by root: its stay on the device
  std::vector<int64_t> computed_at_;
  std::optional<ProgramOrder> order_;
  std::vector<Stay> stays_;
  int64_t last_op_step_ = -1;
};

// One past the last step that must keep `s` reserved. Relies on the timeline
// rule checked in CheckTimes: no step starts before the latest op step issued
// before it, so the scan stops at the first op step starting after release.
int64_t RequiredEnd(const Stay& s, const Steps& steps, const std::vector<StepTime>& times) {
  const int64_t n = static_cast<int64_t>(steps.steps.size());
  int64_t end = std::min(s.released + 1, n);
  for (int64_t j = s.released + 1; j < n; ++j) {
    const StepKind kind = steps.steps[j].kind;
    const bool allocates = IsOpStep(kind) || kind == StepKind::kSwapIn;
    if (allocates && times[j].start_us < s.release_us) end = j + 1;
    if (IsOpStep(kind) && times[j].start_us >= s.release_us) break;
  }
  return end;
}

// The step times are one per step, finite, ordered, and no step starts
// before the latest op (compute-stream) step issued before it.
bool CheckTimes(const Steps& steps, const std::vector<StepTime>& times,
                const std::function<void(std::string)>& report) {
  if (times.size() != steps.steps.size()) {
    report(fmt::format("the plan has {} step times for {} steps", times.size(), steps.steps.size()));
    return false;
  }
  double op_start_us = 0;
  for (size_t i = 0; i < times.size(); ++i) {
    const StepTime& t = times[i];
    if (!std::isfinite(t.start_us) || !std::isfinite(t.end_us) || t.start_us < 0 || t.end_us < t.start_us) {
      report(fmt::format("step {}: bad times [{}, {}] us", i, t.start_us, t.end_us));
      return false;
    }
    if (t.start_us < op_start_us) {
      report(fmt::format("step {}: starts at {} us, before the compute step issued before it ({} us)", i,
                         t.start_us, op_start_us));
      return false;
    }
    if (IsOpStep(steps.steps[i].kind)) op_start_us = t.start_us;
  }
  return true;
}

std::string Describe(const Graph& g, const PlacedBuffer& b) {
  if (b.storage) return fmt::format("storage '{}' [{}, {})", g.tensor(*b.storage).name, b.start, b.end);
  return fmt::format("workspace of op '{}' [{}, {})", g.op(*b.workspace_of).name, b.start, b.end);
}

}  // namespace

std::vector<std::string> CheckSteps(const Graph& graph, const Steps& steps, size_t max_problems) {
  std::vector<std::string> problems;
  const std::function<void(std::string)> report = [&](std::string m) {
    if (problems.size() < max_problems) problems.push_back(std::move(m));
  };
  Replay(graph, steps, nullptr, report).Run();
  return problems;
}

std::vector<std::string> CheckPlacement(const Graph& graph, const Placement& plan, size_t max_problems) {
  try {
    return CheckPlacement(graph, StepsFromOrder(graph, plan.order), plan, max_problems);
  } catch (const Error& e) {
    return {e.what()};
  }
}

std::vector<std::string> CheckPlacement(const Graph& graph, const Steps& steps, const Placement& plan,
                                        size_t max_problems) {
  std::vector<std::string> problems;
  const std::function<void(std::string)> report = [&](std::string m) {
    if (problems.size() < max_problems) problems.push_back(std::move(m));
  };
  if (!CheckTimes(steps, plan.step_times, report)) return problems;
  if (!plan.workspace_bytes.empty() && plan.workspace_bytes.size() != graph.num_ops()) {
    report(fmt::format("the plan gives {} workspace figures for {} ops", plan.workspace_bytes.size(), graph.num_ops()));
    return problems;
  }
  Replay replay(graph, steps, &plan.step_times, report, &plan.workspace_bytes);
  if (!replay.Run() || !problems.empty()) return problems;
  std::vector<OpId> order;
  for (const Step& s : steps.steps) {
    if (s.kind == StepKind::kCompute) order.push_back(*s.op);
  }
  if (order != plan.order) report("the plan's op order differs from the order of its compute steps");

  // Each buffer on its own: names something, lies inside the steps and the arena, aligned.
  const int64_t n = static_cast<int64_t>(steps.steps.size());
  std::map<std::pair<bool, uint32_t>, std::vector<size_t>> by_owner;  // (workspace?, id) -> buffers
  bool plans_workspace = false;
  for (size_t k = 0; k < plan.buffers.size(); ++k) {
    const PlacedBuffer& b = plan.buffers[k];
    if (b.storage.has_value() == b.workspace_of.has_value() || (b.storage && !graph.contains(*b.storage)) ||
        (b.workspace_of && !graph.contains(*b.workspace_of))) {
      report(fmt::format("buffers[{}] names neither one tensor nor one op of the graph", k));
      return problems;
    }
    if (b.storage && graph.tensor(*b.storage).alias_of) {
      report(fmt::format("{} names a view; buffers name storage roots", Describe(graph, b)));
    }
    if (b.start < 0 || b.end <= b.start || b.end > n) {
      report(fmt::format("{} is not a step interval of the {} steps", Describe(graph, b), n));
    }
    if (b.offset_bytes < 0 || b.size_bytes < 0 || b.offset_bytes + b.size_bytes > plan.arena_bytes) {
      report(fmt::format("{} at bytes [{}, {}) is outside the arena of {} bytes", Describe(graph, b), b.offset_bytes,
                         b.offset_bytes + b.size_bytes, plan.arena_bytes));
    }
    if (plan.alignment_bytes < 1 || b.offset_bytes % plan.alignment_bytes != 0) {
      report(fmt::format("{} offset {} is not a multiple of {}", Describe(graph, b), b.offset_bytes,
                         plan.alignment_bytes));
    }
    plans_workspace |= b.workspace_of.has_value();
    const uint32_t id = b.storage ? b.storage->value : b.workspace_of->value;
    by_owner[{b.workspace_of.has_value(), id}].push_back(k);
  }

  // Every instance has one buffer of its owner, large enough, covering the
  // steps it must stay reserved; every buffer covers some instance.
  std::vector<bool> used(plan.buffers.size(), false);
  for (const Stay& s : replay.stays()) {
    if (s.bytes == 0 || (s.op && !plans_workspace)) continue;
    const std::string who = s.root ? fmt::format("storage '{}'", graph.tensor(*s.root).name)
                                   : fmt::format("workspace of op '{}'", graph.op(*s.op).name);
    const int64_t end = RequiredEnd(s, steps, plan.step_times);
    std::vector<size_t> covering;
    auto it = by_owner.find({s.op.has_value(), s.root ? s.root->value : s.op->value});
    if (it != by_owner.end()) {
      for (size_t k : it->second) {
        if (plan.buffers[k].start <= s.first && s.first < plan.buffers[k].end) covering.push_back(k);
      }
    }
    if (covering.size() != 1) {
      report(fmt::format("{} is on the device from step {} but {}", who, s.first,
                         covering.empty() ? "has no buffer covering that step"
                                          : fmt::format("{} of its buffers cover that step", covering.size())));
      continue;
    }
    const PlacedBuffer& b = plan.buffers[covering.front()];
    used[covering.front()] = true;
    if (b.size_bytes < s.bytes) report(fmt::format("{} needs {} bytes, its buffer has {}", who, s.bytes, b.size_bytes));
    if (b.end < end) {
      report(fmt::format("{} must stay reserved over steps [{}, {}) (released at step {}, memory back at {:.3f} us) "
                         "but its buffer covers [{}, {})",
                         who, s.first, end, s.released, s.release_us, b.start, b.end));
    }
  }
  for (size_t k = 0; k < plan.buffers.size(); ++k) {
    if (!used[k]) report(fmt::format("{} covers no instance of it", Describe(graph, plan.buffers[k])));
  }

  // No two buffers reserved at one step overlap in memory: sweep by start.
  std::vector<const PlacedBuffer*> sorted;
  for (const PlacedBuffer& b : plan.buffers) sorted.push_back(&b);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const PlacedBuffer* a, const PlacedBuffer* b) { return a->start < b->start; });
  std::vector<const PlacedBuffer*> active;
  for (const PlacedBuffer* b : sorted) {
    std::erase_if(active, [&](const PlacedBuffer* a) { return a->end <= b->start; });
    for (const PlacedBuffer* a : active) {
      if (a->offset_bytes < b->offset_bytes + b->size_bytes && b->offset_bytes < a->offset_bytes + a->size_bytes) {
        report(fmt::format("{} and {} are both reserved at step {} and overlap in memory", Describe(graph, *a),
                           Describe(graph, *b), b->start));
      }
    }
    active.push_back(b);
  }
  return problems;
}

}  // namespace memfit
