// The storage table: one row per storage root, with the facts the memory
// models share, worked out by hand on small graphs (f32: n elements take 4n
// bytes).
#include "analysis/storage_table.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "analysis/liveness.h"
#include "ir/builder.h"
#include "plan/steps.h"
#include "sim/device.h"
#include "sim/simulator.h"

namespace memfit {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

//   x (input, 8x4 = 128 B), w (parameter, 2x4 = 32 B), m (buffer, 2 = 8 B),
//   unused (input, 4 B, read by nobody)
//   op0 wt = t(w)          view of w
//   op1 h  = mm(x, wt)     8x2 = 64 B
//   op2 h' = relu_(h)      in place: h's storage
//   op3 s  = sum(h')       4 B, the output
//   op4 m' = relu_(m)      in place on the buffer
struct Example {
  Graph graph;
  TensorId x, w, m, unused, wt, h, h2, s, m2;
};

Example MakeExample() {
  Example e;
  GraphBuilder b("table");
  e.x = b.Input("x", {8, 4});
  e.w = b.Parameter("w", {2, 4});
  e.m = b.Buffer("m", {2});
  e.unused = b.Input("unused", {1});
  e.wt = b.Call("aten.t", {e.w});
  e.h = b.Call("aten.mm", {e.x, e.wt});
  e.h2 = b.Call("aten.relu_", {e.h});
  e.s = b.Call("aten.sum", {e.h2});
  e.m2 = b.Call("aten.relu_", {e.m});
  b.MarkOutput(e.s);
  e.graph = b.Finish();
  return e;
}

TEST(StorageTable, OneRowPerRootWithItsFacts) {
  const Example e = MakeExample();
  const StorageTable table(e.graph);
  // Roots: x, w, m, unused, h, s (wt shares w, h' shares h, m' shares m).
  ASSERT_EQ(table.num_storages(), 6u);
  std::vector<TensorId> roots;
  for (const StorageInfo& s : table.storages()) roots.push_back(s.root);
  EXPECT_THAT(roots, ElementsAre(e.x, e.w, e.m, e.unused, e.h, e.s));
  EXPECT_EQ(table.root(e.wt), e.w);
  EXPECT_EQ(table.root(e.h2), e.h);
  EXPECT_EQ(table.root(e.m2), e.m);
  EXPECT_EQ(&table.of(e.h2), &table.storage(table.index_of(e.h)));

  const StorageInfo& x = table.of(e.x);
  EXPECT_EQ(x.size_bytes, 128);
  EXPECT_TRUE(x.source);
  EXPECT_FALSE(x.persistent);
  EXPECT_TRUE(x.resident_at_start());  // an input some op reads
  EXPECT_FALSE(x.pinned_to_end());
  EXPECT_THAT(x.readers, ElementsAre(OpId(1)));
  EXPECT_THAT(x.writers, IsEmpty());

  const StorageInfo& w = table.of(e.w);
  EXPECT_EQ(w.size_bytes, 32);
  EXPECT_TRUE(w.persistent);
  EXPECT_TRUE(w.resident_at_start());
  EXPECT_TRUE(w.pinned_to_end());
  // t(w) reads w and its result lives in w's storage; mm reads it via wt.
  EXPECT_THAT(w.readers, ElementsAre(OpId(0), OpId(1)));
  EXPECT_THAT(w.writers, ElementsAre(OpId(0)));
  EXPECT_THAT(w.touchers, ElementsAre(OpId(0), OpId(1)));

  const StorageInfo& m = table.of(e.m);
  EXPECT_TRUE(m.persistent);
  EXPECT_THAT(m.readers, ElementsAre(OpId(4)));
  EXPECT_THAT(m.writers, ElementsAre(OpId(4)));

  const StorageInfo& unused = table.of(e.unused);
  EXPECT_TRUE(unused.source);
  EXPECT_FALSE(unused.touched());
  EXPECT_FALSE(unused.resident_at_start());  // never allocated
  EXPECT_FALSE(unused.pinned_to_end());

  const StorageInfo& h = table.of(e.h);
  EXPECT_EQ(h.size_bytes, 64);
  EXPECT_FALSE(h.source);
  EXPECT_FALSE(h.resident_at_start());
  EXPECT_FALSE(h.pinned_to_end());
  EXPECT_THAT(h.writers, ElementsAre(OpId(1), OpId(2)));  // mm creates it, relu_ updates it
  EXPECT_THAT(h.readers, ElementsAre(OpId(2), OpId(3)));
  EXPECT_THAT(h.touchers, ElementsAre(OpId(1), OpId(2), OpId(3)));

  const StorageInfo& s = table.of(e.s);
  EXPECT_TRUE(s.output);
  EXPECT_TRUE(s.pinned_to_end());
  EXPECT_FALSE(s.resident_at_start());
  EXPECT_THAT(s.writers, ElementsAre(OpId(3)));
  EXPECT_THAT(s.readers, IsEmpty());
}

// Every consumer reads the same facts: resident at start is x + w + m =
// 128 + 32 + 8 = 168 B (not `unused`); step plans never free w, m or s.
TEST(StorageTable, ConsumersAgreeOnResidentAndPinned) {
  const Example e = MakeExample();
  const sim::Simulator simulator(e.graph, sim::ResolveDevice("a100"));
  EXPECT_EQ(simulator.initial_bytes(), 168);

  const Steps plan = ProgramOrderSteps(e.graph);
  std::vector<TensorId> freed;
  for (const Step& step : plan.steps) {
    if (step.kind == StepKind::kFree) freed.push_back(*step.storage);
  }
  // x after mm (op1), h after sum (op3); w, m (persistent) and s (output) stay.
  EXPECT_THAT(freed, ElementsAre(e.x, e.h));

  // Liveness: x from step 0 (a source) to mm; w and m over all 5 steps; s
  // from sum to the end; `unused` never.
  const Liveness live = ComputeLiveness(e.graph);
  std::vector<std::tuple<TensorId, int64_t, int64_t>> spans;
  for (const StorageLifetime& l : live.storages) spans.emplace_back(l.storage, l.start, l.end);
  EXPECT_THAT(spans, ElementsAre(std::make_tuple(e.x, 0, 2), std::make_tuple(e.w, 0, 5), std::make_tuple(e.m, 0, 5),
                                 std::make_tuple(e.h, 1, 4), std::make_tuple(e.s, 3, 5)));
}

}  // namespace
}  // namespace memfit
