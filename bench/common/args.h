// A benchmark's command line, read one argument at a time: options that
// take a value are matched by name (and only when a value follows, else the
// argument is left to the caller, which prints its usage line), the rest by
// the caller.
//
//   for (bench::Args args(argc, argv); args.Next();) {
//     if (args.Value("--device", device_name) || args.Value("--time-budget", budget)) continue;
//     if (args.arg() == "--floor-only") {
//       floor_only = true;
//     } else {
//       specs.push_back(args.arg());
//     }
//   }
#pragma once

#include <cmath>
#include <exception>
#include <string>
#include <string_view>

#include "util/error.h"

namespace memfit::bench {

// `text`, the value of option `name`, as a finite number; else
// memfit::Error naming the option and the text.
inline double Number(std::string_view name, const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(value)) {
    Fail("{} {}: expected a finite number", name, Quote(text));
  }
  return value;
}

class Args {
 public:
  Args(int argc, char** argv) : argc_(argc), argv_(argv) {}

  // Steps to the next argument; false past the last.
  bool Next() {
    if (++i_ >= argc_) return false;
    arg_ = argv_[i_];
    return true;
  }
  const std::string& arg() const { return arg_; }

  // When the argument is `name` and a value follows: reads the value (a
  // finite number, else memfit::Error naming the option) and steps past it.
  bool Value(std::string_view name, std::string& value) {
    if (arg_ != name || i_ + 1 >= argc_) return false;
    value = argv_[++i_];
    return true;
  }
  bool Value(std::string_view name, double& value) {
    std::string text;
    if (!Value(name, text)) return false;
    value = Number(name, text);
    return true;
  }

 private:
  int argc_;
  char** argv_;
  int i_ = 0;
  std::string arg_;
};

}  // namespace memfit::bench
