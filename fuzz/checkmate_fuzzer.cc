// Checkmate / Moccasin graphs (importers/checkmate_import.h). The imported
// graph must pass Validate and save + load as graph JSON.
#include <optional>
#include <string>

#include "fuzz_common.h"
#include "importers/checkmate_import.h"
#include "io/graph_json.h"
#include "ir/validate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace memfit;
  std::optional<Graph> graph;
  if (!fuzz::Accepts([&] { graph = ImportCheckmateJson(fuzz::AsText(data, size), "fuzz.json"); })) return 0;
  try {
    Validate(*graph);
    (void)GraphFromJson(GraphToJson(*graph, -1), "saved.json");
  } catch (const Error& error) {
    fuzz::Finding("an imported Checkmate graph does not validate or load back", error.what());
  }
  return 0;
}
