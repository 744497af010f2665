// RunInChild: a result comes back whole, a crash is a crash, and a child
// still running at its deadline is killed rather than waited for.
#include "util/child_process.h"

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <stdexcept>
#include <thread>
#include <vector>

namespace memfit {
namespace {

TEST(ChildProcess, ResultComesBackWhole) {
  // More values than one read of the pipe takes (512 doubles).
  std::vector<double> sent(5000);
  for (size_t i = 0; i < sent.size(); ++i) sent[i] = 0.5 * static_cast<double>(i);
  const ChildResult r = RunInChild([&] { return sent; }, 60);
  EXPECT_EQ(r.end, ChildEnd::kDone);
  EXPECT_EQ(r.values, sent);
  const ChildResult none = RunInChild([] { return std::vector<double>{}; }, 60);
  EXPECT_EQ(none.end, ChildEnd::kDone);
  EXPECT_TRUE(none.values.empty());
}

TEST(ChildProcess, CrashAndExceptionAreCrashes) {
  const ChildResult signalled = RunInChild(
      []() -> std::vector<double> {
        std::raise(SIGKILL);
        return {1};
      },
      60);
  EXPECT_EQ(signalled.end, ChildEnd::kCrashed);
  EXPECT_TRUE(signalled.values.empty());
  // An exception in the child never unwinds into the caller's code there.
  const ChildResult thrown = RunInChild([]() -> std::vector<double> { throw std::runtime_error("x"); }, 60);
  EXPECT_EQ(thrown.end, ChildEnd::kCrashed);
}

TEST(ChildProcess, ChildPastItsDeadlineIsKilled) {
  // The child would sleep an hour; it is killed at 0.1 s (no wall-clock
  // figure is asserted: the test returning at all is the check).
  const ChildResult r = RunInChild(
      [] {
        std::this_thread::sleep_for(std::chrono::hours(1));
        return std::vector<double>{1};
      },
      0.1);
  EXPECT_EQ(r.end, ChildEnd::kKilled);
  EXPECT_TRUE(r.values.empty());
}

}  // namespace
}  // namespace memfit
