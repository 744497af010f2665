#include "report/measured.h"

#include <fmt/format.h>

#include <algorithm>

#include "util/error.h"
#include "util/json.h"

namespace memfit::report {

MeasuredSeries MeasuredFromJson(std::string_view text, const std::string& source) {
  const JsonValue value = ParseJson(text, source);
  const JsonNode j(value, source);
  j.ExpectFields({"format", "version", "label", "bytes_after_step"});
  if (auto format = j.Find("format"); format && format->String() != "memfit.measured") {
    format->Fail("must be \"memfit.measured\"");
  }
  if (auto version = j.Find("version"); version && version->Int() != 1) {
    version->Fail(fmt::format("unsupported version {} (expected 1)", version->Int()));
  }
  MeasuredSeries m;
  m.label = j.Find("label") ? j.Get("label").String() : "measured";
  const JsonNode bytes = j.Get("bytes_after_step");
  m.bytes_after_step = bytes.Ints();
  for (size_t i = 0; i < m.bytes_after_step.size(); ++i) {
    if (m.bytes_after_step[i] < 0) bytes.At(i).Fail("must be a non-negative byte count");
  }
  return m;
}

nlohmann::ordered_json MeasuredCurve(const MeasuredSeries& measured, const std::vector<sim::TimelineEntry>& timeline,
                                     const std::string& source) {
  if (measured.bytes_after_step.size() != timeline.size()) {
    Fail("{}: bytes_after_step has {} entries, the plan has {} steps (measure this plan)", source,
         measured.bytes_after_step.size(), timeline.size());
  }
  nlohmann::ordered_json time = nlohmann::ordered_json::array(), total = nlohmann::ordered_json::array();
  double latest = 0;
  for (size_t i = 0; i < timeline.size(); ++i) {
    latest = std::max(latest, timeline[i].start_us);
    time.push_back(latest);
    total.push_back(measured.bytes_after_step[i]);
  }
  return {{"label", measured.label}, {"time_us", std::move(time)}, {"total", std::move(total)}};
}

}  // namespace memfit::report
