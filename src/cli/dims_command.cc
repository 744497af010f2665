// memfit dims GRAPH.json [--json]
//
// The graph-level dimensions of a graph (analysis/dims.h): the axes that
// the registry's dimension links tie together, each with its length, the
// tensors and ops it spans and where it is reduced; then the barrier ops and
// the links refused.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "analysis/dims.h"
#include "cli/command.h"
#include "io/graph_json.h"

namespace memfit::cli {
namespace {

nlohmann::ordered_json AxisJson(const Graph& graph, const TensorAxis& x) {
  return {{"tensor", graph.tensor(x.tensor).name}, {"axis", x.axis}};
}

nlohmann::ordered_json DimensionsJson(const Graph& graph, const DimensionGraph& dims) {
  nlohmann::ordered_json j;
  j["graph"] = graph.name;
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const Dimension& d : dims.dims) {
    nlohmann::ordered_json e;
    e["id"] = d.id;
    e["name"] = d.name;
    e["kind"] = d.kind;
    e["length"] = d.length;
    e["source"] = AxisJson(graph, d.source);
    nlohmann::ordered_json members = nlohmann::ordered_json::array();
    for (const TensorAxis& m : d.members) members.push_back({m.tensor.value, m.axis});
    e["members"] = std::move(members);  // [tensor id, axis]
    nlohmann::ordered_json ops = nlohmann::ordered_json::array();
    for (OpId op : d.ops) ops.push_back(op.value);
    e["ops"] = std::move(ops);
    nlohmann::ordered_json reduced = nlohmann::ordered_json::array();
    for (const ReductionSite& r : d.reduced) {
      reduced.push_back({{"op", graph.op(r.op).name}, {"type", graph.op(r.op).type}, {"input", AxisJson(graph, r.input)}});
    }
    e["reduced"] = std::move(reduced);
    list.push_back(std::move(e));
  }
  j["dims"] = std::move(list);
  nlohmann::ordered_json barriers = nlohmann::ordered_json::array();
  for (OpId op : dims.barriers) barriers.push_back({{"op", graph.op(op).name}, {"type", graph.op(op).type}});
  j["barriers"] = std::move(barriers);
  nlohmann::ordered_json refused = nlohmann::ordered_json::array();
  for (const RefusedLink& r : dims.refused) {
    refused.push_back(
        {{"op", graph.op(r.op).name}, {"output", AxisJson(graph, r.output)}, {"input", AxisJson(graph, r.input)}});
  }
  j["refused"] = std::move(refused);
  return j;
}

int RunDims(const GraphReportArgs& args) {
  const Graph graph = LoadGraph(args.path);
  const DimensionGraph dims = ComputeDimensions(graph);
  fmt::print("{}", args.json ? DimensionsJson(graph, dims).dump(1) + "\n" : FormatDimensions(graph, dims));
  return 0;
}

const Registrar kDims = Subcommand<GraphReportArgs>(
    "dims", "Group every tensor axis into graph-level dimensions (batch, sequence, ...) for fission", RunDims,
    AddGraphReportOptions);

}  // namespace
}  // namespace memfit::cli
