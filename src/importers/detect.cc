#include "importers/detect.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "util/enum_names.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace memfit {
namespace {

// Enough for any DTR line; a longer first line is not a DTR log.
constexpr size_t kHeadBytes = 64 * 1024;

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::optional<ImportFormat> FormatFromName(std::string_view path) {
  if (EndsWith(path, ".onnx")) return ImportFormat::kOnnx;
  if (EndsWith(path, ".log")) return ImportFormat::kDtrLog;
  return std::nullopt;
}

}  // namespace

constexpr EnumName<ImportFormat> kImportFormatNames[] = {
    {ImportFormat::kOnnx, "onnx"}, {ImportFormat::kCheckmate, "checkmate"}, {ImportFormat::kDtrLog, "dtr"}};

std::string_view ToString(ImportFormat format) { return NameOf(kImportFormatNames, format); }

ImportFormat DetectImportFormat(std::string_view path, std::string_view head) {
  if (const std::optional<ImportFormat> format = FormatFromName(path)) return *format;
  const size_t first = head.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos || head[first] != '{') return ImportFormat::kOnnx;
  const std::string_view line = head.substr(first, head.find('\n', first) - first);
  const std::optional<JsonValue> j = TryParseJson(line);
  if (j && j->is_object() && j->contains("INSTRUCTION")) return ImportFormat::kDtrLog;
  return ImportFormat::kCheckmate;
}

ImportFormat DetectImportFormat(const std::string& path) {
  // Named files are not opened here, so their importers report a missing file.
  if (const std::optional<ImportFormat> format = FormatFromName(path)) return *format;
  std::ifstream in = OpenInput(path);
  std::string head(kHeadBytes, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  if (head.empty()) Fail("{}: the file is empty (expected an ONNX model, a Checkmate or Moccasin graph, or a DTR log)", path);
  return DetectImportFormat(path, head);
}

}  // namespace memfit
