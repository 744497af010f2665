// Memory over time, stacked by role: the simulator's device allocations and
// releases (sim::SimResult::memory) swept in its order, plus the bytes held
// on the host by swapped-out storages.
//
// One point per distinct time: the bytes held after every change at that
// time (releases come first at equal times, so this is also the most held
// at that instant). The workspace of a zero-latency op is held only at its
// instant: it gets a point of its own at that time, then drops out. The
// largest device total over the points is the simulator's peak.
//
// Host bytes: a swap-out holds its storage's bytes on the host from the start
// of its copy; a swap-in returns them at the end of its copy; freeing a
// storage that is only on the host drops them.
#pragma once

#include <cstdint>
#include <vector>

#include "ir/graph.h"
#include "plan/steps.h"
#include "report/roles.h"
#include "sim/simulator.h"

namespace memfit::report {

struct MemoryCurve {
  std::vector<double> time_us;
  std::vector<RoleBytes> device;  // per point, by role
  std::vector<int64_t> host;      // per point
  int64_t peak_device_bytes = 0;  // the largest device total
  int64_t peak_host_bytes = 0;
};

// `result` must come from running `steps` with record_timeline and
// record_memory.
MemoryCurve ComputeMemoryCurve(const Graph& graph, const Steps& steps, const sim::SimResult& result);

}  // namespace memfit::report
