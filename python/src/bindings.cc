// _memfit: Python bindings over libmemfit. Graphs and plans cross the
// boundary as JSON text, results as dicts; memfit::Error becomes
// _memfit.Error (a subclass of ValueError).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "analysis/liveness.h"
#include "analysis/stats.h"
#include "autodiff/training_graph.h"
#include "io/graph_json.h"
#include "models/zoo.h"
#include "plan/memory_plan.h"
#include "plan/plan_json.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "util/error.h"
#include "util/file.h"

namespace py = pybind11;
using namespace memfit;

namespace {

Graph ParseGraph(const std::string& text) { return GraphFromJson(text, "<python>"); }

py::dict StatsDict(const Graph& g) {
  const GraphStats s = ComputeStats(g);
  py::dict d;
  d["ops"] = s.ops;
  d["tensors"] = s.tensors;
  d["param_count"] = s.param_count;
  d["param_bytes"] = s.param_bytes;
  d["activation_bytes"] = s.activation_bytes;
  d["gradient_bytes"] = s.gradient_bytes;
  d["optimizer_state_bytes"] = s.optimizer_state_bytes;
  d["flops"] = s.flops;
  d["peak_bytes"] = s.peak_bytes;
  d["peak_op"] = s.peak_op;
  return d;
}

}  // namespace

PYBIND11_MODULE(_memfit, m) {
  m.doc() = "memfit's C++ core: zoo, autodiff, validation, stats, planning, simulation";
  static py::exception<Error> error(m, "Error", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      error(e.what());
    }
  });

  m.def("zoo_models", [] {
    std::vector<std::string> names;
    for (const ZooModel& z : ZooModels()) names.push_back(z.name);
    return names;
  }, "Names of the zoo models.");
  m.def(
      "zoo",
      [](const std::string& name, int64_t batch, int64_t seq, int64_t image, bool train, const std::string& optimizer,
         bool update) {
        ZooOptions o;
        o.batch = batch;
        o.seq = seq;
        o.image = image;
        Graph g = BuildZooModel(name, o);
        if (train) {
          TrainingOptions t;
          const auto kind = ParseOptimizerKind(optimizer);
          if (!kind) Fail("optimizer: expected sgd or adam, got '{}'", optimizer);
          t.optimizer = *kind;
          t.update_weights = update;
          g = BuildTrainingGraph(g, t);
        }
        return GraphToJson(g);
      },
      py::arg("name"), py::arg("batch") = 0, py::arg("seq") = 0, py::arg("image") = 0, py::arg("train") = false,
      py::arg("optimizer") = "sgd", py::arg("update") = true, "A zoo model's graph as memfit JSON text.");
  m.def("load", [](const std::string& path) { return GraphToJson(LoadGraph(path)); }, py::arg("path"),
        "Loads and validates a graph file; returns its JSON text.");
  m.def("save", [](const std::string& text, const std::string& path) { SaveGraph(ParseGraph(text), path); },
        py::arg("graph_json"), py::arg("path"), "Validates graph JSON text and writes it atomically.");
  m.def("validate", [](const std::string& text) { ParseGraph(text); }, py::arg("graph_json"),
        "Raises _memfit.Error naming the first problem of the graph.");
  m.def("stats", [](const std::string& text) { return StatsDict(ParseGraph(text)); }, py::arg("graph_json"));
  m.def(
      "plan",
      [](const std::string& text, const std::string& device, double time_limit) {
        PlanFile file;
        file.graph = ParseGraph(text);
        MemoryPlanOptions options;
        options.time_limit_seconds = time_limit;
        file.memory = PlanMemory(file.graph, ProgramOrder(file.graph), options);
        file.steps = sim::PlanFromOrder(file.graph, file.memory.order);
        const sim::DeviceProfile profile = sim::ResolveDevice(device);
        const sim::SimResult r = sim::Simulator(file.graph, profile).Run(file.steps);
        file.simulated = SimulatedFigures{profile.name, r.latency_ms(), r.peak_bytes};
        return PlanToJson(file);
      },
      py::arg("graph_json"), py::arg("device") = "a100", py::arg("time_limit") = 5.0,
      "Plans offsets for program order; returns PLAN.json text (checked).");
  m.def(
      "simulate",
      [](const std::string& text, const std::string& device) {
        Graph graph;
        sim::Plan steps;
        if (LooksLikePlan(text)) {
          PlanFile file = PlanFromJson(text, "<python>");
          graph = std::move(file.graph);
          steps = std::move(file.steps);
        } else {
          graph = ParseGraph(text);
          steps = sim::ProgramOrderPlan(graph);
        }
        const sim::SimResult r = sim::Simulator(graph, sim::ResolveDevice(device)).Run(steps);
        py::dict d;
        d["latency_ms"] = r.latency_ms();
        d["peak_bytes"] = r.peak_bytes;
        d["compute_busy_ms"] = r.compute_busy_us * 1e-3;
        d["copy_busy_ms"] = r.copy_busy_us * 1e-3;
        return d;
      },
      py::arg("graph_or_plan_json"), py::arg("device") = "a100");
}
