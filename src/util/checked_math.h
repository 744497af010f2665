// Overflow-safe arithmetic for byte counts, offsets and alignments.
//
// Sizes, offsets and alignments come from users (a CSV, a flag) and may be
// anywhere in int64_t. Plain `offset + size` or an align-up past INT64_MAX is
// undefined behaviour and in practice wraps to a negative offset. The
// planners therefore compute with the saturating forms below: a result that
// does not fit sticks at kSaturatedBytes, which no capacity reaches and
// which PlanOffsets() reports as "cannot be represented" instead of placing it.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>

namespace memfit {

// The value a saturating byte computation sticks at when it overflows.
inline constexpr int64_t kSaturatedBytes = std::numeric_limits<int64_t>::max();

// a + b, or nullopt when it overflows int64_t.
inline std::optional<int64_t> CheckedAdd(int64_t a, int64_t b) {
  int64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) return std::nullopt;
  return sum;
}

// a - b, or nullopt when it overflows int64_t.
inline std::optional<int64_t> CheckedSub(int64_t a, int64_t b) {
  int64_t difference = 0;
  if (__builtin_sub_overflow(a, b, &difference)) return std::nullopt;
  return difference;
}

// a * b, or nullopt when it overflows int64_t.
inline std::optional<int64_t> CheckedMul(int64_t a, int64_t b) {
  int64_t product = 0;
  if (__builtin_mul_overflow(a, b, &product)) return std::nullopt;
  return product;
}

// a + b for a, b >= 0, at most kSaturatedBytes.
inline int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t sum = 0;
  return __builtin_add_overflow(a, b, &sum) ? kSaturatedBytes : sum;
}

// a * b for a, b >= 0, at most kSaturatedBytes.
inline int64_t SaturatingMul(int64_t a, int64_t b) {
  int64_t product = 0;
  return __builtin_mul_overflow(a, b, &product) ? kSaturatedBytes : product;
}

// The smallest multiple of `alignment` (>= 1) that is >= `value` (>= 0), or
// nullopt when it exceeds INT64_MAX.
inline std::optional<int64_t> CheckedAlignUp(int64_t value, int64_t alignment) {
  const int64_t r = value % alignment;
  if (r == 0) return value;
  return CheckedAdd(value, alignment - r);
}

// CheckedAlignUp, saturating at kSaturatedBytes.
inline int64_t SaturatingAlignUp(int64_t value, int64_t alignment) {
  const int64_t r = value % alignment;
  return r == 0 ? value : SaturatingAdd(value, alignment - r);
}

}  // namespace memfit
