#include "plan/plan_json.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <set>

#include "io/graph_json.h"
#include "plan/plan_check.h"
#include "util/error.h"

namespace memfit {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

[[noreturn]] void Bad(std::string_view source, const std::string& path, const std::string& message) {
  Fail("{}: {}: {}", source, path, message);
}

int64_t Int(const json& j, std::string_view source, const std::string& path) {
  if (!j.is_number_integer()) Bad(source, path, fmt::format("expected an integer, got {}", j.dump()));
  return j.get<int64_t>();
}

uint32_t Index(const json& j, std::string_view source, const std::string& path, size_t limit) {
  const int64_t v = Int(j, source, path);
  if (v < 0 || static_cast<uint64_t>(v) >= limit) Bad(source, path, fmt::format("id {} is out of range", v));
  return static_cast<uint32_t>(v);
}

const json& Field(const json& j, std::string_view source, const std::string& path, const char* key) {
  if (!j.is_object()) Bad(source, path, "expected an object");
  auto it = j.find(key);
  if (it == j.end()) Bad(source, path, fmt::format("missing field '{}'", key));
  return *it;
}

}  // namespace

bool LooksLikePlan(std::string_view text) {
  return text.substr(0, 4096).find("\"memfit.plan\"") != std::string_view::npos;
}

std::string PlanToJson(const PlanFile& plan) {
  ordered_json root;
  root["format"] = "memfit.plan";
  root["version"] = 1;
  root["graph"] = ordered_json::parse(GraphToJson(plan.graph, -1));
  ordered_json steps = ordered_json::array();
  for (const sim::Step& step : plan.steps.steps) {
    ordered_json s;
    s["kind"] = sim::ToString(step.kind);
    if (step.op) s["op"] = step.op->value;
    if (step.storage) s["storage"] = step.storage->value;
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

PlanFile PlanFromJson(std::string_view text, std::string_view source) {
  json root;
  try {
    root = json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    Fail("{}: malformed JSON: {}", source, e.what());
  }
  if (!root.is_object() || root.value("format", "") != "memfit.plan") Bad(source, "format", "expected \"memfit.plan\"");
  if (Int(Field(root, source, "", "version"), source, "version") != 1) Bad(source, "version", "unsupported version");
  for (const auto& [key, unused] : root.items()) {
    static const std::set<std::string> known = {"format", "version", "graph", "steps", "buffers", "alignment",
                                                "arena_bytes", "lower_bound_bytes", "proven_optimal", "planner",
                                                "simulated"};
    if (!known.count(key)) Bad(source, key, "unknown field");
  }
  PlanFile plan;
  plan.graph = GraphFromJson(Field(root, source, "", "graph").dump(), fmt::format("{}: graph", source));
  const Graph& g = plan.graph;
  const json& steps = Field(root, source, "", "steps");
  if (!steps.is_array()) Bad(source, "steps", "expected an array");
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
    plan.steps.steps.push_back(step);
  }
  const json& buffers = Field(root, source, "", "buffers");
  if (!buffers.is_array()) Bad(source, "buffers", "expected an array");
  for (size_t i = 0; i < buffers.size(); ++i) {
    const std::string path = fmt::format("buffers[{}]", i);
    const json& j = buffers[i];
    PlacedBuffer b;
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
    SimulatedFigures f;
    f.device = s.value("device", "");
    f.latency_ms = s.value("latency_ms", 0.0);
    f.peak_bytes = s.value("peak_bytes", int64_t{0});
    plan.simulated = f;
  }
  const auto problems = CheckMemoryPlan(g, plan.memory);
  if (!problems.empty()) Fail("{}: the plan fails the checker: {}", source, problems.front());
  return plan;
}

}  // namespace memfit
