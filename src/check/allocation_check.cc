#include "check/allocation_check.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <tuple>
#include <utility>

#include "util/checked_math.h"
#include "util/enum_names.h"

namespace memfit::check {
namespace {

using alloc::Buffer;

class Collector {
 public:
  explicit Collector(size_t limit) : limit_(limit) {}
  bool Full() const { return violations_.size() >= limit_; }
  void Add(ViolationKind kind, std::vector<std::string> ids, std::string message) {
    if (!Full()) violations_.push_back({kind, std::move(ids), std::move(message)});
  }
  std::vector<Violation> Take() { return std::move(violations_); }

 private:
  size_t limit_;
  std::vector<Violation> violations_;
};

}  // namespace

constexpr EnumName<ViolationKind> kViolationKindNames[] = {
    {ViolationKind::kWrongCount, "wrong_count"}, {ViolationKind::kNegativeOffset, "negative_offset"},
    {ViolationKind::kOverlap, "overlap"}, {ViolationKind::kAboveCapacity, "above_capacity"},
    {ViolationKind::kMisaligned, "misaligned"}, {ViolationKind::kFixedMoved, "fixed_moved"},
    {ViolationKind::kWrongHeight, "wrong_height"}};

std::string_view ToString(ViolationKind kind) { return NameOf(kViolationKindNames, kind); }

std::string ToString(const Violation& v) { return fmt::format("{}: {}", ToString(v.kind), v.message); }

std::ostream& operator<<(std::ostream& os, const Violation& v) { return os << ToString(v); }

std::vector<Violation> CheckAllocation(const alloc::Problem& problem,
                                       const alloc::Solution& solution,
                                       const AllocationCheckOptions& options) {
  Collector out(options.max_violations);
  const auto& bs = problem.buffers;
  const auto& offsets = solution.offsets_bytes;
  if (offsets.size() != bs.size()) {
    out.Add(ViolationKind::kWrongCount, {},
            fmt::format("{} offsets for {} buffers", offsets.size(), bs.size()));
    return out.Take();
  }

  // Per-buffer rules.
  int64_t height = 0;
  int64_t max_size = 0;
  for (size_t i = 0; i < bs.size(); ++i) {
    const Buffer& b = bs[i];
    const int64_t off = offsets[i];
    const std::string& id = b.id.name;
    if (off < 0) {
      out.Add(ViolationKind::kNegativeOffset, {id}, fmt::format("buffer {} at offset {}", id, off));
    }
    if (b.fixed_offset_bytes) {
      if (off != *b.fixed_offset_bytes) {
        out.Add(ViolationKind::kFixedMoved, {id},
                fmt::format("buffer {} is fixed at {} but placed at {}", id, *b.fixed_offset_bytes, off));
      }
    } else {
      const int64_t align = b.alignment_bytes.value_or(options.alignment_bytes);
      if (align > 1 && off % align != 0) {
        out.Add(ViolationKind::kMisaligned, {id},
                fmt::format("buffer {} at offset {} is not a multiple of {}", id, off, align));
      }
    }
    if (b.size_bytes > 0) {
      const int64_t top = SaturatingAdd(off, b.size_bytes);  // Offsets may be anything here.
      height = std::max(height, top);
      max_size = std::max(max_size, b.size_bytes);
      if (options.enforce_capacity && problem.capacity_bytes &&
          top > *problem.capacity_bytes) {
        out.Add(ViolationKind::kAboveCapacity, {id},
                fmt::format("buffer {} ends at {} above the capacity {}", id, top,
                            *problem.capacity_bytes));
      }
    }
  }
  if (height != solution.height_bytes) {
    out.Add(ViolationKind::kWrongHeight, {},
            fmt::format("height is {} but the solution says {}", height, solution.height_bytes));
  }

  // Pairwise overlaps: sweep over time. At equal times ends come first
  // (lifetimes are half-open). Live buffers are kept ordered by offset; an
  // arriving buffer can only collide with live buffers that start below its
  // top and above its offset minus the largest size.
  std::vector<std::tuple<int64_t, int, size_t>> events;  // (time, 0=end/1=start, index)
  for (size_t i = 0; i < bs.size(); ++i) {
    if (bs[i].size_bytes == 0) continue;
    events.emplace_back(bs[i].lifetime.lower, 1, i);
    events.emplace_back(bs[i].lifetime.upper, 0, i);
  }
  std::sort(events.begin(), events.end());
  std::set<std::pair<int64_t, size_t>> live;  // (offset, index)
  for (const auto& [time, is_start, i] : events) {
    if (!is_start) {
      live.erase({offsets[i], i});
      continue;
    }
    const int64_t off = offsets[i];
    const int64_t top = SaturatingAdd(off, bs[i].size_bytes);
    auto report = [&](size_t j) {
      const auto [a, b] = std::minmax(i, j);
      out.Add(ViolationKind::kOverlap, {bs[a].id.name, bs[b].id.name},
              fmt::format("buffers {} [{}, {}) and {} [{}, {}) overlap in time and in bytes",
                          bs[a].id.name, offsets[a], SaturatingAdd(offsets[a], bs[a].size_bytes), bs[b].id.name,
                          offsets[b], SaturatingAdd(offsets[b], bs[b].size_bytes)));
    };
    auto it = live.lower_bound({off, 0});
    for (auto up = it; up != live.end() && up->first < top && !out.Full(); ++up) report(up->second);
    for (auto down = it; down != live.begin() && !out.Full();) {
      --down;
      if (down->first <= off - max_size) break;
      if (SaturatingAdd(down->first, bs[down->second].size_bytes) > off) report(down->second);
    }
    live.insert({off, i});
    if (out.Full()) break;
  }
  return out.Take();
}

}  // namespace memfit::check
