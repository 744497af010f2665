#include "sim/simulator.h"

#include <fmt/format.h>

#include <algorithm>

#include "analysis/stats.h"
#include "analysis/storage_table.h"
#include "ir/registry.h"
#include "util/enum_names.h"
#include "util/error.h"

namespace memfit::sim {
namespace {

enum class Where : uint8_t { kAbsent, kDevice, kHost };

// A change of device memory at `time_us`. `transient_bytes` is held only at
// the instant of an allocation (the workspace of a zero-latency op).
struct MemoryEvent {
  double time_us;
  int64_t delta_bytes;
  int64_t transient_bytes;
  uint32_t step;
  uint32_t seq;  // generation order: the last tie-break
  bool release;
};

bool EventBefore(const MemoryEvent& a, const MemoryEvent& b) {
  if (a.time_us != b.time_us) return a.time_us < b.time_us;
  if (a.release != b.release) return a.release;  // releases first
  return a.seq < b.seq;
}

// Appends the distinct values of `values` to `out`.
void AppendDistinct(const std::vector<uint32_t>& values, std::vector<uint32_t>& out) {
  const size_t begin = out.size();
  for (uint32_t v : values) {
    if (std::find(out.begin() + static_cast<std::ptrdiff_t>(begin), out.end(), v) == out.end()) out.push_back(v);
  }
}

}  // namespace

constexpr EnumName<Stream> kStreamNames[] = {
    {Stream::kCompute, "compute"}, {Stream::kCopy, "copy"}, {Stream::kNone, "-"}};

std::string_view ToString(Stream stream) { return NameOf(kStreamNames, stream); }

std::string ToString(const SimResult& r) {
  return fmt::format("latency {:.3f} ms, peak {} ({} B), compute {:.3f} ms, copy {:.3f} ms", r.latency_ms(),
                     FormatBytes(r.peak_bytes), r.peak_bytes, r.compute_busy_us * 1e-3, r.copy_busy_us * 1e-3);
}

Simulator::Simulator(const Graph& graph, const DeviceProfile& device, const CostTable* costs,
                     const LatencyOptions& options)
    : graph_(graph), device_(device), options_(options) {
  latencies_ = ComputeOpLatencies(graph, device, costs, options);
  const size_t n = graph.num_tensors();
  root_.resize(n);
  storage_bytes_.assign(n, 0);
  copy_us_.assign(n, 0);
  initially_resident_.assign(n, 0);
  const StorageTable table(graph);
  for (const Tensor& t : graph.tensors()) root_[t.id.index()] = table.root(t.id).value;
  for (const StorageInfo& s : table.storages()) {
    const size_t i = s.root.index();
    storage_bytes_[i] = s.size_bytes;
    copy_us_[i] = HostCopyUs(storage_bytes_[i], device, options);
    if (s.resident_at_start()) {
      initially_resident_[i] = 1;
      initial_bytes_ += storage_bytes_[i];
    }
  }
  workspace_bytes_.assign(graph.num_ops(), 0);
  read_begin_.reserve(graph.num_ops() + 1);
  write_begin_.reserve(graph.num_ops() + 1);
  std::vector<uint32_t> roots;
  for (const Op& op : graph.ops()) {
    // A cost table's measured workspace replaces the registry's estimate.
    const std::optional<int64_t> measured = costs ? costs->FindWorkspace(graph, op) : std::nullopt;
    if (measured) {
      workspace_bytes_[op.id.index()] = *measured;
    } else if (latencies_[op.id.index()].source != LatencySource::kView) {
      workspace_bytes_[op.id.index()] = ComputeOpCost(graph, op).workspace_bytes;
    }
    read_begin_.push_back(static_cast<uint32_t>(read_roots_.size()));
    roots.clear();
    for (TensorId t : op.inputs) roots.push_back(root_[t.index()]);
    AppendDistinct(roots, read_roots_);
    write_begin_.push_back(static_cast<uint32_t>(write_roots_.size()));
    roots.clear();
    for (TensorId t : op.outputs) roots.push_back(root_[t.index()]);
    AppendDistinct(roots, write_roots_);
  }
  read_begin_.push_back(static_cast<uint32_t>(read_roots_.size()));
  write_begin_.push_back(static_cast<uint32_t>(write_roots_.size()));
}

SimResult Simulator::Run(const Steps& plan, const SimOptions& options) const {
  const size_t n = graph_.num_tensors();
  std::vector<Where> where(n, Where::kAbsent);
  std::vector<double> ready_us(n, 0.0);     // data valid on the device
  std::vector<double> last_use_us(n, 0.0);  // end of the last step touching it
  std::vector<double> host_ready_us(n, 0.0);  // end of its swap-out
  for (size_t i = 0; i < n; ++i) {
    if (initially_resident_[i]) where[i] = Where::kDevice;
  }
  std::vector<MemoryEvent> events;
  events.reserve(plan.steps.size() * 2);

  SimResult result;
  if (options.record_timeline) result.timeline.resize(plan.steps.size());
  double compute_free_us = 0;         // end of the last compute step
  double last_compute_start_us = 0;   // start of the last compute step
  double copy_free_us = 0;            // end of the last copy step
  int64_t live_bytes = initial_bytes_;  // in step-list order
  uint32_t seq = 0;
  auto add_event = [&](double time, int64_t delta, int64_t transient, size_t step, bool release) {
    events.push_back({time, delta, transient, static_cast<uint32_t>(step), seq++, release});
  };
  // The same changes per storage and workspace, for SimResult::memory.
  std::vector<MemoryChange> changes;
  std::vector<uint32_t> change_seq;
  auto record = [&](MemoryChange change) {
    if (!options.record_memory) return;
    changes.push_back(change);
    change_seq.push_back(static_cast<uint32_t>(change_seq.size()));
  };
  if (options.record_memory) {
    for (size_t r = 0; r < n; ++r) {
      if (initially_resident_[r]) record({0, storage_bytes_[r], false, std::nullopt, TensorId(r), std::nullopt});
    }
  }
  auto fail = [&](size_t step, const std::string& message) {
    Fail("plan step {} ({}): {}", step, ToString(plan.steps[step], graph_), message);
  };
  auto storage_of = [&](size_t step) -> uint32_t {
    const Step& s = plan.steps[step];
    if (!s.storage) fail(step, "names no storage");
    if (!graph_.contains(*s.storage)) fail(step, fmt::format("no tensor t{} in the graph", s.storage->value));
    return root_[s.storage->index()];
  };

  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const Step& step = plan.steps[i];
    Stream stream = Stream::kNone;
    double start = 0, end = 0;
    switch (step.kind) {
      case StepKind::kCompute:
      case StepKind::kRecompute: {
        if (!step.op) fail(i, "names no op");
        if (!graph_.contains(*step.op)) fail(i, fmt::format("no op op{} in the graph", step.op->value));
        const size_t o = step.op->index();
        stream = Stream::kCompute;
        start = compute_free_us;
        for (uint32_t k = read_begin_[o]; k < read_begin_[o + 1]; ++k) {
          const uint32_t r = read_roots_[k];
          if (where[r] != Where::kDevice) {
            fail(i, fmt::format("reads storage t{} '{}', which is not on the device", r,
                                graph_.tensor(TensorId(r)).name));
          }
          start = std::max(start, ready_us[r]);
        }
        const double latency = latencies_[o].latency_us;
        end = start + latency;
        int64_t allocated = 0;
        for (uint32_t k = write_begin_[o]; k < write_begin_[o + 1]; ++k) {
          const uint32_t r = write_roots_[k];
          if (where[r] != Where::kDevice) {
            where[r] = Where::kDevice;
            allocated += storage_bytes_[r];
            record({start, storage_bytes_[r], false, i, TensorId(r), std::nullopt});
          }
          ready_us[r] = end;
          last_use_us[r] = std::max(last_use_us[r], end);
        }
        for (uint32_t k = read_begin_[o]; k < read_begin_[o + 1]; ++k) {
          const uint32_t r = read_roots_[k];
          last_use_us[r] = std::max(last_use_us[r], end);
        }
        const int64_t workspace = workspace_bytes_[o];
        if (end > start) {
          add_event(start, allocated + workspace, 0, i, false);
          if (workspace > 0) {
            add_event(end, -workspace, 0, i, true);
            record({start, workspace, false, i, std::nullopt, *step.op});
            record({end, -workspace, false, i, std::nullopt, *step.op});
          }
        } else {
          add_event(start, allocated, workspace, i, false);
          if (workspace > 0) record({start, workspace, true, i, std::nullopt, *step.op});
        }
        live_bytes += allocated;
        compute_free_us = end;
        last_compute_start_us = start;
        result.compute_busy_us += latency;
        if (step.kind == StepKind::kRecompute) result.recompute_us += latency;
        break;
      }
      case StepKind::kSwapOut: {
        const uint32_t r = storage_of(i);
        if (where[r] != Where::kDevice) fail(i, "the storage is not on the device");
        stream = Stream::kCopy;
        start = std::max({copy_free_us, last_compute_start_us, ready_us[r]});
        end = start + copy_us_[r];
        copy_free_us = end;
        where[r] = Where::kHost;
        host_ready_us[r] = end;
        if (!device_.shared_host_memory) {  // else the host copy holds the same memory
          add_event(std::max(end, last_use_us[r]), -storage_bytes_[r], 0, i, true);
          record({std::max(end, last_use_us[r]), -storage_bytes_[r], false, i, TensorId(r), std::nullopt});
          live_bytes -= storage_bytes_[r];
        }
        last_use_us[r] = std::max(last_use_us[r], end);
        result.copy_busy_us += end - start;
        result.swap_out_bytes += storage_bytes_[r];
        break;
      }
      case StepKind::kSwapIn: {
        const uint32_t r = storage_of(i);
        if (where[r] != Where::kHost) fail(i, "the storage is not on the host (swap it out first)");
        stream = Stream::kCopy;
        // Not before the compute step issued before it has finished (so the
        // memory freed after that step is free for it), nor before the
        // device copy it replaces is released (its swap-out done and its
        // last reader finished).
        start = std::max({copy_free_us, compute_free_us, host_ready_us[r], last_use_us[r]});
        end = start + copy_us_[r];
        copy_free_us = end;
        where[r] = Where::kDevice;
        ready_us[r] = end;
        last_use_us[r] = std::max(last_use_us[r], end);
        if (!device_.shared_host_memory) {  // else still counted since the swap-out
          add_event(start, storage_bytes_[r], 0, i, false);
          record({start, storage_bytes_[r], false, i, TensorId(r), std::nullopt});
          live_bytes += storage_bytes_[r];
        }
        result.copy_busy_us += end - start;
        result.swap_in_bytes += storage_bytes_[r];
        break;
      }
      case StepKind::kFree: {
        const uint32_t r = storage_of(i);
        if (where[r] == Where::kDevice) {
          start = end = std::max({compute_free_us, last_use_us[r], ready_us[r]});
          add_event(start, -storage_bytes_[r], 0, i, true);
          record({start, -storage_bytes_[r], false, i, TensorId(r), std::nullopt});
          live_bytes -= storage_bytes_[r];
        } else if (where[r] == Where::kHost) {
          start = end = std::max(compute_free_us, host_ready_us[r]);  // drops the host copy
          if (device_.shared_host_memory) {  // which held the device's own memory
            add_event(start, -storage_bytes_[r], 0, i, true);
            record({start, -storage_bytes_[r], false, i, TensorId(r), std::nullopt});
            live_bytes -= storage_bytes_[r];
          }
        } else {
          fail(i, "the storage is neither on the device nor on the host");
        }
        where[r] = Where::kAbsent;
        break;
      }
    }
    result.latency_us = std::max(result.latency_us, end);
    if (options.record_timeline) result.timeline[i] = {stream, start, end, live_bytes};
  }

  // Sweep the memory events in time. Without copies they are generated in
  // time order already.
  if (!std::is_sorted(events.begin(), events.end(), EventBefore)) {
    std::sort(events.begin(), events.end(), EventBefore);
  }
  int64_t live = initial_bytes_;
  result.peak_bytes = initial_bytes_;
  for (const MemoryEvent& e : events) {
    live += e.delta_bytes;
    if (!e.release && live + e.transient_bytes > result.peak_bytes) {
      result.peak_bytes = live + e.transient_bytes;
      result.peak_time_us = e.time_us;
      result.peak_step = e.step;
    }
  }
  if (options.record_memory) {
    std::vector<uint32_t> order(changes.size());
    for (uint32_t k = 0; k < order.size(); ++k) order[k] = k;
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
      const MemoryChange &x = changes[a], &y = changes[b];
      if (x.time_us != y.time_us) return x.time_us < y.time_us;
      const bool xr = x.delta_bytes < 0, yr = y.delta_bytes < 0;
      if (xr != yr) return xr;
      return change_seq[a] < change_seq[b];
    });
    result.memory.reserve(changes.size());
    for (uint32_t k : order) result.memory.push_back(changes[k]);
  }
  return result;
}

SimResult Simulate(const Graph& graph, const Steps& plan, const DeviceProfile& device, const CostTable* costs,
                   const LatencyOptions& latency, const SimOptions& options) {
  return Simulator(graph, device, costs, latency).Run(plan, options);
}

}  // namespace memfit::sim
