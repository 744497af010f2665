// The benchmarks' progress line: which cell of the table is being computed
// and for how long, on stderr, rewritten in place, only when stderr is a
// terminal (tables piped to a file show none) and not with MEMFIT_QUIET=1.
// The line is erased when the cell is done, before its row is printed.
//
//   {
//     bench::Working working(fmt::format("bench_remat: {} at {:.1f} with {}", model, ratio, method));
//     result = Optimize(...);
//   }  // the line is erased here
//   fmt::print(row...);
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

#include "util/progress.h"

namespace memfit::bench {

inline ProgressLine& ProgressOnStderr() {
  static ProgressLine line(StderrIsTerminal() && !(std::getenv("MEMFIT_QUIET") &&
                                                   std::strcmp(std::getenv("MEMFIT_QUIET"), "1") == 0));
  return line;
}

// Shows `what` and the seconds spent on it while it is in scope.
class Working {
 public:
  explicit Working(std::string what)
      : ticker_(ProgressOnStderr(),
                [what = std::move(what)](double seconds) { return fmt::format("{} ({:.0f} s)", what, seconds); },
                std::chrono::milliseconds(0), std::chrono::milliseconds(500)) {}

 private:
  ProgressTicker ticker_;
};

}  // namespace memfit::bench
