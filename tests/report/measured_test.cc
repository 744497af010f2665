// memfit report --measured: a real run's bytes per plan step drawn over the
// simulated curve, and one-line errors for a series that is not this plan's.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "report/measured.h"
#include "test_util.h"
#include "util/error.h"

namespace memfit {
namespace {

std::string Series(size_t steps, const std::string& extra = "") {
  nlohmann::json bytes = nlohmann::json::array();
  for (size_t i = 0; i < steps; ++i) bytes.push_back(1000 * (i + 1));
  return R"({"format": "memfit.measured", "version": 1, "label": "run one", )" + extra +
         R"("bytes_after_step": )" + bytes.dump() + "}";
}

TEST(ReportMeasured, DrawnStepForStepOverTheSimulatedCurve) {
  testing::TempDir dir;
  const std::string g = testing::ZooGraph(dir, "g.json", "mlp --batch 8 --train"), p = dir.File("p.json"), out = dir.File("r.html");
  ASSERT_EQ(testing::RunCli("plan " + g + " -o " + p).exit_code, 0);
  const size_t steps = nlohmann::json::parse(testing::ReadAll(p))["steps"].size();
  const std::string m = dir.Write("m.json", Series(steps));
  const auto r = testing::RunCli("report " + p + " --device cpu --measured " + m + " -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string page = testing::ReadAll(out);
  // The data carries the series, in order, under its label, with one time per step.
  const size_t at = page.find("\"measured\":{\"label\":\"run one\",\"time_us\":[");
  ASSERT_NE(at, std::string::npos);
  EXPECT_THAT(page.substr(at), ::testing::HasSubstr("\"total\":[1000,2000,3000"));
  EXPECT_THAT(page, ::testing::HasSubstr("'measured: '"));  // the page's script draws it
  // Without --measured the field is null.
  ASSERT_EQ(testing::RunCli("report " + p + " --device cpu -o " + out).exit_code, 0);
  EXPECT_THAT(testing::ReadAll(out), ::testing::HasSubstr("\"measured\":null"));
}

TEST(ReportMeasured, TimesFollowTheLatestStepStart) {
  std::vector<sim::TimelineEntry> timeline(3);
  timeline[0].start_us = 5, timeline[1].start_us = 3, timeline[2].start_us = 9;  // a copy step that began earlier
  timeline[0].end_us = 7, timeline[1].end_us = 8, timeline[2].end_us = 12;
  const auto curve = report::MeasuredCurve({"x", {1, 2, 3}}, timeline, "m.json");
  EXPECT_EQ(curve["time_us"], nlohmann::json::parse("[5.0, 5.0, 9.0]"));
  EXPECT_EQ(curve["total"], nlohmann::json::parse("[1, 2, 3]"));
  EXPECT_THAT([&] { report::MeasuredCurve({"x", {1, 2}}, timeline, "m.json"); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("m.json: bytes_after_step has 2 entries, the plan has 3 steps")));
}

TEST(ReportMeasured, BadSeriesIsOneLineAndExitTwo) {
  testing::TempDir dir;
  const std::string g = testing::ZooGraph(dir, "g.json", "mlp --batch 8 --train"), out = dir.File("r.html");
  const auto expect_error = [&](const std::string& series, const std::string& needle) {
    const auto r = testing::RunCli("report " + g + " --measured " + dir.Write("m.json", series) + " -o " + out);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_THAT(r.err, ::testing::HasSubstr(needle));
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(std::filesystem::exists(out));
  };
  expect_error(Series(2), "bytes_after_step has 2 entries");
  expect_error(Series(2, R"("colour": 1, )"), "unknown field 'colour'");
  expect_error(R"({"bytes_after_step": [1, -5]})", "bytes_after_step[1]: must be a non-negative byte count");
  expect_error(R"({"format": "memfit.plan", "bytes_after_step": []})", "format: must be \"memfit.measured\"");
  expect_error("{", "m.json");
}

}  // namespace
}  // namespace memfit
