// Work run in a child process, its result (a vector of doubles) sent back
// through a pipe. Third-party code that can crash (CBC segfaults in Clp's
// presolve on some models) or that does not look at its clock (CBC's
// preprocessing and root cuts) then cannot take memfit down with it or past
// its time budget: a crash is reported, and a child still running at its
// deadline is killed.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace memfit {

enum class ChildEnd : uint8_t {
  kDone,     // the work returned; values holds its result
  kCrashed,  // the child died (a signal, an exception, a short result)
  kKilled,   // still running after kill_after_seconds: killed (SIGKILL)
};

struct ChildResult {
  ChildEnd end = ChildEnd::kCrashed;
  std::vector<double> values;  // empty unless kDone
};

// Runs `work` in a forked child and waits for it at most
// `kill_after_seconds` of wall time (>= kNoDeadlineSeconds: no limit).
// Throws Error when the pipe or the fork cannot be made.
ChildResult RunInChild(const std::function<std::vector<double>()>& work, double kill_after_seconds);

}  // namespace memfit
