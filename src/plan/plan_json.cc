#include "plan/plan_json.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <set>

#include "io/graph_json.h"
#include "plan/plan_check.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "util/error.h"

namespace memfit {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

constexpr int kVersion = 2;

[[noreturn]] void Bad(std::string_view source, const std::string& path, const std::string& message) {
  Fail("{}: {}: {}", source, path, message);
}

int64_t Int(const json& j, std::string_view source, const std::string& path) {
  if (!j.is_number_integer()) Bad(source, path, fmt::format("expected an integer, got {}", j.dump()));
  return j.get<int64_t>();
}

double Number(const json& j, std::string_view source, const std::string& path) {
  if (!j.is_number()) Bad(source, path, fmt::format("expected a number, got {}", j.dump()));
  return j.get<double>();
}

uint32_t Index(const json& j, std::string_view source, const std::string& path, size_t limit) {
  const int64_t v = Int(j, source, path);
  if (v < 0 || static_cast<uint64_t>(v) >= limit) Bad(source, path, fmt::format("id {} is out of range", v));
  return static_cast<uint32_t>(v);
}

const json& Field(const json& j, std::string_view source, const std::string& path, const char* key) {
  if (!j.is_object()) Bad(source, path.empty() ? "(root)" : path, "expected an object");
  auto it = j.find(key);
  if (it == j.end()) Bad(source, path.empty() ? "(root)" : path, fmt::format("missing field '{}'", key));
  return *it;
}

// The header, graph and steps (with their times, when every step has them).
struct Parsed {
  json root;
  int version = kVersion;
  PlanFile plan;
};

Parsed ParseSteps(std::string_view text, std::string_view source) {
  Parsed p;
  try {
    p.root = json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    Fail("{}: malformed JSON: {}", source, e.what());
  }
  const json& root = p.root;
  if (!root.is_object() || root.value("format", "") != "memfit.plan") Bad(source, "format", "expected \"memfit.plan\"");
  const int64_t version = Int(Field(root, source, "", "version"), source, "version");
  if (version != 1 && version != kVersion) Bad(source, "version", fmt::format("unsupported version {} (1 or 2)", version));
  p.version = static_cast<int>(version);
  for (const auto& [key, unused] : root.items()) {
    static const std::set<std::string> known = {"format", "version", "graph", "steps", "buffers", "alignment",
                                                "arena_bytes", "lower_bound_bytes", "proven_optimal", "planner",
                                                "simulated"};
    if (!known.count(key)) Bad(source, key, "unknown field");
  }
  PlanFile& plan = p.plan;
  plan.graph = GraphFromJson(Field(root, source, "", "graph").dump(), fmt::format("{}: graph", source));
  const Graph& g = plan.graph;
  const json& steps = Field(root, source, "", "steps");
  if (!steps.is_array()) Bad(source, "steps", "expected an array");
  size_t timed = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    const std::string path = fmt::format("steps[{}]", i);
    const json& kind_json = Field(steps[i], source, path, "kind");
    auto kind = kind_json.is_string() ? sim::ParseStepKind(kind_json.get<std::string>()) : std::nullopt;
    if (!kind) Bad(source, path + ".kind", fmt::format("unknown step kind {}", kind_json.dump()));
    sim::Step step;
    step.kind = *kind;
    if (sim::IsOpStep(*kind)) {
      step.op = OpId(Index(Field(steps[i], source, path, "op"), source, path + ".op", g.num_ops()));
      if (*kind == sim::StepKind::kCompute) plan.memory.order.push_back(*step.op);
    } else {
      step.storage = TensorId(Index(Field(steps[i], source, path, "storage"), source, path + ".storage", g.num_tensors()));
    }
    for (const auto& [key, unused] : steps[i].items()) {
      static const std::set<std::string> known = {"kind", "op", "storage", "start_us", "end_us"};
      if (!known.count(key)) Bad(source, path + "." + key, "unknown field");
    }
    if (steps[i].contains("start_us") || steps[i].contains("end_us")) {
      plan.memory.step_times.push_back({Number(Field(steps[i], source, path, "start_us"), source, path + ".start_us"),
                                        Number(Field(steps[i], source, path, "end_us"), source, path + ".end_us")});
      ++timed;
    }
    plan.steps.steps.push_back(step);
  }
  if (timed != 0 && timed != steps.size()) Bad(source, "steps", "either every step has start_us and end_us or none");
  const auto problems = CheckSteps(g, plan.steps, 1);
  if (!problems.empty()) Fail("{}: the steps are malformed: {}", source, problems.front());
  return p;
}

// Version 1 counted lifetimes in positions of the op order (position p: the
// p-th compute step); maps them to step indices, and times the steps on the
// a100 profile. Without copies no release waits for time, so any timeline
// gives the same required lifetimes.
void UpgradeVersion1(PlanFile& plan, std::string_view source) {
  std::vector<int64_t> step_of;  // by position; one past the end: the step count
  for (size_t i = 0; i < plan.steps.steps.size(); ++i) {
    const sim::StepKind kind = plan.steps.steps[i].kind;
    if (kind == sim::StepKind::kCompute) step_of.push_back(static_cast<int64_t>(i));
    if (kind != sim::StepKind::kCompute && kind != sim::StepKind::kFree) {
      Bad(source, fmt::format("steps[{}]", i), "a version 1 plan has compute and free steps only (write version 2)");
    }
  }
  step_of.push_back(static_cast<int64_t>(plan.steps.steps.size()));
  const int64_t positions = static_cast<int64_t>(step_of.size()) - 1;
  for (size_t k = 0; k < plan.memory.buffers.size(); ++k) {
    PlacedBuffer& b = plan.memory.buffers[k];
    if (b.start < 0 || b.end <= b.start || b.end > positions) {
      Bad(source, fmt::format("buffers[{}]", k), fmt::format("[{}, {}) is not an interval of the {} ops", b.start, b.end, positions));
    }
    b.start = step_of[b.start];
    b.end = step_of[b.end];
  }
  plan.memory.step_times = StepTimes(sim::Simulator(plan.graph, sim::FindDevice("a100")), plan.steps);
}

}  // namespace

bool LooksLikePlan(std::string_view text) {
  return text.substr(0, 4096).find("\"memfit.plan\"") != std::string_view::npos;
}

std::string PlanToJson(const PlanFile& plan) {
  ordered_json root;
  root["format"] = "memfit.plan";
  root["version"] = kVersion;
  root["graph"] = ordered_json::parse(GraphToJson(plan.graph, -1));
  const std::vector<StepTime>& times = plan.memory.step_times;
  const bool timed = times.size() == plan.steps.steps.size();
  ordered_json steps = ordered_json::array();
  for (size_t i = 0; i < plan.steps.steps.size(); ++i) {
    const sim::Step& step = plan.steps.steps[i];
    ordered_json s;
    s["kind"] = sim::ToString(step.kind);
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
  for (const PlacedBuffer& b : plan.memory.buffers) {
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
  root["alignment"] = plan.memory.alignment_bytes;
  root["arena_bytes"] = plan.memory.arena_bytes;
  root["lower_bound_bytes"] = plan.memory.lower_bound_bytes;
  root["proven_optimal"] = plan.memory.proven_optimal;
  root["planner"] = plan.memory.planner;
  if (plan.simulated) {
    root["simulated"] = {{"device", plan.simulated->device},
                         {"latency_ms", plan.simulated->latency_ms},
                         {"peak_bytes", plan.simulated->peak_bytes}};
  }
  return root.dump(1) + "\n";
}

PlanFile PlanStepsFromJson(std::string_view text, std::string_view source) {
  PlanFile plan = ParseSteps(text, source).plan;
  plan.memory.step_times.clear();
  return plan;
}

PlanFile PlanFromJson(std::string_view text, std::string_view source) {
  Parsed parsed = ParseSteps(text, source);
  const json& root = parsed.root;
  PlanFile& plan = parsed.plan;
  const Graph& g = plan.graph;
  if (parsed.version == kVersion && plan.memory.step_times.size() != plan.steps.steps.size()) {
    Bad(source, "steps", "every step needs start_us and end_us (the simulated timeline the buffers are planned for)");
  }
  if (!root.contains("buffers")) Bad(source, "buffers", "missing: place the steps with `memfit plan` first");
  const json& buffers = root["buffers"];
  if (!buffers.is_array()) Bad(source, "buffers", "expected an array");
  for (size_t i = 0; i < buffers.size(); ++i) {
    const std::string path = fmt::format("buffers[{}]", i);
    const json& j = buffers[i];
    PlacedBuffer b;
    if (!j.is_object()) Bad(source, path, "expected an object");
    if (j.contains("storage")) b.storage = TensorId(Index(j["storage"], source, path + ".storage", g.num_tensors()));
    if (j.contains("workspace_of")) b.workspace_of = OpId(Index(j["workspace_of"], source, path + ".workspace_of", g.num_ops()));
    if (b.storage.has_value() == b.workspace_of.has_value()) Bad(source, path, "needs exactly one of 'storage' and 'workspace_of'");
    b.offset_bytes = Int(Field(j, source, path, "offset"), source, path + ".offset");
    b.size_bytes = Int(Field(j, source, path, "size"), source, path + ".size");
    b.start = Int(Field(j, source, path, "start"), source, path + ".start");
    b.end = Int(Field(j, source, path, "end"), source, path + ".end");
    plan.memory.buffers.push_back(b);
  }
  plan.memory.alignment_bytes = Int(Field(root, source, "", "alignment"), source, "alignment");
  plan.memory.arena_bytes = Int(Field(root, source, "", "arena_bytes"), source, "arena_bytes");
  plan.memory.lower_bound_bytes = root.contains("lower_bound_bytes") ? Int(root["lower_bound_bytes"], source, "lower_bound_bytes") : 0;
  plan.memory.proven_optimal = root.value("proven_optimal", false);
  plan.memory.planner = root.value("planner", "");
  if (root.contains("simulated")) {
    const json& s = root["simulated"];
    if (!s.is_object()) Bad(source, "simulated", "expected an object");
    SimulatedFigures f;
    f.device = s.value("device", "");
    f.latency_ms = s.value("latency_ms", 0.0);
    f.peak_bytes = s.value("peak_bytes", int64_t{0});
    plan.simulated = f;
  }
  if (parsed.version == 1) UpgradeVersion1(plan, source);
  const auto problems = CheckMemoryPlan(g, plan.steps, plan.memory);
  if (!problems.empty()) Fail("{}: the plan fails the checker: {}", source, problems.front());
  return std::move(plan);
}

}  // namespace memfit
