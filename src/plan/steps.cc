#include "plan/steps.h"

#include <fmt/format.h>

#include <algorithm>
#include <sstream>

#include "analysis/storage_table.h"
#include "util/enum_names.h"
#include "util/error.h"

namespace memfit {

constexpr EnumName<StepKind> kStepKindNames[] = {
    {StepKind::kCompute, "compute"}, {StepKind::kRecompute, "recompute"}, {StepKind::kSwapOut, "swap_out"},
    {StepKind::kSwapIn, "swap_in"}, {StepKind::kFree, "free"}};

std::string_view ToString(StepKind kind) { return NameOf(kStepKindNames, kind); }

std::optional<StepKind> ParseStepKind(std::string_view name) {
  return ValueNamed(kStepKindNames, name);
}

std::string ToString(const Step& step) {
  if (step.op) return fmt::format("{} op{}", ToString(step.kind), step.op->value);
  if (step.storage) return fmt::format("{} t{}", ToString(step.kind), step.storage->value);
  return fmt::format("{} (no target)", ToString(step.kind));
}

std::string ToString(const Step& step, const Graph& graph) {
  if (step.op && graph.contains(*step.op)) return fmt::format("{} '{}'", ToString(step), graph.op(*step.op).name);
  if (step.storage && graph.contains(*step.storage)) {
    return fmt::format("{} '{}'", ToString(step), graph.tensor(*step.storage).name);
  }
  return ToString(step);
}

std::ostream& operator<<(std::ostream& os, const Step& step) { return os << ToString(step); }

std::string ToString(const Steps& plan, const Graph& graph) {
  std::string out;
  for (size_t i = 0; i < plan.steps.size(); ++i) out += fmt::format("{:5}  {}\n", i, ToString(plan.steps[i], graph));
  return out;
}

std::ostream& operator<<(std::ostream& os, const Steps& plan) {
  for (size_t i = 0; i < plan.steps.size(); ++i) os << i << ": " << plan.steps[i] << "\n";
  return os;
}

Steps StepsFromOrder(const Graph& graph, const std::vector<OpId>& order) {
  if (order.size() != graph.num_ops()) Fail("the order has {} steps for {} ops", order.size(), graph.num_ops());
  constexpr int64_t kNever = -1;
  const StorageTable table(graph);
  // Last position in `order` touching each storage.
  std::vector<int64_t> last_use(table.num_storages(), kNever);
  for (size_t pos = 0; pos < order.size(); ++pos) {
    const Op& op = graph.op(order[pos]);
    for (TensorId t : op.inputs) last_use[table.index_of(t)] = static_cast<int64_t>(pos);
    for (TensorId t : op.outputs) last_use[table.index_of(t)] = static_cast<int64_t>(pos);
  }
  // Storages to free after each position, in storage-id order; those
  // pinned to the end stay.
  std::vector<std::vector<TensorId>> frees(order.size());
  for (size_t s = 0; s < table.num_storages(); ++s) {
    const StorageInfo& info = table.storage(s);
    if (!info.pinned_to_end() && last_use[s] != kNever) frees[last_use[s]].push_back(info.root);
  }
  Steps plan;
  plan.steps.reserve(order.size() * 2);
  for (size_t pos = 0; pos < order.size(); ++pos) {
    plan.steps.push_back(Step::Compute(order[pos]));
    for (TensorId s : frees[pos]) plan.steps.push_back(Step::Free(s));
  }
  return plan;
}

Steps ProgramOrderSteps(const Graph& graph) {
  std::vector<OpId> order;
  order.reserve(graph.num_ops());
  for (const Op& op : graph.ops()) order.push_back(op.id);
  return StepsFromOrder(graph, order);
}

}  // namespace memfit
