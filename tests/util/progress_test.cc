// The progress line: nothing when disabled (not a terminal, --quiet); when
// enabled, one line rewritten in place and erased at the end.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "util/progress.h"

namespace memfit {
namespace {

std::string Contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string out;
  for (int c; (c = std::fgetc(f)) != EOF;) out += static_cast<char>(c);
  return out;
}

TEST(ProgressLine, SilentWhenDisabled) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressLine line(false, f, std::chrono::milliseconds(0));
    EXPECT_FALSE(line.enabled());
    line.Update("optimize: 1.0 s");
    line.Finish();
  }
  EXPECT_EQ(Contents(f), "");
  std::fclose(f);
}

TEST(ProgressLine, RewritesOneLineAndErasesIt) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressLine line(true, f, std::chrono::milliseconds(0));
    line.Update("a");
    line.Update(std::string(200, 'x'));  // cut to 150 characters
    line.Finish();
    line.Finish();  // nothing shown: nothing to erase
    line.Update("b");
  }  // the destructor erases "b"
  EXPECT_EQ(Contents(f), "\ra\033[K\r" + std::string(150, 'x') + "\033[K\r\033[K\rb\033[K\r\033[K");
  std::fclose(f);
}

TEST(ProgressLine, ThrottlesUpdates) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    // An hour between lines: only the first update shows.
    ProgressLine line(true, f, std::chrono::hours(1));
    line.Update("first");
    line.Update("second");
  }
  EXPECT_EQ(Contents(f), "\rfirst\033[K\r\033[K");
  std::fclose(f);
}

// The ticker shows the text of a long call from its thread, and its end
// erases the line; a disabled line gets no thread and no text; a ticker
// stopped before its delay writes nothing.
TEST(ProgressTicker, ShowsTheTextWhileRunningAndErasesIt) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  std::atomic<int> calls = 0;
  {
    ProgressLine line(true, f, std::chrono::milliseconds(0));
    ProgressTicker ticker(
        line,
        [&](double seconds) {
          ++calls;
          return seconds >= 0 ? std::string("planning") : std::string("?");
        },
        std::chrono::milliseconds(0), std::chrono::milliseconds(1));
    // Wait for the thread's first line (no bound on how long it may take).
    while (calls.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const std::string out = Contents(f);
  EXPECT_EQ(out.substr(0, 12), "\rplanning\033[K");
  EXPECT_EQ(out.substr(out.size() - 4), "\r\033[K");
  std::fclose(f);

  f = std::tmpfile();
  {
    ProgressLine disabled(false, f);
    ProgressTicker ticker(disabled, [&](double) { ++calls; return std::string("x"); },
                          std::chrono::milliseconds(0), std::chrono::milliseconds(1));
  }
  {
    ProgressLine line(true, f);
    ProgressTicker ticker(line, [&](double) { return std::string("late"); }, std::chrono::hours(1));
  }
  EXPECT_EQ(Contents(f), "");
  std::fclose(f);
}

}  // namespace
}  // namespace memfit
