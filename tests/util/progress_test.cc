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

// What a progress line on a temporary file writes while `use` runs with it
// and when it is destroyed.
template <typename Use>
std::string Written(bool enabled, std::chrono::milliseconds min_interval, Use use) {
  std::FILE* f = std::tmpfile();
  if (f == nullptr) {
    ADD_FAILURE() << "no temporary file";
    return "(no file)";
  }
  {
    ProgressLine line(enabled, f, min_interval);
    use(line);
  }
  std::string out = Contents(f);
  std::fclose(f);
  return out;
}

TEST(ProgressLine, SilentWhenDisabled) {
  const std::string out = Written(false, std::chrono::milliseconds(0), [](ProgressLine& line) {
    EXPECT_FALSE(line.enabled());
    line.Update("optimize: 1.0 s");
    line.Finish();
  });
  EXPECT_EQ(out, "");
}

TEST(ProgressLine, RewritesOneLineAndErasesIt) {
  const std::string out = Written(true, std::chrono::milliseconds(0), [](ProgressLine& line) {
    line.Update("a");
    line.Update(std::string(200, 'x'));  // cut to 150 characters
    line.Finish();
    line.Finish();  // nothing shown: nothing to erase
    line.Update("b");
  });  // the destructor erases "b"
  EXPECT_EQ(out, "\ra\033[K\r" + std::string(150, 'x') + "\033[K\r\033[K\rb\033[K\r\033[K");
}

TEST(ProgressLine, ThrottlesUpdates) {
  // An hour between lines: only the first update shows.
  const std::string out = Written(true, std::chrono::hours(1), [](ProgressLine& line) {
    line.Update("first");
    line.Update("second");
  });
  EXPECT_EQ(out, "\rfirst\033[K\r\033[K");
}

// The ticker shows the text of a long call from its thread, and its end
// erases the line; a disabled line gets no thread and no text; a ticker
// stopped before its delay writes nothing.
TEST(ProgressTicker, ShowsTheTextWhileRunningAndErasesIt) {
  std::atomic<int> calls = 0;
  const std::string out = Written(true, std::chrono::milliseconds(0), [&](ProgressLine& line) {
    ProgressTicker ticker(
        line,
        [&](double seconds) {
          ++calls;
          return seconds >= 0 ? std::string("planning") : std::string("?");
        },
        std::chrono::milliseconds(0), std::chrono::milliseconds(1));
    // Wait for the thread's first line (no bound on how long it may take).
    while (calls.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  EXPECT_EQ(out.substr(0, 12), "\rplanning\033[K");
  EXPECT_EQ(out.substr(out.size() - 4), "\r\033[K");

  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
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
