// The report as one self-contained HTML file: the page template with the
// chart library, the page's script and style, and the report's data inlined.
// It loads nothing from the network and needs no server.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace memfit::report {

// The page for `data` (ReportData, report_data.h).
std::string HtmlPage(const nlohmann::ordered_json& data);

// `data` as JSON text that is safe inside a <script> element: every '<'
// is written as \u003c (so no "</script>" or "<!--" can appear), invalid
// UTF-8 replaced.
std::string ScriptSafeJson(const nlohmann::ordered_json& data);

}  // namespace memfit::report
