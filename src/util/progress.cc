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

}  // namespace memfit
