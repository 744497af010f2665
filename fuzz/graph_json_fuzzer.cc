// Graph JSON (io/graph_json.h): GraphFromJson with validation. An accepted
// graph must save and load back to the same JSON, and the latency model must
// take it (sim/cost_model.h).
#include <optional>
#include <string>

#include "fuzz_common.h"
#include "io/graph_json.h"
#include "sim/cost_model.h"
#include "sim/device.h"

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
  return 0;
}
