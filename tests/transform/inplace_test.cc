// In-place reuse: each rule that allows or forbids writing into a dying input.
#include "transform/inplace.h"

#include <gtest/gtest.h>

#include "analysis/stats.h"
#include "ir/builder.h"
#include "ir/validate.h"

namespace memfit {
namespace {

// x -> mm -> h -> add(bias) -> a -> relu -> r (output), h much larger than
// x and w: h dies at the add,
// a at the relu; x is an input and stays.
TEST(InPlace, ChainsReuseOneStorage) {
  GraphBuilder b("chain");
  const TensorId x = b.Input("x", {8, 2});
  const TensorId w = b.Parameter("w", {2, 64});
  const TensorId bias = b.Parameter("bias", {64});
  const TensorId h = b.Call("aten.mm", {x, w});
  const TensorId a = b.Call("aten.add", {h, bias});
  const TensorId r = b.Call("aten.relu", {a});
  b.MarkOutput(r);
  const InPlaceResult result = ReuseDeadInputs(b.graph());
  Validate(result.graph);
  EXPECT_EQ(result.rewritten, 2);
  EXPECT_EQ(result.bytes_reused, 2 * 8 * 64 * 4);
  EXPECT_EQ(result.graph.op(*b.tensor(a).producer).type, "aten.add_");
  EXPECT_EQ(result.graph.op(*b.tensor(r).producer).type, "aten.relu_");
  EXPECT_EQ(result.graph.StorageRoot(r), h);
  // Before, the peak is the add: w, bias, h and a (x is dead). After, h and
  // a are one storage and the peak is the mm: x, w, bias and h.
  const int64_t xb = 8 * 2 * 4, wb = 2 * 64 * 4, bb = 64 * 4, hb = 8 * 64 * 4;
  EXPECT_EQ(ComputeStats(b.graph()).peak_bytes, wb + bb + 2 * hb);
  EXPECT_EQ(ComputeStats(result.graph).peak_bytes, xb + wb + bb + hb);
}

TEST(InPlace, KeepsInputsReadLaterViewedOrFromBeforeTheStep) {
  GraphBuilder b("kept");
  const TensorId x = b.Input("x", {4, 4});
  const TensorId p = b.Call("aten.relu", {x});         // x is an input: kept
  const TensorId q = b.Call("aten.relu", {p});         // p is read again below: kept
  const TensorId s = b.Call("aten.add", {p, q});       // p dies here, but a view of q...
  const TensorId v = b.Call("aten.t", {q});            // ... q has a view: kept
  const TensorId u = b.Call("aten.mul", {v, v});
  b.MarkOutput(s);
  b.MarkOutput(u);
  const InPlaceResult result = ReuseDeadInputs(b.graph());
  Validate(result.graph);
  EXPECT_EQ(result.graph.op(*b.tensor(p).producer).type, "aten.relu");
  EXPECT_EQ(result.graph.op(*b.tensor(q).producer).type, "aten.relu");
  EXPECT_EQ(result.graph.op(*b.tensor(s).producer).type, "aten.add_");  // p's last reader
  EXPECT_EQ(result.graph.op(*b.tensor(u).producer).type, "aten.mul");   // v is a view
  EXPECT_EQ(result.rewritten, 1);
}

TEST(InPlace, NeverWritesIntoASmallerOrOtherTypedInput) {
  GraphBuilder b("broadcast");
  const TensorId x = b.Input("x", {4, 4});
  const TensorId row = b.Call("aten.sum", {x}, {{"dim", std::vector<int64_t>{0}}});  // [4], dies below
  const TensorId y = b.Call("aten.add", {row, x});  // [4] + [4, 4] -> [4, 4]: not into row
  b.MarkOutput(y);
  const InPlaceResult result = ReuseDeadInputs(b.graph());
  EXPECT_EQ(result.rewritten, 0);
}

}  // namespace
}  // namespace memfit
