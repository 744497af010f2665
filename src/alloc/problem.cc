#include "alloc/problem.h"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>
#include <set>
#include <tuple>
#include <utility>

#include "util/checked_math.h"

namespace memfit::alloc {
namespace {

bool IsDecimal(const std::string& s) {
  return !s.empty() && s.size() < 19 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

bool IdLess(const BufferId& a, const BufferId& b) {
  if (IsDecimal(a.name) && IsDecimal(b.name)) {
    const int64_t x = std::stoll(a.name);
    const int64_t y = std::stoll(b.name);
    if (x != y) return x < y;
  }
  return a.name < b.name;
}

int64_t HeightOf(const Problem& problem, const std::vector<int64_t>& offsets) {
  int64_t height = 0;
  for (size_t i = 0; i < problem.buffers.size() && i < offsets.size(); ++i) {
    if (problem.buffers[i].size_bytes == 0) continue;
    height = std::max(height, SaturatingAdd(offsets[i], problem.buffers[i].size_bytes));
  }
  return height;
}

int64_t LowerBound(const Problem& problem) {
  // Sweep over lifetime endpoints; at equal times ends come before starts
  // because lifetimes are half-open.
  std::vector<std::pair<int64_t, int64_t>> events;  // (time, +size or -size)
  events.reserve(problem.buffers.size() * 2);
  for (const Buffer& b : problem.buffers) {
    if (b.size_bytes == 0) continue;
    events.emplace_back(b.lifetime.lower, b.size_bytes);
    events.emplace_back(b.lifetime.upper, -b.size_bytes);
  }
  std::sort(events.begin(), events.end());
  int64_t live = 0;
  int64_t best = 0;
  for (const auto& [time, delta] : events) {
    live += delta;
    best = std::max(best, live);
  }
  return best;
}

std::optional<std::pair<size_t, size_t>> FindFixedClash(const Problem& problem) {
  const auto& bs = problem.buffers;
  // Sweep over the lifetimes of the fixed buffers (ends first at equal
  // times); the live ones, by offset, never overlap (else the sweep has
  // stopped), so an arriving buffer need only be compared with its two
  // neighbours.
  std::vector<std::tuple<int64_t, int, size_t>> events;  // (time, 0 = end / 1 = start, index)
  for (size_t i = 0; i < bs.size(); ++i) {
    if (!bs[i].fixed_offset_bytes || bs[i].size_bytes == 0) continue;
    events.emplace_back(bs[i].lifetime.lower, 1, i);
    events.emplace_back(bs[i].lifetime.upper, 0, i);
  }
  std::sort(events.begin(), events.end());
  std::set<std::pair<int64_t, size_t>> live;  // (offset, index)
  auto clash = [](size_t a, size_t b) { return std::make_pair(std::min(a, b), std::max(a, b)); };
  for (const auto& [time, is_start, i] : events) {
    const int64_t offset = *bs[i].fixed_offset_bytes;
    if (!is_start) {
      live.erase({offset, i});
      continue;
    }
    const auto next = live.lower_bound({offset, 0});
    if (next != live.end() && next->first < offset + bs[i].size_bytes) return clash(i, next->second);
    if (next != live.begin()) {
      const auto prev = std::prev(next);
      if (prev->first + bs[prev->second].size_bytes > offset) return clash(i, prev->second);
    }
    live.insert({offset, i});
  }
  return std::nullopt;
}

std::string ToString(const BufferId& id) { return id.name; }

std::string ToString(const Lifetime& lifetime) {
  return fmt::format("[{}, {})", lifetime.lower, lifetime.upper);
}

std::string ToString(const Buffer& buffer) {
  std::string s = fmt::format("Buffer{{id={}, lifetime={}, size_bytes={}", buffer.id.name,
                              ToString(buffer.lifetime), buffer.size_bytes);
  if (buffer.alignment_bytes) s += fmt::format(", alignment_bytes={}", *buffer.alignment_bytes);
  if (buffer.fixed_offset_bytes) {
    s += fmt::format(", fixed_offset_bytes={}", *buffer.fixed_offset_bytes);
  }
  return s + "}";
}

std::string ToString(const Problem& problem) {
  std::string s = fmt::format("Problem{{{} buffers, capacity_bytes=", problem.buffers.size());
  s += problem.capacity_bytes ? std::to_string(*problem.capacity_bytes) : "unbounded";
  return s + "}";
}

std::string ToString(const Solution& solution) {
  return fmt::format("Solution{{{} offsets, height_bytes={}}}", solution.offsets_bytes.size(),
                     solution.height_bytes);
}

std::ostream& operator<<(std::ostream& os, const BufferId& id) { return os << ToString(id); }
std::ostream& operator<<(std::ostream& os, const Lifetime& l) { return os << ToString(l); }
std::ostream& operator<<(std::ostream& os, const Buffer& b) { return os << ToString(b); }
std::ostream& operator<<(std::ostream& os, const Problem& p) { return os << ToString(p); }
std::ostream& operator<<(std::ostream& os, const Solution& s) { return os << ToString(s); }

}  // namespace memfit::alloc
