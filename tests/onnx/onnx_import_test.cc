#include "onnx/onnx_import.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <map>
#include <string>

#include "autodiff/training_graph.h"
#include "ir/validate.h"
#include "onnx_test_models.h"
#include "test_util.h"
#include "util/error.h"

namespace memfit {
namespace {

using ::testing::HasSubstr;
using testing::ErrorOf;
using testing::OnnxModel;
using testing::TempDir;

std::map<std::string, int> CountOps(const Graph& g) {
  std::map<std::string, int> counts;
  for (const Op& op : g.ops()) ++counts[op.qualified_type()];
  return counts;
}

int64_t CountElements(const Graph& g, TensorRole role) {
  int64_t total = 0;
  for (const Tensor& t : g.tensors()) {
    if (t.role == role && !t.producer && !t.alias_of) total += t.numel();
  }
  return total;
}

const Tensor* FindTensor(const Graph& g, const std::string& name) {
  for (const Tensor& t : g.tensors()) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

const Op* FindOp(const Graph& g, const std::string& qualified_type) {
  for (const Op& op : g.ops()) {
    if (op.qualified_type() == qualified_type) return &op;
  }
  return nullptr;
}

OnnxImportOptions Batch(int64_t batch, bool train = false) {
  OnnxImportOptions options;
  options.batch = batch;
  options.append_loss = train;
  return options;
}

// 784*256 + 256 + 256*10 + 10 = 203,530 parameters.
constexpr int64_t kMlpParams = 784 * 256 + 256 + 256 * 10 + 10;

TEST(OnnxImport, MlpBecomesTransposeAndAddmm) {
  const Graph g = ImportOnnx(testing::Mlp().Bytes(), "mlp.onnx", Batch(32));
  ASSERT_NO_THROW(Validate(g));
  EXPECT_EQ(g.name, "mlp");
  EXPECT_EQ(CountOps(g), (std::map<std::string, int>{{"aten.t", 2}, {"aten.addmm", 2}, {"aten.relu", 1}}));
  EXPECT_EQ(CountElements(g, TensorRole::kParameter), kMlpParams);
  ASSERT_EQ(g.outputs.size(), 1u);
  EXPECT_EQ(g.tensor(g.outputs[0]).shape, (Shape{32, 10}));
  EXPECT_EQ(g.tensor(g.outputs[0]).role, TensorRole::kOutput);
  const Tensor* x = FindTensor(g, "x");
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(x->shape, (Shape{32, 784}));
  EXPECT_EQ(x->role, TensorRole::kInput);
  const Tensor* w = FindTensor(g, "fc1.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->role, TensorRole::kParameter);
  // Ops are scoped by their node's name.
  EXPECT_EQ(g.op(OpId(1)).name, "fc1.Gemm.addmm");
  EXPECT_EQ(g.metadata.at("source"), "onnx");
  EXPECT_EQ(g.metadata.at("batch"), "32");
}

TEST(OnnxImport, SymbolicBatchWithoutBatchFlagIsAnError) {
  const std::string e = ErrorOf([] { ImportOnnx(testing::Mlp().Bytes(), "mlp.onnx"); });
  EXPECT_THAT(e, HasSubstr("mlp.onnx"));
  EXPECT_THAT(e, HasSubstr("input 'x' dim 0 is symbolic ('batch')"));
  EXPECT_THAT(e, HasSubstr("--batch N"));
}

TEST(OnnxImport, StaticBatchNeedsNoFlag) {
  const Graph g = ImportOnnx(testing::Mlp(8).Bytes(), "mlp.onnx");
  EXPECT_EQ(g.tensor(g.outputs[0]).shape, (Shape{8, 10}));
}

class OnnxTrainTest : public ::testing::TestWithParam<OptimizerKind> {};

TEST_P(OnnxTrainTest, MlpTrainingGraphValidatesWithOneGradientPerParameter) {
  const Graph forward = ImportOnnx(testing::Mlp().Bytes(), "mlp.onnx", Batch(16, /*train=*/true));
  ASSERT_NO_THROW(Validate(forward));
  ASSERT_EQ(forward.outputs.size(), 1u);
  EXPECT_EQ(forward.tensor(forward.outputs[0]).shape, Shape{});
  const Tensor* labels = FindTensor(forward, "loss.labels");
  ASSERT_NE(labels, nullptr);
  EXPECT_EQ(labels->shape, Shape{16});
  EXPECT_EQ(labels->dtype, DType::kI64);
  EXPECT_NE(FindOp(forward, "aten.nll_loss_forward"), nullptr);

  TrainingOptions options;
  options.optimizer = GetParam();
  const Graph train = BuildTrainingGraph(forward, options);
  ASSERT_NO_THROW(Validate(train));
  const auto grads = ParameterGradients(train);
  EXPECT_EQ(grads.size(), 4u);
  for (const auto& [param, grad] : grads) {
    ASSERT_TRUE(grad.has_value()) << train.tensor(param).name;
    EXPECT_EQ(train.tensor(*grad).shape, train.tensor(param).shape);
  }
}

INSTANTIATE_TEST_SUITE_P(Optimizers, OnnxTrainTest, ::testing::Values(OptimizerKind::kSgd, OptimizerKind::kAdam),
                         [](const auto& info) { return std::string(ToString(info.param)); });

TEST(OnnxImport, SmallCnnShapesAndParameters) {
  const Graph g = ImportOnnx(testing::SmallCnn().Bytes(), "cnn.onnx");
  ASSERT_NO_THROW(Validate(g));
  EXPECT_EQ(CountOps(g), (std::map<std::string, int>{{"aten.convolution", 2},
                                                     {"aten.native_batch_norm", 1},
                                                     {"aten.relu", 2},
                                                     {"aten.max_pool2d_with_indices", 1},
                                                     {"aten._adaptive_avg_pool2d", 1},
                                                     {"aten.view", 1},
                                                     {"aten.t", 1},
                                                     {"aten.addmm", 1}}));
  // conv1 16*3*3*3 = 432, bn1 16 + 16, conv2 32*16*3*3 + 32 = 4640, fc 320 + 10.
  EXPECT_EQ(CountElements(g, TensorRole::kParameter), 432 + 32 + 4640 + 330);
  // running_mean and running_var: 2 * 16.
  EXPECT_EQ(CountElements(g, TensorRole::kBuffer), 32);
  const Op* conv = FindOp(g, "aten.convolution");
  ASSERT_NE(conv, nullptr);
  EXPECT_EQ(g.tensor(conv->outputs[0]).shape, (Shape{2, 16, 32, 32}));
  EXPECT_TRUE(std::holds_alternative<std::monostate>(conv->attrs.at("bias")));
  const Op* pool = FindOp(g, "aten.max_pool2d_with_indices");
  EXPECT_EQ(g.tensor(pool->outputs[0]).shape, (Shape{2, 16, 16, 16}));
  const Op* gap = FindOp(g, "aten._adaptive_avg_pool2d");
  // conv2 with stride 2 halves 16 -> 8 before the global pool.
  EXPECT_EQ(g.tensor(gap->inputs[0]).shape, (Shape{2, 32, 8, 8}));
  EXPECT_EQ(g.tensor(g.outputs[0]).shape, (Shape{2, 10}));
  // An inference graph: BatchNorm in eval mode, ONNX momentum 0.9 = PyTorch 0.1.
  const Op* bn = FindOp(g, "aten.native_batch_norm");
  EXPECT_EQ(std::get<bool>(bn->attrs.at("training")), false);
  EXPECT_NEAR(std::get<double>(bn->attrs.at("momentum")), 0.1, 1e-6);
}

TEST(OnnxImport, SmallCnnTrainingGraph) {
  const Graph forward = ImportOnnx(testing::SmallCnn().Bytes(), "cnn.onnx", Batch(0, /*train=*/true));
  ASSERT_NO_THROW(Validate(forward));
  EXPECT_EQ(std::get<bool>(FindOp(forward, "aten.native_batch_norm")->attrs.at("training")), true);
  TrainingOptions options;
  options.optimizer = OptimizerKind::kAdam;
  const Graph train = BuildTrainingGraph(forward, options);
  ASSERT_NO_THROW(Validate(train));
  EXPECT_NE(FindOp(train, "aten.convolution_backward"), nullptr);
  EXPECT_NE(FindOp(train, "aten.native_batch_norm_backward"), nullptr);
  EXPECT_NE(FindOp(train, "aten.max_pool2d_with_indices_backward"), nullptr);
  for (const auto& [param, grad] : ParameterGradients(train)) EXPECT_TRUE(grad.has_value()) << train.tensor(param).name;
}

// ids[2, 8] -> Gather(embedding) -> LayerNormalization -> MatMul + Add (bias)
// -> Reshape [2, 8, 4, 4] -> Transpose [2, 4, 8, 4] -> Reshape [2, 4, 32]
// -> Mul by 0.5 -> Softmax: the pieces of an exported transformer.
OnnxModel TinyTransformer() {
  OnnxModel m("tiny");
  m.Input("ids", {2, 8}, onnx::TensorProto::INT64);
  m.Weight("emb.weight", {100, 16});
  m.Weight("ln.weight", {16});
  m.Weight("ln.bias", {16});
  m.Weight("proj.weight", {16, 16});
  m.Weight("proj.bias", {16});
  m.Ints("heads_shape", {2, 8, 4, -1});
  m.Ints("merged_shape", {0, 4, 32});
  m.Scalar("half", 0.5f);
  m.Node("Gather", {"emb.weight", "ids"}, {"e"}, "/emb/Gather");
  m.Node("LayerNormalization", {"e", "ln.weight", "ln.bias"}, {"n"}, "/ln/LayerNormalization");
  m.Node("MatMul", {"n", "proj.weight"}, {"p"}, "/proj/MatMul");
  m.Node("Add", {"p", "proj.bias"}, {"pb"}, "/proj/Add");
  m.Node("Reshape", {"pb", "heads_shape"}, {"h"}, "/Reshape");
  OnnxModel::Ints(m.Node("Transpose", {"h"}, {"ht"}, "/Transpose"), "perm", {0, 2, 1, 3});
  m.Node("Reshape", {"ht", "merged_shape"}, {"hm"}, "/Reshape_1");
  m.Node("Mul", {"hm", "half"}, {"s"}, "/Mul");
  OnnxModel::Int(m.Node("Softmax", {"s"}, {"out"}, "/Softmax"), "axis", -1);
  m.Output("out");
  return m;
}

TEST(OnnxImport, TransformerPiecesMapToAten) {
  const Graph g = ImportOnnx(TinyTransformer().Bytes(), "tiny.onnx");
  ASSERT_NO_THROW(Validate(g));
  const auto ops = CountOps(g);
  EXPECT_EQ(ops.at("aten.embedding"), 1);
  EXPECT_EQ(ops.at("aten.native_layer_norm"), 1);
  EXPECT_EQ(ops.at("aten.mm"), 1);
  EXPECT_EQ(ops.at("aten.add.Tensor"), 1);
  EXPECT_EQ(ops.at("aten.permute"), 1);
  // The permuted tensor is made contiguous before the second reshape.
  EXPECT_EQ(ops.at("aten.clone"), 1);
  EXPECT_EQ(ops.at("aten.mul.Scalar"), 1);
  EXPECT_EQ(ops.at("aten._softmax"), 1);
  EXPECT_EQ(g.tensor(g.outputs[0]).shape, (Shape{2, 4, 32}));
  // Shapes are attributes, not tensors; the embedding table is a parameter.
  EXPECT_EQ(FindTensor(g, "heads_shape"), nullptr);
  EXPECT_EQ(FindTensor(g, "half"), nullptr);
  EXPECT_EQ(CountElements(g, TensorRole::kParameter), 1600 + 32 + 256 + 16);
}

TEST(OnnxImport, NonTwoDimensionalOutputTrainsWithMeanSquaredError) {
  const Graph forward = ImportOnnx(TinyTransformer().Bytes(), "tiny.onnx", Batch(0, /*train=*/true));
  ASSERT_NO_THROW(Validate(forward));
  const Tensor* target = FindTensor(forward, "loss.target");
  ASSERT_NE(target, nullptr);
  EXPECT_EQ(target->shape, (Shape{2, 4, 32}));
  const Graph train = BuildTrainingGraph(forward);
  ASSERT_NO_THROW(Validate(train));
  EXPECT_NE(FindOp(train, "aten.embedding_dense_backward"), nullptr);
}

// x[1, 4, 8, 8] -> AveragePool(2) and ConvTranspose(stride 2) -> Sigmoid,
// concatenated on channels after upsampling the pooled branch back.
TEST(OnnxImport, PoolingTransposedConvAndConcat) {
  OnnxModel m("unetish");
  m.Input("x", {1, 4, 8, 8});
  m.Weight("up.weight", {4, 2, 2, 2});  // [in, out / groups, k, k]
  m.Weight("up.bias", {2});
  auto* pool = m.Node("AveragePool", {"x"}, {"p"}, "pool");
  OnnxModel::Ints(pool, "kernel_shape", {2, 2});
  OnnxModel::Ints(pool, "strides", {2, 2});
  auto* up = m.Node("ConvTranspose", {"p", "up.weight", "up.bias"}, {"u"}, "up");
  OnnxModel::Ints(up, "strides", {2, 2});
  m.Node("Sigmoid", {"u"}, {"s"}, "sig");
  OnnxModel::Int(m.Node("Concat", {"x", "s"}, {"y"}, "cat"), "axis", 1);
  m.Output("y");
  const Graph g = ImportOnnx(m.Bytes(), "u.onnx");
  ASSERT_NO_THROW(Validate(g));
  EXPECT_EQ(g.tensor(FindOp(g, "aten.avg_pool2d")->outputs[0]).shape, (Shape{1, 4, 4, 4}));
  EXPECT_EQ(std::get<bool>(FindOp(g, "aten.convolution")->attrs.at("transposed")), true);
  EXPECT_EQ(g.tensor(g.outputs[0]).shape, (Shape{1, 6, 8, 8}));
  const Graph train = BuildTrainingGraph(ImportOnnx(m.Bytes(), "u.onnx", Batch(0, true)));
  EXPECT_NO_THROW(Validate(train));
}

TEST(OnnxImport, UnsupportedOpsAreAllListedInOneError) {
  OnnxModel m = testing::Mlp(4);
  for (int i = 0; i < 3; ++i) m.Node("Foo", {"y"}, {"foo" + std::to_string(i)});
  m.Node("Bar", {"y"}, {"bar"});
  m.Node("Baz", {"y"}, {"baz"})->set_domain("com.microsoft");
  const std::string e = ErrorOf([&] { ImportOnnx(m.Bytes(), "m.onnx"); });
  EXPECT_EQ(e, "m.onnx: unsupported ONNX ops: Foo (3 nodes), Bar (1 node), com.microsoft.Baz (1 node)");
}

TEST(OnnxImport, AsymmetricPaddingNamesTheNode) {
  OnnxModel m = testing::SmallCnn();
  auto* conv = m.proto().mutable_graph()->mutable_node(0);
  conv->mutable_attribute(1)->clear_ints();
  for (int64_t p : {0, 0, 1, 1}) conv->mutable_attribute(1)->add_ints(p);
  const std::string e = ErrorOf([&] { ImportOnnx(m.Bytes(), "cnn.onnx"); });
  EXPECT_THAT(e, HasSubstr("cnn.onnx: node '/conv1/Conv' (Conv): asymmetric pads [0, 0, 1, 1]"));
}

TEST(OnnxImport, NonConstantReshapeShapeIsAnError) {
  OnnxModel m("dyn");
  m.Input("x", {2, 6});
  m.Input("shape", {2}, onnx::TensorProto::INT64);
  m.Node("Reshape", {"x", "shape"}, {"y"}, "r");
  m.Output("y");
  EXPECT_THAT(ErrorOf([&] { ImportOnnx(m.Bytes(), "dyn.onnx"); }),
              HasSubstr("dyn.onnx: node 'r' (Reshape): shape input 'shape' is not an integer constant"));
}

TEST(OnnxImport, TrainNeedsASingleOutput) {
  OnnxModel m = testing::Mlp(4);
  m.Output("r");
  EXPECT_THAT(ErrorOf([&] { ImportOnnx(m.Bytes(), "two.onnx", Batch(0, true)); }),
              HasSubstr("two.onnx: --train needs a model with a single floating-point output to attach the loss to, "
                        "got 2 (of 2 outputs)"));
}

// An integer output beside the logits (an ArgMax's predictions) carries no
// gradient: the training step attaches its loss to the logits and leaves it out.
TEST(OnnxImport, TrainLeavesIntegerOutputsOut) {
  OnnxModel m = testing::Mlp(4);
  OnnxModel::Int(m.Node("ArgMax", {"y"}, {"label"}, "/argmax"), "axis", 1);
  m.Output("label");
  const Graph forward = ImportOnnx(m.Bytes(), "argmax.onnx", Batch(0, true));
  ASSERT_EQ(forward.outputs.size(), 1u);
  EXPECT_EQ(forward.tensor(forward.outputs[0]).shape, Shape{});
  EXPECT_NE(FindOp(forward, "aten.nll_loss_forward"), nullptr);
  const Graph train = BuildTrainingGraph(forward);
  ASSERT_NO_THROW(Validate(train));
  EXPECT_NE(FindTensor(train, "fc2.weight.grad"), nullptr);
}

// Mean of n inputs divides their sum by n; Sum of one input is that input.
TEST(OnnxImport, SumAndMeanOfSeveralInputs) {
  OnnxModel m("variadic");
  for (const char* name : {"a", "b", "c"}) m.Input(name, {2, 3});
  m.Node("Sum", {"a", "b", "c"}, {"s"});
  m.Node("Mean", {"s", "a", "b"}, {"m"});
  m.Node("Sum", {"m"}, {"y"});
  m.Output("y");
  const Graph g = ImportOnnx(m.Bytes(), "variadic.onnx", Batch(0));
  const auto counts = CountOps(g);
  EXPECT_EQ(counts.at("aten.add.Tensor"), 4);
  EXPECT_EQ(counts.at("aten.div.Scalar"), 1);
  EXPECT_DOUBLE_EQ(std::get<double>(FindOp(g, "aten.div.Scalar")->attrs.at("other")), 3.0);
}

TEST(OnnxImport, TruncatedFileIsAClearError) {
  TempDir dir;
  const std::string bytes = testing::Mlp().Bytes();
  const std::string path = dir.Write("cut.onnx", bytes.substr(0, bytes.size() / 2));
  const std::string e = ErrorOf([&] { ImportOnnxFile(path, Batch(4)); });
  EXPECT_THAT(e, HasSubstr(path));
  EXPECT_THAT(e, HasSubstr("not a valid ONNX model"));
}

TEST(OnnxImport, EmptyAndTextFilesAreClearErrors) {
  TempDir dir;
  for (const std::string& contents : {std::string(), std::string("{\"format\": \"memfit.graph\"}\n")}) {
    const std::string path = dir.Write("bad.onnx", contents);
    const std::string e = ErrorOf([&] { ImportOnnxFile(path); });
    EXPECT_THAT(e, HasSubstr(path));
    EXPECT_THAT(e, HasSubstr("not a valid ONNX model"));
  }
  EXPECT_THAT(ErrorOf([&] { ImportOnnxFile(dir.File("missing.onnx")); }), HasSubstr("missing.onnx"));
}

// Einsum: pairs contracted by one bmm each, sums and permutes around them;
// what it cannot do (a diagonal, broadcasting, a malformed equation) is one
// line naming the node.
OnnxModel EinsumModel(const std::string& equation, const std::vector<std::vector<int64_t>>& shapes) {
  OnnxModel m("einsum");
  std::vector<std::string> names;
  for (size_t i = 0; i < shapes.size(); ++i) {
    names.push_back("x" + std::to_string(i));
    m.Input(names.back(), shapes[i]);
  }
  auto* node = m.Node("Einsum", {}, {"y"}, "e");
  for (const std::string& name : names) node->add_input(name);
  OnnxModel::String(node, "equation", equation);
  m.Output("y");
  return m;
}

TEST(OnnxImport, EinsumBecomesBmmSumsAndPermutes) {
  struct Case {
    std::string equation;
    std::vector<std::vector<int64_t>> shapes;
    Shape out;
    int bmms;
  };
  for (const Case& c : {Case{"bhid,bhjd->bhij", {{2, 3, 4, 5}, {2, 3, 6, 5}}, {2, 3, 4, 6}, 1},
                        Case{"ij,jk", {{4, 5}, {5, 6}}, {4, 6}, 1},            // implicit output
                        Case{"i,j->ji", {{4}, {6}}, {6, 4}, 1},                 // outer product
                        Case{"...ij,...jk->...ik", {{2, 3, 4, 5}, {2, 3, 5, 6}}, {2, 3, 4, 6}, 1},
                        Case{"ab,bc,cd->ad", {{2, 3}, {3, 4}, {4, 5}}, {2, 5}, 2},
                        Case{"abc->ca", {{2, 3, 4}}, {4, 2}, 0},               // sum and permute
                        Case{"abc,d->", {{2, 3, 4}, {5}}, {}, 1}}) {
    SCOPED_TRACE(c.equation);
    const Graph g = ImportOnnx(EinsumModel(c.equation, c.shapes).Bytes(), "e.onnx");
    ASSERT_NO_THROW(Validate(g));
    EXPECT_EQ(g.tensor(g.outputs[0]).shape, c.out);
    EXPECT_EQ(CountOps(g)["aten.bmm"], c.bmms);
  }
}

TEST(OnnxImport, EinsumRefusalsNameTheNode) {
  struct Case {
    std::string equation;
    std::vector<std::vector<int64_t>> shapes;
    std::string why;
  };
  for (const Case& c : {Case{"ii->i", {{3, 3}}, "label 'i' repeats in operand 0 (a diagonal)"},
                        Case{"ij,jk->ik", {{2, 3}, {4, 5}}, "label 'j' has extents 3 and 4"},
                        Case{"ij,jk->ik", {{2, 3}}, "names 2 operands, the node has 1 inputs"},
                        Case{"i1->i", {{2, 3}}, "'1' is not a label"},
                        Case{"ij->k", {{2, 3}}, "output label 'k' is in no operand"},
                        Case{"ijk->i", {{2, 3}}, "operand 0 has rank 2"}}) {
    SCOPED_TRACE(c.equation);
    const std::string e = ErrorOf([&] { ImportOnnx(EinsumModel(c.equation, c.shapes).Bytes(), "e.onnx"); });
    EXPECT_THAT(e, HasSubstr("e.onnx: node 'e' (Einsum): "));
    EXPECT_THAT(e, HasSubstr(c.why));
    EXPECT_EQ(e.find('\n'), std::string::npos);
  }
}

TEST(OnnxImport, SupportedOpsAreListed) {
  const auto ops = SupportedOnnxOps();
  EXPECT_TRUE(std::is_sorted(ops.begin(), ops.end()));
  for (const char* op : {"Gemm", "Conv", "BatchNormalization", "Constant", "Gather", "LayerNormalization"}) {
    EXPECT_NE(std::find(ops.begin(), ops.end(), op), ops.end()) << op;
  }
}

namespace memfit {
namespace {

// A node with too few inputs is an error naming it; Add/Sub/Mul/Div and
// Gather read their inputs by index and aborted in protobuf's bounds check.
TEST(OnnxImport, NodesWithTooFewInputsAreErrors) {
  for (const char* type : {"Add", "Sub", "Mul", "Div", "Gather"}) {
    for (int inputs = 0; inputs < 2; ++inputs) {
      OnnxModel m("few");
      m.Input("x", {2, 3});
      if (inputs == 0) {
        m.Node(type, {}, {"y"}, "n");
      } else {
        m.Node(type, {"x"}, {"y"}, "n");
      }
      m.Output("y");
      EXPECT_EQ(ErrorOf([&] { ImportOnnx(m.Bytes(), "few.onnx"); }),
                fmt::format("few.onnx: node 'n' ({}): input {} is missing", type, inputs))
          << type << " with " << inputs << " inputs";
    }
  }
}

// Names and op types come from the file: a newline in one stays escaped, so
// the message is one line.
TEST(OnnxImport, NamesWithNewlinesStayOnOneLine) {
  OnnxModel m("nl");
  m.Input("x", {2, 3});
  m.Node("Fo\no", {"x"}, {"y"});
  m.Output("y");
  EXPECT_EQ(ErrorOf([&] { ImportOnnx(m.Bytes(), "nl.onnx"); }), "nl.onnx: unsupported ONNX ops: Fo\\no (1 node)");
  OnnxModel n("nl");
  n.Input("x", {2, 3});
  n.Node("Relu", {"no\nsuch"}, {"y"}, "a\nb");
  n.Output("y");
  EXPECT_EQ(ErrorOf([&] { ImportOnnx(n.Bytes(), "nl.onnx"); }),
            "nl.onnx: node 'a\\nb' (Relu): input 'no\\nsuch' is not a graph input, initializer or earlier node's output");
}

// Two nodes writing one value: the second replaced the first unnoticed.
TEST(OnnxImport, ValuesAreAssignedOnce) {
  OnnxModel m("twice");
  m.Input("x", {2, 3});
  m.Node("Relu", {"x"}, {"y"}, "a");
  m.Node("Sigmoid", {"x"}, {"y"}, "b");
  m.Output("y");
  EXPECT_EQ(ErrorOf([&] { ImportOnnx(m.Bytes(), "twice.onnx"); }),
            "twice.onnx: node 'b' (Sigmoid): output 'y' is already defined (ONNX values are assigned once)");
}

// A graph the importer builds but Validate rejects names the file.
TEST(OnnxImport, InvalidResultNamesTheFile) {
  OnnxModel m("huge");
  m.Input("x", {1 << 30, 1 << 30, 1 << 30});
  m.Node("Relu", {"x"}, {"y"});
  m.Output("y");
  EXPECT_EQ(ErrorOf([&] { ImportOnnx(m.Bytes(), "huge.onnx"); }),
            "huge.onnx: tensor 'x': invalid shape [1073741824, 1073741824, 1073741824]");
  // Shape inference inside a node names the file and the node.
  OnnxModel n("mismatch");
  n.Input("x", {2, 3});
  n.Input("z", {4, 5});
  n.Node("Add", {"x", "z"}, {"y"}, "add");
  n.Output("y");
  EXPECT_THAT(ErrorOf([&] { ImportOnnx(n.Bytes(), "mismatch.onnx"); }),
              ::testing::StartsWith("mismatch.onnx: node 'add' (Add): "));
}

}  // namespace
}  // namespace memfit

namespace memfit {
namespace {

// The ops of exported CNNs and transformers beyond the first set: each maps
// to the ATen ops PyTorch runs, and the training graph builds and validates.
TEST(OnnxImport, ActivationsClipAndArithmetic) {
  OnnxModel m("acts", 13);
  m.Input("x", {2, 8});
  m.Scalar("lo", 0.0f);
  m.Scalar("hi", 6.0f);
  m.Scalar("three", 3.0f);
  m.Node("Clip", {"x", "lo", "hi"}, {"a"}, "relu6");
  m.Node("HardSwish", {"a"}, {"b"}, "hswish");
  auto* hs = m.Node("HardSigmoid", {"b"}, {"c"}, "hsig");
  OnnxModel::Float(hs, "alpha", 1.0f / 6);
  OnnxModel::Float(hs, "beta", 0.5f);
  OnnxModel::Float(m.Node("LeakyRelu", {"c"}, {"d"}, "leaky"), "alpha", 0.2f);
  m.Node("Pow", {"d", "three"}, {"e"}, "cube");
  m.Node("Erf", {"e"}, {"f"}, "erf");
  m.Node("Exp", {"f"}, {"g"}, "exp");
  m.Node("Sqrt", {"g"}, {"h"}, "sqrt");
  m.Node("Log", {"h"}, {"i"}, "log");
  m.Node("Neg", {"i"}, {"y"}, "neg");
  m.Output("y");
  const Graph g = ImportOnnx(m.Bytes(), "acts.onnx", Batch(0));
  const Op* clip = FindOp(g, "aten.hardtanh");
  ASSERT_NE(clip, nullptr);
  EXPECT_EQ(std::get<double>(clip->attrs.at("max_val")), 6.0);
  const Op* pow = FindOp(g, "aten.pow.Tensor_Scalar");
  ASSERT_NE(pow, nullptr);
  EXPECT_EQ(std::get<double>(pow->attrs.at("exponent")), 3.0);
  for (const char* type : {"aten.hardswish", "aten.hardsigmoid", "aten.leaky_relu", "aten.erf", "aten.exp",
                           "aten.sqrt", "aten.log", "aten.neg"}) {
    EXPECT_NE(FindOp(g, type), nullptr) << type;
  }
  EXPECT_NO_THROW(Validate(BuildTrainingGraph(ImportOnnx(m.Bytes(), "acts.onnx", Batch(0, true)))));

  // Before opset 11 the bounds are attributes; one bound other than a
  // ReLU's is a clamp_min or clamp_max.
  OnnxModel old("clip6", 6);
  old.Input("x", {2, 8});
  auto* c = old.Node("Clip", {"x"}, {"y"}, "clip");
  OnnxModel::Float(c, "min", -1.0f);
  OnnxModel::Float(c, "max", 1.0f);
  old.Output("y");
  EXPECT_NE(FindOp(ImportOnnx(old.Bytes(), "clip6.onnx", Batch(0)), "aten.hardtanh"), nullptr);
  OnnxModel one("clip1", 13);
  one.Input("x", {2, 8});
  one.Scalar("hi", 6.0f);
  one.Node("Clip", {"x", "", "hi"}, {"y"}, "clip");
  one.Output("y");
  EXPECT_NE(FindOp(ImportOnnx(one.Bytes(), "clip1.onnx", Batch(0)), "aten.clamp_max"), nullptr);
}

// Squeeze-and-excitation (ReduceMean keepdims), axes as attributes (opset
// 11) or inputs (13), Slice, Pad in ONNX's begin-all/end-all order.
TEST(OnnxImport, ReductionsSqueezeSliceAndPad) {
  for (int64_t opset : {11, 13}) {
    OnnxModel m("se", opset);
    m.Input("x", {2, 4, 6, 6});
    m.Ints("hw", {2, 3});
    m.Ints("zero", {0});
    m.Ints("starts", {1});
    m.Ints("ends", {-1});
    m.Ints("axes", {3});
    m.Ints("pads", {0, 0, 1, 0, 0, 0, 2, 3});
    auto* mean = m.Node("ReduceMean", opset >= 18 ? std::initializer_list<std::string>{"x", "hw"}
                                                  : std::initializer_list<std::string>{"x"},
                        {"s"}, "mean");
    OnnxModel::Ints(mean, "axes", {2, 3});
    m.Node("Mul", {"x", "s"}, {"a"}, "scale");
    if (opset >= 13) {
      m.Node("Unsqueeze", {"a", "zero"}, {"u"}, "unsq");
      m.Node("Squeeze", {"u", "zero"}, {"b"}, "sq");
    } else {
      OnnxModel::Ints(m.Node("Unsqueeze", {"a"}, {"u"}, "unsq"), "axes", {0});
      OnnxModel::Ints(m.Node("Squeeze", {"u"}, {"b"}, "sq"), "axes", {0});
    }
    m.Node("Slice", {"b", "starts", "ends", "axes"}, {"c"}, "slice");
    m.Node("Pad", {"c", "pads"}, {"y"}, "pad");
    m.Output("y");
    const Graph g = ImportOnnx(m.Bytes(), "se.onnx", Batch(0));
    const Op* reduce = FindOp(g, "aten.mean.dim");
    ASSERT_NE(reduce, nullptr);
    EXPECT_EQ(std::get<std::vector<int64_t>>(reduce->attrs.at("dim")), (std::vector<int64_t>{2, 3}));
    EXPECT_TRUE(std::get<bool>(reduce->attrs.at("keepdim")));
    const Op* slice = FindOp(g, "aten.slice.Tensor");
    ASSERT_NE(slice, nullptr);
    EXPECT_EQ(std::get<int64_t>(slice->attrs.at("end")), 5);  // -1 of 6
    // [2, 4, 6, 4] padded: H by (1, 2), W by (0, 3).
    const Op* pad = FindOp(g, "aten.constant_pad_nd");
    ASSERT_NE(pad, nullptr);
    EXPECT_EQ(std::get<std::vector<int64_t>>(pad->attrs.at("pad")), (std::vector<int64_t>{0, 3, 1, 2}));
    EXPECT_EQ(g.tensor(g.outputs[0]).shape, (Shape{2, 4, 9, 7})) << opset;
    EXPECT_NO_THROW(Validate(BuildTrainingGraph(ImportOnnx(m.Bytes(), "se.onnx", Batch(0, true)))));
  }
}

// Split (sizes as an input from opset 13, an attribute before, equal parts
// without), Tile, a negative-step Slice (flip, then slice), Where with a
// constant value (masked_fill) and with two tensors, comparisons, Cast, Max
// and Min (a constant scalar is a clamp bound); each trains.
TEST(OnnxImport, SplitTileFlipWhereAndExtrema) {
  for (int64_t opset : {11, 13, 18}) {
    OnnxModel m("mix", opset);
    m.Input("x", {2, 6, 4});
    m.Ints("sizes", {2, 4});
    m.Ints("reps", {1, 1, 2});
    m.Ints("start", {-1});
    m.Ints("end", {std::numeric_limits<int64_t>::min()});
    m.Ints("axis", {1});
    m.Ints("back", {-1});
    m.Scalar("half", 0.5f);
    m.Scalar("fill", -1.0f);
    auto* split = opset >= 13 ? m.Node("Split", {"x", "sizes"}, {"a", "b"}, "split") : m.Node("Split", {"x"}, {"a", "b"}, "split");
    OnnxModel::Int(split, "axis", 1);
    if (opset < 13) OnnxModel::Ints(split, "split", {2, 4});
    auto* halves = m.Node("Split", {"b"}, {"b0", "b1"}, "halves");  // equal parts
    OnnxModel::Int(halves, "axis", 1);
    if (opset >= 18) OnnxModel::Int(halves, "num_outputs", 2);
    m.Node("Tile", {"a", "reps"}, {"t"}, "tile");                              // [2, 2, 8]
    m.Node("Slice", {"x", "start", "end", "axis", "back"}, {"f"}, "flip");  // x reversed along axis 1
    m.Node("Greater", {"f", "half"}, {"gt"}, "gt");
    m.Node("Where", {"gt", "fill", "f"}, {"w"}, "fill");      // masked_fill(f, f > 0.5, -1)
    m.Node("Less", {"x", "f"}, {"lt"}, "lt");
    m.Node("LessOrEqual", {"half", "x"}, {"le"}, "mirrored");  // x >= 0.5
    m.Node("Not", {"le"}, {"unused"}, "not");
    m.Node("Where", {"lt", "x", "w"}, {"sel"}, "select");     // where(x < f, x, w)
    m.Node("Cast", {"lt"}, {"ltf"}, "cast");
    OnnxModel::Int(m.proto().mutable_graph()->mutable_node()->rbegin().operator->(), "to", onnx::TensorProto::FLOAT);
    m.Node("Max", {"sel", "ltf", "half"}, {"mx"}, "max");     // clamp_min(maximum(sel, ltf), 0.5)
    m.Node("Min", {"mx", "x"}, {"mn"}, "min");
    m.Node("Add", {"b0", "b1"}, {"bb"}, "add");                // [2, 2, 4]
    m.Node("Concat", {"bb", "a"}, {"ab"}, "cat");              // [2, 4, 4]
    OnnxModel::Int(m.proto().mutable_graph()->mutable_node()->rbegin().operator->(), "axis", 1);
    m.Node("Reshape", {"t", "shape"}, {"t2"}, "reshape");
    m.Ints("shape", {2, 4, 4});
    m.Node("Mul", {"ab", "t2"}, {"p"}, "mul");
    m.Node("ReduceSum", {"mn"}, {"s"}, "sum");
    m.Node("Add", {"p", "s"}, {"y"}, "out");
    m.Output("y");
    const Graph g = ImportOnnx(m.Bytes(), "mix.onnx", Batch(0));
    auto counts = CountOps(g);
    EXPECT_EQ(counts["aten.split_with_sizes"], 2) << opset;
    EXPECT_EQ(std::get<double>(FindOp(g, "aten.ge.Scalar")->attrs.at("other")), 0.5);
    for (const char* type : {"aten.repeat", "aten.flip", "aten.masked_fill.Scalar", "aten.where.self", "aten.gt.Scalar",
                             "aten.lt.Tensor", "aten._to_copy", "aten.maximum", "aten.clamp_min", "aten.minimum"}) {
      EXPECT_EQ(counts[type], 1) << type << " opset " << opset;
    }
    const Op* split_op = FindOp(g, "aten.split_with_sizes");
    EXPECT_EQ(std::get<std::vector<int64_t>>(split_op->attrs.at("split_sizes")), (std::vector<int64_t>{2, 4}));
    const Op* flip = FindOp(g, "aten.flip");
    EXPECT_EQ(std::get<std::vector<int64_t>>(flip->attrs.at("dims")), (std::vector<int64_t>{1}));
    EXPECT_EQ(FindOp(g, "aten.slice.Tensor"), nullptr);  // the whole axis reversed: no slice after the flip
    EXPECT_EQ(g.tensor(g.outputs[0]).shape, (Shape{2, 4, 4}));
    EXPECT_NO_THROW(Validate(BuildTrainingGraph(ImportOnnx(m.Bytes(), "mix.onnx", Batch(0, true))))) << opset;
  }
}

// Range and Mod of integer constants are folded (torch's % : the
// remainder takes the divisor's sign; fmod 1: the dividend's); here they
// give Tile its repeats.
TEST(OnnxImport, RangeAndModAreFolded) {
  for (int64_t fmod : {0, 1}) {
    OnnxModel m("fold", 13);
    m.Input("x", {2, 6});
    m.Ints("start", {1});
    m.Ints("limit", {3});
    m.Ints("delta", {1});
    m.Ints("num", {-4, 5});
    m.Ints("three", {3});
    m.Node("Range", {"start", "limit", "delta"}, {"r"}, "range");  // [1, 2]
    OnnxModel::Int(m.Node("Mod", {"num", "three"}, {"mod"}, "mod"), "fmod", fmod);  // [2, 2] or [-1, 2]
    m.Node("Tile", {"x", "r"}, {"t"}, "tile");
    m.Node("Tile", {"t", "mod"}, {"y"}, "tile2");
    m.Output("y");
    if (fmod == 0) {
      const Graph g = ImportOnnx(m.Bytes(), "fold.onnx", Batch(0));
      EXPECT_EQ(g.tensor(g.outputs[0]).shape, (Shape{4, 24}));
    } else {
      EXPECT_THAT(ErrorOf([&] { ImportOnnx(m.Bytes(), "fold.onnx", Batch(0)); }),
                  HasSubstr("node 'tile2' (Tile): negative repeat count -1"));
    }
  }
}

// Integer constants fold with NumPy's broadcasting: [3, 1] + [3] is [3, 3]
// (it was taken element by element as [3, 1]; Swin's window-index grid,
// arange(h)[:, None] + arange(w), is built so).
TEST(OnnxImport, IntegerFoldingBroadcasts) {
  OnnxModel m("broadcast", 13);
  m.Input("x", {9});
  m.Ints("col", {0, 10, 20});
  m.Ints("shape31", {3, 1});
  m.Ints("row", {1, 2, 3});
  m.Ints("flat", {-1});
  m.Ints("four", {4});
  m.Ints("five", {5});
  m.Ints("zero", {0});
  m.Node("Reshape", {"col", "shape31"}, {"c31"}, "column");  // [[0], [10], [20]]
  m.Node("Add", {"c31", "row"}, {"grid"}, "grid");          // [[1, 2, 3], [11, 12, 13], [21, 22, 23]]
  m.Node("Shape", {"grid"}, {"dims"}, "dims");              // [3, 3]
  m.Node("Reshape", {"x", "dims"}, {"square"}, "square");
  m.Node("Reshape", {"grid", "flat"}, {"values"}, "values");
  m.Node("Slice", {"values", "four", "five", "zero"}, {"twelve"}, "pick");  // [12]
  m.Node("Equal", {"c31", "row"}, {"none"}, "equal");       // [3, 3] of false: Where picks the other
  m.Node("Where", {"none", "c31", "row"}, {"rows"}, "where");  // [[1, 2, 3]] * 3
  m.Node("Shape", {"rows"}, {"rows_dims"}, "rows_dims");
  m.Node("Tile", {"square", "rows_dims"}, {"tiled"}, "tile");  // [9, 9]
  m.Node("Tile", {"x", "twelve"}, {"y"}, "tile12");
  m.Output("y");
  m.Output("tiled");
  const Graph g = ImportOnnx(m.Bytes(), "broadcast.onnx", Batch(0));
  EXPECT_EQ(g.tensor(g.outputs[0]).shape, (Shape{108}));
  EXPECT_EQ(g.tensor(g.outputs[1]).shape, (Shape{9, 9}));
}

// An indexed assignment into a float constant, as torch exports Swin's
// shifted-window mask (img_mask = zeros(...); img_mask[:, h, w, :] = cnt):
// ConstantOfShape of a float value is made in the step (aten.full), and
// ScatterND is aten.index_put with one index tensor per coordinate.
TEST(OnnxImport, ScatterNDIntoAConstantOfShape) {
  auto model = [](const std::string& reduction) {
    OnnxModel m("scatter", 13);
    m.Input("x", {2, 4});
    m.Ints("shape", {2, 4});
    m.Ints("pairs", {0, 1, 1, 3});
    m.Ints("shape22", {2, 2});
    m.Ints("pair_shape", {2});
    onnx::NodeProto* zeros = m.Node("ConstantOfShape", {"shape"}, {"mask"}, "zeros");
    auto* value = zeros->add_attribute();
    value->set_name("value");
    value->set_type(onnx::AttributeProto::TENSOR);
    value->mutable_t()->set_data_type(onnx::TensorProto::FLOAT);
    value->mutable_t()->add_dims(1);
    value->mutable_t()->add_float_data(0.5f);
    m.Node("Reshape", {"pairs", "shape22"}, {"indices"}, "indices");  // (0, 1) and (1, 3)
    OnnxModel::Int(m.Node("ReduceSum", {"x"}, {"total"}, "total"), "keepdims", 0);
    m.Node("Expand", {"total", "pair_shape"}, {"updates"}, "updates");
    onnx::NodeProto* scatter = m.Node("ScatterND", {"mask", "indices", "updates"}, {"marked"}, "scatter");
    if (!reduction.empty()) OnnxModel::String(scatter, "reduction", reduction);
    m.Node("Mul", {"x", "marked"}, {"y"}, "apply");
    m.Output("y");
    return m;
  };
  const Graph g = ImportOnnx(model("").Bytes(), "scatter.onnx", Batch(0));
  const Op& full = testing::OpNamed(g, "zeros.full");
  EXPECT_EQ(std::get<double>(full.attrs.at("fill_value")), 0.5);
  EXPECT_EQ(g.tensor(full.outputs[0]).shape, (Shape{2, 4}));
  const Op& put = testing::OpNamed(g, "scatter.index_put");
  ASSERT_EQ(put.inputs.size(), 4u);  // the mask, two coordinates, the updates
  EXPECT_EQ(g.tensor(put.inputs[1]).shape, (Shape{2}));
  EXPECT_EQ(std::get<bool>(put.attrs.at("accumulate")), false);
  EXPECT_EQ(g.tensor(g.outputs[0]).shape, (Shape{2, 4}));
  const Graph add = ImportOnnx(model("add").Bytes(), "scatter.onnx", Batch(0));
  EXPECT_EQ(std::get<bool>(testing::OpNamed(add, "scatter.index_put").attrs.at("accumulate")), true);
  EXPECT_THAT(ErrorOf([&] { ImportOnnx(model("max").Bytes(), "scatter.onnx", Batch(0)); }),
              HasSubstr("node 'scatter' (ScatterND): reduction 'max' is not supported"));
}

// Dropout's mask (output 1), which torch exports and nothing reads, is left
// out; read, it is an error naming it.
TEST(OnnxImport, UnreadOptionalOutputsAreLeftOut) {
  for (bool read : {false, true}) {
    OnnxModel m("dropout", 13);
    m.Input("x", {2, 4});
    m.Node("Dropout", {"x"}, {"y", "mask"}, "drop");
    m.Output("y");
    if (read) m.Output("mask");
    if (!read) {
      EXPECT_EQ(ImportOnnx(m.Bytes(), "dropout.onnx", Batch(0)).outputs.size(), 1u);
    } else {
      EXPECT_THAT(ErrorOf([&] { ImportOnnx(m.Bytes(), "dropout.onnx", Batch(0)); }),
                  HasSubstr("node 'drop' (Dropout): output 1 ('mask') is not supported"));
    }
  }
}

TEST(OnnxImport, SplitTileAndWhereRefusalsNameTheNode) {
  auto error = [](const std::function<void(OnnxModel&)>& build) {
    OnnxModel m("bad", 13);
    m.Input("x", {2, 6});
    build(m);
    m.Output("y");
    return ErrorOf([&] { ImportOnnx(m.Bytes(), "bad.onnx", Batch(0)); });
  };
  EXPECT_THAT(error([](OnnxModel& m) {
                m.Ints("sizes", {2, 3});
                OnnxModel::Int(m.Node("Split", {"x", "sizes"}, {"y", "z"}, "split"), "axis", 1);
              }),
              HasSubstr("bad.onnx: node 'split' (Split): split sizes sum to 5, axis 1 has extent 6"));
  EXPECT_THAT(error([](OnnxModel& m) {  // found by the fuzzer: the sum overflowed
                m.Ints("sizes", {std::numeric_limits<int64_t>::max() - 1, 7});
                OnnxModel::Int(m.Node("Split", {"x", "sizes"}, {"y", "z"}, "split"), "axis", 1);
              }),
              HasSubstr("node 'split' (Split): split sizes [9223372036854775806, 7] overflow int64"));
  EXPECT_THAT(error([](OnnxModel& m) { OnnxModel::Int(m.Node("Split", {"x"}, {"y", "z", "w", "v"}, "split"), "axis", 1); }),
              HasSubstr("node 'split' (Split): axis 1 of extent 6 does not split into 4 equal parts"));
  EXPECT_THAT(error([](OnnxModel& m) { m.Node("Tile", {"x", "x"}, {"y"}, "tile"); }),
              HasSubstr("node 'tile' (Tile): 'repeats' is not an integer constant"));
  EXPECT_THAT(error([](OnnxModel& m) {
                m.Ints("reps", {2});
                m.Node("Tile", {"x", "reps"}, {"y"}, "tile");
              }),
              HasSubstr("node 'tile' (Tile): 'repeats' has 1 entries for an input of rank 2"));
  EXPECT_THAT(error([](OnnxModel& m) {
                m.Scalar("c", 0.0f);
                m.Node("Where", {"x", "c", "x"}, {"y"}, "where");
              }),
              HasSubstr("node 'where' (Where): the condition is not a bool tensor"));
  EXPECT_THAT(error([](OnnxModel& m) {
                OnnxModel::Int(m.Node("Cast", {"x"}, {"y"}, "cast"), "to", onnx::TensorProto::STRING);
              }),
              HasSubstr("node 'cast' (Cast): cast to STRING is not supported"));
}

// Decoders: Resize (nn.Upsample's nearest, bilinear), DepthToSpace (CRD is
// pixel_shuffle; DCR a view, a permutation, a view), InstanceNormalization.
TEST(OnnxImport, ResizeDepthToSpaceAndInstanceNorm) {
  OnnxModel m("dec", 13);
  m.Input("x", {2, 16, 4, 4});
  m.Weight("in.weight", {16});
  m.Weight("in.bias", {16});
  auto* scales = m.proto().mutable_graph()->add_initializer();
  scales->set_name("scales");
  scales->set_data_type(onnx::TensorProto::FLOAT);
  scales->add_dims(4);
  for (float f : {1.0f, 1.0f, 2.0f, 2.0f}) scales->add_float_data(f);
  m.Node("InstanceNormalization", {"x", "in.weight", "in.bias"}, {"n"}, "inorm");
  auto* up = m.Node("Resize", {"n", "", "scales"}, {"u"}, "up");
  auto set = [](onnx::NodeProto* n, const char* name, const char* value) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s(value);
  };
  set(up, "mode", "nearest");
  set(up, "coordinate_transformation_mode", "asymmetric");
  set(up, "nearest_mode", "floor");
  auto* crd = m.Node("DepthToSpace", {"u"}, {"p"}, "crd");
  OnnxModel::Int(crd, "blocksize", 2);
  set(crd, "mode", "CRD");
  OnnxModel::Int(m.Node("DepthToSpace", {"p"}, {"y"}, "dcr"), "blocksize", 2);
  m.Output("y");
  const Graph g = ImportOnnx(m.Bytes(), "dec.onnx", Batch(0));
  EXPECT_NE(FindOp(g, "aten.upsample_nearest2d"), nullptr);
  EXPECT_NE(FindOp(g, "aten.pixel_shuffle"), nullptr);
  EXPECT_NE(FindOp(g, "aten.permute"), nullptr);
  EXPECT_NE(FindOp(g, "aten.sqrt"), nullptr);  // instance norm's standard deviation
  // 16 x 4 x 4 -> upsampled 8 x 8 -> 4 channels at 16 x 16 -> 1 at 32 x 32.
  EXPECT_EQ(g.tensor(g.outputs[0]).shape, (Shape{2, 1, 32, 32}));
  EXPECT_NO_THROW(Validate(BuildTrainingGraph(ImportOnnx(m.Bytes(), "dec.onnx", Batch(0, true)))));

  up->mutable_attribute(1)->set_s("half_pixel");
  EXPECT_THAT(ErrorOf([&] { ImportOnnx(m.Bytes(), "dec.onnx", Batch(0)); }),
              HasSubstr("node 'up' (Resize): nearest resize with coordinate_transformation_mode 'half_pixel'"));
}

// Shape arithmetic as exporters write it for x.view(x.size(0), -1) and
// expand(n, -1, -1) (Shape, Gather, Unsqueeze, Concat, Equal, Where, Cast)
// is evaluated at import: only the view and the expand remain.
TEST(OnnxImport, ShapeArithmeticIsFolded) {
  OnnxModel m("fold", 13);
  m.Input("x", {3, 4, 5});
  m.Weight("token", {1, 1, 20});
  m.Ints("zero", {0});
  m.Ints("minus1", {-1});
  m.Ints("ones", {1, 1, 1});
  m.Ints("keep", {-1, -1, -1});
  auto* idx = m.proto().mutable_graph()->add_initializer();
  idx->set_name("i0");
  idx->set_data_type(onnx::TensorProto::INT64);
  idx->add_int64_data(0);
  m.Node("Shape", {"x"}, {"shape"}, "shape");
  m.Node("Gather", {"shape", "i0"}, {"n"}, "n");
  m.Node("Unsqueeze", {"n", "zero"}, {"n1"}, "n1");
  m.Node("Concat", {"n1", "minus1"}, {"target"}, "target");
  OnnxModel::Int(m.proto().mutable_graph()->mutable_node(m.proto().graph().node_size() - 1), "axis", 0);
  m.Node("Reshape", {"x", "target"}, {"flat"}, "flat");
  // expand(n, -1, -1): where the wanted shape is -1, keep the token's 1.
  m.Node("Concat", {"n1", "minus1", "minus1"}, {"want"}, "want");
  OnnxModel::Int(m.proto().mutable_graph()->mutable_node(m.proto().graph().node_size() - 1), "axis", 0);
  m.Node("Equal", {"want", "keep"}, {"is_keep"}, "eq");
  m.Node("Where", {"is_keep", "ones", "want"}, {"shape3"}, "where");
  OnnxModel::Int(m.Node("Cast", {"shape3"}, {"shape3i"}, "cast"), "to", onnx::TensorProto::INT64);
  m.Node("Expand", {"token", "shape3i"}, {"tokens"}, "expand");
  m.Node("Reshape", {"tokens", "target"}, {"tflat"}, "tflat");
  m.Node("Add", {"flat", "tflat"}, {"y"}, "add");
  m.Output("y");
  const Graph g = ImportOnnx(m.Bytes(), "fold.onnx", Batch(0));
  const auto counts = CountOps(g);
  EXPECT_EQ(counts.count("aten.expand"), 1u);
  for (const auto& [type, n] : counts) {
    EXPECT_TRUE(type == "aten.view" || type == "aten.expand" || type == "aten.add.Tensor" || type == "aten.clone")
        << type;
  }
  EXPECT_EQ(g.tensor(g.outputs[0]).shape, (Shape{3, 20}));
  // What cannot be folded says so.
  OnnxModel dyn("dyn", 13);
  dyn.Input("x", {3, 4});
  dyn.Node("ConstantOfShape", {"x"}, {"y"}, "fill");
  dyn.Output("y");
  EXPECT_THAT(ErrorOf([&] { ImportOnnx(dyn.Bytes(), "dyn.onnx", Batch(0)); }),
              HasSubstr("node 'fill' (ConstantOfShape): 'input' (the shape) is not an integer constant"));
}

// torch.onnx.export merges initializers of equal values: a fresh
// BatchNorm's running mean (zeros) becomes an Identity of its bias. The
// training step updates the running mean in place, so it gets its own
// buffer, and the bias stays a parameter with a gradient.
TEST(OnnxImport, MergedInitializersKeepTheirRoles) {
  OnnxModel m("dedup", 13);
  m.Input("x", {2, 4, 3, 3});
  m.Weight("bn.weight", {4});
  m.Weight("bn.bias", {4});
  m.Node("Identity", {"bn.bias"}, {"bn.running_mean"}, "id1");
  m.Node("Identity", {"bn.weight"}, {"bn.running_var"}, "id2");
  m.Node("BatchNormalization", {"x", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"}, {"b"}, "bn");
  m.Node("GlobalAveragePool", {"b"}, {"p"}, "pool");
  m.Node("Flatten", {"p"}, {"y"}, "flat");
  m.Output("y");
  const Graph g = BuildTrainingGraph(ImportOnnx(m.Bytes(), "dedup.onnx", Batch(0, true)));
  ASSERT_NO_THROW(Validate(g));
  for (const char* name : {"bn.running_mean", "bn.running_var"}) {
    const Tensor* t = FindTensor(g, name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->role, TensorRole::kBuffer) << name;
  }
  for (const char* name : {"bn.weight", "bn.bias"}) {
    ASSERT_NE(FindTensor(g, name), nullptr);
    EXPECT_EQ(FindTensor(g, name)->role, TensorRole::kParameter) << name;
    EXPECT_NE(FindTensor(g, std::string(name) + ".grad"), nullptr) << name;
  }
}

}  // namespace
}  // namespace memfit

// LSTM unrolled: one input projection per direction, one hidden projection per
// step; outputs nothing reads are not made; what it does not do is one line.
TEST(OnnxImport, LstmIsUnrolledAndItsUnsupportedVariantsAreNamed) {
  const auto model = [](bool with_lengths, const std::string& direction, bool read_c) {
    OnnxModel m("lstm", 13);
    const int64_t dirs = direction == "bidirectional" ? 2 : 1;
    m.Input("x", {5, 2, 4});
    m.Weight("w", {dirs, 4 * 3, 4});
    m.Weight("r", {dirs, 4 * 3, 3});
    m.Weight("b", {dirs, 8 * 3});
    m.Ints("lengths", {5, 5});
    onnx::NodeProto* n = with_lengths ? m.Node("LSTM", {"x", "w", "r", "b", "lengths"}, {"y", "h", "c"}, "lstm")
                                      : m.Node("LSTM", {"x", "w", "r", "b"}, {"y", "h", "c"}, "lstm");
    OnnxModel::Int(n, "hidden_size", 3);
    OnnxModel::String(n, "direction", direction);
    m.Output("y");
    if (read_c) m.Output("c");
    return m;
  };
  const Graph g = ImportOnnx(model(false, "bidirectional", false).Bytes(), "lstm.onnx", Batch(0));
  auto counts = CountOps(g);
  EXPECT_EQ(counts["aten.addmm"], 2 + 2 * 5);  // per direction the inputs', per direction and step the hidden's
  EXPECT_EQ(counts["aten.sigmoid"], 3 * 2 * 5);
  EXPECT_EQ(g.outputs.size(), 1u);
  EXPECT_EQ(g.tensor(g.outputs[0]).shape, (Shape{5, 2, 2, 3}));
  const Graph with_c = ImportOnnx(model(false, "reverse", true).Bytes(), "lstm.onnx", Batch(0));
  EXPECT_EQ(with_c.tensor(with_c.outputs[1]).shape, (Shape{1, 2, 3}));
  EXPECT_NO_THROW(Validate(BuildTrainingGraph(ImportOnnx(model(false, "forward", false).Bytes(), "lstm.onnx",
                                                         Batch(0, true)))));
  EXPECT_THAT(ErrorOf([&] { ImportOnnx(model(true, "forward", false).Bytes(), "lstm.onnx", Batch(0)); }),
              HasSubstr("node 'lstm' (LSTM): sequence_lens is not supported"));
  EXPECT_THAT(ErrorOf([&] { ImportOnnx(model(false, "sideways", false).Bytes(), "lstm.onnx", Batch(0)); }),
              HasSubstr("node 'lstm' (LSTM): direction 'sideways' is not supported"));
}

// Recurrent weights and states of the wrong shape are named with the shape expected.
TEST(OnnxImport, RecurrentShapesAreChecked) {
  const auto model = [](const std::vector<int64_t>& r, const std::vector<int64_t>& h0) {
    OnnxModel m("gru", 13);
    m.Input("x", {5, 2, 4});
    m.Weight("w", {1, 9, 4});
    m.Weight("r", r);
    m.Weight("b", {1, 18});
    m.Weight("h0", h0);
    OnnxModel::Int(m.Node("GRU", {"x", "w", "r", "b", "", "h0"}, {"y"}, "gru"), "hidden_size", 3);
    m.Output("y");
    return m;
  };
  EXPECT_NO_THROW(ImportOnnx(model({1, 9, 3}, {1, 2, 3}).Bytes(), "gru.onnx", Batch(0)));
  EXPECT_THAT(ErrorOf([&] { ImportOnnx(model({1, 9, 4}, {1, 2, 3}).Bytes(), "gru.onnx", Batch(0)); }),
              HasSubstr("node 'gru' (GRU): R is [1, 9, 4], expected [1, 9, 3]"));
  EXPECT_THAT(ErrorOf([&] { ImportOnnx(model({1, 9, 3}, {1, 7, 3}).Bytes(), "gru.onnx", Batch(0)); }),
              HasSubstr("initial_h is [1, 7, 3], expected [1, 2, 3]"));
}

}  // namespace
}  // namespace memfit
