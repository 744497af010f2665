#include "report/pareto_data.h"

namespace memfit::report {
namespace {

template <typename T>
nlohmann::ordered_json Optional(const std::optional<T>& value) {
  return value ? nlohmann::ordered_json(*value) : nlohmann::ordered_json(nullptr);
}

}  // namespace

nlohmann::ordered_json ParetoData(const ParetoSweep& sweep) {
  nlohmann::ordered_json data;
  data["format"] = "memfit.pareto";
  data["version"] = 1;
  data["title"] = sweep.graph + " — memory against latency";
  data["device"] = sweep.device;
  data["original"] = {{"peak_bytes", sweep.original_peak_bytes}, {"latency_ms", sweep.original_latency_ms}};
  nlohmann::ordered_json points = nlohmann::ordered_json::array();
  for (const ParetoPoint& p : sweep.points) {
    nlohmann::ordered_json j;
    j["method"] = p.method;
    j["ratio"] = p.ratio;
    j["limit_bytes"] = p.limit_bytes;
    j["peak_bytes"] = Optional(p.peak_bytes);
    j["arena_bytes"] = Optional(p.arena_bytes);
    j["latency_ms"] = Optional(p.latency_ms);
    j["overhead"] = p.latency_ms && sweep.original_latency_ms > 0
                        ? nlohmann::ordered_json(*p.latency_ms / sweep.original_latency_ms - 1)
                        : nlohmann::ordered_json(nullptr);
    j["found_by"] = p.found_by;
    j["seconds"] = Optional(p.seconds);
    j["error"] = p.error;
    points.push_back(std::move(j));
  }
  data["points"] = std::move(points);
  return data;
}

nlohmann::ordered_json DtrSweepData(const DtrSweep& sweep) {
  nlohmann::ordered_json points = nlohmann::ordered_json::array();
  for (const DtrSweepPoint& p : sweep.points) {
    const nlohmann::ordered_json overhead = p.status == "ok" ? nlohmann::ordered_json(p.overhead) : nullptr;
    points.push_back({{"heuristic", p.heuristic}, {"ratio", p.ratio}, {"budget_bytes", p.budget_bytes},
                      {"status", p.status}, {"overhead", overhead}, {"peak_bytes", p.peak_bytes},
                      {"evictions", p.evictions}, {"recomputations", p.recomputations}});
  }
  return {{"format", "memfit.dtr-sweep"},
          {"version", 1},
          {"title", sweep.trace + " — DTR overhead against budget"},
          {"unconstrained", {{"peak_bytes", sweep.unconstrained_peak_bytes}, {"compute_ns", sweep.unconstrained_compute_ns}}},
          {"points", std::move(points)}};
}

}  // namespace memfit::report
