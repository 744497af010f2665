#include "util/byte_count.h"

#include <cctype>
#include <string>

#include "util/error.h"

namespace memfit {

int64_t ParseByteCount(std::string_view text, std::string_view flag) {
  const std::string copy(text);
  size_t end = 0;
  double value = 0;
  try {
    value = std::stod(copy, &end);
  } catch (const std::exception&) {
    Fail("{}: '{}' is not a byte count (e.g. 8000000000, 8GiB, 512MB)", flag, text);
  }
  std::string unit;
  for (char c : copy.substr(end)) {
    if (!std::isspace(static_cast<unsigned char>(c))) unit += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  constexpr double kKi = 1024.0;
  double scale = 0;
  if (unit.empty() || unit == "b") scale = 1;
  if (unit == "k" || unit == "kib") scale = kKi;
  if (unit == "m" || unit == "mib") scale = kKi * kKi;
  if (unit == "g" || unit == "gib") scale = kKi * kKi * kKi;
  if (unit == "t" || unit == "tib") scale = kKi * kKi * kKi * kKi;
  if (unit == "kb") scale = 1e3;
  if (unit == "mb") scale = 1e6;
  if (unit == "gb") scale = 1e9;
  if (unit == "tb") scale = 1e12;
  if (scale == 0) Fail("{}: unknown unit '{}' in '{}' (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)", flag, unit, text);
  const double bytes = value * scale;
  if (!(bytes >= 1 && bytes < 9e18)) Fail("{}: '{}' is out of range", flag, text);
  return static_cast<int64_t>(bytes);
}

}  // namespace memfit
