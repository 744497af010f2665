#include "sim/cost_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include "ir/registry.h"
#include "util/enum_names.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace memfit::sim {
namespace {

std::string NormalizeOverload(std::string_view overload) {
  return overload == "default" ? std::string() : std::string(overload);
}

// "aten.mm.|f32|[128,256][256,512]": unique per (op, overload, dtype, shapes).
template <typename ShapeRange>
std::string MakeKey(std::string_view op, std::string_view overload, DType dtype, const ShapeRange& shapes) {
  std::string key;
  key.reserve(64);
  key.append(op).append(".").append(NormalizeOverload(overload)).append("|").append(ToString(dtype)).append("|");
  for (const Shape& shape : shapes) {
    key.push_back('[');
    for (size_t i = 0; i < shape.size(); ++i) {
      if (i) key.push_back(',');
      key.append(std::to_string(shape[i]));
    }
    key.push_back(']');
  }
  return key;
}

// The latency an opaque op declares in its time_us attribute, if any.
std::optional<double> DeclaredTimeUs(const Op& op) {
  const auto it = op.attrs.find(kTimeUsAttr);
  if (it == op.attrs.end() || FindOpSchema(op.type)) return std::nullopt;
  double us = 0;
  if (const auto* i = std::get_if<int64_t>(&it->second)) {
    us = static_cast<double>(*i);
  } else if (const auto* d = std::get_if<double>(&it->second)) {
    us = *d;
  } else {
    Fail("op '{}' ({}): attribute {} must be a number, got {}", op.name, op.qualified_type(), kTimeUsAttr,
         memfit::ToString(it->second));
  }
  if (!std::isfinite(us) || us < 0) {
    Fail("op '{}' ({}): attribute {} must be a finite non-negative number, got {}", op.name, op.qualified_type(),
         kTimeUsAttr, memfit::ToString(it->second));
  }
  return us;
}

}  // namespace

DType OpDType(const Graph& graph, const Op& op) {
  for (TensorId in : op.inputs) {
    if (IsFloatingPoint(graph.tensor(in).dtype)) return graph.tensor(in).dtype;
  }
  if (!op.inputs.empty()) return graph.tensor(op.inputs.front()).dtype;
  if (!op.outputs.empty()) return graph.tensor(op.outputs.front()).dtype;
  return DType::kF32;
}

constexpr EnumName<LatencySource> kLatencySourceNames[] = {
    {LatencySource::kView, "view"}, {LatencySource::kRoofline, "roofline"}, {LatencySource::kMeasured, "measured"}};

std::string_view ToString(LatencySource source) { return NameOf(kLatencySourceNames, source); }

CostTable CostTable::FromJson(std::string_view text, std::string_view source) {
  CostTable table;
  table.source_ = std::string(source);
  const JsonValue value = ParseJson(text, table.source_);
  const JsonNode j(value, table.source_);
  j.ExpectFields({"format", "version", "device", "entries"});
  if (auto format = j.Find("format"); format && format->String() != "memfit.costs") {
    format->Fail("must be \"memfit.costs\"");
  }
  if (auto version = j.Find("version"); version && version->Int() != 1) {
    version->Fail(fmt::format("unsupported version {} (expected 1)", version->Int()));
  }
  if (auto device = j.Find("device")) device->String();
  std::unordered_map<std::string, size_t> first_index;
  const std::vector<JsonNode> entries = j.Get("entries").Elements();
  for (size_t i = 0; i < entries.size(); ++i) {
    const JsonNode& e = entries[i];
    e.ExpectFields({"op", "overload", "input_shapes", "dtype", "latency_us", "samples", "workspace_bytes"});
    CostEntry entry;
    const JsonNode op = e.Get("op");
    entry.op = op.String();
    if (entry.op.empty()) op.Fail("must be a non-empty string such as \"aten.mm\"");
    if (auto overload = e.Find("overload")) entry.overload = NormalizeOverload(overload->String());
    for (const JsonNode& shape_json : e.Get("input_shapes").Elements()) {
      Shape shape = shape_json.Ints();
      for (int64_t d : shape) {
        if (d < 0) shape_json.Fail(fmt::format("must be an array of non-negative integers, got {}", shape_json.Describe()));
      }
      entry.input_shapes.push_back(std::move(shape));
    }
    const JsonNode dtype_json = e.Get("dtype");
    const std::optional<DType> dtype = ParseDType(dtype_json.String());
    if (!dtype) {
      dtype_json.Fail(fmt::format("unknown dtype {} (expected f32, f16, bf16, f64, i64, i32, i16, i8, u8, bool)",
                                  Quote(dtype_json.String())));
    }
    entry.dtype = *dtype;
    const JsonNode latency = e.Get("latency_us");
    entry.latency_us = latency.Number();
    if (!(entry.latency_us >= 0)) latency.Fail(fmt::format("must be a non-negative number, got {}", latency.Describe()));
    if (entry.latency_us > kMaxTotalLatencyUs) {
      latency.Fail(fmt::format("{} us is more than the {:g} us memfit can time", latency.Describe(), kMaxTotalLatencyUs));
    }
    if (auto samples = e.Find("samples"); samples && samples->Int() < 1) {
      samples->Fail(fmt::format("must be a positive integer, got {}", samples->Describe()));
    }
    if (auto workspace = e.Find("workspace_bytes")) {
      const int64_t bytes = workspace->Int();
      if (bytes < 0 || bytes > kMaxTensorBytes) {
        workspace->Fail(fmt::format("must be an integer from 0 to {} bytes, got {}", kMaxTensorBytes,
                                    workspace->Describe()));
      }
      entry.workspace_bytes = bytes;
    }
    const std::string key = MakeKey(entry.op, entry.overload, entry.dtype, entry.input_shapes);
    const auto [it, inserted] = first_index.emplace(key, i);
    if (!inserted) e.Fail(fmt::format("same op, overload, input_shapes and dtype as entries[{}]", it->second));
    table.entries_.emplace(key, Measured{entry.latency_us, entry.workspace_bytes});
  }
  return table;
}

CostTable CostTable::Load(const std::string& path) { return FromJson(ReadFile(path), path); }

void CostTable::Add(const CostEntry& entry) {
  entries_[MakeKey(entry.op, entry.overload, entry.dtype, entry.input_shapes)] =
      Measured{entry.latency_us, entry.workspace_bytes};
}

const CostTable::Measured* CostTable::Lookup(const Graph& graph, const Op& op) const {
  if (entries_.empty()) return nullptr;
  std::vector<Shape> shapes;
  shapes.reserve(op.inputs.size());
  for (TensorId in : op.inputs) shapes.push_back(graph.tensor(in).shape);
  const auto it = entries_.find(MakeKey(op.type, op.overload, OpDType(graph, op), shapes));
  return it == entries_.end() ? nullptr : &it->second;
}

std::optional<double> CostTable::Find(const Graph& graph, const Op& op) const {
  const Measured* m = Lookup(graph, op);
  if (!m) return std::nullopt;
  return m->latency_us;
}

std::optional<int64_t> CostTable::FindWorkspace(const Graph& graph, const Op& op) const {
  const Measured* m = Lookup(graph, op);
  if (!m) return std::nullopt;
  return m->workspace_bytes;
}

std::vector<double> LatenciesUs(const std::vector<OpLatency>& latencies) {
  std::vector<double> us;
  us.reserve(latencies.size());
  for (const OpLatency& l : latencies) us.push_back(l.latency_us);
  return us;
}

std::vector<OpLatency> ComputeOpLatencies(const Graph& graph, const DeviceProfile& device, const CostTable* costs,
                                          const LatencyOptions& options) {
  std::vector<OpLatency> result(graph.num_ops());
  const double bandwidth_bytes_per_us = device.memory_bandwidth_bytes_per_s * options.memory_efficiency * 1e-6;
  for (const Op& op : graph.ops()) {
    OpLatency& l = result[op.id.index()];
    if (const std::optional<double> declared = DeclaredTimeUs(op)) {
      l.latency_us = *declared;
      l.source = LatencySource::kMeasured;
      continue;
    }
    if (costs) {
      if (const std::optional<double> measured = costs->Find(graph, op)) {
        l.latency_us = *measured;
        l.source = LatencySource::kMeasured;
        continue;
      }
    }
    const OpSchema* schema = FindOpSchema(op.type);
    if (schema && schema->is_view()) {
      l.source = LatencySource::kView;
      continue;
    }
    const OpCost cost = ComputeOpCost(graph, op);
    const double flops_per_us = device.PeakFlopsPerS(OpDType(graph, op)) * options.compute_efficiency * 1e-6;
    const double compute_us = cost.flops / flops_per_us;
    const double memory_us = static_cast<double>(cost.bytes_read + cost.bytes_written) / bandwidth_bytes_per_us;
    l.memory_bound = memory_us > compute_us;
    l.latency_us = std::max(compute_us, memory_us) + device.launch_overhead_us;
  }
  // Every consumer adds latencies up (timelines, DTR's integer nanoseconds):
  // keep the total finite and within what they can represent.
  double total_us = 0;
  for (const Op& op : graph.ops()) {
    const OpLatency& l = result[op.id.index()];
    if (!std::isfinite(l.latency_us) || l.latency_us < 0) {
      Fail("op {} ({}): latency {} us on {} ({}) is not a finite non-negative number", Quote(op.name),
           op.qualified_type(), l.latency_us, device.name, ToString(l.source));
    }
    total_us += l.latency_us;
  }
  if (total_us > kMaxTotalLatencyUs) {
    Fail("graph {}: its ops take {:g} us in all on {}, more than the {:g} us memfit can time", Quote(graph.name),
         total_us, device.name, kMaxTotalLatencyUs);
  }
  return result;
}

double HostCopyUs(int64_t bytes, const DeviceProfile& device, const LatencyOptions& options) {
  return static_cast<double>(bytes) / (device.host_bandwidth_bytes_per_s * options.host_link_efficiency * 1e-6);
}

}  // namespace memfit::sim
