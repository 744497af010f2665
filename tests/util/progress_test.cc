// The progress line: nothing when disabled (not a terminal, --quiet); when
// enabled, one line rewritten in place and erased at the end.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>

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

}  // namespace
}  // namespace memfit
