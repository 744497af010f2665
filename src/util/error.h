// Errors a user can cause (a bad file, a bad flag, an impossible limit).
//
// memfit reports them by throwing memfit::Error with one line that names the
// file, op, tensor or field at fault. The CLI catches it at the top, prints
// "memfit: error: <message>" on stderr and exits with status 2. Internal
// invariants are assertions, not Errors.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace memfit {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Throws Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void Fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace memfit
