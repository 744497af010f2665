// The independent checker of offset placements.
//
// It shares no code with the planners in alloc/ (only the plain data types of
// alloc/problem.h): a sweep over lifetime endpoints keeps the live buffers
// ordered by offset and compares each arriving buffer with its neighbours.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "alloc/problem.h"

namespace memfit::check {

enum class ViolationKind {
  kWrongCount,     // the solution has not one offset per buffer
  kNegativeOffset,
  kOverlap,        // two buffers alive at once share bytes
  kAboveCapacity,  // offset + size > capacity
  kMisaligned,     // offset is not a multiple of the alignment
  kFixedMoved,     // a buffer with a fixed offset is elsewhere
  kWrongHeight,    // Solution::height_bytes differs from max(offset + size)
};

struct Violation {
  ViolationKind kind;
  std::vector<std::string> buffer_ids;  // The buffers at fault (two for an overlap).
  std::string message;                  // One line, naming the buffers.
};

std::string_view ToString(ViolationKind kind);
std::string ToString(const Violation& violation);
std::ostream& operator<<(std::ostream& os, const Violation& violation);

struct AllocationCheckOptions {
  // Alignment of buffers without their own Buffer::alignment_bytes. Fixed
  // offsets are exempt (they are checked for equality instead).
  int64_t alignment_bytes = 64;
  // Check offset + size <= Problem::capacity_bytes when the problem has one.
  bool enforce_capacity = true;
  // Stop after this many violations.
  size_t max_violations = 100;
};

// Every way in which `solution` is not a valid placement of `problem`;
// empty when it is valid.
std::vector<Violation> CheckAllocation(const alloc::Problem& problem,
                                       const alloc::Solution& solution,
                                       const AllocationCheckOptions& options);

}  // namespace memfit::check
