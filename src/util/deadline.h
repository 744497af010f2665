// Wall-clock budgets given in seconds (a flag, an option) as deadlines.
//
// std::chrono converts a double number of seconds to the clock's integer
// nanoseconds without a range check: 1e10 s (or inf) wraps to a deadline in
// the past, and a search "with a huge budget" would not run at all. Budgets
// longer than kNoDeadlineSeconds mean "no deadline" (steady_clock's
// time_point::max()); NaN and negative budgets are user errors.
#pragma once

#include <chrono>
#include <cmath>
#include <string_view>

#include "util/error.h"

namespace memfit {

using SteadyClock = std::chrono::steady_clock;

// Budgets at or above this (about 31 years) are no deadline at all.
inline constexpr double kNoDeadlineSeconds = 1e9;

// `now` + `seconds`, saturating to time_point::max(); throws Error naming
// `what` (a flag or field) when `seconds` is NaN or negative.
inline SteadyClock::time_point DeadlineAfter(double seconds, std::string_view what,
                                             SteadyClock::time_point now = SteadyClock::now()) {
  if (std::isnan(seconds) || seconds < 0) Fail("{}: must be a number >= 0 of seconds, got {}", what, seconds);
  if (seconds >= kNoDeadlineSeconds) return SteadyClock::time_point::max();
  const auto budget = std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(seconds));
  if (now > SteadyClock::time_point::max() - budget) return SteadyClock::time_point::max();
  return now + budget;
}

// Seconds left until `deadline` (0 once it passed; +inf for no deadline).
inline double SecondsLeft(SteadyClock::time_point deadline, SteadyClock::time_point now = SteadyClock::now()) {
  if (deadline == SteadyClock::time_point::max()) return HUGE_VAL;
  if (deadline <= now) return 0;
  return std::chrono::duration<double>(deadline - now).count();
}

}  // namespace memfit
