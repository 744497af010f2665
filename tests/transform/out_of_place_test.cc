// In-place ops whose input was copied first, written out of place: the rule
// and each thing that keeps an op in place.
#include "transform/out_of_place.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "analysis/stats.h"
#include "ir/builder.h"
#include "ir/validate.h"

namespace memfit {
namespace {

const Attrs kRelu6 = {{"min_val", 0.0}, {"max_val", 6.0}};

// What tracing autograd over ReLU6(inplace=True) records: the input copied
// for the backward, then overwritten.
//   x = mm(a, w1); c = clone(x); y = hardtanh_(x); z = mm(y, w2);
//   dy = mm(dz, w2^T) ... dx = hardtanh_backward(dy, c)
struct Relu6Step {
  GraphBuilder b{"relu6"};
  TensorId a, w1, w2, x, c, y, z, dx;
  explicit Relu6Step(bool copy = true) {
    a = b.Input("a", {16, 8});
    w1 = b.Parameter("w1", {8, 64});
    w2 = b.Parameter("w2", {64, 64});
    x = b.Call("aten.mm", {a, w1});
    if (copy) c = b.Call("aten.clone", {x});
    y = b.Call("aten.hardtanh_", {x}, kRelu6);
    z = b.Call("aten.mm", {y, w2});
    const TensorId w2t = b.Call("aten.t", {w2});
    const TensorId dy = b.Call("aten.mm", {z, w2t});
    dx = b.Call("aten.hardtanh_backward", {dy, copy ? c : y}, kRelu6);
    b.MarkOutput(dx);
  }
};

TEST(OutOfPlace, CopiedInputsOpIsWrittenOutOfPlaceAndItsCopyDropped) {
  Relu6Step s;
  const OutOfPlaceResult r = OutOfPlaceWhereCopied(s.b.graph());
  Validate(r.graph);
  EXPECT_EQ(r.rewritten, 1);
  EXPECT_EQ(r.copies_dropped, 1);
  EXPECT_EQ(r.graph.num_ops(), s.b.graph().num_ops() - 1);
  std::optional<OpId> relu6, backward;
  for (const Op& op : r.graph.ops()) {
    EXPECT_NE(op.type, "aten.clone") << op.name;
    if (op.type == "aten.hardtanh") relu6 = op.id;
    if (op.type == "aten.hardtanh_backward") backward = op.id;
  }
  ASSERT_TRUE(relu6 && backward);
  const Op& f = r.graph.op(*relu6);
  EXPECT_EQ(r.graph.tensor(f.outputs[0]).name, s.b.tensor(s.y).name);
  EXPECT_FALSE(r.graph.tensor(f.outputs[0]).alias_of);  // a storage of its own
  EXPECT_EQ(f.attrs, kRelu6);
  // The backward reads the input itself, which now keeps its value.
  EXPECT_EQ(r.graph.op(*backward).inputs[1], f.inputs[0]);
  EXPECT_THAT(RecordedRewrites(r.graph),
              ::testing::ElementsAre(std::string(kOutOfPlaceRecordPrefix) + "1 (copies dropped: 1)"));
  // Never more memory at once: x lives as the copy did, one tensor fewer
  // between the copy and the op.
  EXPECT_LE(ComputeStats(r.graph).peak_bytes, ComputeStats(s.b.graph()).peak_bytes);
}

// ReLU(inplace=True): autograd reads the result, nothing is copied, and
// out of place would only add a storage.
TEST(OutOfPlace, AnOpWhoseInputWasNotCopiedStaysInPlace) {
  Relu6Step s(/*copy=*/false);
  const OutOfPlaceResult r = OutOfPlaceWhereCopied(s.b.graph());
  EXPECT_EQ(r.rewritten, 0);
  EXPECT_TRUE(RecordedRewrites(r.graph).empty());
  EXPECT_EQ(r.graph.op(*r.graph.tensor(s.y).producer).type, "aten.hardtanh_");
}

TEST(OutOfPlace, KeepsOpsWhereAValueWouldChange) {
  // The input is a source: the caller's tensor is overwritten, by contract.
  {
    GraphBuilder b("source");
    const TensorId x = b.Input("x", {4, 4});
    const TensorId c = b.Call("aten.clone", {x});
    const TensorId y = b.Call("aten.relu_", {x});
    b.MarkOutput(b.Call("aten.add", {y, c}));
    EXPECT_EQ(OutOfPlaceWhereCopied(b.graph()).rewritten, 0);
  }
  // The copy is a result of the step.
  {
    GraphBuilder b("copy_out");
    const TensorId x = b.Call("aten.relu", {b.Input("x", {4, 4})});
    const TensorId c = b.Call("aten.clone", {x});
    const TensorId y = b.Call("aten.sigmoid_", {x});
    b.MarkOutput(c);
    b.MarkOutput(y);
    EXPECT_EQ(OutOfPlaceWhereCopied(b.graph()).rewritten, 0);
  }
  // A view of the input sees the overwritten values.
  {
    GraphBuilder b("viewed");
    const TensorId x = b.Call("aten.relu", {b.Input("x", {4, 4})});
    const TensorId v = b.Call("aten.t", {x});
    const TensorId c = b.Call("aten.clone", {x});
    const TensorId y = b.Call("aten.silu_", {x});
    b.MarkOutput(b.Call("aten.add", {b.Call("aten.mul", {y, c}), b.Call("aten.relu", {v})}));
    EXPECT_EQ(OutOfPlaceWhereCopied(b.graph()).rewritten, 0);
  }
  // The copy is made after the op: it holds the new values.
  {
    GraphBuilder b("copied_after");
    const TensorId x = b.Call("aten.relu", {b.Input("x", {4, 4})});
    const TensorId y = b.Call("aten.tanh_", {x});
    const TensorId c = b.Call("aten.clone", {y});
    b.MarkOutput(b.Call("aten.mul", {y, c}));
    EXPECT_EQ(OutOfPlaceWhereCopied(b.graph()).rewritten, 0);
  }
  // A random fill's out-of-place form is another op (bernoulli(p) draws
  // with the probabilities in its input).
  {
    GraphBuilder b("random");
    const TensorId x = b.Call("aten.relu", {b.Input("x", {4, 4})});
    const TensorId c = b.Call("aten.clone", {x});
    const TensorId m = b.Call("aten.bernoulli_", {x}, {{"p", 0.5}});
    b.MarkOutput(b.Call("aten.mul", {m, c}));
    EXPECT_EQ(OutOfPlaceWhereCopied(b.graph()).rewritten, 0);
  }
}

}  // namespace
}  // namespace memfit
