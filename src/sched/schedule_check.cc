#include "sched/schedule_check.h"

#include <fmt/format.h>

#include <optional>

#include "ir/registry.h"
#include "sched/storage_access.h"

namespace memfit::sched {
namespace {

// Enough lines to see what is wrong without flooding a terminal.
constexpr size_t kMaxProblems = 30;

class Problems {
 public:
  template <typename... Args>
  void Add(fmt::format_string<Args...> format, Args&&... args) {
    if (lines_.size() < kMaxProblems) {
      lines_.push_back(fmt::format(format, std::forward<Args>(args)...));
    } else {
      ++dropped_;
    }
  }
  bool empty() const { return lines_.empty(); }
  std::vector<std::string> Finish() {
    if (dropped_ > 0) lines_.push_back(fmt::format("... and {} more problems", dropped_));
    return std::move(lines_);
  }

 private:
  std::vector<std::string> lines_;
  size_t dropped_ = 0;
};

std::string Describe(const Graph& graph, OpId id) { return fmt::format("op '{}' (op{})", graph.op(id).name, id.value); }
std::string DescribeTensor(const Graph& graph, TensorId id) {
  return fmt::format("t{} '{}'", id.value, graph.tensor(id).name);
}

}  // namespace

std::vector<std::string> CheckSchedule(const Graph& graph, const std::vector<OpId>& order) {
  Problems problems;
  const size_t n = graph.num_ops();
  if (order.size() != n) problems.Add("the order has {} steps for {} ops", order.size(), n);
  std::vector<std::optional<size_t>> pos(n);
  for (size_t step = 0; step < order.size(); ++step) {
    const OpId op = order[step];
    if (!graph.contains(op)) {
      problems.Add("step {} runs op{}, which does not exist", step, op.value);
    } else if (pos[op.index()]) {
      problems.Add("{} runs twice, at steps {} and {}", Describe(graph, op), *pos[op.index()], step);
    } else {
      pos[op.index()] = step;
    }
  }
  for (const Op& op : graph.ops()) {
    if (!pos[op.id.index()]) problems.Add("{} never runs", Describe(graph, op.id));
  }
  if (!problems.empty()) return problems.Finish();

  for (const Op& op : graph.ops()) {
    for (TensorId in : op.inputs) {
      const auto& producer = graph.tensor(in).producer;
      if (producer && *producer != op.id && *pos[producer->index()] > *pos[op.id.index()]) {
        problems.Add("{} runs before {}, which produces its input {}", Describe(graph, op.id),
                     Describe(graph, *producer), DescribeTensor(graph, in));
      }
    }
  }

  // Writers of every storage in program order, and how many of them each
  // touch of a storage sees before it in program order.
  const auto accesses = ComputeStorageAccesses(graph);
  std::vector<std::vector<OpId>> writers(graph.num_tensors());
  std::vector<bool> updated(graph.num_tensors(), false);
  std::vector<std::vector<size_t>> expected(n);
  for (const Op& op : graph.ops()) {
    for (const StorageAccess& a : accesses[op.id.index()]) {
      auto& w = writers[a.storage.index()];
      expected[op.id.index()].push_back(w.size());
      if (!a.writes) continue;
      w.push_back(op.id);
      if (graph.tensor(a.storage).producer != op.id) updated[a.storage.index()] = true;
    }
  }
  std::vector<size_t> seen(graph.num_tensors(), 0);
  for (OpId op : order) {
    const auto& list = accesses[op.index()];
    for (size_t i = 0; i < list.size(); ++i) {
      const size_t s = list[i].storage.index();
      const size_t want = expected[op.index()][i];
      if (!updated[s] || seen[s] == want) continue;
      // Name one writer on the wrong side of `op`.
      for (size_t rank = 0; rank < writers[s].size(); ++rank) {
        const OpId w = writers[s][rank];
        const bool before = *pos[w.index()] < *pos[op.index()];
        if (w == op || before == (rank < want)) continue;
        if (before) {
          problems.Add("{} writes storage {} before {} touches it, unlike program order", Describe(graph, w),
                       DescribeTensor(graph, list[i].storage), Describe(graph, op));
        } else {
          problems.Add("{} touches storage {} before {} writes it, unlike program order", Describe(graph, op),
                       DescribeTensor(graph, list[i].storage), Describe(graph, w));
        }
        break;
      }
    }
    for (const StorageAccess& a : list) seen[a.storage.index()] += a.writes;
  }

  // Random ops draw from one generator in program order.
  std::optional<OpId> last_random;
  for (const Op& op : graph.ops()) {
    if (!IsRandomOp(op.type)) continue;
    if (last_random && *pos[last_random->index()] > *pos[op.id.index()]) {
      problems.Add("{} draws random numbers before {}, unlike program order", Describe(graph, op.id),
                   Describe(graph, *last_random));
    }
    last_random = op.id;
  }
  return problems.Finish();
}

}  // namespace memfit::sched
