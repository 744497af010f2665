#include "report/arena.h"

#include "util/enum_names.h"
#include "util/error.h"

namespace memfit::report {

constexpr EnumName<InstanceOrigin> kInstanceOriginNames[] = {
    {InstanceOrigin::kSource, "source"}, {InstanceOrigin::kComputed, "computed"},
    {InstanceOrigin::kRecomputed, "recomputed"}, {InstanceOrigin::kSwappedIn, "swapped in"},
    {InstanceOrigin::kWorkspace, "workspace"}};

std::string_view ToString(InstanceOrigin origin) { return NameOf(kInstanceOriginNames, origin); }

std::vector<ArenaRect> ArenaRects(const Graph& graph, const Steps& steps, const Placement& memory) {
  const int64_t n = static_cast<int64_t>(steps.steps.size());
  std::vector<ArenaRect> rects;
  rects.reserve(memory.buffers.size());
  for (size_t k = 0; k < memory.buffers.size(); ++k) {
    const PlacedBuffer& b = memory.buffers[k];
    if (b.start < 0 || b.end > n || b.start >= b.end) {
      Fail("report: buffers[{}]: steps [{}, {}) are not an interval of the plan's {} steps", k, b.start, b.end, n);
    }
    ArenaRect r;
    r.start = b.start;
    r.end = b.end;
    r.offset = b.offset_bytes;
    r.size = b.size_bytes;
    if (b.workspace_of) {
      r.role = ReportRole::kWorkspace;
      r.op = b.workspace_of;
      r.origin = InstanceOrigin::kWorkspace;
    } else if (b.storage) {
      const Tensor& t = graph.tensor(*b.storage);
      r.role = RoleOf(t.role);
      r.storage = b.storage;
      r.op = t.producer;
      const Step& first = steps.steps[static_cast<size_t>(b.start)];
      // A source's first instance starts at step 0 whatever that step is.
      const bool created_here = (first.kind == StepKind::kSwapIn && first.storage &&
                                 graph.StorageRoot(*first.storage) == *b.storage) ||
                                (IsOpStep(first.kind) && t.producer && first.op == t.producer);
      if (!created_here) {
        r.origin = InstanceOrigin::kSource;
      } else if (first.kind == StepKind::kSwapIn) {
        r.origin = InstanceOrigin::kSwappedIn;
      } else {
        r.origin = first.kind == StepKind::kRecompute ? InstanceOrigin::kRecomputed : InstanceOrigin::kComputed;
      }
    }
    rects.push_back(r);
  }
  return rects;
}

}  // namespace memfit::report
