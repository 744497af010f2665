#include "alloc/greedy.h"

#include <algorithm>
#include <numeric>
#include <optional>
#include <utility>

namespace memfit::alloc {
namespace {

int64_t AlignmentOf(const Buffer& b, int64_t default_alignment) {
  return b.alignment_bytes.value_or(default_alignment);
}

// Places buffers one at a time into the smallest gap that holds them. Placed
// buffers are kept as parallel arrays plus an index sorted by offset.
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

  // Places buffer `i` (no-op if fixed or already placed).
  void Place(size_t i) {
    if (placed_[i]) return;
    const Buffer& b = problem_.buffers[i];
    const int64_t align = AlignmentOf(b, alignment_);
    const int64_t lo = b.lifetime.lower;
    const int64_t hi = b.lifetime.upper;
    // Placed buffers are kept in offset order, so one pass over them sees
    // the time-overlapping ones bottom-up and the gaps between them.
    int64_t cursor = 0;  // Everything below is taken or unusable.
    std::optional<int64_t> best_offset;
    int64_t best_gap = 0;
    for (const int32_t k : by_offset_) {
      if (!(lower_[k] < hi && lo < upper_[k])) continue;
      const int64_t off = off_[k];
      if (off > cursor) {
        const int64_t start = AlignUp(cursor, align);
        const int64_t gap = off - cursor;
        if (start + b.size_bytes <= off && (!best_offset || gap < best_gap)) {
          best_offset = start;
          best_gap = gap;
        }
      }
      cursor = std::max(cursor, top_[k]);
    }
    Record(i, best_offset.value_or(AlignUp(cursor, align)));
  }

  std::vector<int64_t> TakeOffsets() { return std::move(offsets_); }

 private:
  void Record(size_t i, int64_t offset) {
    const Buffer& b = problem_.buffers[i];
    offsets_[i] = offset;
    placed_[i] = true;
    if (b.size_bytes == 0) return;
    const int32_t k = static_cast<int32_t>(off_.size());
    auto at = std::upper_bound(by_offset_.begin(), by_offset_.end(), offset,
                               [&](int64_t value, int32_t other) { return value < off_[other]; });
    by_offset_.insert(at, k);
    lower_.push_back(b.lifetime.lower);
    upper_.push_back(b.lifetime.upper);
    off_.push_back(offset);
    top_.push_back(offset + b.size_bytes);
  }

  const Problem& problem_;
  const int64_t alignment_;
  std::vector<int64_t> offsets_;
  std::vector<bool> placed_;
  std::vector<int64_t> lower_, upper_, off_, top_;
  std::vector<int32_t> by_offset_;  // Indices into the arrays above, by offset.
};

std::vector<int64_t> PlaceInOrder(const Problem& problem, int64_t alignment,
                                  const std::vector<size_t>& order) {
  GapPlacer placer(problem, alignment);
  for (size_t i : order) placer.Place(i);
  return placer.TakeOffsets();
}

std::vector<size_t> Indices(const Problem& problem) {
  std::vector<size_t> order(problem.buffers.size());
  std::iota(order.begin(), order.end(), 0);
  return order;
}

}  // namespace

std::vector<int64_t> PlanNaive(const Problem& problem, int64_t alignment_bytes) {
  std::vector<int64_t> offsets(problem.buffers.size(), 0);
  int64_t cursor = 0;
  for (const Buffer& b : problem.buffers) {
    if (b.fixed_offset_bytes) cursor = std::max(cursor, *b.fixed_offset_bytes + b.size_bytes);
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
      cursor = offsets[i] + b.size_bytes;
    }
  }
  return offsets;
}

std::vector<int64_t> PlanGreedyBySize(const Problem& problem, int64_t alignment_bytes) {
  std::vector<size_t> order = Indices(problem);
  const auto& bs = problem.buffers;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (bs[a].size_bytes != bs[b].size_bytes) return bs[a].size_bytes > bs[b].size_bytes;
    return IdLess(bs[a].id, bs[b].id);
  });
  return PlaceInOrder(problem, alignment_bytes, order);
}

std::vector<int64_t> PlanGreedyByBreadth(const Problem& problem, int64_t alignment_bytes) {
  const auto& bs = problem.buffers;
  // Time points: the distinct lifetime starts (the live set only grows at them).
  std::vector<int64_t> points;
  for (const Buffer& b : bs) points.push_back(b.lifetime.lower);
  std::sort(points.begin(), points.end());
  points.erase(std::unique(points.begin(), points.end()), points.end());
  // Live buffers at each point, via a sweep over sorted starts and ends.
  std::vector<std::vector<size_t>> live(points.size());
  std::vector<int64_t> breadth(points.size(), 0);
  for (size_t i = 0; i < bs.size(); ++i) {
    auto first = std::lower_bound(points.begin(), points.end(), bs[i].lifetime.lower);
    auto last = std::lower_bound(points.begin(), points.end(), bs[i].lifetime.upper);
    for (auto it = first; it != last; ++it) {
      const size_t p = static_cast<size_t>(it - points.begin());
      live[p].push_back(i);
      breadth[p] += bs[i].size_bytes;
    }
  }
  std::vector<size_t> point_order(points.size());
  std::iota(point_order.begin(), point_order.end(), 0);
  std::stable_sort(point_order.begin(), point_order.end(),
                   [&](size_t a, size_t b) { return breadth[a] > breadth[b]; });
  std::vector<size_t> order;
  std::vector<bool> queued(bs.size(), false);
  for (size_t p : point_order) {
    std::vector<size_t>& here = live[p];
    std::sort(here.begin(), here.end(), [&](size_t a, size_t b) {
      if (bs[a].size_bytes != bs[b].size_bytes) return bs[a].size_bytes > bs[b].size_bytes;
      return IdLess(bs[a].id, bs[b].id);
    });
    for (size_t i : here) {
      if (!queued[i]) order.push_back(i);
      queued[i] = true;
    }
  }
  for (size_t i = 0; i < bs.size(); ++i) {
    if (!queued[i]) order.push_back(i);  // Only zero-length leftovers; keep total.
  }
  return PlaceInOrder(problem, alignment_bytes, order);
}

std::vector<int64_t> PlanBestFit(const Problem& problem, int64_t alignment_bytes) {
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
  return PlaceInOrder(problem, alignment_bytes, order);
}

}  // namespace memfit::alloc
