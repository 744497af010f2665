// Plain data for static offset planning, in the spirit of MiniMalloc.
//
// A Problem is a list of Buffers, each with a half-open lifetime
// [lower, upper) and a size; a Solution gives every buffer a byte offset in
// one arena such that two buffers whose lifetimes overlap never overlap in
// [offset, offset + size_bytes). The arena's height is the largest
// offset + size_bytes. Offsets are listed in the order of Problem::buffers.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace memfit::alloc {

// The name of a buffer as the user wrote it (a CSV id, a tensor name).
struct BufferId {
  std::string name;
  friend bool operator==(const BufferId&, const BufferId&) = default;
};

// Orders ids naturally: two decimal numbers by value ("2" < "10"), anything
// else lexicographically; used as the deterministic tie-break of every sort.
bool IdLess(const BufferId& a, const BufferId& b);

// A half-open time interval [lower, upper); lower < upper.
struct Lifetime {
  int64_t lower = 0;
  int64_t upper = 0;
  int64_t length() const { return upper - lower; }
  bool Overlaps(const Lifetime& other) const {
    return lower < other.upper && other.lower < upper;
  }
  friend bool operator==(const Lifetime&, const Lifetime&) = default;
};

struct Buffer {
  BufferId id;
  Lifetime lifetime;
  int64_t size_bytes = 0;
  // The buffer's offset must be a multiple of this; absent: the planner's
  // PlanOptions::alignment_bytes.
  std::optional<int64_t> alignment_bytes;
  // The buffer must live at exactly this offset (a pinned input, say).
  std::optional<int64_t> fixed_offset_bytes;
};

struct Problem {
  std::vector<Buffer> buffers;
  // The arena size that a solution must fit in; absent: unbounded.
  std::optional<int64_t> capacity_bytes;
};

struct Solution {
  std::vector<int64_t> offsets_bytes;  // One per Problem::buffers, same order.
  int64_t height_bytes = 0;            // max(offset + size), 0 when empty.
};

// The height of `offsets` for `problem` (max offset + size over buffers).
int64_t HeightOf(const Problem& problem, const std::vector<int64_t>& offsets);

// The largest sum of sizes live at one instant: no placement can be lower.
int64_t LowerBound(const Problem& problem);

// Two buffers with fixed offsets, alive at the same time, whose bytes
// overlap (indices into Problem::buffers, lower first), or nullopt when the
// fixed buffers are consistent. O(n log n); fixed offset + size must not
// overflow.
std::optional<std::pair<size_t, size_t>> FindFixedClash(const Problem& problem);

std::string ToString(const BufferId& id);
std::string ToString(const Lifetime& lifetime);
std::string ToString(const Buffer& buffer);
std::string ToString(const Problem& problem);
std::string ToString(const Solution& solution);
std::ostream& operator<<(std::ostream& os, const BufferId& id);
std::ostream& operator<<(std::ostream& os, const Lifetime& lifetime);
std::ostream& operator<<(std::ostream& os, const Buffer& buffer);
std::ostream& operator<<(std::ostream& os, const Problem& problem);
std::ostream& operator<<(std::ostream& os, const Solution& solution);

}  // namespace memfit::alloc
