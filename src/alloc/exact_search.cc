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
//  * Section inference: time is cut into sections at lifetime endpoints.
//    Every section keeps a floor (the highest placed top in it, or the
//    lowest min_offset of its unplaced buffers if that is higher, or the
//    offset of the last placement, since offsets never decrease) and the
//    total size of its unplaced buffers. Those buffers are all alive at once
//    above the floor, so floor + total > capacity is a dead end.
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
//  * Deadline: the arrays are prepared once per Plan() (ExactSolver) and
//    the preparation, which is quadratic in the worst case, reads the clock
//    too; the search reads it every node on large problems (a node there
//    can cost milliseconds).
//
// The search is exact: it answers kFound with a placement, kInfeasible when
// a complete search found none, or kTimeout.
//
// Performance notes: all state lives in flat arrays indexed by buffer or
// section; every change is pushed on an undo trail, so a node allocates
// nothing; lists of candidate and unplaced buffers live in stack-like arenas.
#include "alloc/exact_search.h"

#include <algorithm>
#include <array>
#include <limits>
#include <memory>
#include <numeric>

#include "alloc/greedy.h"

namespace memfit::alloc {
namespace {

constexpr int64_t kInfinity = std::numeric_limits<int64_t>::max() / 4;
// The deadline is read once every this many nodes (a clock read costs about
// as much as a small node).
constexpr int64_t kNodesPerClockRead = 256;
// The first round of restarts allows this many nodes per buffer.
constexpr int64_t kFirstRoundNodesPerBuffer = 2;
// "No buffer" in the per-section argmin.
constexpr int32_t kNone = -1;
// Sections per block of the blocked maximum of section totals.
constexpr int32_t kBlock = 64;

enum class Status { kFound, kNotFound, kAborted, kTimeout };

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
  ExactResult Run(int64_t capacity) {
    capacity_ = capacity;
    nodes_ = 0;
    ExactResult result;
    result.offsets = base_offsets_;
    if (prepared_ == Prepared::kTimeout || timed_out_) {
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
  enum class Prepared { kOk, kInfeasible, kTimeout };

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
        max_fixed_top_ = std::max(max_fixed_top_, *b.fixed_offset_bytes + b.size_bytes);
      } else if (b.size_bytes > 0) {
        original_.push_back(static_cast<int32_t>(i));
      }
    }
    for (size_t x = 0; x < fixed.size(); ++x) {
      for (size_t y = x + 1; y < fixed.size(); ++y) {
        const Buffer& a = bs[fixed[x]];
        const Buffer& b = bs[fixed[y]];
        if (a.lifetime.Overlaps(b.lifetime) && *a.fixed_offset_bytes < *b.fixed_offset_bytes + b.size_bytes &&
            *b.fixed_offset_bytes < *a.fixed_offset_bytes + a.size_bytes) {
          return Prepared::kInfeasible;
        }
      }
    }
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
    // One section per distinct lifetime end t: the buffers alive just before
    // t. Their live sets include every maximal clique of the interval graph
    // (so they carry all of the capacity reasoning) and also the shrinking
    // sets between, which make the lowest-min-offset floors sharper. A
    // buffer covers a contiguous run of them.
    std::vector<int64_t> points;
    for (int b = 0; b < n_; ++b) points.push_back(bs[original_[b]].lifetime.upper);
    std::sort(points.begin(), points.end());
    points.erase(std::unique(points.begin(), points.end()), points.end());
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
    section_members_.resize(section_begin_[num_sections_]);
    {
      std::vector<int32_t> fill(section_begin_.begin(), section_begin_.end() - 1);
      for (int b = 0; b < n_; ++b) {
        if (b % 256 == 0 && PastDeadline()) return Prepared::kTimeout;
        for (int s = first_section_[b]; s < end_section_[b]; ++s) {
          section_members_[fill[s]++] = b;
        }
      }
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
    offset_cache_.assign(n_, 0);
    solution_.assign(n_, 0);
    rank_.assign(n_, 0);
    section_stamp_.assign(num_sections_, 0);
    low_.assign(num_sections_, 0);
    low_arg_.assign(num_sections_, kNone);
    for (int32_t s = 0; s < num_sections_; ++s) {
      if (section_begin_[s + 1] > section_begin_[s]) low_arg_[s] = section_members_[section_begin_[s]];
    }
    block_max_.assign(num_sections_ / kBlock + 1, 0);
    UpdateBlockMax(0, num_sections_);
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
          case Key::kArea: v[i] = width * size_[b]; break;
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
      area[b] = width[b] * size_[b];
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
        if (options_.max_nodes) nodes_left_ = std::min(nodes_left_, *options_.max_nodes - nodes_);
        const Status status = SolveAll();
        if (status != Status::kAborted) return status;
        if (options_.max_nodes && nodes_ >= *options_.max_nodes) return Status::kTimeout;
      }
      limit *= 2;
    }
  }

  // Solves every initial partition (split at boundaries nothing crosses).
  Status SolveAll() {
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

  // Collects the unplaced buffers starting in [first, end) and searches them.
  Status SolvePartition(int32_t first, int32_t end) {
    const size_t list_begin = lists_.size();
    for (int b = 0; b < n_; ++b) {
      if (!placed_[b] && first_section_[b] >= first && first_section_[b] < end) {
        lists_.push_back(b);
      }
    }
    const size_t list_end = lists_.size();
    Status status = Status::kFound;
    if (list_end > list_begin) {
      status = Node(first, end, list_begin, list_end, 0, -1);
    }
    lists_.resize(list_begin);
    return status;
  }

  // The lowest aligned offset >= `offset` where buffer b clears its fixed
  // obstacles.
  int64_t Clear(int32_t b, int64_t offset) const {
    for (int32_t k = obstacle_begin_[b]; k < obstacle_begin_[b + 1]; ++k) {
      const auto [lo, hi] = obstacles_[k];
      if (lo >= offset + size_[b]) break;
      if (hi > offset) offset = AlignUp(hi, align_[b]);
    }
    return offset;
  }

  Status Node(int32_t first, int32_t end, size_t list_begin, size_t list_end,
              int64_t last_offset, int32_t last_rank) {
    ++nodes_;
    if (--nodes_left_ < 0) return Status::kAborted;
    if (nodes_ % clock_period_ == 0 && std::chrono::steady_clock::now() > deadline_) {
      timed_out_ = true;
    }
    if (timed_out_) return Status::kTimeout;

    // The unplaced buffers of this partition, with their offsets.
    const size_t child_begin = lists_.size();
    int64_t min_height = kInfinity;
    for (size_t k = list_begin; k < list_end; ++k) {
      const int32_t b = lists_[k];
      if (placed_[b]) continue;
      lists_.push_back(b);
      const int64_t offset = Clear(b, min_offset_[b]);
      offset_cache_[b] = offset;
      min_height = std::min(min_height, offset + size_[b]);
    }
    const size_t child_end = lists_.size();
    if (child_begin == child_end) return Status::kFound;

    const size_t cand_begin = candidates_.size();
    for (size_t k = child_begin; k < child_end; ++k) {
      const int32_t b = lists_[k];
      const int64_t offset = offset_cache_[b];
      if (offset < last_offset || (offset == last_offset && rank_[b] < last_rank)) continue;
      if (options_.dominance && offset >= min_height) continue;
      if (offset + size_[b] > capacity_) continue;
      candidates_.push_back({offset, rank_[b], b});
    }
    std::sort(candidates_.begin() + static_cast<ptrdiff_t>(cand_begin), candidates_.end(),
              [](const Candidate& a, const Candidate& b) {
                return a.offset != b.offset ? a.offset < b.offset : a.rank < b.rank;
              });
    const size_t cand_end = candidates_.size();

    Status status = Status::kNotFound;
    for (size_t c = cand_begin; c < cand_end && status == Status::kNotFound; ++c) {
      const Candidate candidate = candidates_[c];
      const size_t min_mark = min_offset_trail_.size();
      const size_t floor_mark = floor_trail_.size();
      const size_t low_mark = low_trail_.size();
      const bool placed_ok = PlaceBuffer(candidate.buffer, candidate.offset);
      if (placed_ok &&
          (!options_.section_inference || Check(first, end, candidate.offset))) {
        status = options_.decomposition
                     ? Decompose(first, end, child_begin, child_end, candidate)
                     : Node(first, end, child_begin, child_end, candidate.offset, candidate.rank);
      }
      const bool hatless = hatless_;
      UnplaceBuffer(candidate.buffer, min_mark, floor_mark, low_mark);
      // Nothing unplaced overlaps the buffer just tried, so it took nothing
      // from anyone: if the rest failed with it there, it fails without.
      if (options_.hatless && hatless) break;
    }
    candidates_.resize(cand_begin);
    lists_.resize(child_begin);
    return status;
  }

  // Places b at `offset` and updates min offsets, floors, totals and the
  // lowest min offsets, all on the undo trails. Returns false when a section
  // it changed can no longer hold its unplaced buffers (the state is
  // complete either way; undo with UnplaceBuffer).
  bool PlaceBuffer(int32_t b, int64_t offset) {
    placed_[b] = 1;
    solution_[b] = offset;
    const int64_t top = offset + size_[b];
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
    for (int64_t k = overlap_begin_[b]; k < overlap_begin_[b + 1]; ++k) {
      const int32_t o = overlaps_[k];
      if (placed_[o]) continue;
      hatless_ = false;
      const int64_t raised = align_[o] == 1 ? top : AlignUp(top, align_[o]);
      if (min_offset_[o] >= raised) continue;
      min_offset_trail_.push_back({o, min_offset_[o]});
      min_offset_[o] = raised;
      if (!lows) continue;
      // Only sections whose lowest buffer was o can see their lowest rise.
      for (int32_t s = first_section_[o]; s < end_section_[o]; ++s) {
        if (low_arg_[s] == o) mark(s);
      }
    }
    for (int32_t s = first_section_[b]; s < end_section_[b]; ++s) {
      floor_trail_.push_back({s, floor_[s]});
      floor_[s] = top;
      total_[s] -= size_[b];
      if (lows && low_arg_[s] == b) mark(s);
    }
    UpdateBlockMax(first_section_[b], end_section_[b]);
    for (const int32_t s : dirty_sections_) {
      int64_t lowest = kInfinity;
      int32_t arg = kNone;
      for (int32_t k = section_begin_[s]; k < section_begin_[s + 1]; ++k) {
        const int32_t o = section_members_[k];
        if (!placed_[o] && min_offset_[o] < lowest) {
          lowest = min_offset_[o];
          arg = o;
        }
      }
      low_trail_.push_back({s, low_arg_[s], low_[s]});
      low_[s] = lowest;
      low_arg_[s] = arg;
    }
    if (!options_.section_inference) return true;
    // Sections untouched here were checked when they last changed.
    for (int32_t s = first_section_[b]; s < end_section_[b]; ++s) {
      if (total_[s] > 0 && SectionFloor(s) + total_[s] > capacity_) return false;
    }
    for (const int32_t s : dirty_sections_) {
      if (total_[s] > 0 && SectionFloor(s) + total_[s] > capacity_) return false;
    }
    return true;
  }

  // The lowest offset at which an unplaced buffer of section s can start.
  int64_t SectionFloor(int32_t s) const {
    return options_.unallocated_floor ? std::max(floor_[s], low_[s]) : floor_[s];
  }

  void UnplaceBuffer(int32_t b, size_t min_mark, size_t floor_mark, size_t low_mark) {
    for (size_t k = low_trail_.size(); k > low_mark; --k) {
      const LowChange& c = low_trail_[k - 1];
      low_[c.section] = c.old_low;
      low_arg_[c.section] = c.old_arg;
    }
    low_trail_.resize(low_mark);
    for (size_t k = floor_trail_.size(); k > floor_mark; --k) {
      floor_[floor_trail_[k - 1].index] = floor_trail_[k - 1].old_value;
    }
    floor_trail_.resize(floor_mark);
    for (int32_t s = first_section_[b]; s < end_section_[b]; ++s) total_[s] += size_[b];
    UpdateBlockMax(first_section_[b], end_section_[b]);
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

  // The largest unplaced total of a section in [first, end).
  int64_t MaxTotal(int32_t first, int32_t end) const {
    int64_t m = 0;
    int32_t s = first;
    for (; s < end && s % kBlock != 0; ++s) m = std::max(m, total_[s]);
    for (; s + kBlock <= end; s += kBlock) m = std::max(m, block_max_[s / kBlock]);
    for (; s < end; ++s) m = std::max(m, total_[s]);
    return m;
  }

  // The monotonic floor: nothing is placed below `offset` any more, so every
  // section of the partition must hold its unplaced buffers above it.
  bool Check(int32_t first, int32_t end, int64_t offset) const {
    return offset + MaxTotal(first, end) <= capacity_;
  }

  // Counts down the boundary crossings of the buffer just placed; where none
  // is left, solves each side separately.
  Status Decompose(int32_t first, int32_t end, size_t list_begin, size_t list_end,
                   const Candidate& placed) {
    const int32_t b = placed.buffer;
    const size_t cut_begin = cut_points_.size();
    for (int32_t s = first_section_[b]; s + 1 < end_section_[b]; ++s) {
      if (--cuts_[s] == 0) cut_points_.push_back(s + 1);
    }
    Status status = Status::kFound;
    if (cut_points_.size() == cut_begin) {
      status = Node(first, end, list_begin, list_end, placed.offset, placed.rank);
    } else {
      int32_t sub_first = first;
      for (size_t k = cut_begin; k <= cut_points_.size() && status == Status::kFound; ++k) {
        const int32_t sub_end = k < cut_points_.size() ? cut_points_[k] : end;
        const size_t sub_begin = lists_.size();
        for (size_t i = list_begin; i < list_end; ++i) {
          const int32_t o = lists_[i];
          if (!placed_[o] && first_section_[o] >= sub_first && first_section_[o] < sub_end) {
            lists_.push_back(o);
          }
        }
        const size_t sub_list_end = lists_.size();
        if (sub_list_end > sub_begin) {
          const size_t rank_mark = rank_trail_.size();
          RankSubproblem(sub_begin, sub_list_end);
          status = Node(sub_first, sub_end, sub_begin, sub_list_end, 0, -1);
          RestoreRanks(rank_mark);
        }
        lists_.resize(sub_begin);
        sub_first = sub_end;
      }
    }
    cut_points_.resize(cut_begin);
    for (int32_t s = first_section_[b]; s + 1 < end_section_[b]; ++s) ++cuts_[s];
    return status;
  }

  const Problem& problem_;
  int64_t capacity_ = 0;
  const int64_t default_alignment_;
  const ExactOptions& options_;
  const Deadline deadline_;

  int32_t n_ = 0;
  int32_t num_sections_ = 0;
  std::vector<int32_t> original_;  // Search index -> index in Problem::buffers.
  std::vector<int64_t> size_, align_;
  std::vector<int32_t> first_section_, end_section_;  // Sections [first, end).
  std::vector<int32_t> section_begin_, section_members_;
  std::vector<int64_t> overlap_begin_;
  std::vector<int32_t> overlaps_;
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
  std::vector<int64_t> min_offset_, offset_cache_, solution_;
  std::vector<int64_t> floor_, total_;
  std::vector<int32_t> cuts_;
  std::vector<Change> min_offset_trail_, floor_trail_;
  std::vector<int32_t> lists_;
  std::vector<Candidate> candidates_;
  std::vector<int32_t> cut_points_;
  std::vector<int64_t> low_;       // Lowest min offset of a section's unplaced buffers.
  std::vector<int32_t> low_arg_;   // The buffer that has it (kNone: all placed).
  std::vector<int64_t> block_max_;  // Largest total_ per kBlock sections.
  std::vector<LowChange> low_trail_;
  std::vector<uint32_t> section_stamp_;
  std::vector<int32_t> dirty_sections_;
  uint32_t stamp_ = 0;
  bool hatless_ = false;  // The last placed buffer overlapped no unplaced one.
  int64_t nodes_ = 0;
  int64_t nodes_left_ = 0;
  bool timed_out_ = false;
  int64_t max_fixed_top_ = 0;
  // Nodes between clock reads: fewer on large problems, whose nodes cost
  // more (a node scans its unplaced buffers).
  int64_t clock_period_ = kNodesPerClockRead;
  std::vector<int64_t> base_offsets_;  // Fixed offsets, zeros elsewhere.
  Prepared prepared_ = Prepared::kOk;
};

std::string_view ToString(ExactOutcome outcome) {
  switch (outcome) {
    case ExactOutcome::kFound: return "found";
    case ExactOutcome::kInfeasible: return "infeasible";
    case ExactOutcome::kTimeout: return "timeout";
  }
  return "?";
}

std::ostream& operator<<(std::ostream& os, ExactOutcome outcome) { return os << ToString(outcome); }

ExactResult SolveExact(const Problem& problem, int64_t capacity_bytes, int64_t alignment_bytes,
                       const ExactOptions& options, Deadline deadline) {
  ExactSearchImpl search(problem, alignment_bytes, options, deadline);
  return search.Run(capacity_bytes);
}

ExactSolver::ExactSolver(const Problem& problem, int64_t alignment_bytes,
                         const ExactOptions& options, Deadline deadline)
    : impl_(std::make_unique<ExactSearchImpl>(problem, alignment_bytes, options, deadline)) {}

ExactSolver::~ExactSolver() = default;

ExactResult ExactSolver::Solve(int64_t capacity_bytes) { return impl_->Run(capacity_bytes); }

}  // namespace memfit::alloc
