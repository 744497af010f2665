// Wall-clock budgets that never overflow.
//
// A budget in seconds becomes a steady_clock time point. Converting a huge
// budget naively (1e10 s, inf) overflows the clock's 64-bit nanosecond count
// and yields a time point in the past: the search it guards would not run at
// all. Here any budget past what the clock can hold means "no deadline".
#pragma once

#include <chrono>
#include <cmath>

namespace memfit {

using SteadyClock = std::chrono::steady_clock;

// `seconds` after `start`, saturated at SteadyClock::time_point::max() (no
// deadline). NaN and negative budgets are the caller's to reject; here they
// mean "already due".
inline SteadyClock::time_point DeadlineAfter(double seconds, SteadyClock::time_point start = SteadyClock::now()) {
  if (!(seconds > 0)) return start;
  using Seconds = std::chrono::duration<double>;
  const double room = Seconds(SteadyClock::time_point::max() - start).count();
  // Keep a margin below the maximum: the double round trip is inexact near it.
  if (!std::isfinite(seconds) || seconds >= 0.5 * room) return SteadyClock::time_point::max();
  return start + std::chrono::duration_cast<SteadyClock::duration>(Seconds(seconds));
}

// Seconds left until `deadline` (0 once it passed; +inf for no deadline).
inline double SecondsLeft(SteadyClock::time_point deadline, SteadyClock::time_point now = SteadyClock::now()) {
  if (deadline == SteadyClock::time_point::max()) return HUGE_VAL;
  if (deadline <= now) return 0;
  return std::chrono::duration<double>(deadline - now).count();
}

}  // namespace memfit
