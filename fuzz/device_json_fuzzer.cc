// Device profiles (sim/device.h): DeviceFromJson. An accepted device must
// save and load back unchanged.
#include <optional>
#include <string>

#include "fuzz_common.h"
#include "sim/device.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace memfit;
  std::optional<sim::DeviceProfile> device;
  if (!fuzz::Accepts([&] { device = sim::DeviceFromJson(fuzz::AsText(data, size), "fuzz.device.json"); })) return 0;
  (void)sim::ToString(*device);
  const std::string saved = sim::DeviceToJson(*device);
  try {
    if (sim::DeviceToJson(sim::DeviceFromJson(saved, "saved.device.json")) != saved) {
      fuzz::Finding("a device changed through save + load");
    }
  } catch (const Error& error) {
    fuzz::Finding("a saved device does not load back", error.what());
  }
  return 0;
}
