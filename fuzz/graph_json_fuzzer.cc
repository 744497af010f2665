// Graph JSON (io/graph_json.h): GraphFromJson with validation. An accepted
// graph must save and load back to the same JSON, and the latency model must
// take it (sim/cost_model.h). Its convolutions of concatenations written per
// piece (transform/concat_convolution.h, which optimize applies to every
// graph it is given) must be a valid graph with the same results.
#include <optional>
#include <string>

#include "fuzz_common.h"
#include "io/graph_json.h"
#include "ir/validate.h"
#include "sim/cost_model.h"
#include "sim/device.h"
#include "transform/concat_convolution.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace memfit;
  std::optional<Graph> graph;
  if (!fuzz::Accepts([&] { graph = GraphFromJson(fuzz::AsText(data, size), "fuzz.json"); })) return 0;
  // Round trip: what GraphToJson writes, GraphFromJson reads back unchanged.
  const std::string saved = GraphToJson(*graph, -1);
  std::optional<Graph> again;
  try {
    again = GraphFromJson(saved, "saved.json");
  } catch (const Error& error) {
    fuzz::Finding("a saved graph does not load back", error.what());
  }
  if (GraphToJson(*again, -1) != saved) fuzz::Finding("a graph changed through save + load");
  fuzz::Accepts([&] { sim::ComputeOpLatencies(*graph, sim::FindDevice("a100"), nullptr); });
  try {
    const Graph split = SplitConcatenatedConvolutions(*graph);
    Validate(split);
    if (split.outputs.size() != graph->outputs.size()) fuzz::Finding("the rewrite changed the step's results");
    for (size_t i = 0; i < split.outputs.size(); ++i) {
      const Tensor &a = graph->tensor(graph->outputs[i]), &b = split.tensor(split.outputs[i]);
      if (a.name != b.name || a.shape != b.shape || a.dtype != b.dtype) {
        fuzz::Finding("the rewrite changed a result of the step", a.name);
      }
    }
  } catch (const Error& error) {
    fuzz::Finding("a valid graph's concatenations split is not valid", error.what());
  }
  return 0;
}
