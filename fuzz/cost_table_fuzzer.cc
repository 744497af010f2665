// Measured cost tables (sim/cost_model.h): CostTable::FromJson.
#include "fuzz_common.h"
#include "sim/cost_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace memfit;
  fuzz::Accepts([&] { (void)sim::CostTable::FromJson(fuzz::AsText(data, size), "fuzz.costs.json"); });
  return 0;
}
