// MiniMalloc CSV parsing: good files, column orders, and every kind of
// malformed input with its own message.
#include "alloc/csv.h"

#include <gtest/gtest.h>

#include "util/error.h"

namespace memfit::alloc {
namespace {

std::string ErrorOf(const std::string& text) {
  try {
    ParseProblemCsv(text, "t.csv");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(CsvTest, ParsesMiniMallocFormat) {
  const Problem p = ParseProblemCsv("id,lower,upper,size\n0,0,10,256\n1,5,20,128\n", "t.csv");
  ASSERT_EQ(p.buffers.size(), 2u);
  EXPECT_EQ(p.buffers[1].id.name, "1");
  EXPECT_EQ(p.buffers[1].lifetime, (Lifetime{5, 20}));
  EXPECT_EQ(p.buffers[1].size_bytes, 128);
  EXPECT_FALSE(p.buffers[1].fixed_offset_bytes);
  EXPECT_FALSE(p.capacity_bytes);
}

TEST(CsvTest, AcceptsAnyColumnOrderOffsetsAlignmentsAndCrlf) {
  const Problem p = ParseProblemCsv(
      "size,upper,id,lower,offset,alignment\r\n8,4,a,0,16,\r\n\r\n4,2,b,1,,8\r\n", "t.csv");
  ASSERT_EQ(p.buffers.size(), 2u);
  EXPECT_EQ(p.buffers[0].fixed_offset_bytes, 16);
  EXPECT_FALSE(p.buffers[0].alignment_bytes);
  EXPECT_FALSE(p.buffers[1].fixed_offset_bytes);
  EXPECT_EQ(p.buffers[1].alignment_bytes, 8);
  EXPECT_EQ(p.buffers[1].lifetime, (Lifetime{1, 2}));
}

TEST(CsvTest, WritesTheOffsetColumn) {
  const Problem p = ParseProblemCsv("id,lower,upper,size\n0,0,10,256\n1,5,20,128\n", "t.csv");
  const Solution s{{0, 256}, 384};
  EXPECT_EQ(FormatSolutionCsv(p, s), "id,lower,upper,size,offset\n0,0,10,256,0\n1,5,20,128,256\n");
  // And it reads back with the offsets as fixed.
  const Problem back = ParseProblemCsv(FormatSolutionCsv(p, s), "out.csv");
  EXPECT_EQ(back.buffers[1].fixed_offset_bytes, 256);
}

struct Malformed {
  const char* name;
  const char* text;
  const char* fragment;
};
void PrintTo(const Malformed& m, std::ostream* os) { *os << m.name; }

class MalformedCsvTest : public ::testing::TestWithParam<Malformed> {};

TEST_P(MalformedCsvTest, NamesFileLineAndField) {
  const std::string message = ErrorOf(GetParam().text);
  EXPECT_NE(message.find(GetParam().fragment), std::string::npos) << message;
  EXPECT_EQ(message.rfind("t.csv:", 0), 0u) << message;
}

INSTANTIATE_TEST_SUITE_P(
    AllKinds, MalformedCsvTest,
    ::testing::Values(
        Malformed{"EmptyFile", "", "t.csv:1: empty file"},
        Malformed{"BlankFile", "\n\n", "empty file"},
        Malformed{"MissingColumn", "id,lower,upper\n0,0,1\n", "t.csv:1: missing column 'size'"},
        Malformed{"UnknownColumn", "id,lower,upper,size,colour\n", "unknown column 'colour'"},
        Malformed{"DuplicateColumn", "id,lower,upper,size,size\n", "duplicate column 'size'"},
        Malformed{"NotAnInteger", "id,lower,upper,size\n0,0,1,12x\n",
                  "t.csv:2: field 'size': '12x' is not an integer"},
        Malformed{"EmptyNumber", "id,lower,upper,size\n0,,1,4\n",
                  "t.csv:2: field 'lower': '' is not an integer"},
        Malformed{"NegativeSize", "id,lower,upper,size\n0,0,1,-4\n",
                  "t.csv:2: field 'size': negative size -4"},
        Malformed{"EmptyLifetime", "id,lower,upper,size\n0,0,1,4\n1,5,5,4\n",
                  "t.csv:3: field 'upper': lower (5) must be < upper (5)"},
        Malformed{"DuplicateId", "id,lower,upper,size\n7,0,1,4\n7,1,2,4\n",
                  "t.csv:3: field 'id': duplicate id '7' (first on line 2)"},
        Malformed{"Overflow", "id,lower,upper,size\n0,0,1,99999999999999999999\n",
                  "field 'size': value '99999999999999999999' is out of range"},
        Malformed{"SizeSumOverflow",
                  "id,lower,upper,size\n0,0,1,9223372036854775807\n1,0,1,1\n",
                  "t.csv:3: field 'size': sizes overflow"},
        Malformed{"ExtraFields", "id,lower,upper,size\n0,0,1,4,9\n",
                  "t.csv:2: expected 4 fields (as in the header), got 5"},
        Malformed{"MissingFields", "id,lower,upper,size\n0,0,1\n", "expected 4 fields"},
        Malformed{"BadAlignment", "id,lower,upper,size,alignment\n0,0,1,4,0\n",
                  "field 'alignment': alignment must be >= 1"},
        Malformed{"NegativeOffset", "id,lower,upper,size,offset\n0,0,1,4,-2\n",
                  "field 'offset': negative offset -2"}),
    [](const ::testing::TestParamInfo<Malformed>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace memfit::alloc
