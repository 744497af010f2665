// Device profiles: what the latency model needs to know about an accelerator.
//
// A profile gives peak arithmetic throughput per element type, device memory
// bandwidth, the bandwidth of the link to host memory (swapping), the fixed
// cost of launching one operator, and the memory capacity. The built-in
// profiles (a100, h100, h200, rtx3090, v100, cpu) quote vendor datasheets;
// device.cc names the figure behind every number. Custom devices come from
// a JSON file with the same fields (docs/sim.md):
//
//   {"format": "memfit.device", "version": 1, "name": "my-gpu",
//    "peak_tflops": {"f32": 19.5, "f16": 312, "bf16": 312, "f64": 19.5},
//    "memory_bandwidth_gb_per_s": 2039, "host_bandwidth_gb_per_s": 32,
//    "launch_overhead_us": 5, "memory_gib": 80}
//
// plus, optionally, "shared_host_memory": true for a device whose host
// memory is its own (a CPU: swapping frees nothing there).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ir/dtype.h"

namespace memfit::sim {

struct DeviceProfile {
  std::string name;         // "a100"
  std::string description;  // "NVIDIA A100 SXM4 80GB"
  // Peak throughput in FLOP/s. f32 is the plain CUDA-core rate (no TF32);
  // f16 and bf16 are dense tensor-core rates; f64 the best dense FP64 rate.
  double peak_f32_flops_per_s = 0;
  double peak_f16_flops_per_s = 0;
  double peak_bf16_flops_per_s = 0;
  double peak_f64_flops_per_s = 0;
  double memory_bandwidth_bytes_per_s = 0;  // device memory
  double host_bandwidth_bytes_per_s = 0;    // device <-> host, one direction
  double launch_overhead_us = 0;            // fixed cost of every non-view op
  int64_t memory_bytes = 0;                 // device memory capacity
  // "Host" memory is this device's own memory (a CPU): a swap copies bytes
  // within the same memory and frees none of it, so the optimizer never
  // swaps on such a device, and the simulator keeps a swapped storage's
  // bytes counted until it is freed.
  bool shared_host_memory = false;

  // Peak FLOP/s for arithmetic in `dtype`. Integer and bool types use the
  // f32 rate (CUDA cores run int32 at about the fp32 rate).
  double PeakFlopsPerS(DType dtype) const;
};

// "a100: NVIDIA A100 SXM4 80GB, f32 19.5 / f16 312 / bf16 312 / f64 19.5
// TFLOP/s, 2039 GB/s, host 32 GB/s, launch 5 us, 80 GiB".
std::string ToString(const DeviceProfile& device);

// The built-in profiles, sorted by name.
const std::vector<DeviceProfile>& BuiltinDevices();

// Their names, sorted, comma-separated: "a100, cpu, h100, ..." (for help
// texts and errors).
std::string BuiltinDeviceNames();

// The built-in profile called `name`; throws Error listing the known names.
const DeviceProfile& FindDevice(std::string_view name);

// Parses a device JSON object; `source` names the file in error messages.
// Strict: unknown or missing fields, wrong types and non-positive rates are
// errors naming the file and the field.
DeviceProfile DeviceFromJson(std::string_view text, std::string_view source = "<string>");
DeviceProfile LoadDeviceFile(const std::string& path);
std::string DeviceToJson(const DeviceProfile& device);

// `spec` is a built-in name, or a path ending in ".json" to a device file.
DeviceProfile ResolveDevice(const std::string& spec);

}  // namespace memfit::sim
