// The remat heuristic's stage loop (the essay is in heuristic.h). The
// concepts it stands on live beside it: reach.h (readers, horizons, needs),
// parts.h (a node's storages freed one by one), copy_stream.h (the copy
// stream's timing), eviction.h (prices and scores) and baselines.h.
#include "remat/heuristic.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <span>
#include <stdexcept>
#include <string_view>

#include "remat/copy_stream.h"
#include "remat/parts.h"
#include "remat/reach.h"
#include "util/enum_names.h"
#include "util/error.h"

namespace memfit::remat {
namespace {

enum class Status : uint8_t { kNotYet, kResident, kDropped, kHost, kDead };

class Engine {
 public:
  Engine(const Problem& problem, const HeuristicOptions& options)
      : p_(problem), o_(options), n_(problem.size()), reach_(ComputeReach(problem, options.hold_inputs)),
        parts_(problem, reach_, options.free_parts), time_(reach_.time_us), need_(reach_.need), walk_(n_) {
    next_use_ = std::vector<uint32_t>(reach_.reader_begin.begin(), reach_.reader_begin.end() - 1);
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
    resident_pos_.assign(n_, kNone);
    for (Memo* m : {&first_read_, &recomputed_at_}) m->valid.assign(n_, 0), m->stage.assign(n_, 0), m->epoch.assign(n_, 0);
  }

  HeuristicResult Run() {
    mem_ = p_.fixed_bytes;
    result_.peak_estimate = mem_;
    for (stage_ = 0; stage_ < n_; ++stage_) {
      if (stage_ % kStagesPerClockRead == 0 && !InTime()) break;
      mem_ -= copy_.Retire(time_[stage_]);
      Prefetch();
      const Node& node = p_.nodes[stage_];
      Evaluate(stage_);
      if (stopped()) break;
      for (uint32_t x : node.inputs) Release(x);
      Release(stage_);
      Settle();
      Unhold();
    }
    result_.fits = !stopped() && !overflow_ && result_.peak_estimate <= o_.budget_bytes;
    return std::move(result_);
  }

 private:
  // The clock is read once every this many stages (and recomputations).
  static constexpr size_t kStagesPerClockRead = 64;
  // False (and the run stopped) once past the deadline.
  bool InTime() {
    if (o_.deadline != SteadyClock::time_point::max() && SteadyClock::now() > o_.deadline) {
      Stop(HeuristicStatus::kOutOfTime, fmt::format("remat heuristic: out of time at stage {}", stage_));
    }
    return !stopped();
  }
  // Gives up at this budget: every caller up the stack returns at once.
  void Stop(HeuristicStatus status, std::string detail) {
    result_.status = status;
    result_.detail = std::move(detail);
  }
  bool stopped() const { return result_.status != HeuristicStatus::kDone; }

  uint32_t NextUse(uint32_t v) const {
    return next_use_[v] < reach_.reader_begin[v + 1] ? reach_.readers[next_use_[v]] : kNever;
  }
  bool Swappable() const { return !o_.copy_us.empty() && o_.evict_to_host; }
  double CopyUs(uint32_t v) const { return o_.copy_us[v]; }

  // The clock advances by every evaluation (recomputations included), as
  // DTR's does; staleness is measured on it.
  void Touch(uint32_t v, double cost_us) {
    clock_ += cost_us;
    last_access_[v] = clock_;
  }
  void Emit(EventKind kind, uint32_t v) { result_.events.push_back({kind, v}); }
  void Account(int64_t extra) { result_.peak_estimate = std::max(result_.peak_estimate, mem_ + extra); }

  void AddResident(uint32_t v) {
    if (status_[v] == Status::kDropped) Changed(v);
    status_[v] = Status::kResident;
    resident_pos_[v] = static_cast<uint32_t>(resident_.size());
    resident_.push_back(v);
  }
  void RemoveResident(uint32_t v, Status to) {
    const uint32_t pos = resident_pos_[v];
    resident_[pos] = resident_.back();
    resident_pos_[resident_[pos]] = pos;
    resident_.pop_back();
    resident_pos_[v] = kNone;
    status_[v] = to;
    if (to == Status::kDropped || missing_[v] != 0) Changed(v);
    mem_ -= bytes_[v];
    bytes_[v] = 0;
  }
  void Allocate(uint32_t v, int64_t bytes) {
    bytes_[v] = bytes;
    const uint64_t missing = bytes != p_.nodes[v].bytes ? parts_.GoneAt(v, stage_) : 0;
    const bool changed = missing != 0 || missing_[v] != 0;
    missing_[v] = missing;
    mem_ += bytes;
    AddResident(v);
    if (changed) Changed(v);
  }
  // The mask of v's parts that node w reads.
  uint64_t ReadMask(uint32_t w, size_t input_index) const {
    const Node& node = p_.nodes[w];
    return node.input_parts.empty() ? ~uint64_t{0} : node.input_parts[input_index];
  }
  // Frees the parts of a resident v that nothing reads from `from` on.
  void Trim(uint32_t v, uint32_t from) {
    if (!o_.free_parts || status_[v] != Status::kResident || parts_.end(v) - parts_.begin(v) < 2) return;
    int64_t live = 0;
    for (uint32_t k = parts_.begin(v); k < parts_.end(v); ++k) {
      if (missing_[v] & parts_.Bit(v, k)) continue;
      if (parts_.Live(v, k, from)) {
        live += parts_.bytes(k);
      } else {
        missing_[v] |= parts_.Bit(v, k);
        Changed(v);
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
    host_use_.resize(n_);
    for (uint32_t v : host_) host_use_[v] = FirstRead(v);
    std::sort(host_.begin(), host_.end(), [&](uint32_t a, uint32_t b) {
      return host_use_[a] != host_use_[b] ? host_use_[a] < host_use_[b] : a > b;
    });
    due_use_us_.clear();
    due_copy_us_.clear();
    for (uint32_t v : host_) {
      const uint32_t use = host_use_[v];  // kNever: needed only deeper in a recomputation
      due_use_us_.push_back(use == kNever ? std::numeric_limits<double>::infinity() : time_[use]);
      due_copy_us_.push_back(CopyUs(v));
    }
    DuePrefetches(due_use_us_, due_copy_us_, o_.prefetch_margin, time_[stage_ + 1], due_);
    // The copy lands while this stage's node runs: room for both.
    const int64_t running = p_.nodes[stage_].bytes + p_.nodes[stage_].workspace_bytes;
    std::vector<uint32_t> waiting;
    for (size_t k = 0; k < host_.size(); ++k) {
      const uint32_t v = host_[k];
      // Room is made only from residents needed after v (Belady-consistent,
      // so two prefetches cannot evict each other back and forth).
      if (due_[k] && RoomBefore(parts_.LiveBytes(v, stage_) + running, host_use_[v], CopyUs(v))) {
        SwapIn(v);
      } else {
        waiting.push_back(v);
      }
    }
    host_ = std::move(waiting);
  }

  // The stage at which v is next read: directly, or to recompute a reader
  // when that one is next needed (through any chain of dropped readers).
  // Memoized (Memo, Changed).
  uint32_t FirstRead(uint32_t v) {
    if (first_read_.Holds(v, stage_, releases_)) {
      if (o_.verify_memos) Verify(first_read_.stage[v], Afresh(v, &Engine::FreshFirst), v);
      return first_read_.stage[v];
    }
    uint32_t first = NextUse(v);
    for (uint32_t c : ReadersOf(v)) first = std::min(first, RecomputedAt(c));
    first_read_.Set(v, first, releases_);
    return first;
  }
  // When c will be recomputed as things stand (kNever: not foreseen): a
  // dropped c when it is next read, a resident c that let parts go when a
  // reader of those parts is recomputed.
  uint32_t RecomputedAt(uint32_t c) {
    if (need_[c] < stage_) return kNever;
    if (status_[c] == Status::kDropped) return FirstRead(c);
    if (status_[c] != Status::kResident || missing_[c] == 0) return kNever;
    if (recomputed_at_.Holds(c, stage_, releases_)) {
      if (o_.verify_memos) Verify(recomputed_at_.stage[c], Afresh(c, &Engine::FreshRecomputed), c);
      return recomputed_at_.stage[c];
    }
    uint32_t at = kNever;
    for (uint32_t r : ReadersOf(c)) at = std::min(at, RecomputedAt(r));
    recomputed_at_.Set(c, at, releases_);
    return at;
  }
  // FirstRead or RecomputedAt of v afresh (HeuristicOptions::verify_memos):
  // memoized for this one question only.
  uint32_t Afresh(uint32_t v, uint32_t (Engine::*ask)(uint32_t)) {
    fresh_.assign(2 * n_, kUnasked);
    return (this->*ask)(v);
  }
  uint32_t FreshFirst(uint32_t v) {
    if (fresh_[v] != kUnasked) return fresh_[v];
    uint32_t first = NextUse(v);
    for (uint32_t c : ReadersOf(v)) first = std::min(first, FreshRecomputed(c));
    return fresh_[v] = first;
  }
  uint32_t FreshRecomputed(uint32_t c) {
    if (need_[c] < stage_) return kNever;
    if (status_[c] == Status::kDropped) return FreshFirst(c);
    if (status_[c] != Status::kResident || missing_[c] == 0) return kNever;
    if (fresh_[n_ + c] != kUnasked) return fresh_[n_ + c];
    uint32_t at = kNever;
    for (uint32_t r : ReadersOf(c)) at = std::min(at, FreshRecomputed(r));
    return fresh_[n_ + c] = at;
  }
  void Verify(uint32_t memo, uint32_t fresh, uint32_t v) const {
    if (memo != fresh) {
      throw std::logic_error(fmt::format("remat heuristic: node {}'s memo says stage {}, afresh {} (stage {})", v,
                                         memo, fresh, stage_));
    }
  }
  // The memos of v read the state (dropped, resident with parts let go) of
  // v's readers, and through a dropped or partly let-go reader that
  // reader's memos in turn. When d's state changes, the memos that read it
  // (of d's inputs: ReadersOf is their reverse) are cleared, and the memos
  // that read those, up the chain. Prefetch asks for every node on the host at
  // every stage and MakeRoom for each candidate (foresight); clearing them
  // all at every drop made FirstRead a quarter of a ViT-base search.
  void Changed(uint32_t d) {
    invalid_.clear();
    invalid_.push_back(d);
    for (uint32_t v : p_.nodes[d].inputs) invalid_.push_back(v);
    while (!invalid_.empty()) {
      const uint32_t u = invalid_.back();
      invalid_.pop_back();
      if (!first_read_.valid[u] && !recomputed_at_.valid[u]) continue;  // and so every memo that read them
      first_read_.valid[u] = 0;
      recomputed_at_.valid[u] = 0;
      if (status_[u] == Status::kDropped || (status_[u] == Status::kResident && missing_[u] != 0)) {
        for (uint32_t v : p_.nodes[u].inputs) invalid_.push_back(v);
      }
    }
  }

  // Drops residents next needed after `use` until `bytes` more fit; false
  // (and nothing dropped) when they do not free enough, or when recomputing
  // them would cost more than `worth_us` (the stall a prefetch now can
  // avoid at most). (Swapping a victim out to swap another in would only
  // churn the copy stream.)
  bool RoomBefore(int64_t bytes, uint32_t use, double worth_us) {
    const int64_t short_by = mem_ + bytes - o_.budget_bytes;
    if (short_by <= 0) return true;
    // The drops MakeRoom would make, priced in advance (in next-use order).
    room_.clear();
    for (uint32_t r : resident_) {
      if (!DropCandidate(r, use)) continue;
      const double penalty = RecomputeCost(r);
      room_.push_back({NextUseScore(penalty, bytes_[r], time_[Use(r)] - time_[stage_]), penalty, bytes_[r], r});
    }
    std::sort(room_.begin(), room_.end(),
              [](const Room& a, const Room& b) { return a.score != b.score ? a.score < b.score : a.node < b.node; });
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
    copy_.Issue(time_[stage_], CopyUs(v));
    Allocate(v, parts_.LiveBytes(v, stage_));
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
      if (stopped()) return;
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
        if ((parts_.GoneAt(v, stage_) & mask) == 0) {
          SwapIn(v);
          return;
        }
        status_[v] = Status::kDropped;  // a part it let go before the swap is needed: recompute
        Changed(v);
        break;
      }
      case Status::kNotYet:
        // Validate: every input comes before its reader.
        assert(false && "remat heuristic: a node read before it is computed");
        break;
      case Status::kDropped:
      case Status::kDead:
        break;
    }
    const Node& node = p_.nodes[v];
    // Only what can be recomputed until its last read is dropped (CanDrop,
    // Needless, Reach's held_for_reader).
    assert(node.recomputable && stage_ <= reach_.horizon[v] &&
           "remat heuristic: a node needed where it can no longer be recomputed");
    Evaluate(v);
    if (stopped()) return;
    result_.recompute_us += node.cost_us;
    ++result_.recomputations;
    if (result_.recomputations % kStagesPerClockRead == 0 && !InTime()) return;
    if (result_.recompute_us > o_.max_recompute_us) {
      Stop(HeuristicStatus::kTooMuchRecompute,
           fmt::format("remat heuristic: recomputation passed {:.0f} us at stage {}; giving up at this budget",
                       o_.max_recompute_us, stage_));
      return;
    }
    // Inputs brought back only for recomputations go again, at once or (with
    // foresight) once this stage is done (Settle): until then the next
    // recomputation may read them too.
    for (uint32_t x : node.inputs) {
      const bool only_recomputations = NextUse(x) == kNever && !p_.nodes[x].keep_to_end &&
                                       reach_.RecomputableToTheEnd(p_, x) && status_[x] == Status::kResident;
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
    ++releases_;
    while (next_use_[v] < reach_.reader_begin[v + 1] && reach_.readers[next_use_[v]] <= stage_) ++next_use_[v];
    if (status_[v] != Status::kResident || locked_[v]) return;
    Trim(v, stage_ + 1);
    const Node& node = p_.nodes[v];
    const uint32_t use = NextUse(v);
    if (use == kNever) {
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
    if (!o_.drop_after_forward.empty() && o_.drop_after_forward[v] && stage_ < first_backward_ &&
        use >= first_backward_ && CanDrop(v, use)) {
      RemoveResident(v, Status::kDropped);
    }
    // Planned swaps (swap_plan.h) leave as soon as the read that starts
    // their idle stretch is done.
    if (!o_.swap_after.empty() && o_.swap_after[v] == stage_) SwapOut(v, time_[stage_ + 1], /*hold=*/true);
  }

  // Drops what only this stage's recomputations read, unless a dropped
  // reader still needs it (then it is held until Needless).
  void Settle() {
    for (uint32_t x : transient_) {
      if (status_[x] != Status::kResident || locked_[x] || NextUse(x) != kNever) continue;
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
    if (!reach_.RecomputableToTheEnd(p_, v)) return false;
    if (!o_.foresee_reads) return true;
    for (uint32_t c : ReadersOf(v)) {
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
    const double done_us = copy_.Issue(from_us, CopyUs(v));
    const int64_t bytes = bytes_[v];
    RemoveResident(v, Status::kHost);
    if (hold) {
      mem_ += bytes;
      copy_.Hold(done_us, bytes);
    }
    host_.push_back(v);
  }
  bool CanDrop(uint32_t v, uint32_t use) const {
    return o_.allow_recompute && p_.nodes[v].recomputable && use <= reach_.horizon[v];
  }

  // The price of recomputing v now: its cost plus that of the ancestors
  // that would have to be recomputed with it (those neither resident nor on
  // the host), DTR's evicted neighbourhood.
  double RecomputeCost(uint32_t v) {
    return walk_.Cost(
        p_, v, /*count_start=*/true,
        [&](uint32_t u, auto visit) {
          for (uint32_t x : p_.nodes[u].inputs) visit(x);
        },
        [&](uint32_t x) { return status_[x] != Status::kResident && status_[x] != Status::kHost; });
  }
  // The cost of v's dropped readers that may still be recomputed (and so
  // would need v), transitively through dropped readers.
  double EvictedReadersCost(uint32_t v) {
    return walk_.Cost(
        p_, v, /*count_start=*/false,
        [&](uint32_t u, auto visit) {
          for (uint32_t c : ReadersOf(u)) visit(c);
        },
        [&](uint32_t c) { return status_[c] == Status::kDropped; });
  }

  // The stage at which a resident v is next needed (kNever: never).
  uint32_t Use(uint32_t v) const {
    const uint32_t use = NextUse(v);
    if (use != kNever) return use;
    return p_.nodes[v].keep_to_end ? kNever : std::min<uint32_t>(need_[v], static_cast<uint32_t>(n_));
  }

  // The stage at which a resident v is next needed, if it may leave the
  // device to make room for something needed at `after`; kNever if not.
  uint32_t EvictableUntil(uint32_t v, uint32_t after) const {
    if (locked_[v] || bytes_[v] == 0) return kNever;
    const uint32_t use = Use(v);
    return use > after ? use : kNever;
  }

  // Whether MakeRoom may drop v for a prefetch of something needed at `after`.
  bool DropCandidate(uint32_t v, uint32_t after) const {
    const uint32_t use = EvictableUntil(v, after);
    return use != kNever && CanDrop(v, use);
  }

  // Evicts residents until `extra` more bytes fit the budget; for a
  // prefetch (after > 0) only by dropping residents needed after `after`.
  void MakeRoom(int64_t extra, uint32_t after = 0) {
    while (mem_ + extra > o_.budget_bytes) {
      uint32_t victim = kNone;
      bool victim_swaps = false;
      double best = std::numeric_limits<double>::infinity();
      for (uint32_t v : resident_) {
        const uint32_t use = EvictableUntil(v, after);
        if (use == kNever) continue;
        double penalty = std::numeric_limits<double>::infinity();
        bool swaps = false;
        if (CanDrop(v, use)) {
          penalty = RecomputeCost(v);
        }
        if (Swappable() && after == 0) {
          const double stall = copy_.RoundTripStall(time_[stage_], CopyUs(v), time_[use]);
          const double swap_penalty = SwapPenalty(stall, CopyUs(v), o_.swap_bias);
          if (swap_penalty < penalty) penalty = swap_penalty, swaps = true;
        }
        if (!std::isfinite(penalty)) continue;
        // Past its direct reads, v is read next when a dropped reader is
        // recomputed, often well before the last stage it may be (use).
        const uint32_t read = o_.foresee_reads && NextUse(v) == kNever ? std::min(use, FirstRead(v)) : use;
        double score = NextUseScore(penalty, bytes_[v], time_[read] - time_[stage_]);
        if (o_.score == EvictionScore::kStaleness && !swaps) {
          score = StalenessScore(penalty, EvictedReadersCost(v), bytes_[v], clock_ - last_access_[v]);
        } else if (o_.score == EvictionScore::kCostPerByte && !swaps) {
          score = CostPerByteScore(penalty, bytes_[v]);
        }
        if (score < best) best = score, victim = v, victim_swaps = swaps;
      }
      if (victim == kNone) {
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

  std::span<const uint32_t> ReadersOf(uint32_t v) const {
    return std::span<const uint32_t>(reach_.readers).subspan(reach_.reader_begin[v],
                                                             reach_.reader_begin[v + 1] - reach_.reader_begin[v]);
  }

  const Problem& p_;
  const HeuristicOptions& o_;
  size_t n_;
  const Reach reach_;
  const Parts parts_;
  const std::vector<double>& time_;    // reach_.time_us
  const std::vector<uint32_t>& need_;  // reach_.need
  std::vector<uint32_t> next_use_;     // by node: its next reader's index in reach_.readers
  std::vector<uint32_t> held_;         // residents past their direct reads kept for a recomputation (Needless)
  std::vector<uint32_t> transient_;    // residents brought back only for this stage's recomputations
  std::vector<int64_t> bytes_;         // resident bytes of each node
  std::vector<double> last_access_;
  double clock_ = 0;
  std::vector<uint64_t> missing_;  // parts of a resident node already let go
  uint32_t first_backward_ = 0;
  std::vector<Status> status_;
  std::vector<uint32_t> locked_;
  std::vector<uint32_t> resident_, resident_pos_;
  std::vector<uint32_t> host_;
  CopyStream copy_;
  std::vector<uint8_t> due_;                     // Prefetch's scratch
  std::vector<double> due_use_us_, due_copy_us_;  // Prefetch's scratch
  struct Room {
    double score, penalty;
    int64_t bytes;
    uint32_t node;  // the tie-break
  };
  std::vector<Room> room_;           // RoomBefore's scratch
  std::vector<uint32_t> host_use_;   // by node: FirstRead when Prefetch last looked
  // A stage per node, held until Changed clears it, and past a Release
  // only while the stage is still ahead (what is read at or before the
  // stage moves on with a Release; between two Releases nothing does).
  struct Memo {
    std::vector<uint8_t> valid;
    std::vector<uint32_t> stage, epoch;
    bool Holds(uint32_t v, uint32_t now, uint32_t releases) const {
      return valid[v] && (stage[v] > now || epoch[v] == releases);
    }
    void Set(uint32_t v, uint32_t at, uint32_t releases) { valid[v] = 1, stage[v] = at, epoch[v] = releases; }
  };
  Memo first_read_, recomputed_at_;
  std::vector<uint32_t> invalid_;              // Changed's stack
  static constexpr uint32_t kUnasked = kNever - 1;
  std::vector<uint32_t> fresh_;  // Afresh's memo (verify_memos): first reads, then recomputations
  uint32_t releases_ = 0;                      // Release calls so far
  BoundedWalk walk_;  // RecomputeCost's and EvictedReadersCost's search
  int64_t mem_ = 0;
  bool overflow_ = false;
  uint32_t stage_ = 0;
  HeuristicResult result_;
};

}  // namespace

constexpr EnumName<HeuristicStatus> kHeuristicStatusNames[] = {
    {HeuristicStatus::kDone, "done"}, {HeuristicStatus::kOutOfTime, "out of time"},
    {HeuristicStatus::kTooMuchRecompute, "too much recomputation"}};

std::string_view ToString(HeuristicStatus status) { return NameOf(kHeuristicStatusNames, status); }

HeuristicResult RunHeuristic(const Problem& problem, const HeuristicOptions& options) {
  if (!options.copy_us.empty() && options.copy_us.size() != problem.size()) {
    Fail("remat heuristic: {} copy times for {} nodes", options.copy_us.size(), problem.size());
  }
  if (!options.swap_after.empty() && (options.swap_after.size() != problem.size() || options.copy_us.empty())) {
    Fail("remat heuristic: planned swaps need a stage (or kNever) and a copy time per node");
  }
  if (!options.drop_after_forward.empty() && options.drop_after_forward.size() != problem.size()) {
    Fail("remat heuristic: {} checkpoint flags for {} nodes", options.drop_after_forward.size(), problem.size());
  }
  return Engine(problem, options).Run();
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

namespace {

// The bytes of x's parts that a reader with part mask `mask` reads (parts past
// the 63rd share bit 63, as Parts::Bit has them; 0: an ordering-only edge).
int64_t ReadBytes(const Node& x, uint64_t mask) {
  if (x.parts.empty()) return mask != 0 ? x.bytes : 0;
  int64_t bytes = 0;
  for (size_t k = 0; k < x.parts.size(); ++k) {
    if (mask & (uint64_t{1} << std::min<size_t>(k, 63))) bytes += x.parts[k].bytes;
  }
  return bytes;
}

}  // namespace

MemoryFloor LowestMemory(const Problem& problem) {
  MemoryFloor floor{problem.fixed_bytes, std::nullopt};
  for (uint32_t i = 0; i < problem.nodes.size(); ++i) {
    const Node& node = problem.nodes[i];
    int64_t at = problem.fixed_bytes + node.bytes + node.workspace_bytes;
    // Only the parts it reads: the others of a many-result input may be gone
    // (a layer norm's backward reads its forward's mean and rstd, not its
    // output; counting that, the floor was above a plan memfit had made).
    for (size_t k = 0; k < node.inputs.size(); ++k) {
      at += ReadBytes(problem.nodes[node.inputs[k]], node.input_parts.empty() ? ~uint64_t{0} : node.input_parts[k]);
    }
    if (at > floor.bytes) floor = {at, i};
  }
  return floor;
}

std::string VariantName(const HeuristicOptions& o) {
  std::string name(ToString(o.score));
  if (o.free_parts) name += ",parts";
  if (o.hold_inputs) name += ",hold-inputs";
  if (o.foresee_reads) name += ",foresight";
  if (!o.swap_after.empty()) name += ",planned-swaps";
  if (!o.copy_us.empty() && o.evict_to_host) name += ",swap-on-demand";
  return name;
}

}  // namespace memfit::remat
