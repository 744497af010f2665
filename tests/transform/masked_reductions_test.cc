// Masked selections that feed only sums and means, and masked scatters of
// one value, written densely: what the rewrite emits and what it leaves
// alone (the executor's equality with the original step, split along the
// batch, is in python/tests/test_fission.py).
#include "transform/masked_reductions.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "ir/builder.h"
#include "ir/validate.h"
#include "test_util.h"
#include "transform/fission.h"
#include "transform/rewriter.h"

namespace memfit {
namespace {

using testing::OpNamed;

bool Has(const Graph& g, std::string_view type) {
  return std::any_of(g.ops().begin(), g.ops().end(), [&](const Op& op) { return op.type == type; });
}

// x [4, 3], m [4, 3]: masked_select(x, m) ([5] selected) read by a mean and a
// sum; the mean's backward masked_scatter(zeros_like(x), m, (g / 5).expand(5)).
Graph Step(bool selection_read_elsewhere = false) {
  GraphBuilder b("masked");
  const TensorId x = b.Input("x", {4, 3});
  const TensorId m = b.Input("m", {4, 3}, DType::kBool);
  const TensorId picked = b.CallOpaque("aten.masked_select", {x, m}, {{{5}, DType::kF32}}, {}, "select")[0];
  const TensorId mean = b.Call("aten.mean", {picked}, {}, "mean");
  const TensorId sum = b.Call("aten.sum", {picked}, {}, "sum");
  b.MarkOutput(b.Call("aten.add.Tensor", {mean, sum}, {}, "loss"));
  if (selection_read_elsewhere) b.MarkOutput(b.Call("aten.relu", {picked}, {}, "relu"));
  const TensorId g = b.Input("g", {});
  const TensorId spread = b.Call("aten.div.Scalar", {b.Call("aten.expand", {g}, {{"size", Shape{5}}})},
                                 {{"other", 5.0}}, "spread");
  const TensorId zeros = b.Call("aten.zeros_like", {x}, {}, "zeros");
  b.MarkOutput(b.Call("aten.masked_scatter", {zeros, m, spread}, {}, "scatter"));
  return b.graph();
}

TEST(MaskedReductions, SumsMeansAndUniformScattersAreWrittenDensely) {
  const Graph dense = WriteMaskedReductionsDensely(Step());
  Validate(dense);
  EXPECT_FALSE(Has(dense, "aten.masked_select"));
  EXPECT_FALSE(Has(dense, "aten.masked_scatter"));
  // The selection: masked_fill(x, ~m, 0), every shape the mask's.
  const Op& filled = OpNamed(dense, "select.dense");
  EXPECT_EQ(filled.type, "aten.masked_fill");
  EXPECT_EQ(dense.tensor(filled.outputs[0]).shape, (Shape{4, 3}));
  // The mean keeps its name and result: the sum of the filled tensor over the recorded count.
  const Op& mean = OpNamed(dense, "mean");
  EXPECT_EQ(mean.type, "aten.div");
  EXPECT_EQ(DoubleAttr(mean, "other", 0), 5.0);
  EXPECT_EQ(OpNamed(dense, "sum").type, "aten.sum");
  // The scatter: masked_fill(zeros, m, g / 5) with the value a 0-d tensor.
  const Op& scatter = OpNamed(dense, "scatter");
  EXPECT_EQ(scatter.type, "aten.masked_fill");
  ASSERT_EQ(scatter.inputs.size(), 3u);
  EXPECT_TRUE(dense.tensor(scatter.inputs[2]).shape.empty());
  EXPECT_THAT(RecordedFissions(dense), ::testing::ElementsAre(std::string(kMaskedRecordPrefix) + "2"));
}

// A selection read by anything but a full sum or mean keeps its data-dependent shape.
TEST(MaskedReductions, ASelectionReadOtherwiseStays) {
  const Graph dense = WriteMaskedReductionsDensely(Step(/*selection_read_elsewhere=*/true));
  EXPECT_TRUE(Has(dense, "aten.masked_select"));
  EXPECT_FALSE(Has(dense, "aten.masked_scatter"));  // the scatter is rewritten all the same
  EXPECT_THAT(RecordedFissions(dense), ::testing::ElementsAre(std::string(kMaskedRecordPrefix) + "1"));
}

// x[m] with one mask of x's shape (a loss over the valid pixels) and its
// backward index_put(zeros, [m], (g / n).expand(n), accumulate) are a
// selection and a scatter too.
TEST(MaskedReductions, ABoolIndexAndItsBackwardAreWrittenDensely) {
  GraphBuilder b("valid");
  const TensorId err = b.Input("err", {2, 3});
  const TensorId valid = b.Input("valid", {2, 3}, DType::kBool);
  const TensorId picked = b.CallOpaque("aten.index.Tensor", {err, valid}, {{{4}, DType::kF32}}, {}, "index")[0];
  b.MarkOutput(b.Call("aten.mean", {picked}, {}, "mean"));
  const TensorId g = b.Input("g", {});
  const TensorId spread = b.Call("aten.div.Scalar", {b.Call("aten.expand", {g}, {{"size", Shape{4}}})},
                                 {{"other", 4.0}}, "spread");
  const TensorId zeros = b.Call("aten.new_zeros", {spread}, {{"size", Shape{2, 3}}}, "zeros");
  b.MarkOutput(b.Call("aten.index_put", {zeros, valid, spread}, {{"accumulate", true}}, "put"));
  const Graph dense = WriteMaskedReductionsDensely(b.graph());
  Validate(dense);
  EXPECT_FALSE(Has(dense, "aten.index"));
  EXPECT_FALSE(Has(dense, "aten.index_put"));
  EXPECT_EQ(OpNamed(dense, "mean").type, "aten.div");
  EXPECT_EQ(OpNamed(dense, "put").type, "aten.masked_fill");
  EXPECT_THAT(RecordedFissions(dense), ::testing::ElementsAre(std::string(kMaskedRecordPrefix) + "2"));
}

}  // namespace
}  // namespace memfit
