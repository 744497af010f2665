// How the heuristic (heuristic.h) prices evicting a resident result: the
// penalty of getting it back and the score that ranks victims (lowest
// first). The scores, for a victim of `bytes` whose penalty is `penalty_us`:
//
//   next-use:      penalty_us / (bytes x (us until its next use + 1e-3))
//                  Belady's rule, priced.
//   staleness:     (penalty_us + evicted_readers_us) / (bytes x (staleness + 1e-3))
//                  DTR's h_DTR: the evicted neighbourhood (ancestors to
//                  recompute with it, dropped readers that would need it)
//                  over bytes x time since its last access.
//   cost-per-byte: penalty_us / bytes
//                  DTR's h_MSPS.
// The 1e-3 us keeps a use or access at the current instant finite. Swapping
// a victim out costs the round trip's stall (copy_stream.h) plus a bias of
// swap_bias x its copy time, which keeps the copy stream for the tensors that
// need it; a victim that would be swapped is always ranked by next-use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "remat/problem.h"

namespace memfit::remat {

// How the heuristic picks what to drop when memory is short.
enum class EvictionScore : uint8_t {
  // price / (bytes x time until the next use): Belady's rule, priced.
  kNextUse,
  // DTR's h_DTR with our prices: (price + evicted readers' cost) / (bytes x
  // staleness), on a clock that counts recomputations. Blind to the future,
  // it is still the better rule on some deep graphs (long recomputation
  // chains), so the optimizer tries both.
  kStaleness,
  // DTR's h_MSPS: price / bytes (the cheapest bytes to get back go first,
  // however soon they are needed).
  kCostPerByte,
};
// "next-use", "staleness", "cost-per-byte".
std::string_view ToString(EvictionScore score);

double NextUseScore(double penalty_us, int64_t bytes, double until_use_us);
double StalenessScore(double penalty_us, double evicted_readers_us, int64_t bytes, double staleness_us);
double CostPerByteScore(double penalty_us, int64_t bytes);
double SwapPenalty(double stall_us, double copy_us, double swap_bias);

// The summed cost_us of the nodes a walk reaches from `start` (counted when
// `count_start`), following `Next(u)` (a node's inputs, or its readers) to
// the nodes `follow(x)` accepts, each node once. Bounded: it stops after
// counting kMaxNodes nodes and prices what it has (eviction must stay cheap
// on long chains). The search state is kept between walks.
class BoundedWalk {
 public:
  static constexpr size_t kMaxNodes = 24;

  explicit BoundedWalk(size_t num_nodes) : visit_(num_nodes, 0) {}

  // next(u, visit) calls visit(x) for every neighbour x of u.
  template <typename Next, typename Follow>
  double Cost(const Problem& p, uint32_t start, bool count_start, Next next, Follow follow) {
    ++stamp_;
    double cost = 0;
    size_t counted = 0;
    stack_.assign(1, start);
    visit_[start] = stamp_;
    bool first = true;
    while (!stack_.empty() && counted < kMaxNodes) {
      const uint32_t u = stack_.back();
      stack_.pop_back();
      if (!first || count_start) ++counted, cost += p.nodes[u].cost_us;
      first = false;
      next(u, [&](uint32_t x) {
        if (visit_[x] == stamp_ || !follow(x)) return;
        visit_[x] = stamp_;
        stack_.push_back(x);
      });
    }
    return cost;
  }

 private:
  std::vector<uint32_t> visit_, stack_;
  uint32_t stamp_ = 0;
};

}  // namespace memfit::remat
