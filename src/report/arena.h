// The arena as rectangles: every storage instance (and op workspace) of a
// Placement as steps [start, end) x bytes [offset, offset + size), with the
// role it is coloured by and how the instance came to be on the device.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "ir/graph.h"
#include "plan/placement.h"
#include "plan/steps.h"
#include "report/roles.h"

namespace memfit::report {

enum class InstanceOrigin : uint8_t {
  kSource,     // on the device before step 0 (parameters, optimizer state, inputs)
  kComputed,   // allocated by its op's compute step
  kRecomputed, // allocated again by a recompute step
  kSwappedIn,  // copied back from the host
  kWorkspace,  // an op step's scratch memory
};
// "source", "computed", "recomputed", "swapped in", "workspace".
std::string_view ToString(InstanceOrigin origin);

struct ArenaRect {
  int64_t start = 0, end = 0;       // steps [start, end)
  int64_t offset = 0, size = 0;     // bytes
  ReportRole role = ReportRole::kActivations;
  std::optional<TensorId> storage;  // the storage's root (unset for a workspace)
  std::optional<OpId> op;           // the producer of the storage, or the workspace's op
  InstanceOrigin origin = InstanceOrigin::kComputed;
};

// One rectangle per buffer of `memory`, in its order. Throws Error when a
// buffer names a step outside `steps`.
std::vector<ArenaRect> ArenaRects(const Graph& graph, const Steps& steps, const Placement& memory);

}  // namespace memfit::report
