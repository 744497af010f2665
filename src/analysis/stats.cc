#include "analysis/stats.h"

#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analysis/liveness.h"
#include "ir/registry.h"

namespace memfit {

GraphStats ComputeStats(const Graph& graph) {
  GraphStats s;
  s.ops = static_cast<int64_t>(graph.num_ops());
  s.tensors = static_cast<int64_t>(graph.num_tensors());
  for (const Tensor& t : graph.tensors()) {
    if (t.alias_of) continue;  // bytes are counted once, at the storage owner
    ++s.storages;
    const int64_t bytes = t.size_bytes();
    switch (t.role) {
      case TensorRole::kParameter:
        s.param_count += t.numel();
        s.param_bytes += bytes;
        break;
      case TensorRole::kBuffer: s.buffer_bytes += bytes; break;
      case TensorRole::kInput: s.input_bytes += bytes; break;
      case TensorRole::kActivation: s.activation_bytes += bytes; break;
      case TensorRole::kGradient: s.gradient_bytes += bytes; break;
      case TensorRole::kOptimizerState: s.optimizer_state_bytes += bytes; break;
      case TensorRole::kOutput: s.output_bytes += bytes; break;
    }
  }
  for (const Op& op : graph.ops()) {
    s.flops += ComputeOpCost(graph, op).flops;
    const OpSchema* schema = FindOpSchema(op.type);
    s.opaque_ops += schema == nullptr;
    s.random_ops += schema && schema->random;
  }
  const Liveness liveness = ComputeLiveness(graph);
  s.peak_bytes = liveness.peak_bytes;
  s.peak_step = liveness.peak_step;
  if (graph.num_ops() > 0) s.peak_op = graph.op(OpId(static_cast<uint32_t>(liveness.peak_step))).name;
  return s;
}

std::string StatsToJson(const Graph& graph, const GraphStats& s) {
  nlohmann::ordered_json j;
  j["name"] = graph.name;
  j["ops"] = s.ops;
  j["tensors"] = s.tensors;
  j["storages"] = s.storages;
  j["param_count"] = s.param_count;
  j["param_bytes"] = s.param_bytes;
  j["buffer_bytes"] = s.buffer_bytes;
  j["input_bytes"] = s.input_bytes;
  j["activation_bytes"] = s.activation_bytes;
  j["gradient_bytes"] = s.gradient_bytes;
  j["optimizer_state_bytes"] = s.optimizer_state_bytes;
  j["flops"] = s.flops;
  j["peak_bytes"] = s.peak_bytes;
  j["peak_step"] = s.peak_step;
  j["peak_op"] = s.peak_op;
  j["random_ops"] = s.random_ops;
  j["opaque_ops"] = s.opaque_ops;
  return j.dump(1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string FormatBytes(int64_t bytes) {
  constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (std::abs(value) >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.2f} {}", value, kUnits[unit]);
}

std::string FormatChange(double ratio) {
  double percent = 100 * ratio;
  if (std::abs(percent) < 0.005) percent = 0;
  return fmt::format("{:+.2f}%", percent);
}

std::string FormatRatioBeside(double ratio, double beside) {
  std::string text;
  for (int digits = 2; digits <= 4; ++digits) {
    text = fmt::format("{:.{}f}", ratio, digits);
    if (ratio == beside || text != fmt::format("{:.{}f}", beside, digits)) break;
  }
  return text;
}

std::string FormatStats(const Graph& graph, const GraphStats& s) {
  std::string out;
  auto line = [&](std::string_view key, const std::string& value) { out += fmt::format("{:<22}{}\n", key, value); };
  line("graph", graph.name);
  line("ops", fmt::format("{} ({} random, {} opaque)", s.ops, s.random_ops, s.opaque_ops));
  line("tensors", fmt::format("{} ({} storages)", s.tensors, s.storages));
  line("parameters", fmt::format("{} ({:.2f} M)", s.param_count, static_cast<double>(s.param_count) / 1e6));
  line("parameter bytes", FormatBytes(s.param_bytes));
  line("buffer bytes", FormatBytes(s.buffer_bytes));
  line("input bytes", FormatBytes(s.input_bytes));
  line("activation bytes", FormatBytes(s.activation_bytes));
  line("gradient bytes", FormatBytes(s.gradient_bytes));
  line("optimizer state", FormatBytes(s.optimizer_state_bytes));
  line("flops", fmt::format("{:.3f} GFLOP", s.flops / 1e9));
  line("peak (program order)", fmt::format("{} at step {} ('{}')", FormatBytes(s.peak_bytes), s.peak_step, s.peak_op));
  return out;
}

}  // namespace memfit
