#include "alloc/greedy.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <numeric>
#include <optional>
#include <utility>

namespace memfit::alloc {
namespace {

int64_t AlignmentOf(const Buffer& b, int64_t default_alignment) {
  return b.alignment_bytes.value_or(default_alignment);
}

// Places buffers one at a time into the smallest gap that holds them. Placed
// buffers are kept sorted by offset in chunks of at most 2 * kChunk (so that
// an insertion moves a chunk, not the whole list, and a scan is sequential).
// A placement scans every placed buffer: O(n) each, O(n^2) in all, with a
// small constant; after the deadline the rest are stacked on top instead.
class GapPlacer {
 public:
  GapPlacer(const Problem& problem, int64_t alignment)
      : problem_(problem), alignment_(alignment), offsets_(problem.buffers.size(), 0),
        placed_(problem.buffers.size(), false) {
    for (size_t i = 0; i < problem.buffers.size(); ++i) {
      const Buffer& b = problem.buffers[i];
      if (b.fixed_offset_bytes) {
        Record(i, *b.fixed_offset_bytes);
      } else if (b.size_bytes == 0) {
        placed_[i] = true;  // Zero-size buffers sit at 0 and collide with nothing.
      }
    }
  }

  // Places buffer `i` (no-op if fixed or already placed) in the best gap.
  void Place(size_t i) {
    if (placed_[i]) return;
    const Buffer& b = problem_.buffers[i];
    const int64_t align = AlignmentOf(b, alignment_);
    const int64_t lo = b.lifetime.lower;
    const int64_t hi = b.lifetime.upper;
    const int64_t size = b.size_bytes;
    // Placed buffers are kept in offset order, so one pass over them sees
    // the time-overlapping ones bottom-up and the gaps between them.
    int64_t cursor = 0;  // Everything below is taken or unusable.
    int64_t best_offset = -1;
    int64_t best_gap = 0;
    for (const Chunk& chunk : chunks_) {
      // A chunk with nothing alive in [lo, hi) changes neither the cursor
      // nor the gaps.
      if (chunk.max_upper <= lo || hi <= chunk.min_lower) continue;
      for (const Placed& p : chunk.items) {
        if (!(p.lower < hi && lo < p.upper)) continue;
        if (p.off > cursor) {
          const int64_t start = AlignUp(cursor, align);
          const int64_t gap = p.off - cursor;
          if (SaturatingAdd(start, size) <= p.off && (best_offset < 0 || gap < best_gap)) {
            best_offset = start;
            best_gap = gap;
          }
        }
        cursor = std::max(cursor, p.top);
      }
    }
    Record(i, best_offset >= 0 ? best_offset : AlignUp(cursor, align));
  }

  // Places buffer `i` (no-op if fixed or already placed) above everything.
  void Stack(size_t i) {
    if (placed_[i]) return;
    Record(i, AlignUp(max_top_, AlignmentOf(problem_.buffers[i], alignment_)));
  }

  std::vector<int64_t> TakeOffsets() { return std::move(offsets_); }

 private:
  struct Placed {
    int64_t lower, upper, off, top;
  };
  static constexpr size_t kChunk = 256;

  void Record(size_t i, int64_t offset) {
    const Buffer& b = problem_.buffers[i];
    offsets_[i] = offset;
    placed_[i] = true;
    if (b.size_bytes == 0) return;
    const Placed p{b.lifetime.lower, b.lifetime.upper, offset, SaturatingAdd(offset, b.size_bytes)};
    max_top_ = std::max(max_top_, p.top);
    if (chunks_.empty()) chunks_.emplace_back();
    // The first chunk whose last offset exceeds `offset` (else the last).
    size_t c = 0;
    while (c + 1 < chunks_.size() && (chunks_[c].items.empty() || chunks_[c].items.back().off <= offset)) ++c;
    Chunk& chunk = chunks_[c];
    auto at = std::upper_bound(chunk.items.begin(), chunk.items.end(), offset,
                               [](int64_t value, const Placed& other) { return value < other.off; });
    chunk.items.insert(at, p);
    chunk.min_lower = std::min(chunk.min_lower, p.lower);
    chunk.max_upper = std::max(chunk.max_upper, p.upper);
    if (chunk.items.size() > 2 * kChunk) {
      Chunk upper;
      upper.items.assign(chunk.items.begin() + kChunk, chunk.items.end());
      chunk.items.resize(kChunk);
      chunk.Bound();
      upper.Bound();
      chunks_.insert(chunks_.begin() + static_cast<ptrdiff_t>(c) + 1, std::move(upper));
    }
  }

  const Problem& problem_;
  const int64_t alignment_;
  std::vector<int64_t> offsets_;
  std::vector<bool> placed_;
  // Placed buffers by offset, chunk after chunk, each with the time span of
  // its buffers.
  struct Chunk {
    std::vector<Placed> items;
    int64_t min_lower = std::numeric_limits<int64_t>::max();
    int64_t max_upper = std::numeric_limits<int64_t>::min();
    void Bound() {
      min_lower = std::numeric_limits<int64_t>::max();
      max_upper = std::numeric_limits<int64_t>::min();
      for (const Placed& p : items) {
        min_lower = std::min(min_lower, p.lower);
        max_upper = std::max(max_upper, p.upper);
      }
    }
  };
  std::vector<Chunk> chunks_;
  int64_t max_top_ = 0;
};

// How many placements go between two clock reads.
constexpr size_t kPlacementsPerClockRead = 64;

std::vector<int64_t> PlaceInOrder(const Problem& problem, int64_t alignment,
                                  const std::vector<size_t>& order, Deadline deadline) {
  GapPlacer placer(problem, alignment);
  bool late = false;
  for (size_t k = 0; k < order.size(); ++k) {
    if (!late && k % kPlacementsPerClockRead == 0 && deadline != Deadline::max() &&
        std::chrono::steady_clock::now() > deadline) {
      late = true;
    }
    if (late) {
      placer.Stack(order[k]);
    } else {
      placer.Place(order[k]);
    }
  }
  return placer.TakeOffsets();
}

std::vector<size_t> Indices(const Problem& problem) {
  std::vector<size_t> order(problem.buffers.size());
  std::iota(order.begin(), order.end(), 0);
  return order;
}

// The order of the greedy-by-size planners: larger first, then by id.
bool LargerFirst(const Buffer& a, const Buffer& b) {
  if (a.size_bytes != b.size_bytes) return a.size_bytes > b.size_bytes;
  return IdLess(a.id, b.id);
}

}  // namespace

std::vector<int64_t> PlanNaive(const Problem& problem, int64_t alignment_bytes) {
  std::vector<int64_t> offsets(problem.buffers.size(), 0);
  int64_t cursor = 0;
  for (const Buffer& b : problem.buffers) {
    if (b.fixed_offset_bytes) cursor = std::max(cursor, SaturatingAdd(*b.fixed_offset_bytes, b.size_bytes));
  }
  std::vector<size_t> order = Indices(problem);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return IdLess(problem.buffers[a].id, problem.buffers[b].id);
  });
  for (size_t i : order) {
    const Buffer& b = problem.buffers[i];
    if (b.fixed_offset_bytes) {
      offsets[i] = *b.fixed_offset_bytes;
    } else if (b.size_bytes > 0) {
      offsets[i] = AlignUp(cursor, AlignmentOf(b, alignment_bytes));
      cursor = SaturatingAdd(offsets[i], b.size_bytes);
    }
  }
  return offsets;
}

std::vector<int64_t> PlanGreedyBySize(const Problem& problem, int64_t alignment_bytes,
                                      Deadline deadline) {
  std::vector<size_t> order = Indices(problem);
  const auto& bs = problem.buffers;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return LargerFirst(bs[a], bs[b]); });
  return PlaceInOrder(problem, alignment_bytes, order, deadline);
}

std::vector<int64_t> PlanGreedyByBreadth(const Problem& problem, int64_t alignment_bytes,
                                         Deadline deadline) {
  const auto& bs = problem.buffers;
  // Time points: the distinct lifetime starts (the live set only grows at them).
  std::vector<int64_t> points;
  for (const Buffer& b : bs) points.push_back(b.lifetime.lower);
  std::sort(points.begin(), points.end());
  points.erase(std::unique(points.begin(), points.end()), points.end());
  // The breadth of each point (the sum of live sizes) by a difference array.
  const size_t np = points.size();
  std::vector<int64_t> breadth(np + 1, 0);
  std::vector<size_t> first(bs.size()), last(bs.size());  // Points [first, last).
  for (size_t i = 0; i < bs.size(); ++i) {
    first[i] = static_cast<size_t>(
        std::lower_bound(points.begin(), points.end(), bs[i].lifetime.lower) - points.begin());
    last[i] = static_cast<size_t>(
        std::lower_bound(points.begin(), points.end(), bs[i].lifetime.upper) - points.begin());
    breadth[first[i]] += bs[i].size_bytes;
    breadth[last[i]] -= bs[i].size_bytes;
  }
  for (size_t p = 1; p < np; ++p) breadth[p] += breadth[p - 1];
  std::vector<size_t> point_order(np);
  std::iota(point_order.begin(), point_order.end(), 0);
  std::stable_sort(point_order.begin(), point_order.end(),
                   [&](size_t a, size_t b) { return breadth[a] > breadth[b]; });
  // Points are visited in that order and each takes its live buffers not
  // taken yet, by size: so a buffer goes with the first visited point it is
  // live at, the minimum position over its points (a sparse-table query).
  std::vector<size_t> position(np);
  for (size_t k = 0; k < np; ++k) position[point_order[k]] = k;
  std::vector<std::vector<size_t>> table{position};
  for (size_t w = 1; 2 * w <= np; w *= 2) {
    const std::vector<size_t>& prev = table.back();
    std::vector<size_t> next(np - 2 * w + 1);
    for (size_t p = 0; p < next.size(); ++p) next[p] = std::min(prev[p], prev[p + w]);
    table.push_back(std::move(next));
  }
  constexpr size_t kNever = std::numeric_limits<size_t>::max();
  std::vector<size_t> visit(bs.size(), kNever);
  for (size_t i = 0; i < bs.size(); ++i) {
    if (first[i] >= last[i]) continue;  // Only zero-length leftovers.
    size_t level = 0;
    while ((size_t{2} << level) <= last[i] - first[i]) ++level;
    visit[i] = std::min(table[level][first[i]], table[level][last[i] - (size_t{1} << level)]);
  }
  std::vector<size_t> order = Indices(problem);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (visit[a] != visit[b]) return visit[a] < visit[b];
    if (visit[a] == kNever) return false;  // Leftovers keep index order.
    return LargerFirst(bs[a], bs[b]);
  });
  return PlaceInOrder(problem, alignment_bytes, order, deadline);
}

std::vector<int64_t> PlanBestFit(const Problem& problem, int64_t alignment_bytes,
                                 Deadline deadline) {
  const auto& bs = problem.buffers;
  int64_t first = 0;
  int64_t last = 0;
  for (size_t i = 0; i < bs.size(); ++i) {
    first = i == 0 ? bs[i].lifetime.lower : std::min(first, bs[i].lifetime.lower);
    last = i == 0 ? bs[i].lifetime.upper : std::max(last, bs[i].lifetime.upper);
  }
  auto whole = [&](size_t i) {
    return bs[i].lifetime.lower == first && bs[i].lifetime.upper == last;
  };
  std::vector<size_t> order = Indices(problem);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (whole(a) != whole(b)) return whole(a);
    if (bs[a].size_bytes != bs[b].size_bytes) return bs[a].size_bytes > bs[b].size_bytes;
    if (bs[a].lifetime.length() != bs[b].lifetime.length()) {
      return bs[a].lifetime.length() > bs[b].lifetime.length();
    }
    return IdLess(bs[a].id, bs[b].id);
  });
  return PlaceInOrder(problem, alignment_bytes, order, deadline);
}

}  // namespace memfit::alloc
