#include "sched/exact_search.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <queue>

namespace memfit::sched {
namespace {

constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
// Reading the clock on every expansion would cost more than the expansion.
constexpr int64_t kExpansionsPerClockCheck = 256;

class Search {
 public:
  Search(const Problem& problem, int64_t bound, const ExactSearchOptions& options)
      : problem_(problem), options_(options), bound_(bound), width_((problem.ops.size() + 63) / 64) {}

  // An order peaking below the bound, or nullopt when there is none (the
  // search completed) or a limit stopped the search (limit_hit()).
  std::optional<std::vector<uint32_t>> Run();
  bool limit_hit() const { return limit_hit_; }
  int64_t num_states() const { return static_cast<int64_t>(states_.size()); }

 private:
  struct State {
    int64_t peak_bytes = 0;  // best known peak of reaching this state
    int64_t live_bytes = 0;  // bytes live in this state
    uint32_t parent = kNone;
    uint32_t last_op = kNone;
    uint32_t count = 0;  // ops run
  };
  struct Move {
    uint32_t op;
    int64_t alloc_bytes;  // storages it touches first
    int64_t freed_bytes;  // storages it touches last
  };
  struct Entry {
    int64_t peak_bytes;
    uint32_t count;
    uint32_t state;
    // std::priority_queue pops the largest: lowest peak, then most ops run,
    // then oldest state.
    bool operator<(const Entry& o) const {
      if (peak_bytes != o.peak_bytes) return peak_bytes > o.peak_bytes;
      if (count != o.count) return count < o.count;
      return state > o.state;
    }
  };

  const uint64_t* bits(uint32_t state) const { return words_.data() + static_cast<size_t>(state) * width_; }
  static bool Has(const uint64_t* bits, uint32_t op) { return (bits[op / 64] >> (op % 64)) & 1; }
  size_t Hash(const uint64_t* bits) const;
  // The state with `bits`, added (inserted = true) when new.
  uint32_t Intern(const std::vector<uint64_t>& bits, bool& inserted);
  void Grow();
  void Offer(const std::vector<uint64_t>& bits, int64_t peak_bytes, int64_t live_bytes, uint32_t parent,
             uint32_t op, uint32_t count);
  std::vector<uint32_t> Path(uint32_t state) const;

  const Problem& problem_;
  const ExactSearchOptions& options_;
  const int64_t bound_;
  const size_t width_;
  std::vector<State> states_;
  std::vector<uint64_t> words_;  // width_ words per state
  std::vector<uint32_t> slots_;  // open addressing over states_, kNone when empty
  std::priority_queue<Entry> queue_;
  bool limit_hit_ = false;
};

size_t Search::Hash(const uint64_t* bits) const {
  uint64_t h = 0x9e3779b97f4a7c15ULL;
  for (size_t i = 0; i < width_; ++i) {
    h ^= bits[i] + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ULL;
  }
  return static_cast<size_t>(h ^ (h >> 31));
}

void Search::Grow() {
  slots_.assign(std::max<size_t>(1024, slots_.size() * 2), kNone);
  const size_t mask = slots_.size() - 1;
  for (uint32_t s = 0; s < states_.size(); ++s) {
    size_t i = Hash(bits(s)) & mask;
    while (slots_[i] != kNone) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

uint32_t Search::Intern(const std::vector<uint64_t>& b, bool& inserted) {
  if (2 * (states_.size() + 1) > slots_.size()) Grow();
  const size_t mask = slots_.size() - 1;
  size_t i = Hash(b.data()) & mask;
  for (; slots_[i] != kNone; i = (i + 1) & mask) {
    if (std::equal(b.begin(), b.end(), bits(slots_[i]))) {
      inserted = false;
      return slots_[i];
    }
  }
  inserted = true;
  const auto state = static_cast<uint32_t>(states_.size());
  slots_[i] = state;
  states_.emplace_back();
  words_.insert(words_.end(), b.begin(), b.end());
  return state;
}

void Search::Offer(const std::vector<uint64_t>& b, int64_t peak_bytes, int64_t live_bytes, uint32_t parent,
                   uint32_t op, uint32_t count) {
  if (peak_bytes >= bound_) return;
  bool inserted = false;
  const uint32_t s = Intern(b, inserted);
  State& state = states_[s];
  if (!inserted && state.peak_bytes <= peak_bytes) return;
  state = {peak_bytes, live_bytes, parent, op, count};
  queue_.push({peak_bytes, count, s});
}

std::vector<uint32_t> Search::Path(uint32_t state) const {
  std::vector<uint32_t> order;
  for (; states_[state].parent != kNone; state = states_[state].parent) order.push_back(states_[state].last_op);
  std::reverse(order.begin(), order.end());
  return order;
}

std::optional<std::vector<uint32_t>> Search::Run() {
  const auto m = static_cast<uint32_t>(problem_.ops.size());
  std::vector<uint64_t> current(width_, 0);
  Offer(current, 0, problem_.initial_bytes, kNone, kNone, 0);
  std::vector<Move> moves;
  int64_t expansions = 0;
  while (!queue_.empty()) {
    const Entry top = queue_.top();
    queue_.pop();
    const State state = states_[top.state];
    if (top.peak_bytes != state.peak_bytes) continue;  // improved since pushed
    if (state.count == m) return Path(top.state);
    if (num_states() >= options_.max_states ||
        (++expansions % kExpansionsPerClockCheck == 0 && std::chrono::steady_clock::now() >= options_.deadline)) {
      limit_hit_ = true;
      return std::nullopt;
    }
    const uint64_t* b = bits(top.state);
    std::copy(b, b + width_, current.begin());
    // Ready ops with the bytes they allocate and free; a free op alone if
    // there is one.
    moves.clear();
    for (uint32_t op = 0; op < m; ++op) {
      if (Has(b, op)) continue;
      const Problem::Op& o = problem_.ops[op];
      if (!std::all_of(o.preds.begin(), o.preds.end(), [&](uint32_t p) { return Has(b, p); })) continue;
      Move move{op, 0, 0};
      for (uint32_t s : o.storages) {
        const Problem::Storage& storage = problem_.storages[s];
        uint32_t run = 0;
        for (uint32_t t : storage.touchers) run += Has(b, t);
        if (!storage.started && run == 0) move.alloc_bytes += storage.size_bytes;
        if (!storage.kept && run + 1 == storage.touchers.size()) move.freed_bytes += storage.size_bytes;
      }
      if (move.alloc_bytes == 0 && o.workspace_bytes == 0) {
        moves.assign(1, move);
        break;
      }
      moves.push_back(move);
    }
    for (const Move& move : moves) {
      const int64_t step = state.live_bytes + move.alloc_bytes + problem_.ops[move.op].workspace_bytes;
      current[move.op / 64] |= uint64_t{1} << (move.op % 64);
      Offer(current, std::max(state.peak_bytes, step), state.live_bytes + move.alloc_bytes - move.freed_bytes,
            top.state, move.op, state.count + 1);
      current[move.op / 64] &= ~(uint64_t{1} << (move.op % 64));
    }
  }
  return std::nullopt;
}

}  // namespace

ExactSearchResult SolveExact(const Problem& problem, std::vector<uint32_t> incumbent, int64_t incumbent_peak_bytes,
                             const ExactSearchOptions& options) {
  ExactSearchResult result{std::move(incumbent), incumbent_peak_bytes, false, 0};
  if (incumbent_peak_bytes <= LowerBound(problem)) {
    result.proven_optimal = true;
    return result;
  }
  Search search(problem, incumbent_peak_bytes, options);
  std::optional<std::vector<uint32_t>> better = search.Run();
  result.states = search.num_states();
  result.proven_optimal = !search.limit_hit();
  if (better) {
    result.order = std::move(*better);
    result.peak_bytes = PeakBytes(problem, result.order);
  }
  return result;
}

}  // namespace memfit::sched
