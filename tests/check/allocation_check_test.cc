// The independent checker finds every kind of violation and names buffers.
#include "check/allocation_check.h"

#include <gtest/gtest.h>

namespace memfit::check {
namespace {

alloc::Buffer B(const std::string& id, int64_t lower, int64_t upper, int64_t size) {
  alloc::Buffer b;
  b.id = {id};
  b.lifetime = {lower, upper};
  b.size_bytes = size;
  return b;
}

std::vector<ViolationKind> Kinds(const std::vector<Violation>& vs) {
  std::vector<ViolationKind> kinds;
  for (const auto& v : vs) kinds.push_back(v.kind);
  return kinds;
}

AllocationCheckOptions Align(int64_t alignment) {
  AllocationCheckOptions o;
  o.alignment_bytes = alignment;
  return o;
}

TEST(AllocationCheckTest, AcceptsAValidPlacement) {
  alloc::Problem p;
  // a [0,2) at 0..4; b [2,4) reuses 0..4 (half-open: no overlap at t=2);
  // c [1,3) at 4..6.
  p.buffers = {B("a", 0, 2, 4), B("b", 2, 4, 4), B("c", 1, 3, 2)};
  p.capacity_bytes = 6;
  EXPECT_TRUE(CheckAllocation(p, {{0, 0, 4}, 6}, Align(1)).empty());
}

TEST(AllocationCheckTest, FindsOverlapsNamingBothBuffers) {
  alloc::Problem p;
  p.buffers = {B("a", 0, 2, 4), B("b", 1, 4, 4), B("c", 3, 5, 1)};
  const auto vs = CheckAllocation(p, {{0, 3, 3}, 7}, Align(1));
  // a 0..4 and b 3..7 overlap during [1,2); b and c (3..4) during [3,4).
  ASSERT_EQ(Kinds(vs), (std::vector<ViolationKind>{ViolationKind::kOverlap, ViolationKind::kOverlap}));
  EXPECT_EQ(vs[0].buffer_ids, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(vs[1].buffer_ids, (std::vector<std::string>{"b", "c"}));
}

TEST(AllocationCheckTest, FindsOverlapBehindAGap) {
  // The big buffer x 0..100 overlaps z at 50 even though y (10..20) sits
  // between them in offset order.
  alloc::Problem p;
  p.buffers = {B("x", 0, 5, 100), B("y", 1, 2, 10), B("z", 1, 3, 5)};
  const auto vs = CheckAllocation(p, {{0, 110, 50}, 120}, Align(1));
  ASSERT_EQ(vs.size(), 1u);
  EXPECT_EQ(vs[0].buffer_ids, (std::vector<std::string>{"x", "z"}));
}

TEST(AllocationCheckTest, CapacityAlignmentFixedNegativeHeightCount) {
  alloc::Problem p;
  p.buffers = {B("a", 0, 2, 8), B("b", 0, 2, 8)};
  p.buffers[1].fixed_offset_bytes = 16;
  p.capacity_bytes = 20;
  auto vs = CheckAllocation(p, {{4, 14}, 20}, Align(8));
  EXPECT_EQ(Kinds(vs), (std::vector<ViolationKind>{ViolationKind::kMisaligned,
                                                   ViolationKind::kFixedMoved,
                                                   ViolationKind::kAboveCapacity,
                                                   ViolationKind::kWrongHeight}));
  EXPECT_NE(vs[0].message.find("buffer a"), std::string::npos);
  vs = CheckAllocation(p, {{-8, 16}, 24}, Align(8));
  EXPECT_EQ(vs[0].kind, ViolationKind::kNegativeOffset);
  vs = CheckAllocation(p, {{0}, 8}, Align(8));
  EXPECT_EQ(Kinds(vs), (std::vector<ViolationKind>{ViolationKind::kWrongCount}));
}

TEST(AllocationCheckTest, ZeroSizeBuffersCollideWithNothing) {
  alloc::Problem p;
  p.buffers = {B("a", 0, 2, 8), B("e", 0, 2, 0)};
  EXPECT_TRUE(CheckAllocation(p, {{0, 4}, 8}, Align(1)).empty());
}

TEST(AllocationCheckTest, ViolationsPrintThemselves) {
  alloc::Problem p;
  p.buffers = {B("a", 0, 2, 8)};
  p.capacity_bytes = 4;
  const auto vs = CheckAllocation(p, {{0}, 8}, Align(1));
  ASSERT_EQ(vs.size(), 1u);
  EXPECT_EQ(ToString(vs[0]), "above_capacity: buffer a ends at 8 above the capacity 4");
}

}  // namespace
}  // namespace memfit::check
