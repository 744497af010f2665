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
  size_t segment = 0;  // the backward segment it comes back in
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

std::vector<uint32_t> PlanSwaps(const Problem& problem, std::span<const double> copy_us,
                                const SwapPlanOptions& options) {
  const size_t n = problem.size();
  if (copy_us.size() != n) Fail("swap plan: {} copy times for {} nodes", copy_us.size(), n);
  std::vector<uint32_t> swap(n, kNever);
  std::vector<double> time(n + 1, 0);
  for (size_t t = 0; t < n; ++t) time[t + 1] = time[t] + problem.nodes[t].cost_us;
  // The backward segments [starts[k], ends[k]): maximal stretches of
  // backward nodes. A step has one; micro-batched along its batch (fission)
  // it has one per part, each after the part's forward, which begins where
  // the segment before ends.
  // Without per_part, one segment from the first backward node to the end.
  std::vector<uint8_t> backward(n, 0);
  for (uint32_t t = 0; t < n; ++t) {
    backward[t] = problem.nodes[t].backward || (!options.per_part && t > 0 && backward[t - 1]);
  }
  std::vector<uint32_t> starts, ends;
  for (uint32_t t = 0; t < n; ++t) {
    if (!backward[t]) continue;
    if (t == 0 || !backward[t - 1]) starts.push_back(t);
    if (t + 1 == n || !backward[t + 1]) ends.push_back(t + 1);
  }
  if (starts.empty()) return swap;  // no backward pass

  // Each forward result's idle stretch: from its last forward read to its
  // first backward read, which must come in the first backward segment
  // after it (the swap-outs of a segment then share the copy stream only
  // with each other, in its forward, and its swap-ins in the segment).
  std::vector<uint32_t> last_forward(n), first_backward_read(n, kNever);
  for (uint32_t v = 0; v < n; ++v) last_forward[v] = v;
  for (uint32_t w = 0; w < n; ++w) {
    if (backward[w]) continue;
    for (uint32_t x : problem.nodes[w].inputs) last_forward[x] = std::max(last_forward[x], w);
  }
  std::vector<uint8_t> read_early(n, 0);  // read by a backward node before its last forward read
  for (uint32_t w = 0; w < n; ++w) {
    if (!backward[w]) continue;
    for (uint32_t x : problem.nodes[w].inputs) {
      if (w < last_forward[x]) {
        read_early[x] = 1;
      } else {
        first_backward_read[x] = std::min(first_backward_read[x], w);
      }
    }
  }
  std::vector<Candidate> candidates;
  for (uint32_t v = 0; v < n; ++v) {
    const Node& node = problem.nodes[v];
    if (backward[v] || node.keep_to_end || node.bytes <= 0 || read_early[v]) continue;
    const uint32_t use = first_backward_read[v];
    const size_t k = std::upper_bound(starts.begin(), starts.end(), last_forward[v]) - starts.begin();
    if (use == kNever || k == starts.size() || use >= ends[k]) continue;
    Candidate c{v, last_forward[v], use, k, copy_us[v], 0};
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

  // Per backward segment: what goes out in the forward before it, sorted
  // by last forward read.
  std::vector<std::vector<Candidate>> chosen(starts.size());
  for (const Candidate& c : candidates) {
    const size_t k = c.segment;
    std::vector<Candidate>& group = chosen[k];
    auto at = std::upper_bound(group.begin(), group.end(), c, [](const Candidate& a, const Candidate& b) {
      return a.last_forward_read < b.last_forward_read;
    });
    at = group.insert(at, c);
    const double backward_start = time[starts[k]];
    const double out_budget = options.copy_fraction * (backward_start - time[k == 0 ? 0 : ends[k - 1]]);
    if (!Fits(group, time, backward_start, out_budget)) group.erase(at);
  }
  for (const auto& group : chosen) {
    for (const Candidate& c : group) swap[c.node] = c.last_forward_read;
  }
  return swap;
}

}  // namespace memfit::remat
