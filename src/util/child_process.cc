#include "util/child_process.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "util/deadline.h"
#include "util/error.h"

namespace memfit {
namespace {

// The child's exit status when `work` threw or a write failed.
constexpr int kChildFailed = 3;

// Writes all of `bytes`; false when the pipe is gone.
bool WriteAll(int fd, const void* data, size_t bytes) {
  for (const char* p = static_cast<const char*>(data); bytes > 0;) {
    const ssize_t k = write(fd, p, bytes);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k, bytes -= static_cast<size_t>(k);
  }
  return true;
}

// In the child: run the work, send its size and values, and exit without
// returning into the parent's code (no destructors, no atexit handlers).
[[noreturn]] void Child(int fd, const std::function<std::vector<double>()>& work) {
  try {
    const std::vector<double> values = work();
    const auto size = static_cast<double>(values.size());
    const bool sent = WriteAll(fd, &size, sizeof size) && WriteAll(fd, values.data(), values.size() * sizeof(double));
    _exit(sent ? 0 : kChildFailed);
  } catch (...) {
    _exit(kChildFailed);
  }
}

}  // namespace

ChildResult RunInChild(const std::function<std::vector<double>()>& work, double kill_after_seconds) {
  const SteadyClock::time_point kill_at = DeadlineAfter(std::max(0.0, kill_after_seconds), "child process time limit");
  int fds[2];
  if (pipe(fds) != 0) Fail("cannot create a pipe for a child process: {}", std::strerror(errno));
  std::fflush(nullptr);  // nothing buffered is written twice
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    Fail("cannot fork a child process: {}", std::strerror(errno));
  }
  if (pid == 0) {
    close(fds[0]);
    Child(fds[1], work);
  }
  close(fds[1]);

  // Read until the child closes the pipe, or kill it at the deadline.
  std::vector<double> received;
  double chunk[512];
  size_t partial = 0;  // bytes of chunk filled
  bool killed = false;
  for (;;) {
    int wait_ms = -1;  // no deadline
    if (kill_at != SteadyClock::time_point::max()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(kill_at - SteadyClock::now()).count();
      wait_ms = static_cast<int>(std::clamp<int64_t>(left, 0, 1 << 30));
    }
    pollfd readable{fds[0], POLLIN, 0};
    const int ready = poll(&readable, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      // poll's timeout can end a millisecond early: wait out the rest.
      if (SteadyClock::now() < kill_at) continue;
      kill(pid, SIGKILL);
      killed = true;
      break;
    }
    const ssize_t k = read(fds[0], reinterpret_cast<char*>(chunk) + partial, sizeof chunk - partial);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    partial += static_cast<size_t>(k);
    const size_t whole = partial / sizeof(double);
    received.insert(received.end(), chunk, chunk + whole);
    std::memmove(chunk, chunk + whole, partial - whole * sizeof(double));
    partial -= whole * sizeof(double);
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }

  ChildResult result;
  if (killed) {
    result.end = ChildEnd::kKilled;
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && partial == 0 && !received.empty() &&
             received.size() == 1 + static_cast<size_t>(received[0])) {
    result.end = ChildEnd::kDone;
    result.values.assign(received.begin() + 1, received.end());
  }
  return result;
}

}  // namespace memfit
