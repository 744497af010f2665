#include "report/memory_curve.h"

#include <algorithm>
#include <numeric>

#include "util/error.h"

namespace memfit::report {
namespace {

struct HostChange {
  double time_us;
  int64_t delta_bytes;
};

int64_t Total(const RoleBytes& bytes) { return std::accumulate(bytes.begin(), bytes.end(), int64_t{0}); }

}  // namespace

MemoryCurve ComputeMemoryCurve(const Graph& graph, const Steps& steps, const sim::SimResult& result) {
  if (result.timeline.size() != steps.steps.size()) {
    Fail("report: the simulation has {} timeline entries for {} steps", result.timeline.size(), steps.steps.size());
  }
  // Host changes, from the steps and their times.
  std::vector<HostChange> host_changes;
  std::vector<uint8_t> on_host(graph.num_tensors(), 0);
  for (size_t i = 0; i < steps.steps.size(); ++i) {
    const Step& step = steps.steps[i];
    if (!step.storage) continue;
    const TensorId root = graph.StorageRoot(*step.storage);
    const int64_t bytes = graph.tensor(root).size_bytes();
    const sim::TimelineEntry& t = result.timeline[i];
    if (step.kind == StepKind::kSwapOut) {
      on_host[root.index()] = 1;
      host_changes.push_back({t.start_us, bytes});
    } else if (step.kind == StepKind::kSwapIn && on_host[root.index()]) {
      on_host[root.index()] = 0;
      host_changes.push_back({t.end_us, -bytes});
    } else if (step.kind == StepKind::kFree && on_host[root.index()]) {
      on_host[root.index()] = 0;
      host_changes.push_back({t.start_us, -bytes});
    }
  }
  std::stable_sort(host_changes.begin(), host_changes.end(),
                   [](const HostChange& a, const HostChange& b) { return a.time_us < b.time_us; });

  MemoryCurve curve;
  RoleBytes device{};
  int64_t host = 0;
  auto emit = [&](double time, const RoleBytes& bytes) {
    curve.time_us.push_back(time);
    curve.device.push_back(bytes);
    curve.host.push_back(host);
    curve.peak_device_bytes = std::max(curve.peak_device_bytes, Total(bytes));
    curve.peak_host_bytes = std::max(curve.peak_host_bytes, host);
  };
  const std::vector<sim::MemoryChange>& changes = result.memory;
  size_t d = 0, h = 0;
  while (d < changes.size() || h < host_changes.size()) {
    const double time = std::min(d < changes.size() ? changes[d].time_us : host_changes[h].time_us,
                                 h < host_changes.size() ? host_changes[h].time_us : changes[d].time_us);
    for (; h < host_changes.size() && host_changes[h].time_us == time; ++h) host += host_changes[h].delta_bytes;
    for (; d < changes.size() && changes[d].time_us == time; ++d) {
      const sim::MemoryChange& c = changes[d];
      const size_t role = static_cast<size_t>(
          c.storage ? RoleOf(graph.tensor(*c.storage).role) : ReportRole::kWorkspace);
      if (c.transient) {
        RoleBytes with = device;
        with[role] += c.delta_bytes;
        emit(time, with);
      } else {
        device[role] += c.delta_bytes;
      }
    }
    emit(time, device);
  }
  return curve;
}

}  // namespace memfit::report
