// Errors a user can cause (a bad file, a bad flag, an impossible limit).
//
// memfit reports them by throwing memfit::Error with one line that names the
// file, op, tensor or field at fault. The CLI catches it at the top, prints
// "memfit: error: <message>" on stderr and exits with status 2. Internal
// invariants are assertions, not Errors.
//
// Names and values that come from a user's file go into a message through
// Quote(), which keeps them on one line; an Error also escapes any line break
// left in its message, so that it is always exactly one line.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace memfit {

// `text` on one line with its control characters escaped (\n, \t, \x01):
// what Error keeps of a message.
std::string OneLine(std::string_view text);

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(OneLine(message)) {}
};

// `s` in single quotes for a message: control characters, quotes and
// backslashes escaped (so it stays on one line and its end is visible), cut
// after 200 bytes ("...").
std::string Quote(std::string_view s);

// Throws Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void Fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace memfit
