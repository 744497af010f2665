#include "remat/copy_stream.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace memfit::remat {

double CopyStream::Issue(double from_us, double copy_us) {
  free_us_ = std::max(free_us_, from_us) + copy_us;
  return free_us_;
}

int64_t CopyStream::Retire(double now_us) {
  int64_t released = 0;
  for (size_t k = 0; k < outgoing_.size();) {
    if (outgoing_[k].done_us <= now_us) {
      released += outgoing_[k].bytes;
      outgoing_[k] = outgoing_.back(), outgoing_.pop_back();
    } else {
      ++k;
    }
  }
  return released;
}

double CopyStream::RoundTripStall(double now_us, double copy_us, double use_us) const {
  const double start = std::max(free_us_, now_us);
  return std::max(0.0, start + 2 * copy_us - use_us);
}

void DuePrefetches(std::span<const double> use_us, std::span<const double> copy_us, double margin, double until_us,
                   std::vector<uint8_t>& due) {
  due.assign(use_us.size(), 0);
  double next_start = std::numeric_limits<double>::infinity();
  for (size_t k = use_us.size(); k-- > 0;) {
    if (std::isinf(use_us[k])) continue;  // needed only deeper in a recomputation: on demand
    const double deadline = std::min(use_us[k], next_start);
    next_start = deadline - copy_us[k];
    due[k] = deadline - copy_us[k] * margin <= until_us;
  }
}

}  // namespace memfit::remat
