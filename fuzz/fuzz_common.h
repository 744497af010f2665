// Shared helpers of the libFuzzer targets (docs/fuzzing.md).
//
// Every target feeds its input to one reader. memfit::Error is the expected
// way to reject a bad input; its message must be one non-empty line (the CLI
// prints it after "memfit: error: "), so a message with a newline aborts and
// the fuzzer reports it. Anything else the reader throws, any crash, leak or
// undefined behaviour is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "util/error.h"

namespace memfit::fuzz {

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Aborts (a finding) with `what`.
[[noreturn]] inline void Finding(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "memfit fuzz finding: %s%s%.*s\n", what, detail.empty() ? "" : ": ",
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}

// Checks the message of an expected rejection.
inline void CheckErrorMessage(const memfit::Error& error) {
  const std::string_view message = error.what();
  if (message.empty()) Finding("memfit::Error with an empty message");
  if (message.find('\n') != std::string_view::npos) Finding("memfit::Error message is not one line", message);
}

// Runs `body`; returns false when it rejected the input with memfit::Error
// (after checking the message), true when it returned.
template <typename Body>
bool Accepts(Body&& body) {
  try {
    body();
    return true;
  } catch (const memfit::Error& error) {
    CheckErrorMessage(error);
    return false;
  }
}

}  // namespace memfit::fuzz
