// Recognising the format of a file handed to `memfit import`.
#include <gtest/gtest.h>

#include "importers/detect.h"
#include "test_util.h"
#include "util/error.h"

namespace memfit {
namespace {

TEST(DetectImportFormat, ByNameThenByContent) {
  EXPECT_EQ(DetectImportFormat("model.onnx", "{\"nodes\": []}"), ImportFormat::kOnnx);
  EXPECT_EQ(DetectImportFormat("trace.log", ""), ImportFormat::kDtrLog);
  EXPECT_EQ(DetectImportFormat("trace.txt", "{\"INSTRUCTION\":\"CONSTANT\",\"NAME\":\"x\"}\n{\"INSTR"),
            ImportFormat::kDtrLog);
  EXPECT_EQ(DetectImportFormat("g.json", "  {\"nodes\": [{\"id\": 0}], \"links\": []}"), ImportFormat::kCheckmate);
  // Pretty-printed JSON: the first line alone does not parse.
  EXPECT_EQ(DetectImportFormat("g.json", "{\n  \"nodes\": ["), ImportFormat::kCheckmate);
  EXPECT_EQ(DetectImportFormat("model.bin", std::string("\x08\x07\x12\x04", 4)), ImportFormat::kOnnx);
  EXPECT_EQ(DetectImportFormat("empty", ""), ImportFormat::kOnnx);
  EXPECT_EQ(ToString(ImportFormat::kCheckmate), "checkmate");
}

TEST(DetectImportFormat, ReadsTheFile) {
  testing::TempDir dir;
  EXPECT_EQ(DetectImportFormat(dir.Write("t", "{\"INSTRUCTION\":\"ANNOTATE\",\"ANNOTATION\":\"START\"}\n")),
            ImportFormat::kDtrLog);
  EXPECT_EQ(DetectImportFormat(dir.Write("g", "{\"nodes\": [], \"links\": []}")), ImportFormat::kCheckmate);
  // A named file is not opened: its importer reports it missing.
  EXPECT_EQ(DetectImportFormat(dir.File("missing.onnx")), ImportFormat::kOnnx);
  EXPECT_THROW(DetectImportFormat(dir.File("missing")), Error);
}

}  // namespace
}  // namespace memfit
