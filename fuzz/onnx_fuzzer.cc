// ONNX models (onnx/onnx_import.h): ImportOnnx from the bytes, as is and with
// a batch size and an appended loss. An imported graph must save + load as
// graph JSON (which validates it).
#include <optional>
#include <string>

#include "fuzz_common.h"
#include "io/graph_json.h"
#include "onnx/onnx_import.h"

namespace {

void Import(std::string_view bytes, const memfit::OnnxImportOptions& options) {
  using namespace memfit;
  std::optional<Graph> graph;
  if (!fuzz::Accepts([&] { graph = ImportOnnx(bytes, "fuzz.onnx", options); })) return;
  try {
    (void)GraphFromJson(GraphToJson(*graph, -1), "saved.json");
  } catch (const Error& error) {
    fuzz::Finding("an imported ONNX graph does not validate or load back", error.what());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes = memfit::fuzz::AsText(data, size);
  Import(bytes, {});
  Import(bytes, {.batch = 2, .append_loss = true});
  return 0;
}
