// _memfit: Python bindings over libmemfit. Graphs and plans cross the
// boundary as JSON text, results as dicts; memfit::Error becomes
// memfit.Error (memfit.graph.Error, a subclass of ValueError) when the
// memfit package is importable, else _memfit.Error (also a ValueError), so
// Python has one error class for native and Python errors. The Python
// wrappers are memfit.native (memfit.optimize, memfit.simulate,
// memfit.plan_offsets).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <optional>

#include "analysis/liveness.h"
#include "analysis/stats.h"
#include "autodiff/training_graph.h"
#include "io/graph_json.h"
#include "ir/registry.h"
#include "models/zoo.h"
#include "optimize/fission_search.h"
#include "optimize/optimizer.h"
#include "plan/placement.h"
#include "plan/plan_json.h"
#include "sim/cost_model.h"
#include "sim/device.h"
#include "sim/simulator.h"
#include "util/error.h"
#include "util/file.h"

namespace py = pybind11;
using namespace memfit;

namespace {

Graph ParseGraph(const std::string& text) { return GraphFromJson(text, "<python>"); }

// The fields of `memfit stats --json` (StatsToJson) that _memfit.stats has
// always returned, with the same values.
py::dict StatsDict(const Graph& g) {
  const py::dict all = py::module_::import("json").attr("loads")(StatsToJson(g, ComputeStats(g)));
  py::dict d;
  for (const char* key : {"ops", "tensors", "param_count", "param_bytes", "activation_bytes", "gradient_bytes",
                          "optimizer_state_bytes", "flops", "peak_bytes", "peak_op"}) {
    d[key] = all[key];
  }
  return d;
}

std::optional<sim::CostTable> LoadCosts(const std::string& path) {
  if (path.empty()) return std::nullopt;
  return sim::CostTable::Load(path);
}

py::dict FiguresDict(const PlanFigures& f) {
  py::dict d;
  d["latency_ms"] = f.latency_us * 1e-3;
  d["peak_bytes"] = f.peak_bytes;
  d["recompute_ms"] = f.recompute_us * 1e-3;
  d["swap_out_bytes"] = f.swap_bytes;
  return d;
}

// The exception types memfit::Error and NoPlanFits become (set once at import; never freed).
PyObject* g_error_type = nullptr;
PyObject* g_no_plan_type = nullptr;

}  // namespace

PYBIND11_MODULE(_memfit, m) {
  m.doc() = "memfit's C++ core: zoo, autodiff, validation, stats, planning, optimization, simulation";
  try {
    py::module_ graph = py::module_::import("memfit.graph");
    g_error_type = py::object(graph.attr("Error")).release().ptr();
    g_no_plan_type = py::object(graph.attr("NoPlanFits")).release().ptr();
  } catch (py::error_already_set&) {
    // The memfit package is not importable (the module used on its own).
    g_error_type = PyErr_NewException("_memfit.Error", PyExc_ValueError, nullptr);
    g_no_plan_type = PyErr_NewException("_memfit.NoPlanFits", g_error_type, nullptr);
  }
  m.attr("Error") = py::handle(g_error_type);
  m.attr("NoPlanFits") = py::handle(g_no_plan_type);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const NoPlanFits& e) {
      // The smallest memory reached travels as .reached_bytes (memfit.fit's hint reads it).
      py::object error = py::reinterpret_borrow<py::object>(g_no_plan_type)(e.what());
      error.attr("reached_bytes") = e.reached_bytes;
      PyErr_SetObject(g_no_plan_type, error.ptr());
    } catch (const Error& e) {
      PyErr_SetString(g_error_type, e.what());
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
  m.def(
      "op_flags",
      [](const std::string& text) {
        const Graph g = GraphFromJson(text, "<python>", /*validate=*/false);
        py::list out;
        for (const Op& op : g.ops()) {
          const OpFlags f = ComputeOpFlags(g, op);
          py::dict d;
          d["random"] = f.random;
          d["inplace"] = f.inplace;
          d["view"] = f.view;
          d["mutates"] = f.mutated_inputs;
          out.append(d);
        }
        return out;
      },
      py::arg("graph_json"),
      "The op registry's flags of every op (random, inplace, view, mutates: input positions), as the graph "
      "JSON's version 2 writes them.");
  m.def("is_random_op", [](const std::string& type) { return IsRandomOp(type); }, py::arg("type"),
        "True when the op registry marks `type` (\"aten.randn\") as drawing random numbers.");
  m.def("stats", [](const std::string& text) { return StatsDict(ParseGraph(text)); }, py::arg("graph_json"));
  m.def(
      "plan",
      [](const std::string& text, const std::string& device, double time_limit) {
        Plan file;
        file.graph = ParseGraph(text);
        PlacementOptions options;
        options.time_limit_seconds = time_limit;
        file.placement = PlaceSteps(file.graph, ProgramOrder(file.graph), options);
        file.steps = StepsFromOrder(file.graph, file.placement.order);
        const sim::DeviceProfile profile = sim::ResolveDevice(device);
        const sim::SimResult r = sim::Simulator(file.graph, profile).Run(file.steps);
        file.simulated = SimulatedFigures{profile.name, r.latency_ms(), r.peak_bytes};
        return PlanToJson(file);
      },
      py::arg("graph_json"), py::arg("device") = "a100", py::arg("time_limit") = 5.0,
      "Plans offsets for program order; returns PLAN.json text (checked).");
  m.def(
      "simulate",
      [](const std::string& text, const std::string& device, const std::string& costs_path) {
        Graph graph;
        Steps steps;
        if (LooksLikePlan(text)) {
          Plan file = PlanFromJson(text, "<python>");
          graph = std::move(file.graph);
          steps = std::move(file.steps);
        } else {
          graph = ParseGraph(text);
          steps = ProgramOrderSteps(graph);
        }
        const std::optional<sim::CostTable> costs = LoadCosts(costs_path);
        const sim::SimResult r =
            sim::Simulator(graph, sim::ResolveDevice(device), costs ? &*costs : nullptr).Run(steps);
        py::dict d;
        d["latency_ms"] = r.latency_ms();
        d["peak_bytes"] = r.peak_bytes;
        d["compute_busy_ms"] = r.compute_busy_us * 1e-3;
        d["copy_busy_ms"] = r.copy_busy_us * 1e-3;
        return d;
      },
      py::arg("graph_or_plan_json"), py::arg("device") = "a100", py::arg("costs") = "",
      "Simulates a plan's steps, or a graph in program order; costs: a cost table path or \"\".");
  m.def(
      "optimize",
      [](const std::string& text, std::optional<int64_t> mem_limit_bytes, std::optional<double> mem_limit_ratio,
         std::optional<double> lat_limit_ratio, const std::string& device, const std::string& costs_path,
         double time_budget, std::optional<int64_t> work_budget, const std::string& method, bool allow_swap,
         bool allow_recompute, bool reorder, bool recompute_random, bool fission, bool deterministic) {
        const auto start = std::chrono::steady_clock::now();
        OptimizeOptions o;
        o.mem_limit_bytes = mem_limit_bytes;
        o.mem_limit_ratio = mem_limit_ratio;
        o.lat_limit_ratio = lat_limit_ratio;
        if (o.mem_limit_bytes.has_value() + o.mem_limit_ratio.has_value() + o.lat_limit_ratio.has_value() != 1) {
          Fail("optimize: give exactly one of mem_limit, mem_limit_ratio, lat_limit_ratio");
        }
        if (mem_limit_bytes && !(*mem_limit_bytes >= 1 && *mem_limit_bytes < int64_t{9'000'000'000'000'000'000})) {
          Fail("optimize: mem_limit {} is out of range (1 byte to 9e18)", *mem_limit_bytes);
        }
        const auto parsed = ParseRematMethod(method);
        if (!parsed) Fail("optimize: unknown method '{}' (auto, heuristic, milp, checkpoint-blocks, sqrt-n)", method);
        o.method = *parsed;
        o.allow_swap = allow_swap;
        o.allow_recompute = allow_recompute;
        o.reorder = reorder;
        o.recompute_random = recompute_random;
        if (!(time_budget > 0 && time_budget <= 86400)) Fail("optimize: time_budget must be in (0, 86400] seconds");
        o.time_budget_seconds = time_budget;
        if (work_budget) {
          if (*work_budget < 1) Fail("optimize: work_budget must be at least 1 (got {})", *work_budget);
          o.work_budget = *work_budget;
        } else if (deterministic) {
          o.work_budget = o.DefaultWorkBudget();
        }
        o.budget_start = start;
        const Graph graph = ParseGraph(text);
        const sim::DeviceProfile profile = sim::ResolveDevice(device);
        const std::optional<sim::CostTable> costs = LoadCosts(costs_path);
        OptimizeResult r;
        {
          py::gil_scoped_release release;
          r = fission ? OptimizeWithFission(graph, profile, costs ? &*costs : nullptr, o)
                      : Optimize(graph, profile, costs ? &*costs : nullptr, o);
        }
        py::dict d;
        d["plan"] = PlanToJson(r.plan);
        d["device"] = profile.name;
        d["method"] = r.method;
        d["scheduler"] = r.scheduler;
        d["limit_bytes"] = r.limit_bytes;
        d["latency_limit_ms"] = r.latency_limit_us * 1e-3;
        d["original"] = FiguresDict(r.original);
        d["optimized"] = FiguresDict(r.optimized);
        d["arena_bytes"] = r.plan.placement.arena_bytes;
        d["overhead"] = r.overhead();
        d["weight_bytes"] = r.weight_bytes;
        d["milp_proven_optimal"] = r.milp_proven_optimal;
        d["candidates"] = r.candidates;
        d["placements"] = r.placements;
        d["seconds"] = r.seconds;
        return d;
      },
      py::arg("graph_json"), py::arg("mem_limit_bytes") = py::none(), py::arg("mem_limit_ratio") = py::none(),
      py::arg("lat_limit_ratio") = py::none(), py::arg("device") = "a100", py::arg("costs") = "",
      py::arg("time_budget") = 10.0, py::arg("work_budget") = py::none(), py::arg("method") = "auto",
      py::arg("allow_swap") = true, py::arg("allow_recompute") = true, py::arg("reorder") = true,
      py::arg("recompute_random") = true, py::arg("fission") = true, py::arg("deterministic") = false,
      "memfit optimize (with fission unless fission=False, as the CLI's --no-fission): the fastest plan under one limit; a dict with the PLAN.json text (\"plan\") and figures.");
}
