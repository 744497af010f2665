#include "util/enum_names.h"

#include <gtest/gtest.h>

namespace memfit {
namespace {

enum class Color { kRed, kGreen, kBlue };

// kBlue is left out on purpose: a value missing from the table prints as "?".
constexpr EnumName<Color> kColorNames[] = {{Color::kRed, "red"}, {Color::kGreen, "light green"}};

TEST(EnumNamesTest, NameOfLooksTheValueUp) {
  EXPECT_EQ(NameOf(kColorNames, Color::kRed), "red");
  EXPECT_EQ(NameOf(kColorNames, Color::kGreen), "light green");
  EXPECT_EQ(NameOf(kColorNames, Color::kBlue), "?");
}

TEST(EnumNamesTest, ValueNamedLooksTheNameUp) {
  EXPECT_EQ(ValueNamed(kColorNames, "red"), Color::kRed);
  EXPECT_EQ(ValueNamed(kColorNames, "light green"), Color::kGreen);
  EXPECT_EQ(ValueNamed(kColorNames, "blue"), std::nullopt);
  EXPECT_EQ(ValueNamed(kColorNames, "Red"), std::nullopt);  // names are case-sensitive
  EXPECT_EQ(ValueNamed(kColorNames, ""), std::nullopt);
}

static_assert(NameOf(kColorNames, Color::kGreen) == "light green", "usable at compile time");

}  // namespace
}  // namespace memfit
