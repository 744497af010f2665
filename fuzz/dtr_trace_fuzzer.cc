// DTR operator logs (dtr/trace.h): ParseTrace, then LowerTrace, one bounded
// replay at half the unconstrained peak (dtr/simulator.h), and the import as
// a graph (importers/dtr_import.h), which must pass Validate.
#include <optional>
#include <string>

#include "dtr/program.h"
#include "dtr/simulator.h"
#include "dtr/trace.h"
#include "fuzz_common.h"
#include "importers/dtr_import.h"
#include "ir/validate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace memfit;
  std::optional<dtr::Trace> trace;
  if (!fuzz::Accepts([&] { trace = dtr::ParseTrace(fuzz::AsText(data, size), "fuzz.log"); })) return 0;
  std::optional<dtr::Program> program;
  if (fuzz::Accepts([&] { program = dtr::LowerTrace(*trace); })) {
    dtr::SimOptions options;
    options.budget_ratio = 0.5;
    options.overhead_limit = 2.0;
    fuzz::Accepts([&] { (void)dtr::Simulate(*program, options); });
  }
  std::optional<Graph> graph;
  if (!fuzz::Accepts([&] { graph = ImportDtrTrace(*trace); })) return 0;
  try {
    Validate(*graph);
  } catch (const Error& error) {
    fuzz::Finding("an imported DTR graph does not validate", error.what());
  }
  return 0;
}
