// The files a report page is made of, compiled into the library by
// cmake/report_assets.cmake (the build fails when the chart library is not
// installed: scripts/setup.sh installs it).
#pragma once

#include <string_view>

namespace memfit::report {

// ECharts' minified build (web/node_modules/echarts/dist/echarts.min.js).
std::string_view ChartLibraryJs();
// src/report/page/report.html, report.js and report.css.
std::string_view PageTemplate();
std::string_view PageScript();
std::string_view PageStyle();

}  // namespace memfit::report
