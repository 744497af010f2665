#include "report/report_data.h"

#include <algorithm>

#include "optimize/latency_bound.h"
#include "plan/steps.h"
#include "report/arena.h"
#include "report/decisions.h"
#include "report/memory_curve.h"
#include "report/roles.h"
#include "sim/simulator.h"
#include "transform/fission.h"
#include "transform/out_of_place.h"

namespace memfit::report {
namespace {

using Json = nlohmann::ordered_json;

template <typename T>
Json Optional(const std::optional<T>& value) {
  return value ? Json(*value) : Json(nullptr);
}

// The simulator's run of a plan, with its memory curve.
struct Replay {
  sim::SimResult result;
  MemoryCurve curve;
};

Replay Run(const sim::Simulator& simulator, const Steps& steps) {
  Replay r;
  r.result = simulator.Run(steps, {.record_timeline = true, .record_memory = true});
  r.curve = ComputeMemoryCurve(simulator.graph(), steps, r.result);
  return r;
}

Json TotalCurve(const MemoryCurve& curve) {
  Json time = Json::array(), total = Json::array();
  for (size_t p = 0; p < curve.time_us.size(); ++p) {
    time.push_back(curve.time_us[p]);
    int64_t sum = 0;
    for (int64_t b : curve.device[p]) sum += b;
    total.push_back(sum);
  }
  return Json{{"time_us", std::move(time)}, {"total", std::move(total)}};
}

Json Summary(const ReportPlan& plan, const sim::Simulator& simulator, const Replay& replay, const Replay& original) {
  const double latency = replay.result.latency_us, reference = original.result.latency_us;
  Json s;
  s["label"] = plan.label;
  s["graph"] = plan.plan.graph.name;
  s["limit_bytes"] = Optional(plan.solve.limit_bytes);
  s["latency_limit_ms"] = Optional(plan.solve.latency_limit_ms);
  // Under a latency limit: the least memory any plan of this graph (the
  // plan's, fissioned or not) needs within it.
  std::optional<int64_t> bound;
  if (plan.solve.latency_limit_ms) {
    if (const auto b = MemoryBoundAtLatency(simulator, *plan.solve.latency_limit_ms * 1e3)) bound = b->bytes;
  }
  s["latency_bound_bytes"] = Optional(bound);
  s["peak_bytes"] = replay.result.peak_bytes;
  s["arena_bytes"] = plan.plan.placement.arena_bytes;
  s["lower_bound_bytes"] = plan.plan.placement.lower_bound_bytes;
  s["proven_optimal"] = plan.plan.placement.proven_optimal;
  s["planner"] = plan.plan.placement.planner;
  s["latency_ms"] = latency * 1e-3;
  s["original_peak_bytes"] = original.result.peak_bytes;
  s["original_latency_ms"] = reference * 1e-3;
  s["overhead"] = reference > 0 ? latency / reference - 1 : 0.0;
  s["method"] = plan.solve.method;
  s["scheduler"] = plan.solve.scheduler;
  s["solve_seconds"] = Optional(plan.solve.seconds);
  s["steps"] = plan.plan.steps.steps.size();
  s["buffers"] = plan.plan.placement.buffers.size();
  s["recompute_ms"] = replay.result.recompute_us * 1e-3;
  s["swap_out_bytes"] = replay.result.swap_out_bytes;
  s["peak_host_bytes"] = replay.curve.peak_host_bytes;
  s["rewrites"] = RecordedRewrites(plan.plan.graph);
  s["fissions"] = RecordedFissions(plan.plan.graph);
  return s;
}

}  // namespace

nlohmann::ordered_json ReportData(const ReportPlan& plan, const ReportOptions& options) {
  const Graph& graph = plan.plan.graph;
  const Steps& steps = plan.plan.steps;
  const sim::Simulator simulator(graph, options.device, options.costs, options.latency);
  const Replay replay = Run(simulator, steps);
  const Replay original = Run(simulator, ProgramOrderSteps(graph));

  Json data;
  data["format"] = "memfit.report";
  data["version"] = 1;
  data["title"] = graph.name + " — " + plan.label;
  data["device"] = options.device.name;
  Json roles = Json::array();
  for (size_t r = 0; r < kNumReportRoles; ++r) roles.push_back(std::string(ToString(static_cast<ReportRole>(r))));
  data["roles"] = std::move(roles);

  data["summary"] = Json::array({Summary(plan, simulator, replay, original)});

  // Memory over time: one column per role.
  {
    const MemoryCurve& c = replay.curve;
    Json by_role = Json::array();
    for (size_t r = 0; r < kNumReportRoles; ++r) {
      Json column = Json::array();
      for (const RoleBytes& b : c.device) column.push_back(b[r]);
      by_role.push_back(std::move(column));
    }
    data["memory"] = {{"time_us", c.time_us}, {"by_role", std::move(by_role)}, {"host", c.host}};
  }
  data["original"] = TotalCurve(original.curve);

  // The arena.
  {
    Json start = Json::array(), end = Json::array(), offset = Json::array(), size = Json::array(),
         role = Json::array(), storage = Json::array(), op = Json::array(), origin = Json::array();
    for (const ArenaRect& r : ArenaRects(graph, steps, plan.plan.placement)) {
      start.push_back(r.start);
      end.push_back(r.end);
      offset.push_back(r.offset);
      size.push_back(r.size);
      role.push_back(static_cast<int>(r.role));
      storage.push_back(r.storage ? static_cast<int64_t>(r.storage->value) : -1);
      op.push_back(r.op ? static_cast<int64_t>(r.op->value) : -1);
      origin.push_back(static_cast<int>(r.origin));
    }
    Json origins = Json::array();
    for (auto o : {InstanceOrigin::kSource, InstanceOrigin::kComputed, InstanceOrigin::kRecomputed,
                   InstanceOrigin::kSwappedIn, InstanceOrigin::kWorkspace}) {
      origins.push_back(std::string(ToString(o)));
    }
    data["arena"] = {{"arena_bytes", plan.plan.placement.arena_bytes},
                     {"start", std::move(start)}, {"end", std::move(end)},     {"offset", std::move(offset)},
                     {"size", std::move(size)},   {"role", std::move(role)},   {"storage", std::move(storage)},
                     {"op", std::move(op)},       {"origin", std::move(origin)}, {"origins", std::move(origins)}};
  }

  // The two streams: every step with its time (free steps take no time).
  {
    Json stream = Json::array(), kind = Json::array(), start = Json::array(), end = Json::array(),
         ref = Json::array();
    for (size_t i = 0; i < steps.steps.size(); ++i) {
      const Step& s = steps.steps[i];
      const sim::TimelineEntry& t = replay.result.timeline[i];
      stream.push_back(static_cast<int>(t.stream));
      kind.push_back(static_cast<int>(s.kind));
      start.push_back(t.start_us);
      end.push_back(t.end_us);
      ref.push_back(s.op ? static_cast<int64_t>(s.op->value)
                         : static_cast<int64_t>(graph.StorageRoot(*s.storage).value));
    }
    Json kinds = Json::array();
    for (auto k : {StepKind::kCompute, StepKind::kRecompute, StepKind::kSwapOut,
                   StepKind::kSwapIn, StepKind::kFree}) {
      kinds.push_back(std::string(ToString(k)));
    }
    data["steps"] = {{"stream", std::move(stream)}, {"kind", std::move(kind)}, {"start_us", std::move(start)},
                     {"end_us", std::move(end)},     {"ref", std::move(ref)},   {"kinds", std::move(kinds)},
                     {"streams", Json::array({"compute", "copy", "-"})}};
  }

  // Names for the tooltips.
  {
    Json name = Json::array(), producer = Json::array(), bytes = Json::array(), op_name = Json::array(),
         op_type = Json::array();
    for (const Tensor& t : graph.tensors()) {
      name.push_back(t.name);
      producer.push_back(t.producer ? static_cast<int64_t>(t.producer->value) : -1);
      bytes.push_back(t.size_bytes());
    }
    for (const Op& o : graph.ops()) {
      op_name.push_back(o.name);
      op_type.push_back(o.type);
    }
    data["tensors"] = {{"name", std::move(name)}, {"producer", std::move(producer)}, {"bytes", std::move(bytes)}};
    data["ops"] = {{"name", std::move(op_name)}, {"type", std::move(op_type)}, {"part", FissionParts(graph)}};
  }

  // The decisions.
  {
    Json kind = Json::array(), step = Json::array(), until = Json::array(), bytes = Json::array(),
         why = Json::array();
    for (const Decision& d : PlanDecisions(graph, steps, replay.result.timeline)) {
      kind.push_back(std::string(ToString(d.kind)));
      step.push_back(d.step);
      until.push_back(Optional(d.until_step));
      bytes.push_back(d.bytes);
      why.push_back(d.why);
    }
    data["decisions"] = {{"kind", std::move(kind)}, {"step", std::move(step)}, {"until", std::move(until)},
                         {"bytes", std::move(bytes)}, {"why", std::move(why)}};
  }
  Json trace = Json::array();
  for (const TraceEvent& e : plan.solve.trace) {
    trace.push_back({{"seconds", e.seconds},
                     {"stage", e.stage},
                     {"schedule", e.schedule},
                     {"method", e.method},
                     {"budget_bytes", Optional(e.budget_bytes)},
                     {"peak_bytes", Optional(e.peak_bytes)},
                     {"arena_bytes", Optional(e.arena_bytes)},
                     {"latency_ms", Optional(e.latency_ms)},
                     {"outcome", e.outcome}});
  }
  data["trace"] = std::move(trace);

  data["compare"] = nullptr;
  if (options.compare) {
    const ReportPlan& other = *options.compare;
    const sim::Simulator other_simulator(other.plan.graph, options.device, options.costs, options.latency);
    const Replay other_replay = Run(other_simulator, other.plan.steps);
    const Replay other_original = Run(other_simulator, ProgramOrderSteps(other.plan.graph));
    data["summary"].push_back(Summary(other, other_simulator, other_replay, other_original));
    Json curve = TotalCurve(other_replay.curve);
    curve["label"] = other.label;
    data["compare"] = std::move(curve);
  }
  data["measured"] = options.measured
                         ? MeasuredCurve(*options.measured, replay.result.timeline, options.measured_source)
                         : Json(nullptr);
  return data;
}

}  // namespace memfit::report
