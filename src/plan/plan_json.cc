#include "plan/plan_json.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "io/graph_json.h"
#include "plan/plan_check.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "util/error.h"
#include "util/json.h"

namespace memfit {
namespace {

using ordered_json = nlohmann::ordered_json;

constexpr int kVersion = 2;

uint32_t Index(const JsonNode& j, size_t limit) {
  const int64_t v = j.Int();
  if (v < 0 || static_cast<uint64_t>(v) >= limit) j.Fail(fmt::format("id {} is out of range", v));
  return static_cast<uint32_t>(v);
}

// The header, graph and steps (with their times, when every step has them).
struct Parsed {
  std::string source;
  JsonValue root;
  int version = kVersion;
  Plan plan;
};

void ParseSteps(std::string_view text, Parsed& p) {
  p.root = ParseJson(text, p.source);
  const JsonNode root(p.root, p.source);
  root.ExpectFields({"format", "version", "graph", "steps", "buffers", "alignment", "arena_bytes",
                     "lower_bound_bytes", "proven_optimal", "planner", "simulated", "decisions", "workspace_bytes"});
  const JsonNode format = root.Get("format");
  if (!format.IsString() || format.String() != "memfit.plan") format.Fail("expected \"memfit.plan\"");
  const JsonNode version = root.Get("version");
  if (version.Int() != 1 && version.Int() != kVersion) {
    version.Fail(fmt::format("unsupported version {} (1 or 2)", version.Int()));
  }
  p.version = static_cast<int>(version.Int());
  Plan& plan = p.plan;
  plan.graph = GraphFromJson(root.Get("graph"));
  const Graph& g = plan.graph;
  const JsonNode steps = root.Get("steps");
  size_t timed = 0;
  for (const JsonNode& s : steps.Elements()) {
    s.ExpectFields({"kind", "op", "storage", "start_us", "end_us"});
    const JsonNode kind_json = s.Get("kind");
    auto kind = kind_json.IsString() ? ParseStepKind(kind_json.String()) : std::nullopt;
    if (!kind) kind_json.Fail(fmt::format("unknown step kind {}", kind_json.Describe()));
    Step step;
    step.kind = *kind;
    if (IsOpStep(*kind)) {
      step.op = OpId(Index(s.Get("op"), g.num_ops()));
      if (*kind == StepKind::kCompute) plan.placement.order.push_back(*step.op);
    } else {
      step.storage = TensorId(Index(s.Get("storage"), g.num_tensors()));
    }
    if (s.Has("start_us") || s.Has("end_us")) {
      plan.placement.step_times.push_back({s.Get("start_us").Number(), s.Get("end_us").Number()});
      ++timed;
    }
    plan.steps.steps.push_back(step);
  }
  if (timed != 0 && timed != steps.Size()) steps.Fail("either every step has start_us and end_us or none");
  const auto problems = CheckSteps(g, plan.steps, 1);
  if (!problems.empty()) Fail("{}: the steps are malformed: {}", p.source, problems.front());
}

// Version 1 counted lifetimes in positions of the op order (position p: the
// p-th compute step); maps them to step indices, and times the steps on the
// a100 profile. Without copies no release waits for time, so any timeline
// gives the same required lifetimes.
void UpgradeVersion1(Plan& plan, std::string_view source) {
  const auto Bad = [&](const std::string& path, const std::string& message) { Fail("{}: {}: {}", source, path, message); };
  std::vector<int64_t> step_of;  // by position; one past the end: the step count
  for (size_t i = 0; i < plan.steps.steps.size(); ++i) {
    const StepKind kind = plan.steps.steps[i].kind;
    if (kind == StepKind::kCompute) step_of.push_back(static_cast<int64_t>(i));
    if (kind != StepKind::kCompute && kind != StepKind::kFree) {
      Bad(fmt::format("steps[{}]", i), "a version 1 plan has compute and free steps only (write version 2)");
    }
  }
  step_of.push_back(static_cast<int64_t>(plan.steps.steps.size()));
  const int64_t positions = static_cast<int64_t>(step_of.size()) - 1;
  for (size_t k = 0; k < plan.placement.buffers.size(); ++k) {
    PlacedBuffer& b = plan.placement.buffers[k];
    if (b.start < 0 || b.end <= b.start || b.end > positions) {
      Bad(fmt::format("buffers[{}]", k), fmt::format("[{}, {}) is not an interval of the {} ops", b.start, b.end, positions));
    }
    b.start = step_of[b.start];
    b.end = step_of[b.end];
  }
  plan.placement.step_times = StepTimes(sim::Simulator(plan.graph, sim::FindDevice("a100")), plan.steps);
}

}  // namespace

bool LooksLikePlan(std::string_view text) {
  // A "format" key whose value is "memfit.plan", anywhere: memfit writes it
  // first, a hand-edited file may move it after the graph.
  constexpr std::string_view kKey = "\"format\"", kValue = "\"memfit.plan\"";
  const auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  for (size_t at = text.find(kKey); at != std::string_view::npos; at = text.find(kKey, at + 1)) {
    size_t i = at + kKey.size();
    while (i < text.size() && blank(text[i])) ++i;
    if (i == text.size() || text[i] != ':') continue;
    ++i;
    while (i < text.size() && blank(text[i])) ++i;
    if (text.substr(i, kValue.size()) == kValue) return true;
  }
  return false;
}

std::string PlanToJson(const Plan& plan, const nlohmann::ordered_json& decisions) {
  ordered_json root;
  root["format"] = "memfit.plan";
  root["version"] = kVersion;
  root["graph"] = GraphToJsonValue(plan.graph);
  const std::vector<StepTime>& times = plan.placement.step_times;
  const bool timed = times.size() == plan.steps.steps.size();
  ordered_json steps = ordered_json::array();
  for (size_t i = 0; i < plan.steps.steps.size(); ++i) {
    const Step& step = plan.steps.steps[i];
    ordered_json s;
    s["kind"] = ToString(step.kind);
    if (step.op) s["op"] = step.op->value;
    if (step.storage) s["storage"] = step.storage->value;
    if (timed) {
      s["start_us"] = times[i].start_us;
      s["end_us"] = times[i].end_us;
    }
    steps.push_back(std::move(s));
  }
  root["steps"] = std::move(steps);
  ordered_json buffers = ordered_json::array();
  for (const PlacedBuffer& b : plan.placement.buffers) {
    ordered_json j;
    if (b.storage) j["storage"] = b.storage->value;
    if (b.workspace_of) j["workspace_of"] = b.workspace_of->value;
    j["offset"] = b.offset_bytes;
    j["size"] = b.size_bytes;
    j["start"] = b.start;
    j["end"] = b.end;
    buffers.push_back(std::move(j));
  }
  root["buffers"] = std::move(buffers);
  if (!plan.placement.workspace_bytes.empty()) root["workspace_bytes"] = plan.placement.workspace_bytes;
  root["alignment"] = plan.placement.alignment_bytes;
  root["arena_bytes"] = plan.placement.arena_bytes;
  root["lower_bound_bytes"] = plan.placement.lower_bound_bytes;
  root["proven_optimal"] = plan.placement.proven_optimal;
  root["planner"] = plan.placement.planner;
  if (plan.simulated) {
    root["simulated"] = {{"device", plan.simulated->device},
                         {"latency_ms", plan.simulated->latency_ms},
                         {"peak_bytes", plan.simulated->peak_bytes}};
  }
  if (!decisions.is_null()) root["decisions"] = decisions;
  return root.dump(1, ' ', false, ordered_json::error_handler_t::replace) + "\n";
}

Plan PlanStepsFromJson(std::string_view text, std::string_view source) {
  Parsed parsed;
  parsed.source = std::string(source);
  ParseSteps(text, parsed);
  parsed.plan.placement.step_times.clear();
  return std::move(parsed.plan);
}

Plan PlanFromJson(std::string_view text, std::string_view source) {
  Parsed parsed;
  parsed.source = std::string(source);
  ParseSteps(text, parsed);
  const JsonNode root(parsed.root, parsed.source);
  Plan& plan = parsed.plan;
  const Graph& g = plan.graph;
  if (parsed.version == kVersion && plan.placement.step_times.size() != plan.steps.steps.size()) {
    root.Get("steps").Fail("every step needs start_us and end_us (the simulated timeline the buffers are planned for)");
  }
  if (!root.Has("buffers")) Fail("{}: buffers: missing: place the steps with `memfit plan` first", source);
  for (const JsonNode& j : root.Get("buffers").Elements()) {
    j.ExpectFields({"storage", "workspace_of", "offset", "size", "start", "end"});
    PlacedBuffer b;
    if (auto storage = j.Find("storage")) b.storage = TensorId(Index(*storage, g.num_tensors()));
    if (auto workspace = j.Find("workspace_of")) b.workspace_of = OpId(Index(*workspace, g.num_ops()));
    if (b.storage.has_value() == b.workspace_of.has_value()) j.Fail("needs exactly one of 'storage' and 'workspace_of'");
    b.offset_bytes = j.Get("offset").Int();
    b.size_bytes = j.Get("size").Int();
    b.start = j.Get("start").Int();
    b.end = j.Get("end").Int();
    plan.placement.buffers.push_back(b);
  }
  if (auto workspace = root.Find("workspace_bytes")) {
    for (const JsonNode& bytes : workspace->Elements()) {
      const int64_t v = bytes.Int();
      if (v < 0 || v > kMaxTensorBytes) bytes.Fail(fmt::format("must be from 0 to {} bytes, got {}", kMaxTensorBytes, v));
      plan.placement.workspace_bytes.push_back(v);
    }
    if (plan.placement.workspace_bytes.size() != g.num_ops()) {
      workspace->Fail(fmt::format("has {} figures; the graph has {} ops", plan.placement.workspace_bytes.size(),
                                  g.num_ops()));
    }
  }
  plan.placement.alignment_bytes = root.Get("alignment").Int();
  plan.placement.arena_bytes = root.Get("arena_bytes").Int();
  if (auto lower = root.Find("lower_bound_bytes")) plan.placement.lower_bound_bytes = lower->Int();
  if (auto optimal = root.Find("proven_optimal")) plan.placement.proven_optimal = optimal->Bool();
  if (auto planner = root.Find("planner")) plan.placement.planner = planner->String();
  if (auto s = root.Find("simulated")) {
    s->ExpectFields({"device", "latency_ms", "peak_bytes"});
    SimulatedFigures f;
    if (auto device = s->Find("device")) f.device = device->String();
    if (auto latency = s->Find("latency_ms")) f.latency_ms = latency->Number();
    if (auto peak = s->Find("peak_bytes")) f.peak_bytes = peak->Int();
    plan.simulated = f;
  }
  if (parsed.version == 1) UpgradeVersion1(plan, source);
  const auto problems = CheckPlacement(g, plan.steps, plan.placement);
  if (!problems.empty()) Fail("{}: the plan fails the checker: {}", source, problems.front());
  return std::move(plan);
}

}  // namespace memfit
