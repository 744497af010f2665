// Per-op latency: a roofline estimate, overridden by measurements.
//
// For an op that is not a view,
//
//   latency_us = max(flops / (peak(dtype) x compute_efficiency),
//                    (bytes_read + bytes_written) / (bandwidth x memory_efficiency))
//                + launch_overhead_us
//
// with flops and bytes from the registry (ComputeOpCost) and peak, bandwidth
// and launch overhead from the device profile. Views (aten.view, aten.t, ...)
// only change metadata and cost zero. The efficiency factors turn datasheet
// peaks into what kernels reach in practice (see LatencyOptions).
//
// A measured cost table (JSON, written by the PyTorch profiler; format in
// docs/sim.md) overrides the estimate for every op whose key matches: op
// type, overload, the shapes of its tensor inputs in order, and its dtype
// (OpDType below). A measured latency is used as is (it already includes
// the launch overhead). An entry may also carry the op's measured
// workspace_bytes (scratch the op allocates and frees while it runs, such as
// oneDNN's temporaries on the CPU); it then replaces the registry's estimate
// (OpCost::workspace_bytes) in the simulator.
//
// An opaque op (one the registry does not know) may carry its own measured
// latency as a numeric attribute "time_us" (kTimeUsAttr): the importers of
// Checkmate graphs and DTR traces write it. It takes precedence over the
// cost table (it is a measurement of that very op) and its source is
// kMeasured. Registered ops ignore the attribute: their attributes are
// exactly their ATen arguments (the executor rejects any other), so their
// measurements belong in a cost table. A time_us that is not a finite
// non-negative number is an Error naming the op.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ir/graph.h"
#include "sim/device.h"

namespace memfit::sim {

// The attribute of an opaque op that holds its measured latency in us.
inline constexpr std::string_view kTimeUsAttr = "time_us";

struct LatencyOptions {
  // Fraction of peak FLOP/s that compute-bound kernels reach. Large cuBLAS
  // GEMMs and cuDNN convolutions run at 60-80% of peak; 0.7 is the middle.
  double compute_efficiency = 0.7;
  // Fraction of peak memory bandwidth that memory-bound kernels reach.
  // Streaming elementwise kernels reach 80-90% on HBM (STREAM-like).
  double memory_efficiency = 0.8;
  // Fraction of the host link's bandwidth that pinned-memory copies reach
  // (about 25 of 32 GB/s on PCIe 4.0 x16).
  double host_link_efficiency = 0.8;
};

// The dtype that selects an op's peak FLOP/s and its cost-table key: the
// dtype of its first floating-point input, else of its first input, else of
// its first output, else f32.
DType OpDType(const Graph& graph, const Op& op);

// One measured latency.
struct CostEntry {
  std::string op;        // ATen packet name: "aten.mm"
  std::string overload;  // "" for default ("default" in the file is the same)
  std::vector<Shape> input_shapes;
  DType dtype = DType::kF32;
  double latency_us = 0;
  std::optional<int64_t> workspace_bytes;  // measured scratch, if the table has it
};

class CostTable {
 public:
  // Parses a cost table; `source` names the file in error messages, which
  // also name the entry ("costs.json: entries[3].latency_us: ...").
  static CostTable FromJson(std::string_view text, std::string_view source = "<string>");
  static CostTable Load(const std::string& path);

  void Add(const CostEntry& entry);  // replaces an entry with the same key
  // The measured latency of `op` in `graph`, if the table has its key.
  std::optional<double> Find(const Graph& graph, const Op& op) const;
  // Its measured workspace bytes, if the table has its key and the entry has them.
  std::optional<int64_t> FindWorkspace(const Graph& graph, const Op& op) const;
  size_t size() const { return entries_.size(); }
  const std::string& source() const { return source_; }

 private:
  struct Measured {
    double latency_us = 0;
    std::optional<int64_t> workspace_bytes;
  };
  const Measured* Lookup(const Graph& graph, const Op& op) const;

  std::string source_;
  std::unordered_map<std::string, Measured> entries_;  // by key; never iterated
};

enum class LatencySource : uint8_t { kView, kRoofline, kMeasured };
std::string_view ToString(LatencySource source);

struct OpLatency {
  double latency_us = 0;
  LatencySource source = LatencySource::kRoofline;
  bool memory_bound = false;  // roofline only: bytes dominate flops
};

// The most the latencies of one graph's ops may add up to: about 31.7 years,
// 1e18 ns, so that sums of times (and DTR's integer nanoseconds) never
// overflow.
inline constexpr double kMaxTotalLatencyUs = 1e15;

// The latency of every op of `graph`, indexed by op id. `costs` may be null.
// Throws Error naming the op when a latency is not finite (a tiny device rate,
// a huge measured time), and when they total more than kMaxTotalLatencyUs.
std::vector<OpLatency> ComputeOpLatencies(const Graph& graph, const DeviceProfile& device, const CostTable* costs,
                                          const LatencyOptions& options = {});

// Just the microseconds of each, in the same order (what the remat problem
// and the DTR program take).
std::vector<double> LatenciesUs(const std::vector<OpLatency>& latencies);

// Copy-stream duration: microseconds to move `bytes` one way
// between device and host.
double HostCopyUs(int64_t bytes, const DeviceProfile& device, const LatencyOptions& options = {});

}  // namespace memfit::sim
