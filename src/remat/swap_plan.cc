#include "remat/swap_plan.h"

#include <algorithm>
#include <limits>

#include "util/error.h"

namespace memfit::remat {
namespace {

struct Candidate {
  uint32_t node = 0;
  uint32_t last_forward_read = 0;  // stage after which the swap-out may start
  uint32_t first_backward_read = 0;
  double copy_us = 0;
  double priority = 0;  // higher first
};

// Whether the round trips of `chosen` (sorted by last forward read) fit the
// copy stream: swap-outs back to back from their last forward reads, all
// done by `backward_start`; swap-ins as late as possible, all after it.
bool Fits(std::span<const Candidate> chosen, std::span<const double> time, double backward_start, double out_budget) {
  double end = 0, total = 0;
  for (const Candidate& c : chosen) {
    end = std::max(end, time[c.last_forward_read + 1]) + c.copy_us;
    total += c.copy_us;
    if (end > backward_start || total > out_budget) return false;
  }
  std::vector<const Candidate*> by_use;
  by_use.reserve(chosen.size());
  for (const Candidate& c : chosen) by_use.push_back(&c);
  std::sort(by_use.begin(), by_use.end(), [](const Candidate* a, const Candidate* b) {
    return a->first_backward_read > b->first_backward_read;
  });
  double start = std::numeric_limits<double>::infinity();
  for (const Candidate* c : by_use) {
    start = std::min(start, time[c->first_backward_read]) - c->copy_us;
    if (start < backward_start) return false;
  }
  return true;
}

}  // namespace

std::vector<uint8_t> PlanSwaps(const Problem& problem, std::span<const double> copy_us,
                               const SwapPlanOptions& options) {
  const size_t n = problem.size();
  if (copy_us.size() != n) Fail("swap plan: {} copy times for {} nodes", copy_us.size(), n);
  std::vector<uint8_t> swap(n, 0);
  uint32_t first_backward = static_cast<uint32_t>(n);
  for (uint32_t v = 0; v < n; ++v) {
    if (problem.nodes[v].backward) {
      first_backward = v;
      break;
    }
  }
  if (first_backward == n) return swap;  // no backward pass
  std::vector<double> time(n + 1, 0);
  for (size_t t = 0; t < n; ++t) time[t + 1] = time[t] + problem.nodes[t].cost_us;

  // Each forward result's idle stretch.
  std::vector<uint32_t> last_forward(n), first_backward_read(n, kNever);
  for (uint32_t v = 0; v < n; ++v) last_forward[v] = v;
  for (uint32_t w = 0; w < n; ++w) {
    for (uint32_t x : problem.nodes[w].inputs) {
      if (w < first_backward) {
        last_forward[x] = std::max(last_forward[x], w);
      } else {
        first_backward_read[x] = std::min(first_backward_read[x], w);
      }
    }
  }
  std::vector<Candidate> candidates;
  for (uint32_t v = 0; v < first_backward; ++v) {
    const Node& node = problem.nodes[v];
    if (node.keep_to_end || node.bytes <= 0 || first_backward_read[v] == kNever) continue;
    Candidate c{v, last_forward[v], first_backward_read[v], copy_us[v], 0};
    if (options.priority == SwapPriority::kEarliest) {
      c.priority = -static_cast<double>(c.last_forward_read);
    } else {
      c.priority = node.recomputable ? node.cost_us / static_cast<double>(node.bytes)
                                     : std::numeric_limits<double>::infinity();
    }
    candidates.push_back(c);
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) { return a.priority > b.priority; });

  const double backward_start = time[first_backward];
  const double out_budget = options.copy_fraction * backward_start;
  std::vector<Candidate> chosen;  // sorted by last forward read
  for (const Candidate& c : candidates) {
    auto at = std::upper_bound(chosen.begin(), chosen.end(), c, [](const Candidate& a, const Candidate& b) {
      return a.last_forward_read < b.last_forward_read;
    });
    at = chosen.insert(at, c);
    if (!Fits(chosen, time, backward_start, out_budget)) chosen.erase(at);
  }
  for (const Candidate& c : chosen) swap[c.node] = 1;
  return swap;
}

}  // namespace memfit::remat
