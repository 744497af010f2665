#include "report/html_page.h"

#include <algorithm>
#include <string_view>
#include <vector>

#include "report/assets.h"
#include "util/error.h"

namespace memfit::report {

std::string ScriptSafeJson(const nlohmann::ordered_json& data) {
  const std::string text = data.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  std::string safe;
  safe.reserve(text.size() + text.size() / 64);
  for (char c : text) {
    if (c == '<') {
      safe += "\\u003c";
    } else {
      safe += c;
    }
  }
  return safe;
}

std::string HtmlPage(const nlohmann::ordered_json& data) {
  const std::string_view page = PageTemplate();
  const std::string json = ScriptSafeJson(data);
  // Markers are found in the template only, never in what replaces them.
  struct Part {
    size_t at;
    std::string_view marker, text;
  };
  std::vector<Part> parts = {{0, "/*@STYLE@*/", PageStyle()},
                             {0, "/*@LIBRARY@*/", ChartLibraryJs()},
                             {0, "/*@SCRIPT@*/", PageScript()},
                             {0, "@DATA@", json}};
  size_t size = page.size();
  for (Part& p : parts) {
    p.at = page.find(p.marker);
    if (p.at == std::string_view::npos) Fail("report: the page template has no {}", p.marker);
    size += p.text.size();
  }
  std::sort(parts.begin(), parts.end(), [](const Part& a, const Part& b) { return a.at < b.at; });
  std::string out;
  out.reserve(size);
  size_t from = 0;
  for (const Part& p : parts) {
    out.append(page.substr(from, p.at - from));
    out.append(p.text);
    from = p.at + p.marker.size();
  }
  out.append(page.substr(from));
  return out;
}

}  // namespace memfit::report
