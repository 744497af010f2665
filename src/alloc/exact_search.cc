// Exact static offset search.
//
// The question: given buffers with half-open lifetimes and sizes, is there an
// offset for each such that buffers alive at the same time never share a
// byte, and no buffer ends above the capacity? The search is a depth-first
// branch and bound in the spirit of MiniMalloc (Moffitt, ASPLOS'24); the code
// and its data layout are our own.
//
// Canonical placements. Take any feasible placement and let every buffer
// fall as far down as it can (to the lowest aligned offset that clears the
// buffers below it and the fixed buffers). The result is still feasible and
// every buffer now rests on the floor of the arena, on a buffer it overlaps
// in time, or on a fixed buffer. List those buffers by offset: each one sits
// at the lowest aligned, obstacle-free offset above the tops of the buffers
// listed before it that overlap it in time. So it is enough to build
// placements bottom-up: keep, for every unplaced buffer, its `min_offset`
// (the highest top among placed buffers that overlap it, aligned up), and
// at every node branch on WHICH unplaced buffer goes next, at that offset,
// with offsets never decreasing along a branch. Buffers placed at equal
// offsets do not overlap in time, so their order does not matter: they are
// taken in increasing static rank only. This is the "skyline": a node's
// state is the per-time-section height of the placed buffers.
//
// Pruning.
//  * Section inference: time is cut into sections, the maximal cliques.
//    Every section keeps a floor (the lowest min_offset of its unplaced
//    buffers, which is at least the highest top placed in it) and the total
//    size of its unplaced buffers. Those buffers are all alive at once above
//    the floor, so floor + total > capacity is a dead end. Offsets never
//    decrease, so a candidate at offset o also leaves every section of the
//    partition to be filled above o (above its top in its own sections):
//    o + the largest section total > capacity rules the candidate out
//    before it is placed. Checked after placing instead, as before, the
//    same bound let problem F of the challenging suite try about 68
//    placements per node, nearly all failing: 14 times the instructions.
//  * Dominance: if some unplaced buffer c could sit at its min_offset and
//    still end at or below the offset o being considered for the next
//    buffer, the branch is redundant: every completion of it has c above o,
//    and dropping c to its min_offset gives a canonical placement found in
//    a sibling branch. So candidates are limited to offsets below
//    min(min_offset + size) over the unplaced buffers.
//  * Hatless buffers: if the buffer placed at a node overlaps no unplaced
//    buffer, it constrains nothing that is left; when the rest fails with it
//    placed, the rest fails whatever is placed instead, so the node's other
//    candidates are not tried.
//  * Decomposition: when the last unplaced buffer that crossed a section
//    boundary is placed, the buffers left on each side no longer interact
//    (placed ones only act through min_offset and floors) and each side is
//    solved as its own problem; one infeasible side fails the branch
//    without enumerating the other side's alternatives against it.
//  * Ordering and restarts: candidates are tried lowest offset first, ties
//    by a static rank. Three static ranks (by lifetime width, area and the
//    largest section total, in different priority) are tried round robin
//    with a node limit that doubles each round, so that one unlucky order
//    does not sink the search. Every subproblem that decomposition splits
//    off is ranked afresh by the same keys with the section totals as they
//    are then (as MiniMalloc re-preorders each sub-partition); with the
//    initial totals, E, H and I of the challenging suite ran past 30 s,
//    with fresh ones they take well under a second each.
//  * Deadline: the arrays are prepared once per PlanOffsets() (ExactSolver) and
//    the preparation, which is quadratic in the worst case, reads the clock
//    too; the search reads it every node on large problems (a node there
//    can cost milliseconds).
//
// The search is exact: it answers kFound with a placement, kInfeasible when
// a complete search found none, or kTimeout.
//
// Performance notes: all state lives in flat arrays indexed by buffer or
// section; every change is pushed on an undo trail, so a node allocates
// nothing. The costly part on large problems (thousands of buffers, each
// section holding hundreds) is keeping every section's lowest min_offset:
//  * each section's member list keeps its unplaced buffers in front (a
//    placed buffer is swapped behind them), so a rescan skips placed ones;
//  * in the placed buffer's own sections every unplaced buffer overlaps it,
//    so with one common alignment the new lowest is max(old lowest, raised
//    top), without a scan; other sections are rescanned only when their
//    lowest buffer rose, found through a per-buffer list of the sections
//    it is lowest in; ties go to the latest in rank (placed last among
//    equals), so the buffer being placed is seldom the lowest of a section;
//  * a node lists the unplaced buffers of its partition in place (the
//    candidate is swapped to the end for its subtree; a node needs the set,
//    not the order, so nothing is swapped back) and finds its first
//    candidates by scans; only when several fail are the others sorted;
//  * decomposed sides are gathered in place in their parent's list, not
//    copied (copies nested one per level of a dive took memory quadratic
//    in its depth), and only sides of up to kMaxRerankedBuffers are ranked
//    afresh (sorting a side of nearly all buffers at every level of a dive
//    was quadratic too);
//  * the search runs on an explicit stack of frames, not by recursion: a
//    dive is as deep as the buffer count, and real traces of 18,000 buffers
//    overflowed the default 8 MB stack.
// A dive through a 3,600-buffer training step (no backtracking) takes
// 3,600 nodes and about 0.4 s.
#include "alloc/exact_search.h"

#include <algorithm>
#include <array>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>

#include "alloc/greedy.h"
#include "util/checked_math.h"
#include "util/enum_names.h"

namespace memfit::alloc {
namespace {

// Above every capacity the search runs at (see Run).
constexpr int64_t kInfinity = kSaturatedBytes;
// The deadline is read once every this many nodes (a clock read costs about
// as much as a small node).
constexpr int64_t kNodesPerClockRead = 256;
// The first round of restarts allows this many nodes per buffer.
constexpr int64_t kFirstRoundNodesPerBuffer = 2;
// "No buffer" in the per-section argmin.
constexpr int32_t kNone = -1;
// Memory budgets: the prepared arrays (section members, overlapping pairs:
// quadratic in the worst case) and the undo trails of a search. A problem
// past the first is not searched; a search past the second stops (kTimeout).
// Together they keep the search within about 450 MB whatever the input
// (pangu_2.6B, 18.7k buffers, needs 164 MB and about 200 MB).
constexpr int64_t kMaxPreparedBytes = int64_t{224} << 20;
constexpr size_t kMaxTrailBytes = size_t{224} << 20;
// A node finds its first candidate and up to this many more by scans of its
// list before it lists and sorts the rest.
constexpr int32_t kScannedCandidates = 3;
// Decomposed sides of up to this many buffers are ranked afresh (see
// StepSplit).
constexpr size_t kMaxRerankedBuffers = 4096;
// Sections per block of the blocked maximum of section totals.
constexpr int32_t kBlock = 64;

// kPending: no answer yet (a frame pushed a child frame; see Search).
enum class Status { kFound, kNotFound, kAborted, kTimeout, kPending };

// Static rank keys, compared in the order given, all descending; ties by id.
enum class Key { kWidth, kArea, kTotal };
constexpr std::array<std::array<Key, 3>, 3> kRankings = {{
    {Key::kWidth, Key::kArea, Key::kTotal},
    {Key::kTotal, Key::kArea, Key::kWidth},
    {Key::kTotal, Key::kWidth, Key::kArea},
}};

struct Candidate {
  int64_t offset;
  int32_t rank;
  int32_t buffer;
};

struct LowChange {
  int32_t section;
  int32_t old_arg;
  int64_t old_low;
};

struct Change {
  int32_t index;
  int64_t old_value;
};

}  // namespace

class ExactSearchImpl {
 public:
  ExactSearchImpl(const Problem& problem, int64_t alignment, const ExactOptions& options,
                  Deadline deadline)
      : problem_(problem), default_alignment_(alignment), options_(options), deadline_(deadline) {
    base_offsets_.assign(problem_.buffers.size(), 0);
    prepared_ = Prepare(base_offsets_);
  }

  // One search at `capacity`; the prepared arrays are reused, and the search
  // state is back to "nothing placed" when it returns.
  ExactResult Run(int64_t capacity, std::optional<int64_t> max_nodes, Deadline deadline) {
    max_nodes_ = max_nodes;
    run_deadline_ = std::min(deadline, deadline_);
    timed_out_ = std::chrono::steady_clock::now() > run_deadline_;
    // A saturated offset or top (util/checked_math.h) never fits.
    capacity_ = std::min(capacity, kSaturatedBytes - 1);
    nodes_ = 0;
    ExactResult result;
    result.offsets = base_offsets_;
    if (prepared_ == Prepared::kTimeout || prepared_ == Prepared::kTooLarge || timed_out_) {
      result.outcome = ExactOutcome::kTimeout;
      return result;
    }
    if (prepared_ == Prepared::kInfeasible || !FitsTrivially()) {
      result.outcome = ExactOutcome::kInfeasible;
      return result;
    }
    const Status status = RunRounds();
    result.nodes = nodes_;
    if (status == Status::kFound) {
      result.outcome = ExactOutcome::kFound;
      for (int b = 0; b < n_; ++b) result.offsets[original_[b]] = solution_[b];
    } else if (status == Status::kNotFound) {
      result.outcome = ExactOutcome::kInfeasible;
    } else {
      result.outcome = ExactOutcome::kTimeout;
    }
    return result;
  }

 private:
  // kTooLarge: the arrays would exceed kMaxPreparedBytes; the search
  // answers kTimeout at once.
  enum class Prepared { kOk, kInfeasible, kTimeout, kTooLarge };

  // The checks that need the capacity: no buffer (fixed or not) and no
  // section total above it.
  bool FitsTrivially() const {
    if (max_fixed_top_ > capacity_) return false;
    for (int b = 0; b < n_; ++b) {
      if (size_[b] > capacity_) return false;
    }
    for (int s = 0; s < num_sections_; ++s) {
      if (total_[s] > capacity_) return false;
    }
    return true;
  }

  bool PastDeadline() {
    if (std::chrono::steady_clock::now() > deadline_) timed_out_ = true;
    return timed_out_;
  }

  // Builds the flat arrays (independent of the capacity). kInfeasible when
  // fixed buffers clash; kTimeout when the deadline passes while building
  // (large problems have many overlapping pairs).
  Prepared Prepare(std::vector<int64_t>& offsets) {
    const auto& bs = problem_.buffers;
    std::vector<int32_t> fixed;
    for (size_t i = 0; i < bs.size(); ++i) {
      const Buffer& b = bs[i];
      if (b.fixed_offset_bytes) {
        offsets[i] = *b.fixed_offset_bytes;
        if (b.size_bytes > 0) fixed.push_back(static_cast<int32_t>(i));
        max_fixed_top_ = std::max(max_fixed_top_, SaturatingAdd(*b.fixed_offset_bytes, b.size_bytes));
      } else if (b.size_bytes > 0) {
        original_.push_back(static_cast<int32_t>(i));
      }
    }
    if (!fixed.empty() && FindFixedClash(problem_)) return Prepared::kInfeasible;
    n_ = static_cast<int32_t>(original_.size());
    clock_period_ = std::max<int64_t>(1, kNodesPerClockRead * 4 / std::max(n_, 1));
    // Ids in natural order give every later sort its tie-break.
    std::sort(original_.begin(), original_.end(),
              [&](int32_t a, int32_t b) { return IdLess(bs[a].id, bs[b].id); });
    size_.resize(n_);
    align_.resize(n_);
    for (int b = 0; b < n_; ++b) {
      size_[b] = bs[original_[b]].size_bytes;
      align_[b] = bs[original_[b]].alignment_bytes.value_or(default_alignment_);
    }
    // One section per maximal clique of the interval graph: the buffers
    // alive just before a lifetime end t that follows a start (ends sort
    // before starts at equal times, lifetimes being half-open). Two buffers
    // that overlap share one (the first end after both started), so these
    // carry all of the capacity reasoning, and a buffer covers a contiguous
    // run of them. (Every distinct end, as before, adds the shrinking sets
    // between cliques: on the challenging suite they saved 2 nodes of
    // 432,000; on training steps they doubled the sections.)
    std::vector<int64_t> points;
    {
      std::vector<std::pair<int64_t, bool>> events;  // (time, is a start)
      for (int b = 0; b < n_; ++b) {
        events.push_back({bs[original_[b]].lifetime.upper, false});
        events.push_back({bs[original_[b]].lifetime.lower, true});
      }
      std::sort(events.begin(), events.end());
      bool started = false;
      for (const auto& [time, is_start] : events) {
        if (!is_start && started) points.push_back(time);
        started = is_start;
      }
    }
    num_sections_ = static_cast<int32_t>(points.size());
    first_section_.resize(n_);
    end_section_.resize(n_);
    for (int b = 0; b < n_; ++b) {
      const Lifetime& l = bs[original_[b]].lifetime;
      first_section_[b] = static_cast<int32_t>(
          std::upper_bound(points.begin(), points.end(), l.lower) - points.begin());
      end_section_[b] = static_cast<int32_t>(
          std::upper_bound(points.begin(), points.end(), l.upper) - points.begin());
    }
    // Section membership (CSR), totals and boundary crossing counts.
    floor_.assign(num_sections_, 0);
    total_.assign(num_sections_, 0);
    section_begin_.assign(num_sections_ + 1, 0);
    for (int b = 0; b < n_; ++b) {
      if (b % 256 == 0 && PastDeadline()) return Prepared::kTimeout;
      for (int s = first_section_[b]; s < end_section_[b]; ++s) {
        ++section_begin_[s + 1];
        total_[s] += size_[b];
      }
    }
    for (int s = 0; s < num_sections_; ++s) section_begin_[s + 1] += section_begin_[s];
    // Section members and slots: 8 bytes per (buffer, section it spans).
    int64_t prepared_bytes = 8 * static_cast<int64_t>(section_begin_[num_sections_]);
    if (prepared_bytes > kMaxPreparedBytes) return Prepared::kTooLarge;
    section_members_.resize(section_begin_[num_sections_]);
    slot_begin_.assign(n_ + 1, 0);
    for (int b = 0; b < n_; ++b) slot_begin_[b + 1] = slot_begin_[b] + end_section_[b] - first_section_[b];
    slots_.resize(section_members_.size());
    {
      std::vector<int32_t> fill(section_begin_.begin(), section_begin_.end() - 1);
      for (int b = 0; b < n_; ++b) {
        if (b % 256 == 0 && PastDeadline()) return Prepared::kTimeout;
        for (int s = first_section_[b]; s < end_section_[b]; ++s) {
          Slot(b, s) = fill[s];
          section_members_[fill[s]++] = b;
        }
      }
    }
    unplaced_count_.resize(num_sections_);
    for (int s = 0; s < num_sections_; ++s) unplaced_count_[s] = section_begin_[s + 1] - section_begin_[s];
    if (n_ > 0 && std::all_of(align_.begin(), align_.end(), [&](int64_t a) { return a == align_[0]; })) {
      common_alignment_ = align_[0];
    }
    cuts_.assign(std::max(num_sections_, 1), 0);
    for (int b = 0; b < n_; ++b) {
      for (int s = first_section_[b]; s + 1 < end_section_[b]; ++s) ++cuts_[s];
    }
    // Time overlaps (CSR) by a sweep over buffers sorted by start.
    {
      std::vector<int32_t> by_start(n_);
      std::iota(by_start.begin(), by_start.end(), 0);
      std::sort(by_start.begin(), by_start.end(), [&](int32_t a, int32_t b) {
        return first_section_[a] != first_section_[b] ? first_section_[a] < first_section_[b]
                                                      : a < b;
      });
      // Two passes (count, then fill) so that the pairs land in one array.
      overlap_begin_.assign(n_ + 1, 0);
      for (int pass = 0; pass < 2; ++pass) {
        std::vector<int64_t> fill;
        if (pass == 1) {
          for (int b = 0; b < n_; ++b) overlap_begin_[b + 1] += overlap_begin_[b];
          // 4 bytes per overlapping pair and direction.
          prepared_bytes += 4 * overlap_begin_[n_];
          if (prepared_bytes > kMaxPreparedBytes) return Prepared::kTooLarge;
          overlaps_.resize(overlap_begin_[n_]);
          fill.assign(overlap_begin_.begin(), overlap_begin_.end() - 1);
        }
        for (int x = 0; x < n_; ++x) {
          if (x % 256 == 0 && PastDeadline()) return Prepared::kTimeout;
          const int32_t a = by_start[x];
          for (int y = x + 1; y < n_ && first_section_[by_start[y]] < end_section_[a]; ++y) {
            const int32_t o = by_start[y];
            if (pass == 0) {
              ++overlap_begin_[a + 1];
              ++overlap_begin_[o + 1];
            } else {
              overlaps_[fill[a]++] = o;
              overlaps_[fill[o]++] = a;
            }
          }
        }
      }
    }
    has_obstacles_ = !fixed.empty();
    // Fixed obstacles of each buffer, sorted by offset.
    obstacle_begin_.assign(n_ + 1, 0);
    for (int b = 0; b < n_; ++b) {
      if (!fixed.empty() && b % 256 == 0 && PastDeadline()) return Prepared::kTimeout;
      std::vector<std::pair<int64_t, int64_t>> mine;
      for (int32_t f : fixed) {
        if (bs[f].lifetime.Overlaps(bs[original_[b]].lifetime)) {
          mine.emplace_back(*bs[f].fixed_offset_bytes, *bs[f].fixed_offset_bytes + bs[f].size_bytes);
        }
      }
      std::sort(mine.begin(), mine.end());
      obstacles_.insert(obstacles_.end(), mine.begin(), mine.end());
      obstacle_begin_[b + 1] = static_cast<int32_t>(obstacles_.size());
    }
    placed_.assign(n_, 0);
    min_offset_.assign(n_, 0);
    solution_.assign(n_, 0);
    rank_.assign(n_, 0);
    section_stamp_.assign(num_sections_, 0);
    low_.assign(num_sections_, 0);
    low_arg_.assign(num_sections_, kNone);
    lowest_head_.assign(n_, kNone);
    lowest_next_.assign(num_sections_, kNone);
    lowest_prev_.assign(num_sections_, kNone);
    for (int32_t s = 0; s < num_sections_; ++s) {
      if (section_begin_[s + 1] > section_begin_[s]) SetLowestBuffer(s, section_members_[section_begin_[s]]);
    }
    block_max_.assign(num_sections_ / kBlock + 1, 0);
    UpdateBlockMax(0, num_sections_);
    list_pos_.assign(n_, 0);
    by_first_section_.resize(n_);
    std::iota(by_first_section_.begin(), by_first_section_.end(), 0);
    std::stable_sort(by_first_section_.begin(), by_first_section_.end(),
                     [&](int32_t a, int32_t b) { return first_section_[a] < first_section_[b]; });
    return PastDeadline() ? Prepared::kTimeout : Prepared::kOk;
  }

  // Ranks the buffers lists_[begin, end) (one subproblem) by the current
  // heuristic, with the section totals as they are now (MiniMalloc's
  // preordering of a subproblem); the old ranks go on rank_trail_.
  void RankSubproblem(size_t begin, size_t end) {
    const auto& keys = kRankings[ranking_];
    sub_keys_.clear();
    for (size_t k = begin; k < end; ++k) {
      const int32_t b = lists_[k];
      const int64_t width = problem_.buffers[original_[b]].lifetime.length();
      const int64_t total = MaxTotal(first_section_[b], end_section_[b]);
      std::array<int64_t, 3> v{};
      for (int i = 0; i < 3; ++i) {
        switch (keys[i]) {
          case Key::kWidth: v[i] = width; break;
          case Key::kArea: v[i] = SaturatingMul(width, size_[b]); break;
          case Key::kTotal: v[i] = total; break;
        }
      }
      sub_keys_.push_back({v, b});
    }
    std::sort(sub_keys_.begin(), sub_keys_.end(), [](const SubKey& a, const SubKey& b) {
      if (a.values != b.values) return a.values > b.values;
      return a.buffer < b.buffer;
    });
    for (size_t r = 0; r < sub_keys_.size(); ++r) {
      const int32_t b = sub_keys_[r].buffer;
      rank_trail_.push_back({b, rank_[b]});
      rank_[b] = static_cast<int32_t>(r);
    }
  }

  void RestoreRanks(size_t mark) {
    for (size_t k = rank_trail_.size(); k > mark; --k) {
      rank_[rank_trail_[k - 1].index] = static_cast<int32_t>(rank_trail_[k - 1].old_value);
    }
    rank_trail_.resize(mark);
  }

  void ComputeRanks(const std::array<Key, 3>& keys) {
    const auto& bs = problem_.buffers;
    std::vector<int64_t> width(n_), area(n_), max_total(n_);
    for (int b = 0; b < n_; ++b) {
      width[b] = bs[original_[b]].lifetime.length();
      area[b] = SaturatingMul(width[b], size_[b]);
      max_total[b] = 0;
      for (int s = first_section_[b]; s < end_section_[b]; ++s) {
        max_total[b] = std::max(max_total[b], total_[s]);
      }
    }
    auto value = [&](Key key, int32_t b) {
      switch (key) {
        case Key::kWidth: return width[b];
        case Key::kArea: return area[b];
        case Key::kTotal: return max_total[b];
      }
      return int64_t{0};
    };
    std::vector<int32_t> order(n_);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
      for (Key key : keys) {
        if (value(key, a) != value(key, b)) return value(key, a) > value(key, b);
      }
      return false;  // Stable: index order is id order.
    });
    for (int r = 0; r < n_; ++r) rank_[order[r]] = r;
  }

  Status RunRounds() {
    if (n_ == 0) return Status::kFound;
    const size_t rankings = options_.restarts ? kRankings.size() : 1;
    int64_t limit = options_.restarts ? kFirstRoundNodesPerBuffer * n_ : kInfinity;
    while (true) {
      for (size_t h = 0; h < rankings; ++h) {
        ComputeRanks(kRankings[h]);
        ranking_ = h;
        nodes_left_ = limit;
        if (max_nodes_) nodes_left_ = std::min(nodes_left_, *max_nodes_ - nodes_);
        const Status status = SolveAll();
        if (status != Status::kAborted) return status;
        if (max_nodes_ && nodes_ >= *max_nodes_) return Status::kTimeout;
      }
      limit = SaturatingMul(limit, 2);
    }
  }

  // Solves every initial partition (split at boundaries nothing crosses).
  Status SolveAll() {
    partition_cursor_ = 0;
    int32_t start = 0;
    for (int32_t s = 0; s < num_sections_; ++s) {
      if (s + 1 == num_sections_ || cuts_[s] == 0) {
        const Status status = SolvePartition(start, s + 1);
        if (status != Status::kFound) return status;
        start = s + 1;
      }
    }
    return Status::kFound;
  }

  // Collects the buffers starting in [first, end) (by_first_section_ lists
  // them contiguously; nothing is placed between partitions) and searches
  // them.
  Status SolvePartition(int32_t first, int32_t end) {
    const size_t list_begin = lists_.size();
    for (; partition_cursor_ < by_first_section_.size() &&
           first_section_[by_first_section_[partition_cursor_]] < end;
         ++partition_cursor_) {
      const int32_t b = by_first_section_[partition_cursor_];
      list_pos_[b] = lists_.size();
      lists_.push_back(b);
    }
    const size_t list_end = lists_.size();
    Status status = Status::kFound;
    if (list_end > list_begin) status = Search(first, end, list_begin, list_end);
    lists_.resize(list_begin);
    return status;
  }

  // The lowest aligned offset >= `offset` where buffer b clears its fixed
  // obstacles.
  int64_t Clear(int32_t b, int64_t offset) const {
    for (int32_t k = obstacle_begin_[b]; k < obstacle_begin_[b + 1]; ++k) {
      const auto [lo, hi] = obstacles_[k];
      if (lo >= SaturatingAdd(offset, size_[b])) break;
      if (hi > offset) offset = AlignUp(hi, align_[b]);
    }
    return offset;
  }

  // The search runs on an explicit stack of frames (frames_), not on the
  // call stack: a dive nests one node per placed buffer, and the 18,000 to
  // 30,000 nested calls of real traces overflowed the default 8 MB stack.
  // A node frame tries its candidates one by one (each one placed, its
  // subtree run as a child frame, then undone); a split frame runs after a
  // placement when decomposition is on and solves the sides of the cuts the
  // placement opened one after the other (or the whole rest when it opened
  // none).
  enum class FrameKind : uint8_t { kNode, kSplit };
  enum class Phase : uint8_t {
    kStart,  // not run yet
    kFirst,  // node: a candidate found by a scan (the first few) runs
    kRest,   // node: one of its sorted other candidates' subtree runs
    kWhole,  // split: no cut opened, one node below runs
    kSide,   // split: one side runs
  };
  struct Frame {
    FrameKind kind = FrameKind::kNode;
    Phase phase = Phase::kStart;
    bool stop = false;  // Node: no other candidate can do better.
    int32_t first = 0;  // The partition's sections [first, end).
    int32_t end = 0;
    size_t list_begin = 0;  // Its unplaced buffers: lists_[list_begin, list_end).
    size_t list_end = 0;
    // Node: the placement before it (candidates come after it in (offset,
    // rank) order). Split: the placement just made.
    Candidate last{0, -1, kNone};
    Candidate trying{0, -1, kNone};  // Node: the candidate placed for the child.
    int64_t max_offset = 0;             // Node: see Fits.
    int64_t min_height = 0;             // Node: the dominance bound.
    size_t min_mark = 0, floor_mark = 0, low_mark = 0;  // Node: trails before `trying`.
    int32_t scans = 0;                     // Node: candidates found by scans after the first.
    size_t cand_begin = 0, next_cand = 0;  // Node: its other candidates in candidates_.
    size_t cut_begin = 0, cut_next = 0;    // Split: the cuts it opened; the next side.
    int32_t side_first = 0, side_end = 0;  // Split: the running side's sections.
    size_t side_begin = 0, side_list_end = 0;  // Split: the running side's list.
    size_t rank_mark = 0;                      // Split: rank_trail_ before the side.
  };

  void PushFrame(FrameKind kind, int32_t first, int32_t end, size_t list_begin, size_t list_end,
                 const Candidate& last) {
    Frame frame;
    frame.kind = kind;
    frame.first = first;
    frame.end = end;
    frame.list_begin = list_begin;
    frame.list_end = list_end;
    frame.last = last;
    frames_.push_back(frame);
  }

  // Searches the unplaced buffers lists_[list_begin, list_end) of the
  // partition of sections [first, end). The list is reordered while the
  // search runs and restored when it returns.
  Status Search(int32_t first, int32_t end, size_t list_begin, size_t list_end) {
    const size_t base = frames_.size();
    PushFrame(FrameKind::kNode, first, end, list_begin, list_end, Candidate{0, -1, kNone});
    Status returned = Status::kPending;  // What the frame popped last answered.
    while (true) {
      const Status status =
          frames_.back().kind == FrameKind::kNode ? StepNode(returned) : StepSplit(returned);
      returned = status;
      if (status == Status::kPending) continue;  // A child frame was pushed.
      frames_.pop_back();
      if (frames_.size() == base) return status;
    }
  }

  // Runs the node on top of frames_ until it pushes a child (kPending) or
  // has its answer. `returned`: its child's answer, kPending on the first
  // step.
  Status StepNode(Status returned) {
    Frame& f = frames_.back();
    if (f.phase == Phase::kStart) {
      if (nodes_left_ <= 0) return Status::kAborted;  // Not counted: nodes_ stays within the budget.
      --nodes_left_;
      ++nodes_;
      if (nodes_ % clock_period_ == 0 && std::chrono::steady_clock::now() > run_deadline_) {
        timed_out_ = true;
      }
      // The trails grow with the depth of the dive times the overlaps of
      // what it placed; past their budget the search stops as if timed out.
      if (8 * own_low_trail_.size() + 16 * (min_offset_trail_.size() + low_trail_.size()) > kMaxTrailBytes) {
        timed_out_ = true;
      }
      if (timed_out_) return Status::kTimeout;
      if (f.list_begin == f.list_end) return Status::kFound;
      // The monotonic floor: whatever goes next at offset o, everything left
      // goes at or above o (above its top in its own sections), so every
      // section's unplaced total must fit between o and the capacity.
      f.max_offset =
          options_.section_inference ? capacity_ - MaxTotal(f.first, f.end) : kInfinity;
      // Candidates go in (offset, rank) order. Deep in a long dive a node
      // mostly needs its first one only, so that one is found by a scan (the
      // same one that finds the dominance bound); the others are found by
      // more scans, and listed and sorted only when several fail.
      // (Plain locals: this loop is a third of a dive through a real trace.)
      int64_t min_height = kInfinity;
      Candidate best{kInfinity, 0, kNone};
      const Candidate last = f.last;
      const int64_t max_offset = std::min(f.max_offset, capacity_);
      for (size_t k = f.list_begin; k < f.list_end; ++k) {
        const int32_t b = lists_[k];
        const int64_t offset = has_obstacles_ ? Clear(b, min_offset_[b]) : min_offset_[b];
        const int64_t top = SaturatingAdd(offset, size_[b]);
        min_height = std::min(min_height, top);
        if (offset > max_offset || top > capacity_ || offset < last.offset || offset > best.offset) continue;
        const int32_t rank = rank_[b];
        if (offset == last.offset && rank <= last.rank) continue;
        if (offset == best.offset && best.buffer != kNone && rank >= best.rank) continue;
        best = {offset, rank, b};
      }
      f.min_height = min_height;
      std::optional<Candidate> first_choice;
      if (best.buffer != kNone) first_choice = best;
      if (!first_choice || (options_.dominance && first_choice->offset >= f.min_height)) {
        return Status::kNotFound;
      }
      f.phase = Phase::kFirst;
      if (Enter(f, *first_choice)) return Status::kPending;
      returned = Status::kNotFound;
    }
    while (true) {
      const Status status = returned;
      Leave(f);
      if (status != Status::kNotFound || f.stop) {
        if (f.phase == Phase::kRest) candidates_.resize(f.cand_begin);
        return status;
      }
      Candidate next{0, -1, kNone};
      if (f.phase == Phase::kFirst && f.scans < kScannedCandidates) {
        // The next candidate by one more scan: a long list is sorted only
        // when several candidates in a row fail.
        ++f.scans;
        const std::optional<Candidate> c = NextCandidate(f.list_begin, f.list_end, f.trying, f.max_offset);
        if (!c || (options_.dominance && c->offset >= f.min_height)) return Status::kNotFound;
        next = *c;
      } else {
        if (f.phase == Phase::kFirst) {
          f.cand_begin = candidates_.size();
          for (size_t k = f.list_begin; k < f.list_end; ++k) {
            const Candidate c = CandidateAt(k);
            if (!IsAfter(c, f.trying) || !Fits(c, f.max_offset)) continue;
            if (options_.dominance && c.offset >= f.min_height) continue;
            candidates_.push_back(c);
          }
          std::sort(candidates_.begin() + static_cast<ptrdiff_t>(f.cand_begin), candidates_.end(),
                    [](const Candidate& a, const Candidate& b) { return IsAfter(b, a); });
          f.next_cand = f.cand_begin;
          f.phase = Phase::kRest;
        }
        if (f.next_cand == candidates_.size()) {
          candidates_.resize(f.cand_begin);
          return Status::kNotFound;
        }
        next = candidates_[f.next_cand++];
      }
      if (Enter(f, next)) return Status::kPending;
      returned = Status::kNotFound;
    }
  }

  // Places candidate c of node f (swapped to the end of f's list for the
  // subtree) and pushes the child that searches the rest; false (nothing
  // pushed, c still placed: Leave undoes it) when a section it changed can
  // no longer hold its unplaced buffers. Sets f.stop when no other
  // candidate of f can do better. Invalidates f when it pushes.
  bool Enter(Frame& f, const Candidate& c) {
    f.trying = c;
    SwapInList(list_pos_[c.buffer], f.list_end - 1);
    f.min_mark = min_offset_trail_.size();
    f.floor_mark = floor_trail_.size();
    f.low_mark = low_trail_.size();
    const bool placed_ok = PlaceBuffer(c.buffer, c.offset);
    // Nothing unplaced overlaps the buffer just tried, so it took nothing
    // from anyone: if the rest failed with it there, it fails without.
    f.stop = options_.hatless && hatless_;
    if (!placed_ok) return false;
    PushFrame(options_.decomposition ? FrameKind::kSplit : FrameKind::kNode, f.first, f.end,
              f.list_begin, f.list_end - 1, c);
    return true;
  }

  // Undoes Enter(f, f.trying). The candidate stays at the end of f's list:
  // a node needs the set of its list, not its order (candidates go in
  // (offset, rank) order, and ranks are unique within a list).
  void Leave(const Frame& f) { UnplaceBuffer(f.trying.buffer, f.min_mark, f.floor_mark, f.low_mark); }

  void SwapInList(size_t i, size_t j) {
    std::swap(lists_[i], lists_[j]);
    list_pos_[lists_[i]] = i;
    list_pos_[lists_[j]] = j;
  }

  // Decomposition after the placement f.last: counts down the boundary
  // crossings of the buffer just placed; where none is left, solves each
  // side separately (one infeasible side fails them all).
  Status StepSplit(Status returned) {
    Frame& f = frames_.back();
    switch (f.phase) {
      case Phase::kStart: {
        const int32_t b = f.last.buffer;
        f.cut_begin = cut_points_.size();
        for (int32_t s = first_section_[b]; s + 1 < end_section_[b]; ++s) {
          if (--cuts_[s] == 0) cut_points_.push_back(s + 1);
        }
        if (cut_points_.size() == f.cut_begin) {
          f.phase = Phase::kWhole;
          PushFrame(FrameKind::kNode, f.first, f.end, f.list_begin, f.list_end, f.last);
          return Status::kPending;
        }
        f.phase = Phase::kSide;
        f.cut_next = f.cut_begin;
        f.side_first = f.first;
        f.side_begin = f.list_begin;
        break;
      }
      case Phase::kWhole: return FinishSplit(f, returned);
      default:  // A side returned.
        RestoreRanks(f.rank_mark);
        f.side_first = f.side_end;
        f.side_begin = f.side_list_end;
        ++f.cut_next;
        if (returned != Status::kFound) return FinishSplit(f, returned);
        break;
    }
    while (f.cut_next <= cut_points_.size()) {
      const int32_t side_end = f.cut_next < cut_points_.size() ? cut_points_[f.cut_next] : f.end;
      // The side's buffers move to the front of what is left of f's list
      // (in place: copies nested one per level took memory quadratic in the
      // depth of a dive).
      size_t side_list_end = f.side_begin;
      for (size_t i = f.side_begin; i < f.list_end; ++i) {
        const int32_t o = lists_[i];
        if (first_section_[o] >= f.side_first && first_section_[o] < side_end) SwapInList(i, side_list_end++);
      }
      if (side_list_end > f.side_begin) {
        f.side_end = side_end;
        f.side_list_end = side_list_end;
        f.rank_mark = rank_trail_.size();
        // Re-ranking sorts the side: a dive through a long problem that
        // peels a few buffers off per level would sort nearly all of them
        // at every level. Large sides keep their ranks (unique still).
        if (side_list_end - f.side_begin <= kMaxRerankedBuffers) RankSubproblem(f.side_begin, side_list_end);
        PushFrame(FrameKind::kNode, f.side_first, side_end, f.side_begin, side_list_end,
                  Candidate{0, -1, kNone});
        return Status::kPending;
      }
      f.side_first = side_end;
      ++f.cut_next;
    }
    return FinishSplit(f, Status::kFound);
  }

  Status FinishSplit(const Frame& f, Status status) {
    cut_points_.resize(f.cut_begin);
    const int32_t b = f.last.buffer;
    for (int32_t s = first_section_[b]; s + 1 < end_section_[b]; ++s) ++cuts_[s];
    return status;
  }

  Candidate CandidateAt(size_t position) const {
    const int32_t b = lists_[position];
    return {has_obstacles_ ? Clear(b, min_offset_[b]) : min_offset_[b], rank_[b], b};
  }

  // The candidate ends under the capacity and starts at most at max_offset.
  bool Fits(const Candidate& c, int64_t max_offset) const {
    return c.offset <= max_offset && SaturatingAdd(c.offset, size_[c.buffer]) <= capacity_;
  }

  // (offset, rank) order; ranks are unique within a subproblem.
  static bool IsAfter(const Candidate& a, const Candidate& b) {
    return a.offset != b.offset ? a.offset > b.offset : a.rank > b.rank;
  }

  // The candidate of lists_[list_begin, list_end) that comes first after
  // `after` in (offset, rank) order and fits (see Fits).
  std::optional<Candidate> NextCandidate(size_t list_begin, size_t list_end, const Candidate& after,
                                         int64_t max_offset) const {
    std::optional<Candidate> best;
    for (size_t k = list_begin; k < list_end; ++k) {
      const Candidate c = CandidateAt(k);
      if (!IsAfter(c, after) || !Fits(c, max_offset)) continue;
      if (!best || IsAfter(*best, c)) best = c;
    }
    return best;
  }

  // Places b at `offset` and updates min offsets, floors, totals and the
  // lowest min offsets, all on the undo trails. Returns false when a section
  // it changed can no longer hold its unplaced buffers (the state is
  // complete either way; undo with UnplaceBuffer).
  bool PlaceBuffer(int32_t b, int64_t offset) {
    placed_[b] = 1;
    solution_[b] = offset;
    const int64_t top = SaturatingAdd(offset, size_[b]);
    const bool lows = options_.unallocated_floor;
    ++stamp_;
    dirty_sections_.clear();
    hatless_ = true;
    auto mark = [&](int32_t s) {
      if (section_stamp_[s] != stamp_) {
        section_stamp_[s] = stamp_;
        dirty_sections_.push_back(s);
      }
    };
    // b's own sections: every unplaced buffer there overlaps b, so with one
    // common alignment A each min offset becomes max(old, AlignUp(top, A))
    // and so does the section's lowest, unless b itself was the lowest.
    const bool closed_form = lows && common_alignment_.has_value();
    const int64_t common_raised = closed_form ? AlignUp(top, *common_alignment_) : 0;
    TakeTotals(b);
    for (int32_t s = first_section_[b]; s < end_section_[b]; ++s) {
      RemoveMember(b, s);
      if (!lows) {
        floor_trail_.push_back({s, floor_[s]});
        floor_[s] = top;
      } else if (low_arg_[s] == b) {
        mark(s);
      } else if (closed_form) {
        // The lowest buffer stays the lowest: only the value changes, and
        // UnplaceBuffer finds these sections again (8 bytes each, not 16).
        own_low_trail_.push_back(low_[s]);
        low_[s] = std::max(low_[s], common_raised);
      }
    }
    for (int64_t k = overlap_begin_[b]; k < overlap_begin_[b + 1]; ++k) {
      const int32_t o = overlaps_[k];
      if (placed_[o]) continue;
      hatless_ = false;
      const int64_t raised = align_[o] == 1 ? top : AlignUp(top, align_[o]);
      if (min_offset_[o] >= raised) continue;
      min_offset_trail_.push_back({o, min_offset_[o]});
      min_offset_[o] = raised;
      if (!lows) continue;
      // Only sections whose lowest buffer was o can see their lowest rise
      // (b's own sections are done above in the closed form).
      for (int32_t s = lowest_head_[o]; s != kNone; s = lowest_next_[s]) {
        if (!closed_form || s < first_section_[b] || s >= end_section_[b]) mark(s);
      }
    }
    if (!options_.section_inference) return true;
    // Sections untouched here were checked when they last changed. The
    // lowest of a changed section is not rescanned unless the check needs
    // it (see SectionFits).
    for (int32_t s = first_section_[b]; s < end_section_[b]; ++s) {
      if (!SectionFits(s)) return false;
    }
    for (const int32_t s : dirty_sections_) {
      if (!SectionFits(s)) return false;
    }
    return true;
  }

  // Whether section s can still hold its unplaced buffers above its floor.
  // With the unallocated floor, low_[s] is a lower bound of the lowest min
  // offset of its unplaced buffers (min offsets only rise along a branch),
  // and the min offset of low_arg_[s], while unplaced, an upper bound; the
  // section is rescanned for the exact value only when the two bounds give
  // different answers. The answer is the same as with an exact floor kept at
  // every placement, and low_arg_[s] is always re-examined when it rises or
  // is placed (the per-buffer lists), so a section whose check was settled
  // by the upper bound stays settled until then. Rescanning every section
  // whose lowest rose took half the time of a dive through a real trace
  // (pangu_2.6B: 650 buffers per section on average).
  bool SectionFits(int32_t s) {
    if (total_[s] == 0) return true;
    if (!options_.unallocated_floor) return SaturatingAdd(floor_[s], total_[s]) <= capacity_;
    if (SaturatingAdd(low_[s], total_[s]) > capacity_) return false;
    const int32_t arg = low_arg_[s];
    if (arg != kNone && !placed_[arg] && SaturatingAdd(min_offset_[arg], total_[s]) <= capacity_) return true;
    if (arg != kNone && !placed_[arg] && low_[s] == min_offset_[arg]) return false;  // Exact already.
    // Ties go to the latest in rank, which is placed last: the buffer being
    // placed is then seldom a section's lowest.
    int64_t lowest = kInfinity;
    int32_t lowest_arg = kNone;
    for (int32_t k = section_begin_[s]; k < section_begin_[s] + unplaced_count_[s]; ++k) {
      const int32_t o = section_members_[k];
      if (min_offset_[o] < lowest ||
          (lowest_arg != kNone && min_offset_[o] == lowest && rank_[o] > rank_[lowest_arg])) {
        lowest = min_offset_[o];
        lowest_arg = o;
      }
    }
    low_trail_.push_back({s, low_arg_[s], low_[s]});
    low_[s] = lowest;
    SetLowestBuffer(s, lowest_arg);
    return SaturatingAdd(lowest, total_[s]) <= capacity_;
  }

  // Makes b (or kNone) the lowest unplaced buffer of section s.
  void SetLowestBuffer(int32_t s, int32_t b) {
    if (low_arg_[s] != kNone) {
      const int32_t prev = lowest_prev_[s];
      const int32_t next = lowest_next_[s];
      (prev != kNone ? lowest_next_[prev] : lowest_head_[low_arg_[s]]) = next;
      if (next != kNone) lowest_prev_[next] = prev;
    }
    low_arg_[s] = b;
    if (b != kNone) {
      lowest_prev_[s] = kNone;
      lowest_next_[s] = lowest_head_[b];
      if (lowest_head_[b] != kNone) lowest_prev_[lowest_head_[b]] = s;
      lowest_head_[b] = s;
    }
  }

  // The slot of buffer b in section s's member list.
  int32_t& Slot(int32_t b, int32_t s) { return slots_[slot_begin_[b] + (s - first_section_[b])]; }

  // Moves b (just placed) from the unplaced members of section s to the
  // first of its placed ones, so that scans of a section skip placed buffers.
  void RemoveMember(int32_t b, int32_t s) {
    const int32_t last = section_begin_[s] + --unplaced_count_[s];
    const int32_t other = section_members_[last];
    const int32_t slot = Slot(b, s);
    section_members_[slot] = other;
    Slot(other, s) = slot;
    section_members_[last] = b;
    Slot(b, s) = last;
  }

  void UnplaceBuffer(int32_t b, size_t min_mark, size_t floor_mark, size_t low_mark) {
    for (size_t k = low_trail_.size(); k > low_mark; --k) {
      const LowChange& c = low_trail_[k - 1];
      low_[c.section] = c.old_low;
      SetLowestBuffer(c.section, c.old_arg);
    }
    low_trail_.resize(low_mark);
    if (options_.unallocated_floor && common_alignment_) {  // PlaceBuffer's closed form.
      for (int32_t s = end_section_[b] - 1; s >= first_section_[b]; --s) {
        if (low_arg_[s] == b) continue;
        low_[s] = own_low_trail_.back();
        own_low_trail_.pop_back();
      }
    }
    for (size_t k = floor_trail_.size(); k > floor_mark; --k) {
      floor_[floor_trail_[k - 1].index] = floor_trail_[k - 1].old_value;
    }
    floor_trail_.resize(floor_mark);
    for (int32_t s = first_section_[b]; s < end_section_[b]; ++s) {
      total_[s] += size_[b];
      // The block's maximum before b was placed comes back with the totals.
      block_max_[s / kBlock] = std::max(block_max_[s / kBlock], total_[s]);
      ++unplaced_count_[s];  // b is the first placed member (placements undo last in, first out).
    }
    for (size_t k = min_offset_trail_.size(); k > min_mark; --k) {
      min_offset_[min_offset_trail_[k - 1].index] = min_offset_trail_[k - 1].old_value;
    }
    min_offset_trail_.resize(min_mark);
    placed_[b] = 0;
  }

  void UpdateBlockMax(int32_t first, int32_t end) {
    for (int32_t block = first / kBlock; block * kBlock < end; ++block) {
      int64_t m = 0;
      const int32_t stop = std::min(num_sections_, (block + 1) * kBlock);
      for (int32_t s = block * kBlock; s < stop; ++s) m = std::max(m, total_[s]);
      block_max_[block] = m;
    }
  }

  // Takes b's size off the totals of its sections; a block's maximum is
  // recomputed only when a section that held it dropped.
  void TakeTotals(int32_t b) {
    const int32_t first = first_section_[b];
    const int32_t end = end_section_[b];
    for (int32_t block = first / kBlock; block * kBlock < end; ++block) {
      bool dropped = false;
      for (int32_t s = std::max(first, block * kBlock); s < std::min(end, (block + 1) * kBlock); ++s) {
        dropped = dropped || total_[s] == block_max_[block];
        total_[s] -= size_[b];
      }
      if (dropped) UpdateBlockMax(block * kBlock, block * kBlock + 1);
    }
  }

  // The largest unplaced total of a section in [first, end).
  int64_t MaxTotal(int32_t first, int32_t end) const {
    int64_t m = 0;
    const int32_t first_block = (first + kBlock - 1) / kBlock;
    const int32_t end_block = end / kBlock;
    if (first_block >= end_block) {
      for (int32_t s = first; s < end; ++s) m = std::max(m, total_[s]);
      return m;
    }
    for (int32_t s = first; s < first_block * kBlock; ++s) m = std::max(m, total_[s]);
    for (int32_t block = first_block; block < end_block; ++block) m = std::max(m, block_max_[block]);
    for (int32_t s = end_block * kBlock; s < end; ++s) m = std::max(m, total_[s]);
    return m;
  }

  const Problem& problem_;
  int64_t capacity_ = 0;
  const int64_t default_alignment_;
  const ExactOptions& options_;
  const Deadline deadline_;  // Of the preparation and of every search.
  Deadline run_deadline_;    // Of the running search (at most deadline_).

  int32_t n_ = 0;
  int32_t num_sections_ = 0;
  std::vector<int32_t> original_;  // Search index -> index in Problem::buffers.
  std::vector<int64_t> size_, align_;
  std::vector<int32_t> first_section_, end_section_;  // Sections [first, end).
  // Members of each section (CSR); the first unplaced_count_ of them are the
  // unplaced ones. slots_ (CSR by buffer, one per section it spans) says
  // where each buffer sits in each of its sections.
  std::vector<int32_t> section_begin_, section_members_, unplaced_count_;
  std::vector<int64_t> slot_begin_;
  std::vector<int32_t> slots_;
  // The alignment of every buffer when they all share one.
  std::optional<int64_t> common_alignment_;
  std::vector<int64_t> overlap_begin_;
  std::vector<int32_t> overlaps_;
  bool has_obstacles_ = false;  // Some buffer has a fixed offset (see Clear).
  std::vector<int32_t> obstacle_begin_;
  std::vector<std::pair<int64_t, int64_t>> obstacles_;
  std::vector<int32_t> rank_;
  size_t ranking_ = 0;  // Index into kRankings of the current round.
  struct SubKey {
    std::array<int64_t, 3> values;
    int32_t buffer;
  };
  std::vector<SubKey> sub_keys_;
  std::vector<Change> rank_trail_;

  // Search state.
  std::vector<uint8_t> placed_;
  std::vector<int64_t> min_offset_, solution_;
  std::vector<int64_t> floor_, total_;
  std::vector<int32_t> cuts_;
  std::vector<Change> min_offset_trail_, floor_trail_;
  std::vector<int32_t> lists_;
  std::vector<size_t> list_pos_;  // Where each buffer is in lists_ (its innermost list).
  std::vector<int32_t> by_first_section_;  // Buffers by first section, then index.
  size_t partition_cursor_ = 0;            // SolveAll's next buffer in by_first_section_.
  std::vector<Candidate> candidates_;
  std::vector<Frame> frames_;
  std::vector<int32_t> cut_points_;
  std::vector<int64_t> low_;       // Lowest min offset of a section's unplaced buffers.
  std::vector<int32_t> low_arg_;   // The buffer that has it (kNone: all placed).
  // The sections whose low_arg_ is a buffer, as a list per buffer (head by
  // buffer, links by section), so that raising a buffer finds them at once.
  std::vector<int32_t> lowest_head_, lowest_next_, lowest_prev_;
  std::vector<int64_t> block_max_;  // Largest total_ per kBlock sections.
  std::vector<LowChange> low_trail_;
  std::vector<int64_t> own_low_trail_;  // Old low_ of the placed buffers' own sections.
  std::vector<uint32_t> section_stamp_;
  std::vector<int32_t> dirty_sections_;
  uint32_t stamp_ = 0;
  bool hatless_ = false;  // The last placed buffer overlapped no unplaced one.
  int64_t nodes_ = 0;
  int64_t nodes_left_ = 0;
  std::optional<int64_t> max_nodes_;  // Of the running search.
  bool timed_out_ = false;
  int64_t max_fixed_top_ = 0;
  // Nodes between clock reads: fewer on large problems, whose nodes cost
  // more (a node scans its unplaced buffers).
  int64_t clock_period_ = kNodesPerClockRead;
  std::vector<int64_t> base_offsets_;  // Fixed offsets, zeros elsewhere.
  Prepared prepared_ = Prepared::kOk;
};

constexpr EnumName<ExactOutcome> kExactOutcomeNames[] = {
    {ExactOutcome::kFound, "found"}, {ExactOutcome::kInfeasible, "infeasible"}, {ExactOutcome::kTimeout, "timeout"}};

std::string_view ToString(ExactOutcome outcome) { return NameOf(kExactOutcomeNames, outcome); }

std::ostream& operator<<(std::ostream& os, ExactOutcome outcome) { return os << ToString(outcome); }

ExactResult SolveExact(const Problem& problem, int64_t capacity_bytes, int64_t alignment_bytes,
                       const ExactOptions& options, Deadline deadline) {
  ExactSearchImpl search(problem, alignment_bytes, options, deadline);
  return search.Run(capacity_bytes, options.max_nodes, deadline);
}

ExactSolver::ExactSolver(const Problem& problem, int64_t alignment_bytes,
                         const ExactOptions& options, Deadline deadline)
    : impl_(std::make_unique<ExactSearchImpl>(problem, alignment_bytes, options, deadline)),
      options_max_nodes_(options.max_nodes) {}

ExactSolver::~ExactSolver() = default;

ExactResult ExactSolver::Solve(int64_t capacity_bytes, std::optional<int64_t> max_nodes, Deadline deadline) {
  return impl_->Run(capacity_bytes, max_nodes ? max_nodes : options_max_nodes_, deadline);
}

}  // namespace memfit::alloc
