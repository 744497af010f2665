#include "util/progress.h"

#include <unistd.h>

namespace memfit {

bool StderrIsTerminal() { return ::isatty(STDERR_FILENO) == 1; }

ProgressLine::ProgressLine(bool enabled, std::FILE* stream, std::chrono::milliseconds interval)
    : enabled_(enabled && stream != nullptr), stream_(stream), interval_(interval) {}

ProgressLine::~ProgressLine() { Finish(); }

void ProgressLine::Update(std::string_view text) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (shown_ && now - last_ < interval_) return;
  constexpr size_t kMaxWidth = 150;
  if (text.size() > kMaxWidth) text = text.substr(0, kMaxWidth);
  std::fprintf(stream_, "\r%.*s\033[K", static_cast<int>(text.size()), text.data());
  std::fflush(stream_);
  shown_ = true;
  last_ = now;
}

void ProgressLine::Finish() {
  if (!enabled_ || !shown_) return;
  std::fputs("\r\033[K", stream_);
  std::fflush(stream_);
  shown_ = false;
}

ProgressTicker::ProgressTicker(ProgressLine& line, std::function<std::string(double)> text,
                               std::chrono::milliseconds delay, std::chrono::milliseconds interval)
    : line_(line) {
  if (!line.enabled()) return;
  thread_ = std::thread([this, text = std::move(text), delay, interval] {
    const auto start = std::chrono::steady_clock::now();
    std::unique_lock lock(mutex_);
    if (stop_signal_.wait_for(lock, delay, [this] { return stop_; })) return;
    do {
      line_.Update(text(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()));
    } while (!stop_signal_.wait_for(lock, interval, [this] { return stop_; }));
  });
}

ProgressTicker::~ProgressTicker() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  stop_signal_.notify_one();
  thread_.join();
  line_.Finish();
}

}  // namespace memfit
