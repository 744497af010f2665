#include "remat/heuristic.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>

#include "util/error.h"

namespace memfit::remat {
namespace {

enum class Status : uint8_t { kNotYet, kResident, kDropped, kHost, kDead };

struct EngineOptions {
  int64_t budget = std::numeric_limits<int64_t>::max();
  bool allow_recompute = true;
  const std::vector<double>* copy_us = nullptr;  // null: no swapping
  bool evict_to_host = true;                     // MakeRoom may swap (else only planned swaps)
  const std::vector<uint8_t>* swap_after_forward = nullptr;
  double prefetch_margin = 1.5;
  double swap_bias = 0.05;
  EvictionScore score = EvictionScore::kNextUse;
  bool free_parts = false;
  double max_recompute_us = std::numeric_limits<double>::infinity();
  SteadyClock::time_point deadline = SteadyClock::time_point::max();
  bool hold_inputs = false;    // HeuristicOptions::hold_inputs
  bool foresee_reads = false;  // HeuristicOptions::foresee_reads
  // Baselines: forward results to drop after their last forward use.
  const std::vector<uint8_t>* drop_after_forward = nullptr;
};

class Engine {
 public:
  Engine(const Problem& problem, const EngineOptions& options) : p_(problem), o_(options), n_(problem.size()) {
    // Readers of each node, by stage (ascending because stages are).
    use_begin_.assign(n_ + 1, 0);
    for (const Node& node : p_.nodes) {
      for (uint32_t u : node.inputs) ++use_begin_[u + 1];
    }
    for (size_t v = 0; v < n_; ++v) use_begin_[v + 1] += use_begin_[v];
    uses_.resize(use_begin_[n_]);
    std::vector<uint32_t> fill(use_begin_.begin(), use_begin_.end() - 1);
    for (uint32_t w = 0; w < n_; ++w) {
      for (uint32_t u : p_.nodes[w].inputs) uses_[fill[u]++] = w;
    }
    next_use_ = std::vector<uint32_t>(use_begin_.begin(), use_begin_.end() - 1);
    time_.assign(n_ + 1, 0);
    for (size_t t = 0; t < n_; ++t) time_[t + 1] = time_[t] + p_.nodes[t].cost_us;
    Reach();
    // Holding inputs: a node whose horizon an input cuts short (an ancestor
    // overwritten in place, as by an optimizer update) may still be dropped
    // past it when the inputs that cut it stay resident until it is last
    // needed. Worth it when they are small next to it (a weight gradient
    // and the activations it is made from).
    if (o_.hold_inputs) {
      bool any = false;
      for (uint32_t v = 0; v < n_; ++v) {
        const Node& node = p_.nodes[v];
        if (!node.recomputable || horizon_[v] >= std::min(node.recompute_until, need_[v])) continue;
        int64_t held = 0;
        for (uint32_t x : node.inputs) {
          if (p_.nodes[x].recomputable && horizon_[x] < need_[v]) held += p_.nodes[x].bytes;
        }
        if (2 * held <= node.bytes) holds_inputs_[v] = 1, any = true;
      }
      if (any) Reach();
    }
    // part_need: the same, per part, from the readers that read that part.
    part_begin_.assign(n_ + 1, 0);
    for (size_t v = 0; v < n_; ++v) part_begin_[v + 1] = part_begin_[v] + std::max<size_t>(1, p_.nodes[v].parts.size());
    part_need_.resize(part_begin_[n_]);
    part_last_read_.resize(part_begin_[n_]);
    part_bytes_.resize(part_begin_[n_]);
    part_keep_.resize(part_begin_[n_]);
    for (uint32_t v = 0; v < n_; ++v) {
      const Node& node = p_.nodes[v];
      for (uint32_t k = part_begin_[v]; k < part_begin_[v + 1]; ++k) {
        const bool whole = node.parts.empty();
        part_bytes_[k] = whole ? node.bytes : node.parts[k - part_begin_[v]].bytes;
        part_keep_[k] = whole ? node.keep_to_end : node.parts[k - part_begin_[v]].keep_to_end;
        part_need_[k] = part_keep_[k] ? static_cast<uint32_t>(n_) : v;
        part_last_read_[k] = v;
      }
    }
    for (uint32_t w = 0; w < n_; ++w) {
      const Node& node = p_.nodes[w];
      const uint32_t reach = node.recomputable ? std::max(w, std::min(need_[w], horizon_[w])) : w;
      for (size_t i = 0; i < node.inputs.size(); ++i) {
        const uint32_t x = node.inputs[i];
        const uint64_t mask = node.input_parts.empty() ? ~uint64_t{0} : node.input_parts[i];
        for (uint32_t k = part_begin_[x]; k < part_begin_[x + 1]; ++k) {
          if (mask & PartBit(x, k)) {
            part_need_[k] = std::max(part_need_[k], reach);
            part_last_read_[k] = std::max(part_last_read_[k], w);
          }
        }
      }
    }
    bytes_.assign(n_, 0);
    last_access_.assign(n_, 0);
    missing_.assign(n_, 0);
    first_backward_ = static_cast<uint32_t>(n_);
    for (uint32_t v = 0; v < n_; ++v) {
      if (p_.nodes[v].backward) {
        first_backward_ = v;
        break;
      }
    }
    status_.assign(n_, Status::kNotYet);
    locked_.assign(n_, 0);
    resident_pos_.assign(n_, kNoLimit);
    visit_.assign(n_, 0);
    for (Memo* m : {&first_read_, &recomputed_at_}) m->epoch.assign(n_, 0), m->stage.assign(n_, 0);
  }

  // horizon[v]: the last stage at which v can be recomputed (its own
  // recompute_until and, unless it holds its inputs, that of every
  // recomputable ancestor; non-recomputable inputs are held for it, see
  // need). need[v]: the last stage at which v may be read, directly or to
  // recompute a reader. An input needed past its own horizon is held
  // resident for that reader (Release).
  void Reach() {
    horizon_.assign(n_, kNoLimit);
    holds_inputs_.resize(n_, 0);
    for (size_t v = 0; v < n_; ++v) {
      const Node& node = p_.nodes[v];
      if (!node.recomputable) continue;
      uint32_t h = node.recompute_until;
      if (!holds_inputs_[v]) {
        for (uint32_t x : node.inputs) h = std::min(h, horizon_[x]);
      }
      horizon_[v] = h;
    }
    need_.assign(n_, 0);
    held_for_reader_.assign(n_, 0);
    for (size_t v = n_; v-- > 0;) {
      const Node& node = p_.nodes[v];
      uint32_t need = node.keep_to_end ? static_cast<uint32_t>(n_) : static_cast<uint32_t>(v);
      for (size_t k = use_begin_[v]; k < use_begin_[v + 1]; ++k) {
        const uint32_t c = uses_[k];
        need = std::max(need, c);
        if (p_.nodes[c].recomputable) {
          const uint32_t reach = std::min(need_[c], horizon_[c]);
          need = std::max(need, reach);
          if (reach > horizon_[v]) held_for_reader_[v] = 1;
        }
      }
      need_[v] = need;
    }
  }
  // Whether v may be dropped once its direct reads are done: a
  // recomputation of a reader after them can recompute it too.
  bool RecomputableToTheEnd(uint32_t v) const { return p_.nodes[v].recomputable && !held_for_reader_[v]; }

  HeuristicResult Run() {
    mem_ = p_.fixed_bytes;
    result_.peak_estimate = mem_;
    for (stage_ = 0; stage_ < n_; ++stage_) {
      if (stage_ % kStagesPerClockRead == 0) CheckDeadline();
      Retire(time_[stage_]);
      Prefetch();
      const Node& node = p_.nodes[stage_];
      Evaluate(stage_);
      for (uint32_t x : node.inputs) Release(x);
      Release(stage_);
      Settle();
      Unhold();
    }
    result_.fits = !overflow_ && result_.peak_estimate <= o_.budget;
    return std::move(result_);
  }

 private:
  // The clock is read once every this many stages (and recomputations).
  static constexpr size_t kStagesPerClockRead = 64;
  void CheckDeadline() const {
    if (o_.deadline != SteadyClock::time_point::max() && SteadyClock::now() > o_.deadline) {
      Fail("remat heuristic: out of time at stage {}", stage_);
    }
  }

  uint32_t NextUse(uint32_t v) const {
    return next_use_[v] < use_begin_[v + 1] ? uses_[next_use_[v]] : kNoLimit;
  }
  bool Swappable() const { return o_.copy_us != nullptr && o_.evict_to_host; }
  double CopyUs(uint32_t v) const { return (*o_.copy_us)[v]; }

  // The clock advances by every evaluation (recomputations included), as
  // DTR's does; staleness is measured on it.
  void Touch(uint32_t v, double cost_us) {
    clock_ += cost_us;
    last_access_[v] = clock_;
  }
  void Emit(EventKind kind, uint32_t v) { result_.events.push_back({kind, v}); }
  void Account(int64_t extra) { result_.peak_estimate = std::max(result_.peak_estimate, mem_ + extra); }

  void AddResident(uint32_t v) {
    status_[v] = Status::kResident;
    resident_pos_[v] = static_cast<uint32_t>(resident_.size());
    resident_.push_back(v);
  }
  void RemoveResident(uint32_t v, Status to) {
    const uint32_t pos = resident_pos_[v];
    resident_[pos] = resident_.back();
    resident_pos_[resident_[pos]] = pos;
    resident_.pop_back();
    resident_pos_[v] = kNoLimit;
    status_[v] = to;
    mem_ -= bytes_[v];
    bytes_[v] = 0;
  }
  void Allocate(uint32_t v, int64_t bytes) {
    bytes_[v] = bytes;
    missing_[v] = bytes != p_.nodes[v].bytes ? GoneAt(v, stage_) : 0;
    mem_ += bytes;
    AddResident(v);
  }
  // The bytes of v's parts that may still be read at stage `from` or later.
  // A part of a recomputable node goes after its last direct read (a later
  // recomputation of a reader that needs it recomputes the node, as for a
  // whole node); a part of any other node only once nothing can read it.
  bool PartLive(uint32_t v, uint32_t k, uint32_t from) const {
    return !o_.free_parts || part_keep_[k] || k - part_begin_[v] >= 63 ||  // past the masks: kept whole
           (RecomputableToTheEnd(v) ? part_last_read_[k] : part_need_[k]) >= from;
  }
  // The bit of part k (a global part index) of v in masks; parts past the
  // 63rd share the last bit.
  uint64_t PartBit(uint32_t v, uint32_t k) const { return uint64_t{1} << std::min<uint32_t>(k - part_begin_[v], 63); }
  // The parts of v nothing reads from `from` on.
  uint64_t GoneAt(uint32_t v, uint32_t from) const {
    uint64_t gone = 0;
    for (uint32_t k = part_begin_[v]; k < part_begin_[v + 1]; ++k) {
      if (!PartLive(v, k, from)) gone |= PartBit(v, k);
    }
    return gone;
  }
  int64_t LiveBytes(uint32_t v, uint32_t from) const {
    int64_t bytes = 0;
    for (uint32_t k = part_begin_[v]; k < part_begin_[v + 1]; ++k) {
      if (PartLive(v, k, from)) bytes += part_bytes_[k];
    }
    return bytes;
  }
  // The mask of v's parts that node w reads.
  uint64_t ReadMask(uint32_t w, size_t input_index) const {
    const Node& node = p_.nodes[w];
    return node.input_parts.empty() ? ~uint64_t{0} : node.input_parts[input_index];
  }
  // Frees the parts of a resident v that nothing reads from `from` on.
  void Trim(uint32_t v, uint32_t from) {
    if (!o_.free_parts || status_[v] != Status::kResident || part_begin_[v + 1] - part_begin_[v] < 2) return;
    int64_t live = 0;
    for (uint32_t k = part_begin_[v]; k < part_begin_[v + 1]; ++k) {
      if (missing_[v] & PartBit(v, k)) continue;
      if (PartLive(v, k, from)) {
        live += part_bytes_[k];
      } else {
        missing_[v] |= PartBit(v, k);
      }
    }
    if (live < bytes_[v]) mem_ -= bytes_[v] - live, bytes_[v] = live;
  }

  // Swap-ins, just in time on the one copy stream: in order of first read
  // (FirstRead), each copy must land by its use and before the next one has to start;
  // those whose latest start (less the margin) comes before the next stage
  // are issued now. The rest are prefetched later, or swapped in on demand,
  // stalling the compute stream.
  void Prefetch() {
    for (size_t k = 0; k < host_.size();) {
      const uint32_t v = host_[k];
      if (status_[v] != Status::kHost || need_[v] < stage_) {
        host_[k] = host_.back(), host_.pop_back();
        if (status_[v] == Status::kHost) status_[v] = Status::kDead;
        continue;
      }
      ++k;
    }
    if (host_.empty()) return;
    ++memo_epoch_;
    host_use_.resize(n_);
    for (uint32_t v : host_) host_use_[v] = FirstRead(v);
    std::sort(host_.begin(), host_.end(), [&](uint32_t a, uint32_t b) { return host_use_[a] < host_use_[b]; });
    due_.assign(host_.size(), 0);
    double next_start = std::numeric_limits<double>::infinity();
    for (size_t k = host_.size(); k-- > 0;) {
      const uint32_t use = host_use_[host_[k]];
      if (use == kNoLimit) continue;  // needed only deeper in a recomputation: on demand
      const double deadline = std::min(time_[use], next_start);
      next_start = deadline - CopyUs(host_[k]);
      due_[k] = deadline - CopyUs(host_[k]) * o_.prefetch_margin <= time_[stage_ + 1];
    }
    // The copy lands while this stage's node runs: room for both.
    const int64_t running = p_.nodes[stage_].bytes + p_.nodes[stage_].workspace_bytes;
    std::vector<uint32_t> waiting;
    for (size_t k = 0; k < host_.size(); ++k) {
      const uint32_t v = host_[k];
      // Room is made only from residents needed after v (Belady-consistent,
      // so two prefetches cannot evict each other back and forth).
      if (due_[k] && RoomBefore(LiveBytes(v, stage_) + running, host_use_[v], CopyUs(v))) {
        SwapIn(v);
      } else {
        waiting.push_back(v);
      }
    }
    host_ = std::move(waiting);
  }

  // The stage at which v is next read: directly, or to recompute a reader
  // when that one is next needed (through any chain of dropped readers).
  // Memoized for one Prefetch call (memo_epoch_), as nothing changes while
  // it asks.
  uint32_t FirstRead(uint32_t v) {
    if (first_read_.epoch[v] == memo_epoch_) return first_read_.stage[v];
    uint32_t first = NextUse(v);
    for (size_t k = use_begin_[v]; k < use_begin_[v + 1]; ++k) first = std::min(first, RecomputedAt(uses_[k]));
    first_read_.Set(v, first, memo_epoch_);
    return first;
  }
  // When c will be recomputed as things stand (kNoLimit: not foreseen): a
  // dropped c when it is next read, a resident c that let parts go when a
  // reader of those parts is recomputed.
  uint32_t RecomputedAt(uint32_t c) {
    if (need_[c] < stage_) return kNoLimit;
    if (status_[c] == Status::kDropped) return FirstRead(c);
    if (status_[c] != Status::kResident || missing_[c] == 0) return kNoLimit;
    if (recomputed_at_.epoch[c] == memo_epoch_) return recomputed_at_.stage[c];
    uint32_t at = kNoLimit;
    for (size_t k = use_begin_[c]; k < use_begin_[c + 1]; ++k) at = std::min(at, RecomputedAt(uses_[k]));
    recomputed_at_.Set(c, at, memo_epoch_);
    return at;
  }

  // Drops residents next needed after `use` until `bytes` more fit; false
  // (and nothing dropped) when they do not free enough, or when recomputing
  // them would cost more than `worth_us` (the stall a prefetch now can
  // avoid at most). (Swapping a victim out to swap another in would only
  // churn the copy stream.)
  bool RoomBefore(int64_t bytes, uint32_t use, double worth_us) {
    const int64_t short_by = mem_ + bytes - o_.budget;
    if (short_by <= 0) return true;
    // The drops MakeRoom would make, priced in advance (in next-use order).
    room_.clear();
    for (uint32_t r : resident_) {
      if (!DropCandidate(r, use)) continue;
      const double penalty = RecomputeCost(r);
      room_.push_back({NextUseScore(r, Use(r), penalty), penalty, bytes_[r]});
    }
    std::sort(room_.begin(), room_.end(), [](const Room& a, const Room& b) { return a.score < b.score; });
    int64_t freed = 0;
    double price = 0;
    for (const Room& r : room_) {
      if (freed >= short_by) break;
      freed += r.bytes, price += r.penalty;
    }
    if (freed < short_by || price > worth_us) return false;
    MakeRoom(bytes, use);
    return !overflow_;
  }

  void SwapIn(uint32_t v) {
    copy_free_ = std::max(copy_free_, time_[stage_]) + CopyUs(v);
    Allocate(v, LiveBytes(v, stage_));
    Emit(EventKind::kSwapIn, v);
    ++result_.swaps;
    ++locked_[v];
    MakeRoom(0);
    --locked_[v];
    Account(0);
  }

  // Evaluates v now (its first computation, or a recomputation): restores
  // the parts of its inputs it reads and holds them while it runs.
  void Evaluate(uint32_t v) {
    const Node& node = p_.nodes[v];
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      Restore(node.inputs[i], ReadMask(v, i));
      ++locked_[node.inputs[i]];
    }
    ++locked_[v];
    Allocate(v, node.bytes);
    MakeRoom(node.workspace_bytes);
    Emit(EventKind::kEval, v);
    Touch(v, node.cost_us);
    for (uint32_t x : node.inputs) last_access_[x] = clock_;
    Account(node.workspace_bytes);
    --locked_[v];
    for (uint32_t x : node.inputs) --locked_[x];
  }

  // Makes v (at least the parts in `mask`) resident at the current stage.
  void Restore(uint32_t v, uint64_t mask) {
    switch (status_[v]) {
      case Status::kResident:
        if ((missing_[v] & mask) == 0) return;
        RemoveResident(v, Status::kDropped);  // a part it let go is needed: recompute
        break;
      case Status::kHost: {
        auto it = std::find(host_.begin(), host_.end(), v);
        if (it != host_.end()) *it = host_.back(), host_.pop_back();
        if ((GoneAt(v, stage_) & mask) == 0) {
          SwapIn(v);
          return;
        }
        status_[v] = Status::kDropped;  // a part it let go before the swap is needed: recompute
        break;
      }
      case Status::kNotYet:
        Fail("remat heuristic: node {} '{}' read before it is computed", v, p_.nodes[v].name);
      case Status::kDropped:
      case Status::kDead:
        break;
    }
    const Node& node = p_.nodes[v];
    if (!node.recomputable || stage_ > horizon_[v]) {
      Fail("remat heuristic: node {} '{}' is needed at stage {} but can no longer be recomputed", v, node.name, stage_);
    }
    Evaluate(v);
    result_.recompute_us += node.cost_us;
    ++result_.recomputations;
    if (result_.recomputations % kStagesPerClockRead == 0) CheckDeadline();
    if (result_.recompute_us > o_.max_recompute_us) {
      Fail("remat heuristic: recomputation passed {:.0f} us at stage {}; giving up at this budget", o_.max_recompute_us,
           stage_);
    }
    // Inputs brought back only for recomputations go again, at once or (with
    // foresight) once this stage is done (Settle): until then the next
    // recomputation may read them too.
    for (uint32_t x : node.inputs) {
      const bool only_recomputations = NextUse(x) == kNoLimit && !p_.nodes[x].keep_to_end &&
                                       RecomputableToTheEnd(x) && status_[x] == Status::kResident;
      if (only_recomputations && o_.foresee_reads) {
        transient_.push_back(x);
      } else if (only_recomputations && locked_[x] == 0) {
        RemoveResident(x, Status::kDropped);
      } else {
        Trim(x, stage_);
      }
    }
  }

  // After stage_ read v (or computed it).
  void Release(uint32_t v) {
    while (next_use_[v] < use_begin_[v + 1] && uses_[next_use_[v]] <= stage_) ++next_use_[v];
    if (status_[v] != Status::kResident || locked_[v]) return;
    Trim(v, stage_ + 1);
    const Node& node = p_.nodes[v];
    const uint32_t use = NextUse(v);
    if (use == kNoLimit) {
      if (node.keep_to_end) return;
      if (need_[v] <= stage_) {
        RemoveResident(v, Status::kDead);
      } else if (Needless(v)) {
        RemoveResident(v, Status::kDropped);
      } else {
        held_.push_back(v);  // until Needless (Unhold)
      }
      return;
    }
    // Baselines: a forward result next read in the backward pass goes now.
    if (o_.drop_after_forward && (*o_.drop_after_forward)[v] && stage_ < first_backward_ &&
        use >= first_backward_ && CanDrop(v, use)) {
      RemoveResident(v, Status::kDropped);
    }
    // Planned swaps (swap_plan.h) leave as soon as the forward pass is done.
    if (o_.swap_after_forward && (*o_.swap_after_forward)[v] && stage_ < first_backward_ && use >= first_backward_) {
      SwapOut(v, time_[stage_ + 1], /*hold=*/true);
    }
  }

  // Drops what only this stage's recomputations read, unless a dropped
  // reader still needs it (then it is held until Needless).
  void Settle() {
    for (uint32_t x : transient_) {
      if (status_[x] != Status::kResident || locked_[x] || NextUse(x) != kNoLimit) continue;
      if (Needless(x)) {
        RemoveResident(x, Status::kDropped);
      } else {
        held_.push_back(x);
      }
    }
    transient_.clear();
  }

  // Whether a resident v past its direct reads can go now: it can be
  // recomputed wherever it may be read, and no dropped reader that will be
  // recomputed needs it (dropping it would only add it to that recomputation).
  bool Needless(uint32_t v) const {
    if (!RecomputableToTheEnd(v)) return false;
    if (!o_.foresee_reads) return true;
    for (size_t k = use_begin_[v]; k < use_begin_[v + 1]; ++k) {
      const uint32_t c = uses_[k];
      if (status_[c] == Status::kDropped && need_[c] > stage_) return false;
    }
    return true;
  }
  // Frees the held residents that have become needless.
  void Unhold() {
    for (size_t k = 0; k < held_.size();) {
      const uint32_t v = held_[k];
      const bool dead = need_[v] <= stage_;
      if (status_[v] == Status::kResident && !dead && !Needless(v)) {
        ++k;
        continue;
      }
      if (status_[v] == Status::kResident && !locked_[v]) RemoveResident(v, dead ? Status::kDead : Status::kDropped);
      held_[k] = held_.back(), held_.pop_back();
    }
  }

  // A planned swap-out (`hold`) keeps its device copy until the copy ends,
  // as in the simulator: a queue of them holds memory the estimate must
  // count. A swap-out made to relieve a shortage is counted as freeing at
  // once (else MakeRoom would empty the device looking for bytes free now);
  // the simulator judges what it really costs.
  void SwapOut(uint32_t v, double from_us, bool hold) {
    copy_free_ = std::max(copy_free_, from_us) + CopyUs(v);
    const int64_t bytes = bytes_[v];
    RemoveResident(v, Status::kHost);
    if (hold) {
      mem_ += bytes;
      outgoing_.push_back({copy_free_, bytes});
    }
    host_.push_back(v);
  }
  // Releases the device copies of swap-outs done by `now`.
  void Retire(double now) {
    for (size_t k = 0; k < outgoing_.size();) {
      if (outgoing_[k].done_us <= now) {
        mem_ -= outgoing_[k].bytes;
        outgoing_[k] = outgoing_.back(), outgoing_.pop_back();
      } else {
        ++k;
      }
    }
  }

  bool CanDrop(uint32_t v, uint32_t use) const {
    return o_.allow_recompute && p_.nodes[v].recomputable && use <= horizon_[v];
  }

  // The price of recomputing v now: its cost plus that of the ancestors
  // that would have to be recomputed with it (those neither resident nor on
  // the host), DTR's evicted neighbourhood. Bounded to keep eviction cheap;
  // past the bound the chain is priced as it stands.
  double RecomputeCost(uint32_t v) {
    constexpr size_t kMaxVisited = 24;
    ++stamp_;
    double cost = 0;
    stack_.assign(1, v);
    visit_[v] = stamp_;
    size_t visited = 0;
    while (!stack_.empty() && visited < kMaxVisited) {
      const uint32_t u = stack_.back();
      stack_.pop_back();
      ++visited;
      cost += p_.nodes[u].cost_us;
      for (uint32_t x : p_.nodes[u].inputs) {
        if (visit_[x] == stamp_ || status_[x] == Status::kResident || status_[x] == Status::kHost) continue;
        visit_[x] = stamp_;
        stack_.push_back(x);
      }
    }
    return cost;
  }

  // The cost of v's dropped readers that may still be recomputed (and so
  // would need v), transitively through dropped readers; bounded like
  // RecomputeCost.
  double EvictedReadersCost(uint32_t v) {
    constexpr size_t kMaxVisited = 24;
    ++stamp_;
    double cost = 0;
    stack_.assign(1, v);
    visit_[v] = stamp_;
    size_t visited = 0;
    while (!stack_.empty() && visited < kMaxVisited) {
      const uint32_t u = stack_.back();
      stack_.pop_back();
      for (size_t k = use_begin_[u]; k < use_begin_[u + 1]; ++k) {
        const uint32_t c = uses_[k];
        if (visit_[c] == stamp_ || status_[c] != Status::kDropped) continue;
        visit_[c] = stamp_;
        ++visited;
        cost += p_.nodes[c].cost_us;
        stack_.push_back(c);
      }
    }
    return cost;
  }

  // The stage at which a resident v is next needed (kNoLimit: never).
  uint32_t Use(uint32_t v) const {
    const uint32_t use = NextUse(v);
    if (use != kNoLimit) return use;
    return p_.nodes[v].keep_to_end ? kNoLimit : std::min<uint32_t>(need_[v], static_cast<uint32_t>(n_));
  }

  // Belady's rule, priced: penalty / (bytes x time until `use`).
  double NextUseScore(uint32_t v, uint32_t use, double penalty) const {
    return penalty / (static_cast<double>(bytes_[v]) * (time_[use] - time_[stage_] + 1e-3));
  }

  // The stage at which a resident v is next needed, if it may leave the
  // device to make room for something needed at `after`; kNoLimit if not.
  uint32_t EvictableUntil(uint32_t v, uint32_t after) const {
    if (locked_[v] || bytes_[v] == 0) return kNoLimit;
    const uint32_t use = Use(v);
    return use > after ? use : kNoLimit;
  }

  // Whether MakeRoom may drop v for a prefetch of something needed at `after`.
  bool DropCandidate(uint32_t v, uint32_t after) const {
    const uint32_t use = EvictableUntil(v, after);
    return use != kNoLimit && CanDrop(v, use);
  }

  // Evicts residents until `extra` more bytes fit the budget; for a
  // prefetch (after > 0) only by dropping residents needed after `after`.
  void MakeRoom(int64_t extra, uint32_t after = 0) {
    while (mem_ + extra > o_.budget) {
      if (o_.foresee_reads) ++memo_epoch_;  // FirstRead sees the drops made so far
      uint32_t victim = kNoLimit;
      bool victim_swaps = false;
      double best = std::numeric_limits<double>::infinity();
      for (uint32_t v : resident_) {
        const uint32_t use = EvictableUntil(v, after);
        if (use == kNoLimit) continue;
        double penalty = std::numeric_limits<double>::infinity();
        bool swaps = false;
        if (CanDrop(v, use)) {
          penalty = RecomputeCost(v);
        }
        if (Swappable() && after == 0) {
          const double start = std::max(copy_free_, time_[stage_]);
          const double stall = std::max(0.0, start + 2 * CopyUs(v) - time_[use]);
          const double swap_penalty = stall + o_.swap_bias * CopyUs(v);
          if (swap_penalty < penalty) penalty = swap_penalty, swaps = true;
        }
        if (!std::isfinite(penalty)) continue;
        // Past its direct reads, v is read next when a dropped reader is
        // recomputed, often well before the last stage it may be (use).
        const uint32_t read = o_.foresee_reads && NextUse(v) == kNoLimit ? std::min(use, FirstRead(v)) : use;
        double score = NextUseScore(v, read, penalty);
        if (o_.score == EvictionScore::kStaleness && !swaps) {
          // DTR's h: the evicted neighbourhood (ancestors to recompute with
          // it, and evicted readers that would need it) over bytes x staleness.
          const double staleness = clock_ - last_access_[v] + 1e-3;
          score = (penalty + EvictedReadersCost(v)) / (static_cast<double>(bytes_[v]) * staleness);
        } else if (o_.score == EvictionScore::kCostPerByte && !swaps) {
          score = penalty / static_cast<double>(bytes_[v]);
        }
        if (score < best) best = score, victim = v, victim_swaps = swaps;
      }
      if (victim == kNoLimit) {
        overflow_ = true;
        return;
      }
      if (victim_swaps) {
        SwapOut(victim, time_[stage_], /*hold=*/false);
      } else {
        RemoveResident(victim, Status::kDropped);
      }
    }
  }

  const Problem& p_;
  EngineOptions o_;
  size_t n_;
  std::vector<uint32_t> use_begin_, uses_, next_use_;
  std::vector<double> time_;
  std::vector<uint32_t> horizon_, need_;
  std::vector<uint8_t> holds_inputs_;     // by node: may be dropped past its inputs' horizon (they are held)
  std::vector<uint8_t> held_for_reader_;  // by node: an input so held
  std::vector<uint32_t> held_;         // residents past their direct reads kept for a recomputation (Needless)
  std::vector<uint32_t> transient_;    // residents brought back only for this stage's recomputations
  // Parts of node v: [part_begin_[v], part_begin_[v + 1]).
  std::vector<uint32_t> part_begin_, part_need_;
  std::vector<int64_t> part_bytes_;
  std::vector<uint8_t> part_keep_;
  std::vector<uint32_t> part_last_read_;
  std::vector<int64_t> bytes_;     // resident bytes of each node
  std::vector<double> last_access_;
  double clock_ = 0;
  std::vector<uint64_t> missing_;  // parts of a resident node already let go
  uint32_t first_backward_ = 0;
  std::vector<Status> status_;
  std::vector<uint32_t> locked_;
  std::vector<uint32_t> resident_, resident_pos_;
  std::vector<uint32_t> host_;
  struct Outgoing {
    double done_us;
    int64_t bytes;
  };
  std::vector<Outgoing> outgoing_;  // swap-outs whose device copy is still held
  std::vector<uint8_t> due_;         // Prefetch's scratch
  struct Room {
    double score, penalty;
    int64_t bytes;
  };
  std::vector<Room> room_;           // RoomBefore's scratch
  std::vector<uint32_t> host_use_;   // by node: FirstRead when Prefetch last looked
  struct Memo {  // a stage per node, valid for one epoch
    std::vector<uint32_t> epoch, stage;
    void Set(uint32_t v, uint32_t at, uint32_t now) { epoch[v] = now, stage[v] = at; }
  };
  Memo first_read_, recomputed_at_;
  uint32_t memo_epoch_ = 0;
  std::vector<uint32_t> visit_, stack_;  // RecomputeCost's search
  uint32_t stamp_ = 0;
  int64_t mem_ = 0;
  double copy_free_ = 0;
  bool overflow_ = false;
  uint32_t stage_ = 0;
  HeuristicResult result_;
};

// "bert.encoder.layer.3.attention.self.query" -> "bert.encoder.layer.3";
// "layer2.1.conv1" -> "layer2.1"; no numeric component: the first one.
std::string_view BlockOf(std::string_view name) {
  size_t begin = 0;
  while (begin <= name.size()) {
    size_t end = name.find('.', begin);
    if (end == std::string_view::npos) end = name.size();
    const std::string_view part = name.substr(begin, end - begin);
    if (!part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return name.substr(0, end);
    }
    begin = end + 1;
  }
  return name.substr(0, name.find('.'));
}

}  // namespace

HeuristicResult RunHeuristic(const Problem& problem, const HeuristicOptions& options) {
  if (!options.copy_us.empty() && options.copy_us.size() != problem.size()) {
    Fail("remat heuristic: {} copy times for {} nodes", options.copy_us.size(), problem.size());
  }
  EngineOptions eo;
  eo.budget = options.budget_bytes;
  eo.allow_recompute = options.allow_recompute;
  eo.copy_us = options.copy_us.empty() ? nullptr : &options.copy_us;
  eo.evict_to_host = options.evict_to_host;
  if (!options.swap_after_forward.empty()) {
    if (options.swap_after_forward.size() != problem.size() || options.copy_us.empty()) {
      Fail("remat heuristic: planned swaps need a flag and a copy time per node");
    }
    eo.swap_after_forward = &options.swap_after_forward;
  }
  eo.prefetch_margin = options.prefetch_margin;
  eo.swap_bias = options.swap_bias;
  eo.score = options.score;
  eo.free_parts = options.free_parts;
  eo.hold_inputs = options.hold_inputs;
  eo.foresee_reads = options.foresee_reads;
  eo.max_recompute_us = options.max_recompute_us;
  eo.deadline = options.deadline;
  return Engine(problem, eo).Run();
}

std::vector<HeuristicOptions> RecomputeVariants() {
  std::vector<HeuristicOptions> variants;
  for (const EvictionScore score : {EvictionScore::kNextUse, EvictionScore::kStaleness, EvictionScore::kCostPerByte}) {
    for (const bool parts : {false, true}) {
      HeuristicOptions ho;
      ho.score = score;
      ho.free_parts = parts;
      variants.push_back(ho);
      if (score == EvictionScore::kNextUse) {
        ho.hold_inputs = true;
        variants.push_back(ho);
        ho.hold_inputs = false;
        if (parts) {
          ho.foresee_reads = true;
          variants.push_back(ho);
        }
      }
    }
  }
  return variants;
}

int64_t MemoryLowerBound(const Problem& problem) {
  int64_t bound = problem.fixed_bytes;
  for (const Node& node : problem.nodes) {
    int64_t at = problem.fixed_bytes + node.bytes + node.workspace_bytes;
    for (uint32_t x : node.inputs) at += problem.nodes[x].bytes;
    bound = std::max(bound, at);
  }
  return bound;
}

std::string_view ToString(EvictionScore score) {
  switch (score) {
    case EvictionScore::kNextUse: return "next-use";
    case EvictionScore::kStaleness: return "staleness";
    case EvictionScore::kCostPerByte: return "cost-per-byte";
  }
  return "?";
}

std::string VariantName(const HeuristicOptions& o) {
  std::string name(ToString(o.score));
  if (o.free_parts) name += ",parts";
  if (o.hold_inputs) name += ",hold-inputs";
  if (o.foresee_reads) name += ",foresight";
  if (!o.swap_after_forward.empty()) name += ",planned-swaps";
  if (!o.copy_us.empty() && o.evict_to_host) name += ",swap-on-demand";
  return name;
}

std::string_view ToString(Baseline baseline) {
  switch (baseline) {
    case Baseline::kCheckpointBlocks: return "checkpoint-blocks";
    case Baseline::kSqrtN: return "sqrt-n";
  }
  return "?";
}

HeuristicResult RunBaseline(const Problem& problem, Baseline baseline) {
  const size_t n = problem.size();
  std::vector<uint32_t> forward;
  for (uint32_t v = 0; v < n; ++v) {
    if (!problem.nodes[v].backward) forward.push_back(v);
  }
  // group[v]: the block or segment of a forward node.
  std::vector<uint32_t> group(n, kNoLimit);
  if (baseline == Baseline::kCheckpointBlocks) {
    uint32_t id = 0;
    std::string_view last;
    for (uint32_t v : forward) {
      const std::string_view block = BlockOf(problem.nodes[v].name);
      if (block != last) ++id, last = block;
      group[v] = id;
    }
  } else {
    const size_t segment = std::max<size_t>(1, static_cast<size_t>(std::ceil(std::sqrt(double(forward.size())))));
    for (size_t k = 0; k < forward.size(); ++k) group[forward[k]] = static_cast<uint32_t>(k / segment);
  }
  // Checkpoints: forward results read by a forward node of another group.
  std::vector<uint8_t> drop(n, 0);
  for (uint32_t v : forward) drop[v] = 1;
  for (uint32_t w : forward) {
    for (uint32_t u : problem.nodes[w].inputs) {
      if (group[u] != kNoLimit && group[u] != group[w]) drop[u] = 0;
    }
  }
  EngineOptions eo;
  eo.drop_after_forward = &drop;
  HeuristicResult result = Engine(problem, eo).Run();
  result.fits = true;
  return result;
}

}  // namespace memfit::remat
