// The figures memfit prints: bytes and relative changes.
#include <gtest/gtest.h>

#include "analysis/stats.h"

namespace memfit {
namespace {

TEST(Format, Bytes) {
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1536), "1.50 KiB");
  EXPECT_EQ(FormatBytes(int64_t{3} << 30), "3.00 GiB");
}

TEST(Format, ChangeIsSignedAndNeverMinusZero) {
  EXPECT_EQ(FormatChange(0.0467), "+4.67%");
  EXPECT_EQ(FormatChange(-0.0554), "-5.54%");
  EXPECT_EQ(FormatChange(0), "+0.00%");
  // A schedule whose float sums come out 1e-12 short of program order's.
  EXPECT_EQ(FormatChange(-1e-12), "+0.00%");
  EXPECT_EQ(FormatChange(-0.00004), "+0.00%");
  EXPECT_EQ(FormatChange(-0.0001), "-0.01%");
}

// The smallest memory reached beside the limit's fraction: "0.504" under a
// limit of 0.50 (it printed "0.50", as if the limit had been reached).
TEST(Format, RatioBesideAnotherNeverReadsAsIt) {
  EXPECT_EQ(FormatRatioBeside(0.7712, 0.5), "0.77");
  EXPECT_EQ(FormatRatioBeside(0.5036, 0.5), "0.504");
  EXPECT_EQ(FormatRatioBeside(0.50004, 0.5), "0.5000");  // four decimals at most
  EXPECT_EQ(FormatRatioBeside(0.5, 0.5), "0.50");
}

}  // namespace
}  // namespace memfit
