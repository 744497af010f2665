#include "sched/greedy.h"

#include <fmt/format.h>

#include <algorithm>
#include <queue>
#include <tuple>

namespace memfit::sched {

std::string_view ToString(GreedyRule rule) {
  return rule == GreedyRule::kLeastGrowth ? "least-growth" : "least-step";
}

std::vector<ListSchedule> ListSchedules(const Problem& problem) {
  std::vector<ListSchedule> schedules;
  schedules.push_back({IdentityOrder(problem), 0, "program-order"});
  for (GreedyRule rule : {GreedyRule::kLeastGrowth, GreedyRule::kLeastStep}) {
    schedules.push_back({GreedyOrder(problem, rule), 0, fmt::format("greedy:{}", ToString(rule))});
  }
  for (ListSchedule& s : schedules) s.peak_bytes = PeakBytes(problem, s.order);
  return schedules;
}

ListSchedule BestListSchedule(const Problem& problem) {
  std::vector<ListSchedule> schedules = ListSchedules(problem);
  return std::move(*std::ranges::min_element(schedules, {}, &ListSchedule::peak_bytes));
}

std::vector<uint32_t> GreedyOrder(const Problem& problem, GreedyRule rule) {
  const size_t m = problem.ops.size();
  // {primary, secondary, op, version}; smallest first.
  using Entry = std::tuple<int64_t, int64_t, uint32_t, uint32_t>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> queue;
  std::vector<uint32_t> waiting(m), version(m, 0);
  std::vector<bool> done(m, false);
  Tracker tracker(problem);

  auto push = [&](uint32_t op) {
    const int64_t alloc = tracker.AllocBytes(op);
    const int64_t growth = alloc - tracker.FreedBytes(op);
    const int64_t step = alloc + problem.ops[op].workspace_bytes;
    if (rule == GreedyRule::kLeastGrowth) {
      queue.emplace(growth, step, op, ++version[op]);
    } else {
      queue.emplace(step, growth, op, ++version[op]);
    }
  };
  for (uint32_t op = 0; op < m; ++op) {
    waiting[op] = static_cast<uint32_t>(problem.ops[op].preds.size());
    if (waiting[op] == 0) push(op);
  }

  std::vector<uint32_t> order;
  order.reserve(m);
  std::vector<uint32_t> changed;
  while (!queue.empty()) {
    const auto [primary, secondary, op, v] = queue.top();
    queue.pop();
    if (done[op] || v != version[op]) continue;  // stale rank
    done[op] = true;
    order.push_back(op);
    changed.clear();
    tracker.Run(op, &changed);
    for (uint32_t succ : problem.ops[op].succs) {
      if (--waiting[succ] == 0) push(succ);
    }
    for (uint32_t s : changed) {
      for (uint32_t other : problem.storages[s].touchers) {
        if (!done[other] && waiting[other] == 0) push(other);
      }
    }
  }
  return order;
}

}  // namespace memfit::sched
