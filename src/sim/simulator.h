// The two-stream simulator: replays Steps (plan/steps.h) on a device and reports
// its latency and its peak device memory. It is the single source of truth
// for a plan's memory and time.
//
// Model. Steps are issued in list order onto two in-order streams:
//  - compute stream: compute and recompute steps. A step starts when the
//    previous compute step has ended and every storage it reads is ready on
//    the device (a swap-in of it has finished); it lasts the op's latency
//    (cost_model.h). At its start it allocates each output storage not yet on
//    the device and the op's workspace; the workspace is released at its end.
//  - copy stream: swap-out and swap-in steps, each lasting bytes / (host
//    bandwidth x host_link_efficiency). A copy step starts when the previous
//    copy has ended and not before the start of the latest compute step
//    issued before it (it overlaps that step, as a copy issued right after a
//    kernel launch does). A swap-out also waits for the last write of its
//    storage; the storage's device memory is released when the copy ends (or
//    when the last compute step reading it ends, if later). A swap-in waits
//    for the swap-out of its storage and allocates the memory at its start.
//  - free: releases a storage's device memory, stream-ordered: at the end of
//    the latest compute step issued before it (or of the storage's last use,
//    if later). Freeing a storage that lives only on the host drops the host
//    copy.
// Memory. At time 0 the device holds the storages resident at start
// (analysis/storage_table.h: parameters, buffers, optimizer state, and the
// inputs some op reads or writes). Allocations and
// releases are events in time; at equal times releases come first. The
// peak is the largest sum of live bytes (workspace included) over all
// events. For StepsFromOrder(order) this equals ComputeLiveness(order)'s peak.
// A plan that reads a storage not on the device, swaps out a storage not on
// the device, or swaps in one not on the host is an Error naming the step.
//
// Cost: per-op latencies and storage tables are computed once in the
// constructor; Run() is linear in the steps (plus a sort of the memory
// events when copies reorder them) and allocates only its result and a few
// flat arrays.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "plan/steps.h"
#include "sim/cost_model.h"
#include "sim/device.h"

namespace memfit::sim {

enum class Stream : uint8_t { kCompute, kCopy, kNone };
// "compute", "copy", "-".
std::string_view ToString(Stream stream);

struct SimOptions {
  // Fill SimResult::timeline (one entry per step).
  bool record_timeline = false;
  // Fill SimResult::memory (every device allocation and release, per
  // storage and per workspace), for drawing memory over time.
  bool record_memory = false;
};

struct TimelineEntry {
  Stream stream = Stream::kCompute;
  double start_us = 0;
  double end_us = 0;
  // Device bytes held after this step's allocations and releases, counted
  // in step-list order (workspace excluded).
  int64_t live_bytes_after = 0;
};

// One change of device memory, as the peak sweep counts it: the sources at
// time 0, a storage allocated or released, an op's workspace. In
// SimResult::memory they are sorted as the sweep visits them: by time,
// releases first at equal times, then in generation order.
struct MemoryChange {
  double time_us = 0;
  int64_t delta_bytes = 0;  // > 0 allocated, < 0 released
  // Held only at this instant (the workspace of a zero-latency op); the
  // sweep adds it to the live bytes once and never releases it.
  bool transient = false;
  std::optional<size_t> step;           // none: resident at time 0 (a source)
  std::optional<TensorId> storage;      // the storage's root
  std::optional<OpId> workspace_of;     // instead of storage: the op's workspace
};

struct SimResult {
  double latency_us = 0;        // end of the last step on either stream
  int64_t peak_bytes = 0;       // device memory, workspace included
  double peak_time_us = 0;      // when peak_bytes was first reached
  std::optional<size_t> peak_step;  // the step whose allocation reached it; none: at time 0
  double compute_busy_us = 0;   // compute stream, recompute included
  double recompute_us = 0;      // the recompute part of compute_busy_us
  double copy_busy_us = 0;      // copy stream
  int64_t swap_out_bytes = 0;
  int64_t swap_in_bytes = 0;
  std::vector<TimelineEntry> timeline;  // per step, when recorded
  std::vector<MemoryChange> memory;     // when recorded (SimOptions::record_memory)

  double latency_ms() const { return latency_us * 1e-3; }
};

// "latency 12.345 ms, peak 1.23 GiB, compute 12.000 ms, copy 0.000 ms".
std::string ToString(const SimResult& result);

class Simulator {
 public:
  // Precomputes the latency of every op (roofline, or `costs` where it has
  // the op; `costs` may be null). `graph` must outlive the simulator.
  Simulator(const Graph& graph, const DeviceProfile& device, const CostTable* costs = nullptr,
            const LatencyOptions& options = {});

  SimResult Run(const Steps& plan, const SimOptions& options = {}) const;

  const Graph& graph() const { return graph_; }
  const DeviceProfile& device() const { return device_; }
  const std::vector<OpLatency>& op_latencies() const { return latencies_; }
  // Each op's workspace by op id: a cost table's measured workspace_bytes
  // where the table has the op, else the registry's estimate (none for a
  // view). What every count of the plan's memory uses (OpWorkspaceBytes).
  const std::vector<int64_t>& workspace_bytes() const { return workspace_bytes_; }
  // Bytes resident at time 0 (the sources).
  int64_t initial_bytes() const { return initial_bytes_; }
  // Microseconds to copy the storage owned by `root` one way over the host link.
  double copy_us(TensorId root) const { return copy_us_[root.index()]; }

 private:
  const Graph& graph_;
  DeviceProfile device_;
  LatencyOptions options_;
  std::vector<OpLatency> latencies_;  // by op id
  std::vector<int64_t> workspace_bytes_;  // by op id
  std::vector<uint32_t> root_;        // storage root by tensor id
  std::vector<int64_t> storage_bytes_;  // by tensor id; 0 unless a root
  std::vector<double> copy_us_;       // host copy time by tensor id (roots)
  std::vector<uint8_t> initially_resident_;  // by tensor id (roots)
  int64_t initial_bytes_ = 0;
  // Per op, CSR: distinct storage roots read (inputs) and written (outputs).
  std::vector<uint32_t> read_begin_, read_roots_;
  std::vector<uint32_t> write_begin_, write_roots_;
};

// Convenience: Simulator(graph, device, costs, latency).Run(plan, options).
SimResult Simulate(const Graph& graph, const Steps& plan, const DeviceProfile& device,
                   const CostTable* costs = nullptr, const LatencyOptions& latency = {},
                   const SimOptions& options = {});

}  // namespace memfit::sim
