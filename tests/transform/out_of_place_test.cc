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
  const OutOfPlaceResult r = WriteOutOfPlace(s.b.graph(), /*only_copied=*/true);
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

// ReLU(inplace=True): autograd reads the result and nothing is copied. Out
// of place, the result is a storage of its own and the input dies at the op
// (both at once there); with only_copied the op stays in place.
TEST(OutOfPlace, AnOpWhoseInputWasNotCopiedIsRewrittenUnlessOnlyCopiedAreAsked) {
  Relu6Step s(/*copy=*/false);
  const OutOfPlaceResult r = WriteOutOfPlace(s.b.graph(), /*only_copied=*/false);
  Validate(r.graph);
  EXPECT_EQ(r.rewritten, 1);
  EXPECT_EQ(r.copies_dropped, 0);
  const Op& f = r.graph.op(*r.graph.tensor(s.y).producer);
  EXPECT_EQ(f.type, "aten.hardtanh");
  EXPECT_FALSE(r.graph.tensor(s.y).alias_of);
  EXPECT_EQ(r.graph.op(*r.graph.tensor(s.dx).producer).inputs[1], s.y);  // the backward still reads the result

  const OutOfPlaceResult copied = WriteOutOfPlace(s.b.graph(), /*only_copied=*/true);
  EXPECT_EQ(copied.rewritten, 0);
  EXPECT_TRUE(RecordedRewrites(copied.graph).empty());
  EXPECT_EQ(copied.graph.op(*copied.graph.tensor(s.y).producer).type, "aten.hardtanh_");
}

TEST(OutOfPlace, KeepsOpsWhereAValueWouldChange) {
  // The input is a source: the caller's tensor is overwritten, by contract.
  {
    GraphBuilder b("source");
    const TensorId x = b.Input("x", {4, 4});
    b.MarkOutput(b.Call("aten.relu_", {x}));
    EXPECT_EQ(WriteOutOfPlace(b.graph(), /*only_copied=*/false).rewritten, 0);
  }
  // A view of the input sees the overwritten values.
  {
    GraphBuilder b("viewed");
    const TensorId x = b.Call("aten.relu", {b.Input("x", {4, 4})});
    const TensorId v = b.Call("aten.t", {x});
    const TensorId y = b.Call("aten.silu_", {x});
    b.MarkOutput(b.Call("aten.add", {y, b.Call("aten.relu", {v})}));
    EXPECT_EQ(WriteOutOfPlace(b.graph(), /*only_copied=*/false).rewritten, 0);
  }
  // An op after it reads the storage by the input's name: the new values.
  {
    GraphBuilder b("read_after");
    const TensorId x = b.Call("aten.relu", {b.Input("x", {4, 4})});
    const TensorId y = b.Call("aten.sigmoid_", {x});
    b.MarkOutput(b.Call("aten.mul", {y, x}));
    EXPECT_EQ(WriteOutOfPlace(b.graph(), /*only_copied=*/false).rewritten, 0);
  }
  // A random fill's out-of-place form is another op (bernoulli(p) draws
  // with the probabilities in its input).
  {
    GraphBuilder b("random");
    const TensorId x = b.Call("aten.relu", {b.Input("x", {4, 4})});
    b.MarkOutput(b.Call("aten.bernoulli_", {x}, {{"p", 0.5}}));
    EXPECT_EQ(WriteOutOfPlace(b.graph(), /*only_copied=*/false).rewritten, 0);
  }
}

// A copy that is a result of the step, or that copies the new values, stays.
TEST(OutOfPlace, KeepsCopiesThatAreResultsOrOfTheNewValues) {
  {
    GraphBuilder b("copy_out");
    const TensorId x = b.Call("aten.relu", {b.Input("x", {4, 4})});
    const TensorId c = b.Call("aten.clone", {x});
    const TensorId y = b.Call("aten.sigmoid_", {x});
    b.MarkOutput(c);
    b.MarkOutput(b.Call("aten.mul", {y, y}));
    const OutOfPlaceResult r = WriteOutOfPlace(b.graph(), /*only_copied=*/false);
    EXPECT_EQ(r.rewritten, 1);
    EXPECT_EQ(r.copies_dropped, 0);
    EXPECT_EQ(r.graph.op(*r.graph.tensor(c).producer).type, "aten.clone");
  }
  {
    GraphBuilder b("copied_after");
    const TensorId x = b.Call("aten.relu", {b.Input("x", {4, 4})});
    const TensorId y = b.Call("aten.tanh_", {x});
    const TensorId c = b.Call("aten.clone", {y});
    b.MarkOutput(b.Call("aten.mul", {y, c}));
    const OutOfPlaceResult r = WriteOutOfPlace(b.graph(), /*only_copied=*/false);
    EXPECT_EQ(r.rewritten, 1);
    EXPECT_EQ(r.copies_dropped, 0);
    EXPECT_EQ(r.graph.op(*r.graph.tensor(c).producer).inputs[0], y);
  }
}

// A dropout mask as PyTorch 1.13 traces F.dropout (an allocation drawn into
// and scaled in place) is drawn out of place from a one-element template:
// the same draw (one number per element of a contiguous tensor), nothing
// more held, and the remat problem may recompute the mask (it could only
// keep it: its storage was written in place).
TEST(OutOfPlace, DropoutMasksAreDrawnOutOfPlace) {
  for (const bool fake : {false, true}) {  // empty_like(x) when traced for real, empty(size) with fake tensors
    GraphBuilder b("dropout");
    const TensorId x = b.Call("aten.relu", {b.Input("x", {4, 8})});
    const TensorId n = fake ? b.Call("aten.empty.memory_format", {}, {{"size", std::vector<int64_t>{4, 8}}})
                            : b.Call("aten.empty_like", {x}, {{"memory_format", std::string("contiguous_format")}});
    TensorId mask = b.Call("aten.bernoulli_.float", {n}, {{"p", 0.9}});
    mask = b.Call("aten.div_.Scalar", {mask}, {{"other", 0.9}});
    const TensorId y = b.Call("aten.mul", {x, mask});
    b.MarkOutput(b.Call("aten.mul", {y, mask}));
    const Graph& g = b.graph();
    for (const bool only_copied : {true, false}) {
      const OutOfPlaceResult r = WriteOutOfPlace(g, only_copied);
      Validate(r.graph);
      EXPECT_EQ(r.rewritten, 2) << fake;  // the draw and its scale
      // The products read the scaled mask (ids differ: the template is new).
      const Op& product = r.graph.op(*r.graph.tensor(r.graph.outputs[0]).producer);
      const Tensor& scaled = r.graph.tensor(product.inputs[1]);
      EXPECT_EQ(scaled.name, g.tensor(mask).name);
      EXPECT_FALSE(scaled.alias_of);
      const Op& scale = r.graph.op(*scaled.producer);
      EXPECT_EQ(scale.qualified_type(), "aten.div.Scalar");
      const Op& draw = r.graph.op(*r.graph.tensor(scale.inputs[0]).producer);
      EXPECT_EQ(draw.qualified_type(), "aten.bernoulli.p");
      EXPECT_EQ(draw.attrs.at("p"), AttrValue(0.9));
      const Tensor& pattern = r.graph.tensor(draw.inputs[0]);
      EXPECT_EQ(pattern.shape, (Shape{4, 8}));
      EXPECT_EQ(r.graph.tensor(r.graph.StorageRoot(pattern.id)).shape, Shape{});  // one element
      EXPECT_LE(ComputeStats(r.graph).peak_bytes, ComputeStats(g).peak_bytes + 4 * 8 * 4);
    }
  }
}

// A mask whose allocation another op reads, or that is laid out otherwise,
// stays as it is.
TEST(OutOfPlace, KeepsMasksThatAreReadOrLaidOutOtherwise) {
  GraphBuilder b("dropout");
  const TensorId x = b.Call("aten.relu", {b.Input("x", {4, 8})});
  const TensorId n = b.Call("aten.empty_like", {x});
  b.mutable_graph().mutable_tensor(x).strides = {1, 4};  // preserve_format of a transposed x: not contiguous
  const TensorId mask = b.Call("aten.bernoulli_.float", {n}, {{"p", 0.5}});
  b.MarkOutput(b.Call("aten.mul", {x, mask}));
  EXPECT_EQ(WriteOutOfPlace(b.graph(), false).rewritten, 0);
  b.mutable_graph().mutable_tensor(x).strides.clear();
  EXPECT_EQ(WriteOutOfPlace(b.graph(), false).rewritten, 1);
  b.MarkOutput(n);  // the allocation is a result
  EXPECT_EQ(WriteOutOfPlace(b.graph(), false).rewritten, 0);
}

}  // namespace
}  // namespace memfit
