#include "sim/device.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "sim/cost_model.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace memfit::sim {
namespace {

constexpr double kTera = 1e12;
constexpr double kGiga = 1e9;
constexpr int64_t kGiB = int64_t{1} << 30;

// Kernel launch plus framework dispatch per op. Not a datasheet figure:
// CUDA documents a launch latency of a few microseconds, and PyTorch eager
// dispatch adds a few more; 5 us is the usual rule of thumb.
constexpr double kGpuLaunchOverheadUs = 5.0;

// A GPU's datasheet figures, in the datasheet's units.
struct GpuSheet {
  const char* name;
  const char* description;
  double f32_tflops, f16_tflops, bf16_tflops, f64_tflops;  // dense peak rates
  double memory_gb_per_s;
  double host_gb_per_s;  // one direction
  int64_t memory_gib;
};

// The quotes are the datasheets' words for each figure, in the row's order.
constexpr GpuSheet kGpuSheets[] = {
    // NVIDIA A100 Tensor Core GPU datasheet (2021), column "A100 80GB SXM": "FP32 19.5 TFLOPS";
    // "FP16 Tensor Core 312 TFLOPS" (dense); "BFLOAT16 Tensor Core 312 TFLOPS" (dense); "FP64 Tensor
    // Core 19.5 TFLOPS" (cuBLAS DGEMM uses it); "GPU Memory Bandwidth 2,039 GB/s"; "PCIe Gen4:
    // 64 GB/s" is both directions; "GPU Memory 80GB HBM2e" (nvidia-smi: 81920 MiB).
    {"a100", "NVIDIA A100 SXM4 80GB", 19.5, 312, 312, 19.5, 2039, 32, 80},
    // NVIDIA H100 Tensor Core GPU datasheet, column "H100 SXM". The datasheet quotes tensor-core
    // rates with sparsity; dense rates are half of them. "FP32 67 teraFLOPS"; "FP16 Tensor Core
    // 1,979 teraFLOPS*" / 2 (no sparsity); "BFLOAT16 Tensor Core 1,979 teraFLOPS*" / 2; "FP64
    // Tensor Core 67 teraFLOPS"; "GPU memory bandwidth 3.35TB/s"; "PCIe Gen5: 128GB/s" is both
    // directions; "GPU memory 80GB".
    {"h100", "NVIDIA H100 SXM5 80GB", 67, 989.5, 989.5, 67, 3350, 64, 80},
    // NVIDIA H200 Tensor Core GPU datasheet, column "H200 SXM". Same compute as H100 SXM, more and
    // faster HBM3e. (On GH200 the host link would be NVLink-C2C, 900 GB/s both directions; use a
    // device file for that.) "FP32 67 TFLOPS"; "FP16 Tensor Core 1,979 TFLOPS²" / 2 (no sparsity);
    // "BFLOAT16 Tensor Core 1,979 TFLOPS²" / 2; "FP64 Tensor Core 67 TFLOPS"; "GPU Memory Bandwidth
    // 4.8TB/s"; "PCIe Gen5: 128GB/s" is both directions; "GPU Memory 141GB", taken as GiB like the
    // other HBM sizes.
    {"h200", "NVIDIA H200 SXM 141GB", 67, 989.5, 989.5, 67, 4800, 64, 141},
    // NVIDIA Ampere GA102 GPU Architecture whitepaper, table "GeForce RTX 3090" (boost clock).
    // PyTorch accumulates in FP32, so f16/bf16 use the "with FP32 Accumulate" rates, which GeForce
    // parts run at half speed. "Peak FP32 TFLOPS (non-Tensor) 35.6"; "Peak FP16 Tensor TFLOPS with
    // FP32 Accumulate 71"; "Peak BF16 Tensor TFLOPS with FP32 Accumulate 71"; "Peak FP64 TFLOPS
    // (non-Tensor) 0.556" (1/64 rate); "Memory Bandwidth 936 GB/sec"; PCIe 4.0 x16: 16 GT/s x 16
    // lanes, one direction; "Frame Buffer Memory Size 24 GB GDDR6X".
    {"rtx3090", "NVIDIA GeForce RTX 3090 24GB", 35.6, 71, 71, 0.556, 936, 32, 24},
    // NVIDIA Tesla V100 datasheet, column "V100 SXM2" (32GB). Volta has no bf16 arithmetic; PyTorch
    // emulates it at about the f32 rate. "Single-Precision 15.7 TFLOPS"; "Tensor Performance 125
    // TFLOPS"; no bf16 hardware: the f32 rate; "Double-Precision 7.8 TFLOPS"; "Memory Bandwidth
    // 900 GB/sec"; "PCIe 32 GB/sec" (Gen3 x16) is both directions; "Capacity 32 GB HBM2".
    {"v100", "NVIDIA Tesla V100 SXM2 32GB", 15.7, 125, 15.7, 7.8, 900, 16, 32},
};

std::vector<DeviceProfile> MakeBuiltinDevices() {
  std::vector<DeviceProfile> d;
  for (const GpuSheet& gpu : kGpuSheets) {
    DeviceProfile p;
    p.name = gpu.name;
    p.description = gpu.description;
    p.peak_f32_flops_per_s = gpu.f32_tflops * kTera;
    p.peak_f16_flops_per_s = gpu.f16_tflops * kTera;
    p.peak_bf16_flops_per_s = gpu.bf16_tflops * kTera;
    p.peak_f64_flops_per_s = gpu.f64_tflops * kTera;
    p.memory_bandwidth_bytes_per_s = gpu.memory_gb_per_s * kGiga;
    p.host_bandwidth_bytes_per_s = gpu.host_gb_per_s * kGiga;
    p.launch_overhead_us = kGpuLaunchOverheadUs;
    p.memory_bytes = gpu.memory_gib * kGiB;
    d.push_back(p);
  }
  {
    // A plausible 2-core x86 machine (a small cloud VM): AVX2 with two FMA
    // units per core at 3.0 GHz gives 2 FMA x 8 f32 lanes x 2 FLOP = 32
    // FLOP/cycle/core (Intel optimization manual, Skylake port 0/1 FMA).
    DeviceProfile p;
    p.name = "cpu";
    p.description = "2-core x86 CPU (AVX2 FMA, 3.0 GHz, dual-channel DDR4-3200)";
    p.peak_f32_flops_per_s = 2 * 3.0e9 * 32;  // 192 GFLOP/s
    p.peak_f16_flops_per_s = 2 * 3.0e9 * 32;  // no native f16 arithmetic: the f32 rate
    p.peak_bf16_flops_per_s = 2 * 3.0e9 * 32; // no native bf16 arithmetic: the f32 rate
    p.peak_f64_flops_per_s = 2 * 3.0e9 * 16;  // 4 f64 lanes: 96 GFLOP/s
    // JEDEC DDR4-3200: 3200 MT/s x 8 bytes x 2 channels = 51.2 GB/s.
    p.memory_bandwidth_bytes_per_s = 51.2 * kGiga;
    // "Host" is the same DRAM: a swap is a memcpy that reads and writes it,
    // and frees nothing.
    p.host_bandwidth_bytes_per_s = 25.6 * kGiga;
    p.shared_host_memory = true;
    p.launch_overhead_us = 2.0;  // PyTorch CPU op dispatch, a few microseconds
    p.memory_bytes = 16 * kGiB;
    d.push_back(p);
  }
  std::sort(d.begin(), d.end(), [](const DeviceProfile& a, const DeviceProfile& b) { return a.name < b.name; });
  return d;
}

// A positive number (a rate or a size).
double PositiveNumber(const JsonNode& j) {
  const double x = j.Number();
  if (!(x > 0)) j.Fail(fmt::format("must be positive (got {})", j.Describe()));
  return x;
}

}  // namespace

double DeviceProfile::PeakFlopsPerS(DType dtype) const {
  switch (dtype) {
    case DType::kF16:
      return peak_f16_flops_per_s;
    case DType::kBF16:
      return peak_bf16_flops_per_s;
    case DType::kF64:
      return peak_f64_flops_per_s;
    default:
      return peak_f32_flops_per_s;
  }
}

std::string ToString(const DeviceProfile& p) {
  return fmt::format("{}: {}, f32 {:g} / f16 {:g} / bf16 {:g} / f64 {:g} TFLOP/s, {:g} GB/s, host {:g} GB/s, launch {:g} us, {:g} GiB",
                     p.name, p.description, p.peak_f32_flops_per_s / kTera, p.peak_f16_flops_per_s / kTera,
                     p.peak_bf16_flops_per_s / kTera, p.peak_f64_flops_per_s / kTera,
                     p.memory_bandwidth_bytes_per_s / kGiga, p.host_bandwidth_bytes_per_s / kGiga,
                     p.launch_overhead_us, static_cast<double>(p.memory_bytes) / kGiB) +
         (p.shared_host_memory ? ", host memory shared (no swaps)" : "");
}

const std::vector<DeviceProfile>& BuiltinDevices() {
  static const std::vector<DeviceProfile> devices = MakeBuiltinDevices();
  return devices;
}

std::string BuiltinDeviceNames() {
  std::string names;
  for (const DeviceProfile& p : BuiltinDevices()) names += (names.empty() ? "" : ", ") + p.name;
  return names;
}

const DeviceProfile& FindDevice(std::string_view name) {
  for (const DeviceProfile& p : BuiltinDevices()) {
    if (p.name == name) return p;
  }
  Fail("unknown device '{}' (known: {}; or a device .json file)", name, BuiltinDeviceNames());
}

DeviceProfile DeviceFromJson(std::string_view text, std::string_view source) {
  const std::string name(source);
  const JsonValue value = ParseJson(text, name);
  const JsonNode j(value, name);
  j.ExpectFields({"format", "version", "name", "description", "peak_tflops", "memory_bandwidth_gb_per_s",
                  "host_bandwidth_gb_per_s", "launch_overhead_us", "memory_gib", "shared_host_memory"});
  if (auto format = j.Find("format"); format && format->String() != "memfit.device") {
    format->Fail("must be \"memfit.device\"");
  }
  if (auto version = j.Find("version"); version && version->Int() != 1) {
    version->Fail(fmt::format("unsupported version {} (expected 1)", version->Int()));
  }
  DeviceProfile p;
  const JsonNode name_node = j.Get("name");
  p.name = name_node.String();
  if (p.name.empty()) name_node.Fail("must be a non-empty string");
  if (auto description = j.Find("description")) p.description = description->String();
  const JsonNode peak = j.Get("peak_tflops");
  peak.ExpectFields({"f32", "f16", "bf16", "f64"});
  p.peak_f32_flops_per_s = PositiveNumber(peak.Get("f32")) * kTera;
  // f16, bf16 and f64 default to the f32 rate when absent.
  const auto rate = [&](std::string_view key) {
    const auto field = peak.Find(key);
    return field ? PositiveNumber(*field) * kTera : p.peak_f32_flops_per_s;
  };
  p.peak_f16_flops_per_s = rate("f16");
  p.peak_bf16_flops_per_s = rate("bf16");
  p.peak_f64_flops_per_s = rate("f64");
  p.memory_bandwidth_bytes_per_s = PositiveNumber(j.Get("memory_bandwidth_gb_per_s")) * kGiga;
  p.host_bandwidth_bytes_per_s = PositiveNumber(j.Get("host_bandwidth_gb_per_s")) * kGiga;
  const JsonNode launch = j.Get("launch_overhead_us");
  p.launch_overhead_us = launch.Number();
  if (!(p.launch_overhead_us >= 0)) launch.Fail(fmt::format("must be a non-negative number (got {})", launch.Describe()));
  if (p.launch_overhead_us > kMaxTotalLatencyUs) {
    launch.Fail(fmt::format("{} us is more than the {:g} us memfit can time", launch.Describe(), kMaxTotalLatencyUs));
  }
  // Products of finite inputs can still overflow: 1e300 TFLOP/s is inf FLOP/s.
  for (const double rate_per_s : {p.peak_f32_flops_per_s, p.peak_f16_flops_per_s, p.peak_bf16_flops_per_s,
                                  p.peak_f64_flops_per_s, p.memory_bandwidth_bytes_per_s, p.host_bandwidth_bytes_per_s}) {
    if (!std::isfinite(rate_per_s)) j.Fail("a rate is too large to represent");
  }
  const JsonNode memory = j.Get("memory_gib");
  const double memory_gib = PositiveNumber(memory);
  // Up to 2^63 bytes (8 EiB) fit in an int64.
  if (!(memory_gib * static_cast<double>(kGiB) < 9.2e18)) {
    memory.Fail(fmt::format("is too large (got {}; at most 8589934591 GiB)", memory.Describe()));
  }
  p.memory_bytes = static_cast<int64_t>(memory_gib * static_cast<double>(kGiB));
  if (auto shared = j.Find("shared_host_memory")) p.shared_host_memory = shared->Bool();
  return p;
}

DeviceProfile LoadDeviceFile(const std::string& path) { return DeviceFromJson(ReadFile(path), path); }

std::string DeviceToJson(const DeviceProfile& p) {
  nlohmann::ordered_json j;
  j["format"] = "memfit.device";
  j["version"] = 1;
  j["name"] = p.name;
  j["description"] = p.description;
  j["peak_tflops"] = {{"f32", p.peak_f32_flops_per_s / kTera},
                      {"f16", p.peak_f16_flops_per_s / kTera},
                      {"bf16", p.peak_bf16_flops_per_s / kTera},
                      {"f64", p.peak_f64_flops_per_s / kTera}};
  j["memory_bandwidth_gb_per_s"] = p.memory_bandwidth_bytes_per_s / kGiga;
  j["host_bandwidth_gb_per_s"] = p.host_bandwidth_bytes_per_s / kGiga;
  j["launch_overhead_us"] = p.launch_overhead_us;
  j["memory_gib"] = static_cast<double>(p.memory_bytes) / kGiB;
  if (p.shared_host_memory) j["shared_host_memory"] = true;
  return j.dump(1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

DeviceProfile ResolveDevice(const std::string& spec) {
  if (spec.size() > 5 && spec.ends_with(".json")) return LoadDeviceFile(spec);
  return FindDevice(spec);
}

}  // namespace memfit::sim
