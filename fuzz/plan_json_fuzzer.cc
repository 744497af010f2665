// PLAN.json (plan/plan_json.h): PlanFromJson (which runs the plan checker)
// and PlanStepsFromJson. An accepted plan must save and load back.
#include <optional>
#include <string>

#include "fuzz_common.h"
#include "plan/plan_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace memfit;
  const std::string_view text = fuzz::AsText(data, size);
  (void)LooksLikePlan(text);
  fuzz::Accepts([&] { (void)PlanStepsFromJson(text, "fuzz.plan.json"); });
  std::optional<Plan> plan;
  if (!fuzz::Accepts([&] { plan = PlanFromJson(text, "fuzz.plan.json"); })) return 0;
  const std::string saved = PlanToJson(*plan);
  try {
    (void)PlanFromJson(saved, "saved.plan.json");
  } catch (const Error& error) {
    fuzz::Finding("a saved plan does not load back", error.what());
  }
  return 0;
}
