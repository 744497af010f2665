// A progress line on stderr for long work (optimize's search, --pareto,
// report): one line rewritten in place ("\r" ... erase to the end of the
// line), at most every `interval`, and erased when the work is done. It is
// shown only on a terminal: output redirected to a file or a pipe, and
// --quiet, keep stderr free of it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace memfit {

// True when standard error is a terminal.
bool StderrIsTerminal();

class ProgressLine {
 public:
  // Writes to `stream` only when `enabled` (callers pass
  // StderrIsTerminal() && !quiet).
  explicit ProgressLine(bool enabled, std::FILE* stream = stderr,
                        std::chrono::milliseconds interval = std::chrono::milliseconds(100));
  ~ProgressLine();
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  bool enabled() const { return enabled_; }
  // Shows `text` (cut to 150 characters) unless a line was shown less than
  // `interval` ago.
  void Update(std::string_view text);
  // Erases the line (when one is shown); later updates show again.
  void Finish();

 private:
  bool enabled_;
  std::FILE* stream_;
  std::chrono::milliseconds interval_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point last_{};
};

// Progress of one long call that reports nothing while it runs (an offset
// planner on a large problem): from `delay` on, a thread rewrites `line`
// every `interval` with text(seconds since the start). The destructor stops
// it and erases the line. Nothing runs when the line is disabled.
class ProgressTicker {
 public:
  ProgressTicker(ProgressLine& line, std::function<std::string(double seconds)> text,
                 std::chrono::milliseconds delay = std::chrono::milliseconds(500),
                 std::chrono::milliseconds interval = std::chrono::milliseconds(200));
  ~ProgressTicker();
  ProgressTicker(const ProgressTicker&) = delete;
  ProgressTicker& operator=(const ProgressTicker&) = delete;

 private:
  ProgressLine& line_;
  std::mutex mutex_;
  std::condition_variable stop_signal_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace memfit
