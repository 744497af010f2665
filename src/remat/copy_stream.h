// The heuristic's model of the one copy stream between device and host
// (heuristic.h): copies run one after another, each for its copy time; a
// planned swap-out keeps its device copy until its copy ends (as in the
// simulator), and swap-ins are issued just in time.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace memfit::remat {

class CopyStream {
 public:
  // Issues a copy of `copy_us` that may start at `from_us`; returns its end.
  double Issue(double from_us, double copy_us);
  // When the stream is next free.
  double free_us() const { return free_us_; }
  // A swap-out whose `bytes` stay on the device until `done_us`.
  void Hold(double done_us, int64_t bytes) { outgoing_.push_back({done_us, bytes}); }
  // Releases the holds done by `now_us`; returns their bytes.
  int64_t Retire(double now_us);
  // The compute-stream stall of a round trip (out, then back in) of
  // `copy_us` each way, issued at `now_us` for a use at `use_us`: what of
  // the two copies does not fit before the use.
  double RoundTripStall(double now_us, double copy_us, double use_us) const;

 private:
  struct Outgoing {
    double done_us;
    int64_t bytes;
  };
  double free_us_ = 0;
  std::vector<Outgoing> outgoing_;  // swap-outs whose device copy is still held
};

// Just-in-time swap-ins. The copies of `use_us` (ascending; +inf: no known
// use, left to be swapped in on demand) land one after another, each by its
// use and before the next one must start; due[k] is set when copy k's
// latest start, less `margin` x its copy time, is before `until_us` (so it
// must be issued now). due is resized to the copies.
void DuePrefetches(std::span<const double> use_us, std::span<const double> copy_us, double margin, double until_us,
                   std::vector<uint8_t>& due);

}  // namespace memfit::remat
