// Which importer reads a file, decided from its name and its first bytes, so
// that `memfit import FILE` needs no format flag.
//   - a name ending in ".onnx" -> ONNX; ".log" -> DTR log;
//   - else text starting with '{' (after white space): a DTR log when its
//     first line is a JSON object with an "INSTRUCTION" field, otherwise
//     Checkmate / Moccasin JSON (whose importer reports what is missing);
//   - else ONNX (a binary protobuf; its importer reports a bad file).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace memfit {

enum class ImportFormat : uint8_t { kOnnx, kCheckmate, kDtrLog };
std::string_view ToString(ImportFormat format);  // "onnx", "checkmate", "dtr"

// Reads the first 64 KiB of `path` unless its name decides; throws Error
// naming the path if it cannot be read.
ImportFormat DetectImportFormat(const std::string& path);

// The same decision from a file name and the file's first bytes.
ImportFormat DetectImportFormat(std::string_view path, std::string_view head);

}  // namespace memfit
