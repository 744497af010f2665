// ONNX import, in three steps:
//   1. parse the ModelProto and list every node whose op type has no mapping,
//      so that one error names all of them;
//   2. declare the graph inputs with their static shapes (substituting
//      --batch for the first symbolic dim);
//   3. translate the nodes in order (ONNX requires topological order), each
//      through a handler that calls the GraphBuilder with ATen ops.
// Initializers and Constant nodes are "constants": they become tensors only
// when a handler uses them as tensor arguments (a parameter when the
// initializer is float, a buffer otherwise or where the ATen op treats them
// as state, such as BatchNorm's running statistics), and are read as values
// where the ATen op takes an attribute (Reshape's shape, a scalar operand).
#include "onnx/onnx_import.h"

#include <fmt/format.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <numeric>
#include <cctype>
#include <cmath>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "ir/builder.h"
#include "ir/validate.h"
#include "util/checked_math.h"
#include "util/error.h"
#include "util/file.h"

namespace memfit {
namespace {

using onnx::NodeProto;
using onnx::TensorProto;
using Outputs = std::vector<TensorId>;

// The ONNX exporter's empty optional input or output.
bool Present(const std::string& name) { return !name.empty(); }

std::optional<DType> FromOnnxType(int32_t type) {
  switch (type) {
    case TensorProto::FLOAT: return DType::kF32;
    case TensorProto::FLOAT16: return DType::kF16;
    case TensorProto::BFLOAT16: return DType::kBF16;
    case TensorProto::DOUBLE: return DType::kF64;
    case TensorProto::INT64: return DType::kI64;
    case TensorProto::INT32: return DType::kI32;
    case TensorProto::INT16: return DType::kI16;
    case TensorProto::INT8: return DType::kI8;
    case TensorProto::UINT8: return DType::kU8;
    case TensorProto::BOOL: return DType::kBool;
    default: return std::nullopt;
  }
}

std::string TypeName(int32_t type) {
  const std::string& name = TensorProto::DataType_Name(static_cast<TensorProto::DataType>(type));
  return name.empty() ? std::to_string(type) : name;
}

// "node '/fc1/Gemm' (Gemm)" or "node #3 (Gemm)" when the node has no name.
std::string Describe(const NodeProto& node, int index) {
  if (!node.name().empty()) return fmt::format("node {} ({})", Quote(node.name()), node.op_type());
  return fmt::format("node #{} ({})", index, node.op_type());
}

// A scope for the ops of one node: "/layer1/conv/Conv" -> "layer1.conv.Conv".
std::string ScopeOf(const NodeProto& node) {
  std::string scope;
  for (char c : node.name()) {
    if (c == '/' || c == ':') {
      if (!scope.empty() && scope.back() != '.') scope += '.';
    } else {
      scope += c;
    }
  }
  while (!scope.empty() && scope.back() == '.') scope.pop_back();
  return scope;
}

// The product of shape[begin, end) (extents >= 0), saturated at
// kSaturatedBytes: a reshape target from the file can be anything, and no
// tensor's element count comes near it, so a saturated product never matches.
int64_t Product(const Shape& shape, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p = SaturatingMul(p, shape[i]);
  return p;
}

// The elements of a constant stored as T, from its raw bytes when it has
// them, else from its typed field, widened to Out.
template <typename T, typename Out, typename Field>
std::vector<Out> Elements(const TensorProto& c, const Field& typed) {
  if (!c.has_raw_data()) return std::vector<Out>(typed.begin(), typed.end());
  std::vector<T> raw(c.raw_data().size() / sizeof(T));
  if (raw.empty()) return {};  // memcpy may not be handed the null data of an empty vector
  std::memcpy(raw.data(), c.raw_data().data(), raw.size() * sizeof(T));
  return std::vector<Out>(raw.begin(), raw.end());
}

// Where each element of a broadcast (NumPy's rule) of constants' dims
// comes from in each of them.
// Integer constants of at most this many elements keep their values in the
// graph (Tensor::values).
constexpr size_t kMaxConstantValues = size_t{1} << 16;

class BroadcastIndex {
 public:
  // nullopt when the dims do not broadcast or the result has more than
  // `max_elements` elements.
  static std::optional<BroadcastIndex> Of(const std::vector<Shape>& dims, int64_t max_elements) {
    BroadcastIndex b;
    for (const Shape& d : dims) {
      const std::optional<Shape> s = Broadcast(b.shape_, d);
      if (!s) return std::nullopt;
      b.shape_ = *s;
    }
    b.numel_ = 1;
    for (int64_t d : b.shape_) {
      if (d < 0 || (d > 0 && b.numel_ > max_elements / d)) return std::nullopt;
      b.numel_ *= d;
    }
    b.dims_ = dims;
    return b;
  }
  const Shape& shape() const { return shape_; }
  int64_t numel() const { return numel_; }
  // The index into input `i`'s elements of output element `o`.
  size_t In(size_t i, int64_t o) const {
    const Shape& d = dims_[i];
    int64_t index = 0, stride = 1;
    for (size_t k = 0; k < d.size(); ++k) {
      const size_t axis = d.size() - 1 - k, out_axis = shape_.size() - 1 - k;
      const int64_t coordinate = (o % shape_[out_axis]);
      o /= shape_[out_axis];
      if (d[axis] != 1) index += coordinate * stride;
      stride *= d[axis];
    }
    return static_cast<size_t>(index);
  }

 private:
  Shape shape_;
  int64_t numel_ = 0;
  std::vector<Shape> dims_;
};

class Importer {
 public:
  Importer(const onnx::ModelProto& model, std::string source, const OnnxImportOptions& options)
      : model_(model), source_(std::move(source)), options_(options), b_(GraphName(model, source_)) {}

  Graph Run();

  // The op types with a handler (Constant is handled before them).
  static const std::map<std::string, Outputs (Importer::*)(const NodeProto&)>& Handlers();
  // The op types only FoldIntegers imports.
  static const std::set<std::string>& FoldOnly();

 private:
  static std::string GraphName(const onnx::ModelProto& model, const std::string& source);
  [[noreturn]] void FailNode(const std::string& message) const {
    Fail("{}: {}: {}", source_, Describe(*node_, node_index_), message);
  }

  void CheckSupported() const;
  void DeclareInputs();
  void Translate(const NodeProto& node);
  // If with a condition known at import (a shape check): the branch taken, inlined.
  void InlineIf(const NodeProto& node);
  void AddConstantNode(const NodeProto& node);
  // Integer shape arithmetic (Shape, Cast, ConstantOfShape, and Concat,
  // Gather, Slice, Reshape, arithmetic ... of integer constants) evaluated
  // at import: the result is a constant. False when the node is not such.
  bool FoldIntegers(const NodeProto& node);
  // Arithmetic of one-element floating constants (a scale 1 / sqrt(d) the
  // exporter left as Sqrt and Reciprocal of a constant) evaluated at import
  // in double: the result is a one-element float constant. False when the
  // node is not such.
  bool FoldScalars(const NodeProto& node);

  void AppendLoss(TensorId output);

  // --- Values ---------------------------------------------------------------
  // The tensor of value `name`; a constant becomes a source tensor of `role`
  // (default: parameter if floating, buffer otherwise) on first use.
  TensorId Value(const std::string& name, std::optional<TensorRole> role = std::nullopt);
  // Input `i` of the current node as a tensor; fails when it is absent.
  TensorId In(int i, std::optional<TensorRole> role = std::nullopt);
  bool HasInput(int i) const { return i < node_->input_size() && Present(node_->input(i)); }
  // The name of input `i` of the current node; fails when it is absent.
  const std::string& InputName(int i) const;
  const TensorProto* ConstantOf(const std::string& name) const;
  // The integer values of a constant, or nullopt when `name` is not an
  // integer constant.
  std::optional<std::vector<int64_t>> IntConstant(const std::string& name) const;
  // The value of a one-element floating constant.
  std::optional<double> ScalarConstant(const std::string& name) const;
  // The values of a floating constant (Resize's scales).
  std::optional<std::vector<double>> FloatConstant(const std::string& name) const;
  // An integer list given as attribute `attr` before opset `since`, as
  // constant input `input` from it on (axes, pads, starts ...); nullopt when
  // absent.
  std::optional<std::vector<int64_t>> IntsArgument(std::string_view attr, int input, int64_t since) const;
  Shape ShapeOf(TensorId id) const { return b_.shape(id); }

  // --- Attributes of the current node -------------------------------------
  const onnx::AttributeProto* Attr(std::string_view name) const;
  int64_t IntAttr(std::string_view name, int64_t fallback) const;
  double FloatAttr(std::string_view name, double fallback) const;
  std::string StringAttr(std::string_view name, std::string fallback) const;
  std::vector<int64_t> IntsAttr(std::string_view name, std::vector<int64_t> fallback) const;
  int64_t Axis(std::string_view name, int64_t fallback, size_t rank) const;

  // --- Helpers --------------------------------------------------------------
  // aten.view to `shape`, after aten.clone when `x` is a non-contiguous view
  // (as torch.reshape does); no op when the shape already matches.
  TensorId Reshape(TensorId x, const Shape& shape);
  // Index tensor `t` as int64 (ONNX allows int32; ATen's gather and scatter take int64).
  TensorId Int64Indices(TensorId t);
  // FailNode(message) where input `input` is an integer constant with a negative entry.
  void RefuseNegativeIndices(int input, std::string_view message);
  // Symmetric per-dim padding from "pads" / "auto_pad" for a window op.
  std::vector<int64_t> Padding(const Shape& in, const std::vector<int64_t>& kernel, const std::vector<int64_t>& strides,
                               const std::vector<int64_t>& dilations);
  Outputs Binary(const std::string& packet, bool commutative);
  void KeepLayout(const NodeProto& node, const Outputs& outputs);
  Outputs Softmax(const char* type);
  Outputs Pool(bool max);

  // --- Handlers, one per ONNX op type -------------------------------------
  Outputs Gemm(const NodeProto&);
  Outputs MatMul(const NodeProto&);
  Outputs Einsum(const NodeProto&);
  // One operand of an Einsum: its value and a label per axis.
  struct Labeled {
    TensorId value;
    std::string labels;
  };
  // `x` with the labels not in `keep` summed out, then the rest permuted to
  // the order of `order` (a permutation of what is left).
  Labeled SumAndPermute(Labeled x, const std::string& keep, const std::string& order);
  // The contraction of two operands, keeping the labels in `keep`.
  Labeled Contract(Labeled a, Labeled b, const std::string& keep);
  Outputs Conv(const NodeProto&);
  Outputs ConvTranspose(const NodeProto&);
  // Shared by Conv and ConvTranspose: x and w of rank 3 to 5 and the
  // per-spatial-dim strides and dilations.
  struct ConvGeometry {
    TensorId x, w;
    size_t spatial = 0;
    std::vector<int64_t> strides, dilations;
  };
  ConvGeometry ConvInputs();
  Outputs EmitConvolution(const ConvGeometry& g, std::vector<int64_t> padding, bool transposed,
                          std::vector<int64_t> output_padding);
  Outputs BatchNormalization(const NodeProto&);
  Outputs LayerNormalization(const NodeProto&);
  Outputs Relu(const NodeProto&) { return {b_.Call("aten.relu", {In(0)})}; }
  Outputs Tanh(const NodeProto&) { return {b_.Call("aten.tanh", {In(0)})}; }
  Outputs Sigmoid(const NodeProto&) { return {b_.Call("aten.sigmoid", {In(0)})}; }
  Outputs Gelu(const NodeProto&) {
    return {b_.Call("aten.gelu", {In(0)}, {{"approximate", StringAttr("approximate", "none")}})};
  }
  Outputs Add(const NodeProto&) { return Binary("aten.add", true); }
  Outputs Sub(const NodeProto&) { return Binary("aten.sub", false); }
  Outputs Mul(const NodeProto&) { return Binary("aten.mul", true); }
  Outputs Div(const NodeProto&) { return Binary("aten.div", false); }
  Outputs MaxPool(const NodeProto&) { return Pool(true); }
  Outputs AveragePool(const NodeProto&) { return Pool(false); }
  Outputs GlobalAveragePool(const NodeProto&);
  Outputs Flatten(const NodeProto&);
  Outputs ReshapeNode(const NodeProto&);
  Outputs Transpose(const NodeProto&);
  Outputs SoftmaxNode(const NodeProto&) { return Softmax("aten._softmax"); }
  Outputs LogSoftmaxNode(const NodeProto&) { return Softmax("aten._log_softmax"); }
  Outputs Gather(const NodeProto&);
  Outputs Concat(const NodeProto&);
  Outputs PassThrough(const NodeProto&) { return {In(0)}; }
  Outputs Neg(const NodeProto&) { return {b_.Call("aten.neg", {In(0)})}; }
  Outputs Exp(const NodeProto&) { return {b_.Call("aten.exp", {In(0)})}; }
  Outputs Log(const NodeProto&) { return {b_.Call("aten.log", {In(0)})}; }
  Outputs Sqrt(const NodeProto&) { return {b_.Call("aten.sqrt", {In(0)})}; }
  Outputs Erf(const NodeProto&) { return {b_.Call("aten.erf", {In(0)})}; }
  Outputs Abs(const NodeProto&) { return {b_.Call("aten.abs", {In(0)})}; }
  Outputs Reciprocal(const NodeProto&) { return {b_.Call("aten.reciprocal", {In(0)})}; }
  Outputs Sin(const NodeProto&) { return {b_.Call("aten.sin", {In(0)})}; }
  Outputs Cos(const NodeProto&) { return {b_.Call("aten.cos", {In(0)})}; }
  // ONNX's Softplus is log(1 + exp(x)); ATen's (beta 1) returns x itself
  // above its threshold 20, where the two differ by less than exp(-20).
  Outputs Softplus(const NodeProto&) {
    return {b_.Call("aten.softplus", {In(0)}, {{"beta", 1.0}, {"threshold", 20.0}})};
  }
  Outputs Elu(const NodeProto&) {
    return {b_.Call("aten.elu", {In(0)}, {{"alpha", FloatAttr("alpha", 1.0)}, {"scale", 1.0}, {"input_scale", 1.0}})};
  }
  // Selu: gamma * elu(x, alpha); Celu: elu(x / alpha, 1) * alpha = ATen's elu with input_scale 1 / alpha.
  Outputs Selu(const NodeProto&) {
    return {b_.Call("aten.elu", {In(0)}, {{"alpha", FloatAttr("alpha", 1.67326319217681884765625)},
                                          {"scale", FloatAttr("gamma", 1.05070102214813232421875)},
                                          {"input_scale", 1.0}})};
  }
  Outputs Celu(const NodeProto&) {
    const double alpha = FloatAttr("alpha", 1.0);
    if (alpha == 0) FailNode("alpha 0");
    return {b_.Call("aten.elu", {In(0)}, {{"alpha", alpha}, {"scale", 1.0}, {"input_scale", 1.0 / alpha}})};
  }
  Outputs Floor(const NodeProto&) { return {b_.Call("aten.floor", {In(0)})}; }
  Outputs Ceil(const NodeProto&) { return {b_.Call("aten.ceil", {In(0)})}; }
  Outputs Round(const NodeProto&) { return {b_.Call("aten.round", {In(0)})}; }
  Outputs Sign(const NodeProto&) { return {b_.Call("aten.sign", {In(0)})}; }
  Outputs CumSum(const NodeProto&);
  Outputs Max(const NodeProto& node) { return Extremum(node, true); }
  Outputs Min(const NodeProto& node) { return Extremum(node, false); }
  // Max (or Min) of any number of inputs (numpy broadcasting), folded left
  // by aten.maximum (minimum); a constant scalar operand is a clamp_min
  // (clamp_max) bound.
  Outputs Extremum(const NodeProto& node, bool max);
  Outputs Tile(const NodeProto&);
  Outputs ScatterND(const NodeProto&);
  Outputs ConstantOfShape(const NodeProto&);
  // Where(condition, x, y); a constant scalar x or y is masked_fill's value
  // (torch exports masked_fill so).
  Outputs Where(const NodeProto&);
  Outputs Compare(const char* packet);
  Outputs Equal(const NodeProto&) { return Compare("aten.eq"); }
  Outputs Less(const NodeProto&) { return Compare("aten.lt"); }
  Outputs LessOrEqual(const NodeProto&) { return Compare("aten.le"); }
  Outputs Greater(const NodeProto&) { return Compare("aten.gt"); }
  Outputs GreaterOrEqual(const NodeProto&) { return Compare("aten.ge"); }
  Outputs Not(const NodeProto&) { return {b_.Call("aten.logical_not", {In(0)})}; }
  // Cast of a tensor (a Cast of constants is folded): aten._to_copy, none
  // when the dtype stays.
  Outputs Cast(const NodeProto&);
  // x as `dtype`: aten._to_copy, or x itself when it has that dtype.
  TensorId CastTo(TensorId x, DType dtype);
  Outputs Split(const NodeProto&);
  Outputs Pow(const NodeProto&);
  Outputs Clip(const NodeProto&);
  Outputs LeakyRelu(const NodeProto&) {
    return {b_.Call("aten.leaky_relu", {In(0)}, {{"negative_slope", FloatAttr("alpha", 0.01)}})};
  }
  Outputs HardSigmoid(const NodeProto&);
  Outputs HardSwish(const NodeProto&) { return {b_.Call("aten.hardswish", {In(0)})}; }
  Outputs ReduceMean(const NodeProto&) { return Reduce("aten.mean.dim", 18); }
  Outputs ReduceSum(const NodeProto&) { return Reduce("aten.sum.dim_IntList", 13); }
  // ReduceL1 / ReduceL2 / ReduceSumSquare: the sum of |x| or x * x (then its square root).
  Outputs ReduceL1(const NodeProto&) { return Reduce("aten.sum.dim_IntList", 18, b_.Call("aten.abs", {In(0)})); }
  Outputs ReduceL2(const NodeProto&) {
    return {b_.Call("aten.sqrt", {Reduce("aten.sum.dim_IntList", 18, Squared(In(0)))[0]})};
  }
  Outputs ReduceSumSquare(const NodeProto&) { return Reduce("aten.sum.dim_IntList", 18, Squared(In(0))); }
  Outputs ReduceMax(const NodeProto&) { return Reduce("aten.amax", 18); }
  Outputs ReduceMin(const NodeProto&) { return Reduce("aten.amin", 18); }
  Outputs ReduceLogSumExp(const NodeProto&) { return Reduce("aten.logsumexp", 18); }
  Outputs GatherElements(const NodeProto&);
  Outputs ScatterElements(const NodeProto&);
  Outputs TopK(const NodeProto&);
  // SoftmaxCrossEntropyLoss / NegativeLogLikelihoodLoss (a model that returns its loss).
  Outputs ClassLoss(const NodeProto& node, bool softmax);
  Outputs SoftmaxCrossEntropyLoss(const NodeProto& node) { return ClassLoss(node, true); }
  Outputs NegativeLogLikelihoodLoss(const NodeProto& node) { return ClassLoss(node, false); }
  Outputs GlobalMaxPool(const NodeProto&);
  TensorId Squared(TensorId x) { return b_.Call("aten.mul.Tensor", {x, x}); }
  Outputs Reduce(const char* type, int64_t axes_input_since, std::optional<TensorId> input = std::nullopt);
  Outputs PRelu(const NodeProto&);
  Outputs Trilu(const NodeProto&);
  // LSTM / GRU / RNN, unrolled over the sequence (onnx_import.cc, "Recurrent layers").
  enum class Cell { kLstm, kGru, kRnn };
  Outputs Recurrent(const NodeProto& node, Cell cell);
  Outputs LSTM(const NodeProto& node) { return Recurrent(node, Cell::kLstm); }
  Outputs GRU(const NodeProto& node) { return Recurrent(node, Cell::kGru); }
  Outputs RNN(const NodeProto& node) { return Recurrent(node, Cell::kRnn); }
  Outputs Squeeze(const NodeProto&);
  Outputs Unsqueeze(const NodeProto&);
  Outputs Slice(const NodeProto&);
  Outputs Pad(const NodeProto&);
  Outputs Resize(const NodeProto&);
  // Upsample (deprecated at opset 10, written by older exporters: torch at opset 9):
  // Resize with scales, nearest with asymmetric coordinates and floor rounding.
  Outputs Upsample(const NodeProto&);
  // Resize / Upsample of a 4-d NCHW input to `out` (batch and channels kept).
  Outputs ResizeTo(TensorId x, const Shape& out, const std::string& mode, const std::string& coordinates,
                   const std::string& rounding);
  // The output shape of scaling `in` by `scales`, one per dim (floor of each product).
  Shape ScaledShape(const Shape& in, const std::vector<double>& scales);
  Outputs DepthToSpace(const NodeProto&);
  Outputs SpaceToDepth(const NodeProto&);
  // LRN across channels (AlexNet, GoogLeNet and other Caffe-era models).
  Outputs LRN(const NodeProto&);
  // Sum / Mean of any number of inputs (numpy broadcasting).
  Outputs Sum(const NodeProto& node) { return Variadic(node, false); }
  Outputs Mean(const NodeProto& node) { return Variadic(node, true); }
  Outputs Variadic(const NodeProto& node, bool mean);
  Outputs And(const NodeProto&) { return {b_.Call("aten.logical_and", {In(0), In(1)})}; }
  Outputs Or(const NodeProto&) { return {b_.Call("aten.logical_or", {In(0), In(1)})}; }
  Outputs Xor(const NodeProto&) { return {b_.Call("aten.logical_xor", {In(0), In(1)})}; }
  // Mish: x * tanh(softplus(x)); Softsign: x / (1 + |x|).
  Outputs Mish(const NodeProto& node) {
    const TensorId soft = Softplus(node)[0];
    return {b_.Call("aten.mul.Tensor", {In(0), b_.Call("aten.tanh", {soft})})};
  }
  Outputs Softsign(const NodeProto&) {
    const TensorId one_plus_abs = b_.Call("aten.add.Scalar", {b_.Call("aten.abs", {In(0)})}, {{"other", 1.0}});
    return {b_.Call("aten.div.Tensor", {In(0), one_plus_abs})};
  }
  // Trigonometric and hyperbolic functions as exponentials and logarithms
  // (the ops autodiff knows): tan = sin / cos, sinh / cosh = (e^x -+ e^-x) / 2,
  // asinh = log(x + sqrt(x^2 + 1)), acosh = log(x + sqrt(x^2 - 1)),
  // atanh = log((1 + x) / (1 - x)) / 2.
  Outputs Tan(const NodeProto&) {
    return {b_.Call("aten.div.Tensor", {b_.Call("aten.sin", {In(0)}), b_.Call("aten.cos", {In(0)})})};
  }
  Outputs Sinh(const NodeProto&) { return {Hyperbolic(In(0), "aten.sub.Tensor")}; }
  Outputs Cosh(const NodeProto&) { return {Hyperbolic(In(0), "aten.add.Tensor")}; }
  TensorId Hyperbolic(TensorId x, const char* combine) {
    const TensorId both = b_.Call(combine, {b_.Call("aten.exp", {x}), b_.Call("aten.exp", {b_.Call("aten.neg", {x})})});
    return b_.Call("aten.mul.Scalar", {both}, {{"other", 0.5}});
  }
  Outputs Asinh(const NodeProto&) { return {InverseHyperbolic(In(0), 1.0)}; }
  Outputs Acosh(const NodeProto&) { return {InverseHyperbolic(In(0), -1.0)}; }
  TensorId InverseHyperbolic(TensorId x, double one) {
    const TensorId root = b_.Call("aten.sqrt", {b_.Call("aten.add.Scalar", {Squared(x)}, {{"other", one}})});
    return b_.Call("aten.log", {b_.Call("aten.add.Tensor", {x, root})});
  }
  Outputs Atanh(const NodeProto&) {
    const TensorId x = In(0);
    const TensorId one_minus = b_.Call("aten.add.Scalar", {b_.Call("aten.neg", {x})}, {{"other", 1.0}});
    const TensorId ratio = b_.Call("aten.div.Tensor", {b_.Call("aten.add.Scalar", {x}, {{"other", 1.0}}), one_minus});
    return {b_.Call("aten.mul.Scalar", {b_.Call("aten.log", {ratio})}, {{"other", 0.5}})};
  }
  // IsNaN: x != x. IsInf: |x| (or x, or -x) above the dtype's largest finite value.
  Outputs IsNaN(const NodeProto&) { return {b_.Call("aten.ne.Tensor", {In(0), In(0)})}; }
  Outputs IsInf(const NodeProto&);
  // Shrink: x + bias below -lambd, x - bias above lambd, 0 between;
  // ThresholdedRelu: x above alpha, else 0.
  Outputs Shrink(const NodeProto&);
  Outputs ThresholdedRelu(const NodeProto&) {
    const TensorId x = In(0);
    const TensorId low = b_.Call("aten.le.Scalar", {x}, {{"other", FloatAttr("alpha", 1.0)}});
    return {b_.Call("aten.masked_fill.Scalar", {x, low}, {{"value", 0.0}})};
  }
  // CastLike(x, like): Cast to like's dtype.
  Outputs CastLike(const NodeProto&);
  // MeanVarianceNormalization (its ONNX function body): (x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9).
  Outputs MeanVarianceNormalization(const NodeProto&);
  // LpNormalization: x over its L1 or L2 norm along `axis`; GlobalLpPool: the
  // Lp norm over every spatial position.
  Outputs LpNormalization(const NodeProto&);
  Outputs GlobalLpPool(const NodeProto&);
  // LpNorm of x over `dims` (keepdim), p 1 or 2 or any positive p.
  TensorId LpNorm(TensorId x, const std::vector<int64_t>& dims, double p);
  // EyeLike: ones on diagonal k of In(0)'s 2-d shape (ones, then triu(k) and tril(k)).
  Outputs EyeLike(const NodeProto&);
  Outputs ArgMax(const NodeProto&) { return ArgExtremum("aten.argmax"); }
  Outputs ArgMin(const NodeProto&) { return ArgExtremum("aten.argmin"); }
  Outputs ArgExtremum(const char* type);
  Outputs InstanceNormalization(const NodeProto&);
  Outputs Expand(const NodeProto&);

  const onnx::ModelProto& model_;
  const std::string source_;
  const OnnxImportOptions& options_;
  GraphBuilder b_;
  int64_t opset_ = 1;
  std::unordered_map<std::string, TensorId> values_;
  // Every name a node or the graph's outputs read: an optional output a
  // handler does not make (Dropout's mask) is an error only when read.
  std::unordered_set<std::string> read_;
  std::unordered_map<std::string, const TensorProto*> constants_;
  // Constant nodes' values given as value_float / value_ints ...
  std::deque<TensorProto> owned_constants_;
  // Views whose elements are not in row-major order (permute, t), and the
  // results of element-wise ops on them: PyTorch's element-wise kernels
  // keep a dense input's layout (a scaled permuted query is laid out as the
  // permute was, and a view of it fails).
  std::unordered_set<TensorId> non_contiguous_;
  // Sources made from initializers and Constant nodes (Value): the
  // constant's name.
  std::unordered_map<TensorId, std::string> constant_sources_;
  const NodeProto* node_ = nullptr;
  int node_index_ = 0;
};

const std::map<std::string, Outputs (Importer::*)(const NodeProto&)>& Importer::Handlers() {
  static const std::map<std::string, Outputs (Importer::*)(const NodeProto&)> handlers = {
      {"Abs", &Importer::Abs},
      {"Add", &Importer::Add},
      {"And", &Importer::And},
      {"ArgMax", &Importer::ArgMax},
      {"ArgMin", &Importer::ArgMin},
      {"Acosh", &Importer::Acosh},
      {"Asinh", &Importer::Asinh},
      {"Atanh", &Importer::Atanh},
      {"CastLike", &Importer::CastLike},
      {"Cosh", &Importer::Cosh},
      {"EyeLike", &Importer::EyeLike},
      {"GlobalLpPool", &Importer::GlobalLpPool},
      {"IsInf", &Importer::IsInf},
      {"IsNaN", &Importer::IsNaN},
      {"LpNormalization", &Importer::LpNormalization},
      {"MeanVarianceNormalization", &Importer::MeanVarianceNormalization},
      {"Shrink", &Importer::Shrink},
      {"Sinh", &Importer::Sinh},
      {"Tan", &Importer::Tan},
      {"ThresholdedRelu", &Importer::ThresholdedRelu},
      {"LRN", &Importer::LRN},
      {"Mean", &Importer::Mean},
      {"Mish", &Importer::Mish},
      {"Or", &Importer::Or},
      {"Softsign", &Importer::Softsign},
      {"SpaceToDepth", &Importer::SpaceToDepth},
      {"Sum", &Importer::Sum},
      {"Upsample", &Importer::Upsample},
      {"Xor", &Importer::Xor},
      {"AveragePool", &Importer::AveragePool},
      {"BatchNormalization", &Importer::BatchNormalization},
      {"Cast", &Importer::Cast},
      {"Clip", &Importer::Clip},
      {"Concat", &Importer::Concat},
      {"Conv", &Importer::Conv},
      {"ConvTranspose", &Importer::ConvTranspose},
      {"Ceil", &Importer::Ceil},
      {"Celu", &Importer::Celu},
      {"Cos", &Importer::Cos},
      {"CumSum", &Importer::CumSum},
      {"DepthToSpace", &Importer::DepthToSpace},
      {"Div", &Importer::Div},
      {"Dropout", &Importer::PassThrough},
      {"Einsum", &Importer::Einsum},
      {"Elu", &Importer::Elu},
      {"Equal", &Importer::Equal},
      {"Erf", &Importer::Erf},
      {"Exp", &Importer::Exp},
      {"Expand", &Importer::Expand},
      {"Flatten", &Importer::Flatten},
      {"Floor", &Importer::Floor},
      {"GRU", &Importer::GRU},
      {"Gather", &Importer::Gather},
      {"GatherElements", &Importer::GatherElements},
      {"Gelu", &Importer::Gelu},
      {"Gemm", &Importer::Gemm},
      {"GlobalAveragePool", &Importer::GlobalAveragePool},
      {"GlobalMaxPool", &Importer::GlobalMaxPool},
      {"Greater", &Importer::Greater},
      {"GreaterOrEqual", &Importer::GreaterOrEqual},
      {"HardSigmoid", &Importer::HardSigmoid},
      {"HardSwish", &Importer::HardSwish},
      {"Identity", &Importer::PassThrough},
      {"InstanceNormalization", &Importer::InstanceNormalization},
      {"LSTM", &Importer::LSTM},
      {"LayerNormalization", &Importer::LayerNormalization},
      {"LeakyRelu", &Importer::LeakyRelu},
      {"Less", &Importer::Less},
      {"LessOrEqual", &Importer::LessOrEqual},
      {"Log", &Importer::Log},
      {"LogSoftmax", &Importer::LogSoftmaxNode},
      {"MatMul", &Importer::MatMul},
      {"Max", &Importer::Max},
      {"MaxPool", &Importer::MaxPool},
      {"Min", &Importer::Min},
      {"Mul", &Importer::Mul},
      {"Neg", &Importer::Neg},
      {"NegativeLogLikelihoodLoss", &Importer::NegativeLogLikelihoodLoss},
      {"Not", &Importer::Not},
      {"Pad", &Importer::Pad},
      {"Pow", &Importer::Pow},
      {"Reciprocal", &Importer::Reciprocal},
      {"PRelu", &Importer::PRelu},
      {"ReduceL1", &Importer::ReduceL1},
      {"ReduceL2", &Importer::ReduceL2},
      {"ReduceMax", &Importer::ReduceMax},
      {"ReduceLogSumExp", &Importer::ReduceLogSumExp},
      {"ReduceMean", &Importer::ReduceMean},
      {"ReduceMin", &Importer::ReduceMin},
      {"ReduceSum", &Importer::ReduceSum},
      {"ReduceSumSquare", &Importer::ReduceSumSquare},
      {"Relu", &Importer::Relu},
      {"RNN", &Importer::RNN},
      {"Reshape", &Importer::ReshapeNode},
      {"Round", &Importer::Round},
      {"Selu", &Importer::Selu},
      {"Sign", &Importer::Sign},
      {"Resize", &Importer::Resize},
      {"Sigmoid", &Importer::Sigmoid},
      {"Sin", &Importer::Sin},
      {"Slice", &Importer::Slice},
      {"Softmax", &Importer::SoftmaxNode},
      {"SoftmaxCrossEntropyLoss", &Importer::SoftmaxCrossEntropyLoss},
      {"Softplus", &Importer::Softplus},
      {"Split", &Importer::Split},
      {"Sqrt", &Importer::Sqrt},
      {"Squeeze", &Importer::Squeeze},
      {"Sub", &Importer::Sub},
      {"Tanh", &Importer::Tanh},
      {"Tile", &Importer::Tile},
      {"ScatterElements", &Importer::ScatterElements},
      {"ScatterND", &Importer::ScatterND},
      {"ConstantOfShape", &Importer::ConstantOfShape},
      {"Transpose", &Importer::Transpose},
      {"TopK", &Importer::TopK},
      {"Trilu", &Importer::Trilu},
      {"Unsqueeze", &Importer::Unsqueeze},
      {"Where", &Importer::Where},
  };
  return handlers;
}

std::string Importer::GraphName(const onnx::ModelProto& model, const std::string& source) {
  if (!model.graph().name().empty()) return model.graph().name();
  std::string name = source.substr(source.find_last_of('/') + 1);
  if (const size_t dot = name.rfind('.'); dot != std::string::npos && dot > 0) name.resize(dot);
  return name.empty() ? "onnx" : name;
}

// The nodes of `graph` and of the branches of its If nodes, depth first.
template <typename Visit>
void ForEachNode(const onnx::GraphProto& graph, const Visit& visit) {
  for (const NodeProto& node : graph.node()) {
    visit(node);
    for (const auto& a : node.attribute()) {
      if (a.has_g()) ForEachNode(a.g(), visit);
    }
  }
}

Graph Importer::Run() {
  for (const auto& opset : model_.opset_import()) {
    if (opset.domain().empty() || opset.domain() == "ai.onnx") opset_ = opset.version();
  }
  CheckSupported();
  const onnx::GraphProto& graph = model_.graph();
  for (const TensorProto& init : graph.initializer()) constants_[init.name()] = &init;
  DeclareInputs();
  ForEachNode(graph, [&](const NodeProto& node) {
    for (const std::string& input : node.input()) read_.insert(input);
    for (const auto& a : node.attribute()) {
      for (const auto& output : a.g().output()) read_.insert(output.name());  // what a branch gives its If
    }
  });
  for (const auto& output : graph.output()) read_.insert(output.name());
  for (int i = 0; i < graph.node_size(); ++i) {
    node_ = &graph.node(i);
    node_index_ = i;
    Translate(*node_);
  }
  node_ = nullptr;

  std::vector<TensorId> outputs;
  for (const auto& output : graph.output()) {
    auto it = values_.find(output.name());
    if (it == values_.end()) {
      if (!constants_.count(output.name())) Fail("{}: graph output {} is not produced by any node", source_, Quote(output.name()));
      outputs.push_back(Value(output.name()));
    } else {
      outputs.push_back(it->second);
    }
  }
  if (outputs.empty()) Fail("{}: the graph has no outputs", source_);
  if (options_.append_loss) {
    // Integer and boolean outputs (an ArgMax's predictions, a mask) carry no
    // gradient: the training step leaves them out.
    std::vector<TensorId> floating;
    for (TensorId id : outputs) {
      if (IsFloatingPoint(b_.graph().tensor(id).dtype)) floating.push_back(id);
    }
    if (floating.size() != 1) {
      Fail("{}: --train needs a model with a single floating-point output to attach the loss to, got {} (of {} "
           "outputs)", source_, floating.size(), outputs.size());
    }
    AppendLoss(floating[0]);
  } else {
    for (TensorId id : outputs) {
      b_.MarkOutput(id);
      Tensor& t = b_.mutable_graph().mutable_tensor(id);
      if (t.role == TensorRole::kActivation && !t.alias_of) t.role = TensorRole::kOutput;
    }
  }
  Graph result = b_.Finish();
  result.metadata["source"] = "onnx";
  result.metadata["onnx.file"] = source_;
  result.metadata["onnx.opset"] = std::to_string(opset_);
  if (!model_.producer_name().empty()) {
    result.metadata["onnx.producer"] = model_.producer_name() +
                                       (model_.producer_version().empty() ? "" : " " + model_.producer_version());
  }
  if (options_.batch > 0) result.metadata["batch"] = std::to_string(options_.batch);
  return result;
}

void Importer::CheckSupported() const {
  std::map<std::string, int> unsupported;
  ForEachNode(model_.graph(), [&](const NodeProto& node) {
    const bool default_domain = node.domain().empty() || node.domain() == "ai.onnx";
    if (default_domain && (node.op_type() == "Constant" || node.op_type() == "If" ||
                           Handlers().count(node.op_type()) || FoldOnly().count(node.op_type()))) {
      return;
    }
    ++unsupported[default_domain ? node.op_type() : node.domain() + "." + node.op_type()];
  });
  if (unsupported.empty()) return;
  std::vector<std::pair<std::string, int>> sorted(unsupported.begin(), unsupported.end());
  // Most frequent first; ties by name, so the message is deterministic.
  std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string list;
  for (const auto& [type, count] : sorted) {
    if (!list.empty()) list += ", ";
    list += fmt::format("{} ({} node{})", type, count, count == 1 ? "" : "s");
  }
  Fail("{}: unsupported ONNX ops: {}", source_, list);
}

void Importer::DeclareInputs() {
  for (const onnx::ValueInfoProto& input : model_.graph().input()) {
    // Before IR version 4 initializers were listed among the inputs too.
    if (constants_.count(input.name())) continue;
    if (!input.type().has_tensor_type()) Fail("{}: input {} is not a tensor", source_, Quote(input.name()));
    const auto& type = input.type().tensor_type();
    const auto dtype = FromOnnxType(type.elem_type());
    if (!dtype) Fail("{}: input {} has unsupported element type {}", source_, Quote(input.name()), TypeName(type.elem_type()));
    if (!type.has_shape()) Fail("{}: input {} has no shape; export the model with static input shapes", source_, Quote(input.name()));
    Shape shape;
    bool substituted = false;
    for (int d = 0; d < type.shape().dim_size(); ++d) {
      const auto& dim = type.shape().dim(d);
      if (dim.has_dim_value()) {
        if (dim.dim_value() < 0) Fail("{}: input {} dim {} is negative ({})", source_, Quote(input.name()), d, dim.dim_value());
        shape.push_back(dim.dim_value());
        continue;
      }
      const std::string what = dim.has_dim_param() ? fmt::format("symbolic ({})", Quote(dim.dim_param())) : "unknown";
      if (options_.batch <= 0) {
        Fail("{}: input {} dim {} is {}; pass --batch N to fix the batch dimension", source_, Quote(input.name()), d, what);
      }
      if (substituted) {
        Fail("{}: input {} dim {} is {}; --batch fixes only the first one, export with static shapes", source_,
             Quote(input.name()), d, what);
      }
      substituted = true;
      shape.push_back(options_.batch);
    }
    values_[input.name()] = b_.Input(input.name(), std::move(shape), *dtype);
  }
}

void Importer::Translate(const NodeProto& node) {
  // ONNX assigns every value once; a second definition would silently
  // replace the first for the nodes after it.
  for (const std::string& output : node.output()) {
    if (Present(output) && (values_.count(output) || constants_.count(output))) {
      FailNode(fmt::format("output {} is already defined (ONNX values are assigned once)", Quote(output)));
    }
  }
  if (node.op_type() == "Constant") return AddConstantNode(node);
  for (const std::string& input : node.input()) {
    if (Present(input) && !values_.count(input) && !constants_.count(input)) {
      FailNode(fmt::format("input {} is not a graph input, initializer or earlier node's output", Quote(input)));
    }
  }
  if (node.op_type() == "If") return InlineIf(node);
  if (FoldIntegers(node) || FoldScalars(node)) return;
  if (FoldOnly().count(node.op_type())) {
    FailNode("is imported only where its inputs are integer constants or have static shapes (shape arithmetic); "
             "export with static shapes and constant folding");
  }
  const std::string scope = ScopeOf(node);
  if (!scope.empty()) b_.PushScope(scope);
  Outputs outputs;
  try {
    outputs = (this->*Handlers().at(node.op_type()))(node);
  } catch (const Error& e) {
    // The graph builder's errors (shape inference, sizes) know neither the
    // file nor the node.
    if (std::string_view(e.what()).starts_with(source_ + ": ")) throw;
    FailNode(e.what());
  }
  if (!scope.empty()) b_.PopScope();
  for (int i = 0; i < node.output_size(); ++i) {
    if (!Present(node.output(i))) continue;
    if (static_cast<size_t>(i) >= outputs.size()) {
      if (!read_.count(node.output(i))) continue;
      FailNode(fmt::format("output {} ({}) is not supported", i, Quote(node.output(i))));
    }
    values_[node.output(i)] = outputs[i];
  }
  KeepLayout(node, outputs);
}

// Element-wise ops whose result PyTorch lays out like a dense input of its
// shape (TensorIterator keeps the input's stride order).
void Importer::KeepLayout(const NodeProto& node, const Outputs& outputs) {
  // A view of a tensor laid out otherwise is laid out otherwise too (a
  // select of a permute).
  for (TensorId out : outputs) {
    const Tensor& t = b_.graph().tensor(out);
    if (t.alias_of && non_contiguous_.count(*t.alias_of)) non_contiguous_.insert(out);
  }
  static const std::set<std::string> element_wise = {
      "Abs",  "Add",     "Cast",      "Clip",     "Cos",        "Div",     "Elu",  "Equal",   "Erf",
      "Exp",  "Gelu",    "Greater",   "GreaterOrEqual", "HardSigmoid", "HardSwish", "LeakyRelu", "Less",
      "LessOrEqual", "Log", "Max",    "Min",      "Mul",        "Neg",     "Not",  "Pow",     "Reciprocal",
      "Relu", "Sigmoid", "Sin",       "Softplus", "Sqrt",       "Sub",     "Tanh", "Where"};
  if (!element_wise.count(node.op_type())) return;
  bool from_non_contiguous = false;
  for (const std::string& input : node.input()) {
    auto it = values_.find(input);
    if (it == values_.end() || !non_contiguous_.count(it->second)) continue;
    for (TensorId out : outputs) from_non_contiguous = from_non_contiguous || ShapeOf(out) == ShapeOf(it->second);
  }
  if (!from_non_contiguous) return;
  for (TensorId out : outputs) non_contiguous_.insert(out);
}

void Importer::AddConstantNode(const NodeProto& node) {
  if (node.output_size() != 1) FailNode("expects one output");
  TensorProto* owned = nullptr;
  auto own = [&](int32_t type) {
    owned = &owned_constants_.emplace_back();
    owned->set_data_type(type);
    owned->set_name(node.output(0));
    return owned;
  };
  for (const onnx::AttributeProto& a : node.attribute()) {
    if (a.name() == "value") {
      constants_[node.output(0)] = &a.t();
      return;
    }
    if (a.name() == "value_float") {
      own(TensorProto::FLOAT)->add_float_data(a.f());
    } else if (a.name() == "value_floats") {
      own(TensorProto::FLOAT)->add_dims(a.floats_size());
      for (float f : a.floats()) owned->add_float_data(f);
    } else if (a.name() == "value_int") {
      own(TensorProto::INT64)->add_int64_data(a.i());
    } else if (a.name() == "value_ints") {
      own(TensorProto::INT64)->add_dims(a.ints_size());
      for (int64_t v : a.ints()) owned->add_int64_data(v);
    } else {
      FailNode(fmt::format("attribute {} is not supported", Quote(a.name())));
    }
    constants_[node.output(0)] = owned;
    return;
  }
  FailNode("has no value");
}

void Importer::InlineIf(const NodeProto& node) {
  const TensorProto* c = node.input_size() > 0 && !values_.count(node.input(0)) ? ConstantOf(node.input(0)) : nullptr;
  std::optional<bool> taken;
  if (c && c->data_type() == TensorProto::BOOL && c->data_location() != TensorProto::EXTERNAL) {
    if (c->int32_data_size() == 1) taken = c->int32_data(0) != 0;
    if (c->raw_data().size() == 1) taken = c->raw_data()[0] != 0;
  } else if (const auto v = c ? IntConstant(node.input(0)) : std::nullopt; v && v->size() == 1) {
    taken = (*v)[0] != 0;  // an Equal of shape values, folded at import
  }
  if (!taken) {
    FailNode("the condition is computed from the data (control flow memfit cannot plan); only a condition known at "
             "import (a shape check) is supported");
  }
  const onnx::GraphProto* branch = nullptr;
  for (const auto& a : node.attribute()) {
    if (a.name() == (*taken ? "then_branch" : "else_branch") && a.has_g()) branch = &a.g();
  }
  if (!branch) FailNode(fmt::format("has no {}", *taken ? "then_branch" : "else_branch"));
  if (branch->output_size() != node.output_size()) {
    FailNode(fmt::format("its branch gives {} outputs for {}", branch->output_size(), node.output_size()));
  }
  for (const TensorProto& init : branch->initializer()) constants_[init.name()] = &init;
  const NodeProto* outer = node_;
  for (const NodeProto& inner : branch->node()) {
    node_ = &inner;
    Translate(inner);
  }
  node_ = outer;
  for (int i = 0; i < node.output_size(); ++i) {
    const std::string& from = branch->output(i).name();
    if (!Present(node.output(i))) continue;
    if (auto v = values_.find(from); v != values_.end()) {
      values_[node.output(i)] = v->second;
    } else if (const TensorProto* constant = ConstantOf(from)) {
      constants_[node.output(i)] = constant;
    } else {
      FailNode(fmt::format("its branch's output {} is not computed", Quote(from)));
    }
  }
}

const std::set<std::string>& Importer::FoldOnly() {
  static const std::set<std::string> ops = {"Mod", "Range", "ReduceProd", "Shape", "Size"};
  return ops;
}

bool Importer::FoldIntegers(const NodeProto& node) {
  const std::string& type = node.op_type();
  static const std::set<std::string> foldable = {"Add",   "Cast",    "Concat",    "ConstantOfShape", "Div",
                                                 "Gather", "Mul",    "Reshape",   "Shape",           "Slice",
                                                 "Squeeze", "Sub",   "Transpose", "Unsqueeze",       "Equal",
                                                 "Where",  "Expand",  "Mod",       "Range",           "ReduceProd",
                                                 "Size"};
  if (!foldable.count(type) || node.output_size() != 1 || node.input_size() == 0) return false;
  // Every input an integer constant (Shape: any value of static shape).
  std::vector<std::vector<int64_t>> in;
  std::vector<Shape> dims;
  for (int i = 0; i < node.input_size(); ++i) {
    if (!Present(node.input(i))) {
      in.emplace_back();
      dims.emplace_back();
      continue;
    }
    if ((type == "Shape" || type == "Size") && i == 0) {
      auto v = values_.find(node.input(0));
      const TensorProto* c = ConstantOf(node.input(0));
      if (v != values_.end()) {
        dims.push_back(ShapeOf(v->second));
      } else if (c) {
        dims.push_back(Shape(c->dims().begin(), c->dims().end()));
      } else {
        return false;
      }
      in.emplace_back();
      continue;
    }
    auto values = values_.count(node.input(i)) ? std::nullopt : IntConstant(node.input(i));
    if (!values) return false;
    const TensorProto* c = ConstantOf(node.input(i));
    Shape d(c->dims().begin(), c->dims().end());
    if (Product(d, 0, d.size()) != static_cast<int64_t>(values->size())) FailNode("a constant's data does not match its dims");
    in.push_back(std::move(*values));
    dims.push_back(std::move(d));
  }
  std::vector<int64_t> out;
  Shape out_dims;
  int32_t out_type = TensorProto::INT64;
  constexpr int64_t kMaxElements = int64_t{1} << 20;  // shape arithmetic, not data
  // An absent optional input has no values (and no dims): nothing to broadcast.
  auto every_input_given = [&] {
    for (size_t i = 0; i < in.size(); ++i) {
      if (static_cast<int64_t>(in[i].size()) != Product(dims[i], 0, dims[i].size())) return false;
    }
    return true;
  };
  auto rank1 = [&](size_t i) {
    if (dims[i].size() > 1) FailNode("folds only scalars and 1-d integer constants");
  };
  if (type == "Shape") {
    const auto r = static_cast<int64_t>(dims[0].size());
    int64_t start = IntAttr("start", 0), end = IntAttr("end", r);
    start = std::clamp<int64_t>(start < 0 ? start + r : start, 0, r);
    end = std::clamp<int64_t>(end < 0 ? end + r : end, 0, r);
    out.assign(dims[0].begin() + start, dims[0].begin() + std::max(start, end));
    out_dims = {static_cast<int64_t>(out.size())};
  } else if (type == "Size") {  // the element count, a scalar
    out = {Product(dims[0], 0, dims[0].size())};
    out_dims = {};
  } else if (type == "Cast") {
    const int64_t to = IntAttr("to", TensorProto::INT64);
    if (to == TensorProto::FLOAT || to == TensorProto::DOUBLE) {
      out_type = static_cast<int32_t>(to);
    } else if (to != TensorProto::INT64 && to != TensorProto::INT32) {
      return false;
    }
    out = in[0];
    out_dims = dims[0];
  } else if (type == "ConstantOfShape") {
    rank1(0);
    const int64_t n = Product(in[0], 0, in[0].size());
    if (std::any_of(in[0].begin(), in[0].end(), [](int64_t d) { return d < 0; }) || n > kMaxElements) {
      FailNode(fmt::format("shape {} is too large to fold (shape arithmetic only)", ShapeToString(in[0])));
    }
    int64_t fill = 0;
    if (const auto* a = Attr("value")) {
      const TensorProto& t = a->t();
      if (t.data_type() != TensorProto::INT64 && t.data_type() != TensorProto::INT32) return false;
      if (t.int64_data_size() > 0) fill = t.int64_data(0);
      else if (t.int32_data_size() > 0) fill = t.int32_data(0);
      else if (t.raw_data().size() >= sizeof(int64_t) && t.data_type() == TensorProto::INT64) std::memcpy(&fill, t.raw_data().data(), sizeof fill);
      else if (t.raw_data().size() >= sizeof(int32_t)) { int32_t f; std::memcpy(&f, t.raw_data().data(), sizeof f); fill = f; }
    }
    out.assign(static_cast<size_t>(n), fill);
    out_dims = in[0];
  } else if (type == "Concat") {
    for (size_t i = 0; i < in.size(); ++i) {
      rank1(i);
      out.insert(out.end(), in[i].begin(), in[i].end());
    }
    out_dims = {static_cast<int64_t>(out.size())};
  } else if (type == "Gather") {
    rank1(0);
    if (IntAttr("axis", 0) != 0 || in.size() < 2) return false;
    for (int64_t i : in[1]) {
      const auto n = static_cast<int64_t>(in[0].size());
      if (i < -n || i >= n) FailNode(fmt::format("index {} is out of range for {} entries", i, n));
      out.push_back(in[0][static_cast<size_t>(i < 0 ? i + n : i)]);
    }
    out_dims = dims[1];
  } else if (type == "Slice") {
    // One axis of a 1-d or 2-d constant, Python's slicing (negative steps
    // reverse: torch's export of F.pad reverses its pad pairs so).
    if (opset_ < 10 || in.size() < 3 || in[1].size() != 1 || in[2].size() != 1 || dims[0].empty() ||
        dims[0].size() > 2) {
      return false;
    }
    const auto rank = static_cast<int64_t>(dims[0].size());
    int64_t axis = in.size() > 3 && !in[3].empty() ? in[3][0] : 0;
    if (axis < -rank || axis >= rank) FailNode(fmt::format("axis {} is out of range for rank {}", axis, rank));
    if (axis < 0) axis += rank;
    const int64_t step = in.size() > 4 && !in[4].empty() ? in[4][0] : 1;
    if (step == 0) FailNode("step 0");
    const int64_t n = dims[0][axis];
    auto clamp = [n, step](int64_t v) {
      if (v < 0) v = v < -n ? -1 : v + n;  // saturated ends (INT64_MIN) land before the start
      return step > 0 ? std::clamp<int64_t>(v, 0, n) : std::clamp<int64_t>(v, -1, n - 1);
    };
    std::vector<int64_t> picked;
    for (int64_t i = clamp(in[1][0]); step > 0 ? i < clamp(in[2][0]) : i > clamp(in[2][0]); i += step) picked.push_back(i);
    const int64_t inner = rank == 2 ? dims[0][1] : 1;
    out_dims = dims[0];
    out_dims[axis] = static_cast<int64_t>(picked.size());
    if (axis == 0) {
      for (int64_t r : picked) out.insert(out.end(), in[0].begin() + r * inner, in[0].begin() + (r + 1) * inner);
    } else {
      for (int64_t r = 0; r < dims[0][0]; ++r) {
        for (int64_t c : picked) out.push_back(in[0][static_cast<size_t>(r * inner + c)]);
      }
    }
  } else if (type == "Transpose") {
    if (dims[0].size() != 2) return false;
    const auto perm = IntsAttr("perm", {1, 0});
    if (perm == std::vector<int64_t>{0, 1}) {
      out = in[0];
      out_dims = dims[0];
    } else if (perm == std::vector<int64_t>{1, 0}) {
      out_dims = {dims[0][1], dims[0][0]};
      for (int64_t c = 0; c < dims[0][1]; ++c) {
        for (int64_t r = 0; r < dims[0][0]; ++r) out.push_back(in[0][static_cast<size_t>(r * dims[0][1] + c)]);
      }
    } else {
      return false;
    }
  } else if (type == "Reshape") {
    // The data stays; the dims are the target's (0 copies, -1 is inferred).
    if (in.size() < 2) return false;
    out = in[0];
    out_dims = in[1];
    int64_t known = 1;
    std::optional<size_t> inferred;
    for (size_t i = 0; i < out_dims.size(); ++i) {
      if (out_dims[i] == 0 && i < dims[0].size()) out_dims[i] = dims[0][i];
      if (out_dims[i] == -1 && !inferred) inferred = i;
      else if (out_dims[i] < 0) FailNode(fmt::format("cannot reshape to {}", ShapeToString(in[1])));
      else known = SaturatingMul(known, out_dims[i]);
    }
    if (inferred) out_dims[*inferred] = known == 0 ? 0 : static_cast<int64_t>(out.size()) / known;
    if (Product(out_dims, 0, out_dims.size()) != static_cast<int64_t>(out.size())) {
      FailNode(fmt::format("cannot reshape {} values to {}", out.size(), ShapeToString(in[1])));
    }
  } else if (type == "Squeeze" || type == "Unsqueeze") {
    // A scalar and a 1-element vector, either way.
    if (in[0].size() != 1 || dims[0].size() > 1) return false;
    out = in[0];
    out_dims = type == "Squeeze" ? Shape{} : Shape{1};
  } else if (type == "Where") {
    // Where(condition, a, b) of integer constants, broadcast.
    if (in.size() != 3) return false;
    const std::optional<BroadcastIndex> at = every_input_given() ? BroadcastIndex::Of(dims, kMaxElements) : std::nullopt;
    if (!at) return false;
    for (int64_t o = 0; o < at->numel(); ++o) {
      out.push_back(in[0][at->In(0, o)] ? in[1][at->In(1, o)] : in[2][at->In(2, o)]);
    }
    out_dims = at->shape();
  } else if (type == "Expand") {
    // A scalar or 1-element integer constant repeated to a 1-d shape.
    if (in.size() != 2 || in[0].size() != 1 || in[1].size() != 1 || in[1][0] < 1 || in[1][0] > kMaxElements) return false;
    out.assign(static_cast<size_t>(in[1][0]), in[0][0]);
    out_dims = {in[1][0]};
  } else if (type == "ReduceProd") {
    // The product of a 1-d constant (a tensor's element count from its shape: torch's
    // export of std / var over several dims).
    if (dims[0].size() != 1) return false;
    const auto axes = in.size() > 1 && !in[1].empty() ? in[1] : IntsAttr("axes", {0});
    if (axes.size() != 1 || (axes[0] != 0 && axes[0] != -1)) return false;
    int64_t product = 1;
    for (int64_t v : in[0]) {
      const auto next = CheckedMul(product, v);
      if (!next) FailNode("the product overflows int64");
      product = *next;
    }
    out = {product};
    out_dims = IntAttr("keepdims", 1) ? Shape{1} : Shape{};
  } else if (type == "Range") {
    // Range(start, limit, delta) of scalars: ceil((limit - start) / delta) values.
    if (in.size() != 3 || in[0].size() != 1 || in[1].size() != 1 || in[2].size() != 1) return false;
    const int64_t start = in[0][0], limit = in[1][0], delta = in[2][0];
    if (delta == 0) FailNode("delta 0");
    const double n = std::max(0.0, std::ceil((static_cast<double>(limit) - static_cast<double>(start)) / static_cast<double>(delta)));
    if (n > static_cast<double>(kMaxElements)) FailNode(fmt::format("{} values are too many to fold (shape arithmetic only)", n));
    for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) {
      const auto step = CheckedMul(i, delta);
      const auto v = step ? CheckedAdd(start, *step) : std::nullopt;
      if (!v) FailNode(fmt::format("Range({}, {}, {}) overflows int64", start, limit, delta));
      out.push_back(*v);
    }
    out_dims = {static_cast<int64_t>(out.size())};
  } else {  // Add, Sub, Mul, Div, Mod, Equal, broadcast ([n, 1] + [m] is [n, m])
    if (in.size() != 2) return false;
    const std::optional<BroadcastIndex> at = every_input_given() ? BroadcastIndex::Of(dims, kMaxElements) : std::nullopt;
    if (!at) return false;
    for (int64_t o = 0; o < at->numel(); ++o) {
      const int64_t a = in[0][at->In(0, o)], b = in[1][at->In(1, o)];
      if ((type == "Div" || type == "Mod") && (b == 0 || (a == std::numeric_limits<int64_t>::min() && b == -1))) {
        FailNode(fmt::format("{} {} {} has no int64 result", a, type == "Div" ? "/" : "%", b));
      }
      if (type == "Mod") {
        // fmod 0 (torch's %): the remainder takes the divisor's sign; fmod 1: the dividend's.
        int64_t r = a % b;
        if (!IntAttr("fmod", 0) && r != 0 && ((r < 0) != (b < 0))) r += b;
        out.push_back(r);
        continue;
      }
      const std::optional<int64_t> v = type == "Add"   ? CheckedAdd(a, b)
                                       : type == "Sub" ? CheckedSub(a, b)
                                       : type == "Mul" ? CheckedMul(a, b)
                                       : type == "Equal" ? std::optional<int64_t>(a == b)
                                                         : std::optional<int64_t>(a / b);
      if (!v) FailNode(fmt::format("{} of {} and {} overflows int64", type, a, b));
      out.push_back(*v);
    }
    out_dims = at->shape();
  }
  TensorProto& folded = owned_constants_.emplace_back();
  folded.set_name(node.output(0));
  folded.set_data_type(out_type);
  for (int64_t d : out_dims) folded.add_dims(d);
  for (int64_t v : out) {
    if (out_type == TensorProto::FLOAT) folded.add_float_data(static_cast<float>(v));
    else if (out_type == TensorProto::DOUBLE) folded.add_double_data(static_cast<double>(v));
    else folded.add_int64_data(v);
  }
  constants_[node.output(0)] = &folded;
  return true;
}

bool Importer::FoldScalars(const NodeProto& node) {
  static const std::set<std::string> unary = {"Sqrt", "Reciprocal", "Neg", "Exp", "Log", "Abs", "Identity", "Cast"};
  static const std::set<std::string> binary = {"Add", "Sub", "Mul", "Div", "Pow"};
  const std::string& type = node.op_type();
  // A floating scalar cast to float or double (F.normalize's eps, exported as a
  // double constant and a Cast): still a constant, as Clip's bounds must be.
  int32_t to = TensorProto::FLOAT;
  if (type == "Cast") {
    for (const auto& a : node.attribute()) {
      if (a.name() == "to") to = static_cast<int32_t>(a.i());
    }
    if (to != TensorProto::FLOAT && to != TensorProto::DOUBLE) return false;
  }
  const bool one = unary.count(type) > 0;
  if ((!one && !binary.count(type)) || node.output_size() != 1 || node.input_size() != (one ? 1 : 2)) return false;
  std::vector<double> v;
  for (const std::string& input : node.input()) {
    const auto value = Present(input) ? ScalarConstant(input) : std::nullopt;
    if (!value) return false;
    v.push_back(*value);
  }
  const double r = type == "Sqrt"         ? std::sqrt(v[0])
                   : type == "Reciprocal" ? 1.0 / v[0]
                   : type == "Neg"        ? -v[0]
                   : type == "Exp"        ? std::exp(v[0])
                   : type == "Log"        ? std::log(v[0])
                   : type == "Abs"        ? std::abs(v[0])
                   : type == "Identity" || type == "Cast" ? v[0]
                   : type == "Add"        ? v[0] + v[1]
                   : type == "Sub"        ? v[0] - v[1]
                   : type == "Mul"        ? v[0] * v[1]
                   : type == "Div"        ? v[0] / v[1]
                                          : std::pow(v[0], v[1]);
  const TensorProto* like = ConstantOf(node.input(0));
  if (!one && ConstantOf(node.input(1))->dims_size() > like->dims_size()) like = ConstantOf(node.input(1));
  TensorProto& folded = owned_constants_.emplace_back();
  folded.set_name(node.output(0));
  folded.set_data_type(to);
  for (int64_t d : like->dims()) folded.add_dims(d);
  if (to == TensorProto::DOUBLE) {
    folded.add_double_data(r);
  } else {
    folded.add_float_data(static_cast<float>(r));
  }
  constants_[node.output(0)] = &folded;
  return true;
}

void Importer::AppendLoss(TensorId output) {
  const Tensor out = b_.tensor(output);
  if (!IsFloatingPoint(out.dtype)) Fail("{}: --train: the output {} is not floating point", source_, Quote(out.name));
  TensorId loss;
  if (out.shape.empty()) {
    // A model that returns its loss (SoftmaxCrossEntropyLoss inside it): that is the loss.
    b_.MarkOutput(output);
    b_.mutable_graph().mutable_tensor(output).role = TensorRole::kOutput;
    return;
  }
  b_.PushScope("loss");
  if (out.shape.size() == 2) {
    // F.cross_entropy(logits, labels): what a classifier trains with.
    TensorId labels = b_.Input("labels", {out.shape[0]}, DType::kI64);
    TensorId log_probs = b_.Call("aten._log_softmax", {output}, {{"dim", int64_t{1}}, {"half_to_float", false}});
    loss = b_.CallMulti("aten.nll_loss_forward", {log_probs, labels},
                        {{"weight", AttrValue{std::monostate{}}}, {"reduction", int64_t{1}}, {"ignore_index", int64_t{-100}}})[0];
  } else {
    // F.mse_loss(output, target) as the pointwise ops it decomposes into, so
    // that every op on the path to the loss has a backward rule.
    TensorId target = b_.Input("target", out.shape, out.dtype);
    TensorId diff = b_.Call("aten.sub.Tensor", {output, target});
    TensorId square = b_.Call("aten.mul.Tensor", {diff, diff});
    loss = b_.Call("aten.mean", {square});
  }
  b_.PopScope();
  b_.MarkOutput(loss);
  b_.mutable_graph().mutable_tensor(loss).role = TensorRole::kOutput;
}

// --- Values -------------------------------------------------------------------

TensorId Importer::Value(const std::string& name, std::optional<TensorRole> role) {
  std::string key = name, constant = name;
  if (auto it = values_.find(name); it != values_.end()) {
    // One initializer asked for in two roles: the exporter merges
    // initializers of equal values (a fresh BatchNorm's bias and running
    // mean are both zeros, its weight and running variance both ones; the
    // duplicate becomes an Identity of the one kept), and a running
    // statistic updated in place must not be the parameter. Each role gets
    // its own source, starting from the same values: named `name` when it
    // is the Identity's, else `name`.buffer (or .parameter).
    auto source = constant_sources_.find(it->second);
    if (!role || source == constant_sources_.end() || b_.tensor(it->second).role == *role) return it->second;
    constant = source->second;
    if (constant == name) {
      key = fmt::format("{}.{}", name, *role == TensorRole::kBuffer ? "buffer" : "parameter");
      if (auto again = values_.find(key); again != values_.end()) return again->second;
    }
  }
  const TensorProto* c = ConstantOf(constant);
  if (!c) Fail("{}: value {} is not defined", source_, Quote(name));  // Translate checked inputs
  const auto dtype = FromOnnxType(c->data_type());
  if (!dtype) Fail("{}: initializer {} has unsupported element type {}", source_, Quote(name), TypeName(c->data_type()));
  Shape shape(c->dims().begin(), c->dims().end());
  const TensorRole r = role.value_or(IsFloatingPoint(*dtype) ? TensorRole::kParameter : TensorRole::kBuffer);
  // Sources are named by their ONNX name, outside the current node's scope.
  const std::string scope = node_ ? ScopeOf(*node_) : std::string();
  if (!scope.empty()) b_.PopScope();
  const TensorId id = b_.Source(key, std::move(shape), *dtype, r);
  if (!scope.empty()) b_.PushScope(scope);
  // An integer constant keeps its values (a folded index grid: the run
  // needs them, where a weight's are generated).
  if (const auto ints = IntConstant(constant); ints && !ints->empty() && ints->size() <= kMaxConstantValues &&
                                               static_cast<int64_t>(ints->size()) == b_.graph().tensor(id).numel()) {
    b_.mutable_graph().mutable_tensor(id).values = *ints;
  }
  values_[key] = id;
  constant_sources_[id] = constant;
  return id;
}

const std::string& Importer::InputName(int i) const {
  if (!HasInput(i)) FailNode(fmt::format("input {} is missing", i));
  return node_->input(i);
}

TensorId Importer::In(int i, std::optional<TensorRole> role) { return Value(InputName(i), role); }

const TensorProto* Importer::ConstantOf(const std::string& name) const {
  auto it = constants_.find(name);
  return it == constants_.end() ? nullptr : it->second;
}

std::optional<std::vector<int64_t>> Importer::IntConstant(const std::string& name) const {
  const TensorProto* c = ConstantOf(name);
  if (!c || c->data_location() == TensorProto::EXTERNAL) return std::nullopt;
  if (c->data_type() == TensorProto::INT64) return Elements<int64_t, int64_t>(*c, c->int64_data());
  if (c->data_type() == TensorProto::INT32) return Elements<int32_t, int64_t>(*c, c->int32_data());
  return std::nullopt;
}

std::optional<double> Importer::ScalarConstant(const std::string& name) const {
  const TensorProto* c = ConstantOf(name);
  if (!c || c->data_location() == TensorProto::EXTERNAL || values_.count(name)) return std::nullopt;
  int64_t numel = 1;
  for (int64_t d : c->dims()) numel *= d;
  if (numel != 1) return std::nullopt;
  if (c->data_type() == TensorProto::FLOAT) {
    if (c->float_data_size() == 1) return c->float_data(0);
    if (c->raw_data().size() == sizeof(float)) {
      float f;
      std::memcpy(&f, c->raw_data().data(), sizeof f);
      return f;
    }
  } else if (c->data_type() == TensorProto::DOUBLE) {
    if (c->double_data_size() == 1) return c->double_data(0);
    if (c->raw_data().size() == sizeof(double)) {
      double d;
      std::memcpy(&d, c->raw_data().data(), sizeof d);
      return d;
    }
  }
  return std::nullopt;
}

std::optional<std::vector<double>> Importer::FloatConstant(const std::string& name) const {
  const TensorProto* c = ConstantOf(name);
  if (!c || c->data_location() == TensorProto::EXTERNAL || values_.count(name)) return std::nullopt;
  if (c->data_type() == TensorProto::FLOAT) return Elements<float, double>(*c, c->float_data());
  if (c->data_type() == TensorProto::DOUBLE) return Elements<double, double>(*c, c->double_data());
  return std::nullopt;
}

std::optional<std::vector<int64_t>> Importer::IntsArgument(std::string_view attr, int input, int64_t since) const {
  if (opset_ < since) {
    if (!Attr(attr)) return std::nullopt;
    return IntsAttr(attr, {});
  }
  if (!HasInput(input)) return std::nullopt;
  auto values = IntConstant(node_->input(input));
  if (!values) {
    FailNode(fmt::format("'{}' (input {}) is not an integer constant (an initializer or Constant node); export "
                         "with static shapes and constant folding",
                         attr, Quote(node_->input(input))));
  }
  return values;
}

// --- Attributes ---------------------------------------------------------------

const onnx::AttributeProto* Importer::Attr(std::string_view name) const {
  for (const onnx::AttributeProto& a : node_->attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}

int64_t Importer::IntAttr(std::string_view name, int64_t fallback) const {
  const auto* a = Attr(name);
  return a ? a->i() : fallback;
}

double Importer::FloatAttr(std::string_view name, double fallback) const {
  const auto* a = Attr(name);
  return a ? a->f() : fallback;
}

std::string Importer::StringAttr(std::string_view name, std::string fallback) const {
  const auto* a = Attr(name);
  return a ? a->s() : fallback;
}

std::vector<int64_t> Importer::IntsAttr(std::string_view name, std::vector<int64_t> fallback) const {
  const auto* a = Attr(name);
  return a ? std::vector<int64_t>(a->ints().begin(), a->ints().end()) : fallback;
}

int64_t Importer::Axis(std::string_view name, int64_t fallback, size_t rank) const {
  const int64_t axis = IntAttr(name, fallback);
  const auto r = static_cast<int64_t>(rank);
  if (axis < -r || axis >= r) FailNode(fmt::format("'{}' = {} is out of range for rank {}", name, axis, rank));
  return axis < 0 ? axis + r : axis;
}

// --- Helpers ------------------------------------------------------------------

TensorId Importer::Reshape(TensorId x, const Shape& shape) {
  if (ShapeOf(x) == shape) return x;
  if (non_contiguous_.count(x)) {
    x = b_.Call("aten.clone", {x}, {{"memory_format", std::string("contiguous_format")}});
  }
  return b_.Call("aten.view", {x}, {{"size", shape}});
}

TensorId Importer::Int64Indices(TensorId t) {
  if (b_.tensor(t).dtype == DType::kI32) t = b_.Call("aten._to_copy", {t}, {{"dtype", std::string("i64")}});
  if (b_.tensor(t).dtype != DType::kI64) FailNode("the indices are not int64 or int32");
  return t;
}

void Importer::RefuseNegativeIndices(int input, std::string_view message) {
  if (const auto given = IntConstant(InputName(input))) {
    if (std::any_of(given->begin(), given->end(), [](int64_t i) { return i < 0; })) FailNode(std::string(message));
  }
}

std::vector<int64_t> Importer::Padding(const Shape& in, const std::vector<int64_t>& kernel,
                                       const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations) {
  const size_t n = kernel.size();
  const std::string auto_pad = StringAttr("auto_pad", "NOTSET");
  std::vector<int64_t> pads(2 * n, 0);
  if (auto_pad == "NOTSET") {
    pads = IntsAttr("pads", pads);
    if (pads.size() != 2 * n) FailNode(fmt::format("'pads' has {} entries, expected {}", pads.size(), 2 * n));
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    for (size_t i = 0; i < n; ++i) {
      const int64_t extent = in[in.size() - n + i];
      const int64_t out = (extent + strides[i] - 1) / strides[i];
      const int64_t total = std::max<int64_t>(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - extent);
      pads[i] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      pads[i + n] = total - pads[i];
    }
  } else if (auto_pad != "VALID") {
    FailNode(fmt::format("auto_pad {} is not supported", Quote(auto_pad)));
  }
  for (size_t i = 0; i < n; ++i) {
    if (pads[i] != pads[i + n]) {
      FailNode(fmt::format("asymmetric pads [{}] are not supported (ATen pads both sides of a dim equally)",
                           fmt::join(pads, ", ")));
    }
  }
  pads.resize(n);
  return pads;
}

Outputs Importer::Binary(const std::string& packet, bool commutative) {
  // A one-element floating constant operand is a Python scalar in PyTorch:
  // the .Scalar overload with attribute "other".
  const std::string& lhs = InputName(0);
  const std::string& rhs = InputName(1);
  if (auto other = ScalarConstant(rhs)) {
    return {b_.Call(packet + ".Scalar", {In(0)}, {{"other", *other}})};
  }
  if (auto other = ScalarConstant(lhs)) {
    if (commutative) return {b_.Call(packet + ".Scalar", {In(1)}, {{"other", *other}})};
    // c - x = -x + c; c / x = (1 / x) c: the constant stays an attribute.
    if (packet == "aten.sub") return {b_.Call("aten.add.Scalar", {b_.Call("aten.neg", {In(1)})}, {{"other", *other}})};
    if (packet == "aten.div") {
      return {b_.Call("aten.mul.Scalar", {b_.Call("aten.reciprocal", {In(1)})}, {{"other", *other}})};
    }
  }
  TensorId a = In(0);
  TensorId c = In(1);
  return {b_.Call(packet + ".Tensor", {a, c})};
}

Outputs Importer::Softmax(const char* type) {
  TensorId x = In(0);
  const size_t rank = ShapeOf(x).size();
  const int64_t axis = Axis("axis", opset_ >= 13 ? -1 : 1, rank);
  if (opset_ < 13 && axis != static_cast<int64_t>(rank) - 1) {
    FailNode(fmt::format("before opset 13 softmax flattens the dims from axis {} on; only the last axis is supported", axis));
  }
  return {b_.Call(type, {x}, {{"dim", axis}, {"half_to_float", false}})};
}

// 2-d and 3-d pooling as ATen's; 1-d pooling (a 3-d input [N, C, L]: MaxPool1d,
// AvgPool1d) as PyTorch runs it, the 2-d op over [N, C, 1, L] with a 1 x k window.
Outputs Importer::Pool(bool max) {
  TensorId x = In(0);
  const Shape in = ShapeOf(x);
  if (in.size() < 3 || in.size() > 5) {
    FailNode(fmt::format("only 1-d, 2-d and 3-d pooling (a 3-d to 5-d input) is supported, got {}", ShapeToString(in)));
  }
  const size_t n = in.size() - 2;
  auto kernel = IntsAttr("kernel_shape", {});
  if (kernel.size() != n) FailNode(fmt::format("'kernel_shape' must have {} entries", n));
  auto strides = IntsAttr("strides", std::vector<int64_t>(n, 1));
  auto dilations = IntsAttr("dilations", std::vector<int64_t>(n, 1));
  if (strides.size() != n || dilations.size() != n) {
    FailNode(fmt::format("'strides' and 'dilations' must have {} entries", n));
  }
  auto padding = Padding(in, kernel, strides, dilations);
  if (n == 1) {
    x = Reshape(x, {in[0], in[1], 1, in[2]});
    kernel.insert(kernel.begin(), 1);
    strides.insert(strides.begin(), 1);
    dilations.insert(dilations.begin(), 1);
    padding.insert(padding.begin(), 0);
  }
  const auto back = [&](TensorId y) {
    if (n != 1) return y;
    const Shape out = ShapeOf(y);
    return Reshape(y, {out[0], out[1], out[3]});
  };
  const char* spatial = n == 3 ? "3d" : "2d";
  Attrs attrs = {{"kernel_size", kernel},
                 {"stride", strides},
                 {"padding", padding},
                 {"ceil_mode", IntAttr("ceil_mode", 0) != 0}};
  if (max) {
    attrs["dilation"] = dilations;
    Outputs outs = b_.CallMulti(fmt::format("aten.max_pool{}_with_indices", spatial), {x}, std::move(attrs));
    for (TensorId& y : outs) y = back(y);
    return outs;
  }
  if (std::any_of(dilations.begin(), dilations.end(), [](int64_t d) { return d != 1; })) {
    FailNode("dilated average pooling is not supported");
  }
  attrs["count_include_pad"] = IntAttr("count_include_pad", 0) != 0;
  attrs["divisor_override"] = std::monostate{};
  return {back(b_.Call(fmt::format("aten.avg_pool{}", spatial), {x}, std::move(attrs)))};
}

// CumSum(x, axis): aten.cumsum; `reverse` flips before and after, `exclusive`
// subtracts x (the sum of the entries before each).
Outputs Importer::CumSum(const NodeProto&) {
  TensorId x = In(0);
  const auto axis = IntConstant(InputName(1));
  if (!axis || axis->size() != 1) FailNode("'axis' is not a constant integer");
  const auto rank = static_cast<int64_t>(ShapeOf(x).size());
  int64_t dim = (*axis)[0];
  if (dim < -rank || dim >= rank) FailNode(fmt::format("axis {} is out of range for rank {}", dim, rank));
  if (dim < 0) dim += rank;
  const bool reverse = IntAttr("reverse", 0) != 0;
  const Attrs flip = {{"dims", std::vector<int64_t>{dim}}};
  TensorId in = reverse ? b_.Call("aten.flip", {x}, flip) : x;
  TensorId y = b_.Call("aten.cumsum", {in}, {{"dim", dim}, {"dtype", std::monostate{}}});
  if (IntAttr("exclusive", 0) != 0) y = b_.Call("aten.sub.Tensor", {y, in});
  return {reverse ? b_.Call("aten.flip", {y}, flip) : y};
}

// GatherElements(data, indices, axis): aten.gather along the axis (torch.gather,
// take_along_dim). ATen takes no negative index, ONNX does: those are refused
// where the indices are a constant; read from the step they are the step's.
Outputs Importer::GatherElements(const NodeProto&) {
  TensorId data = In(0), indices = In(1);
  const auto rank = static_cast<int64_t>(ShapeOf(data).size());
  if (static_cast<int64_t>(ShapeOf(indices).size()) != rank) FailNode("data and indices ranks differ");
  RefuseNegativeIndices(1, "negative indices are not supported (ATen's gather takes none)");
  return {b_.Call("aten.gather", {data, Int64Indices(indices)}, {{"dim", Axis("axis", 0, static_cast<size_t>(rank))}})};
}

// ScatterElements(data, indices, updates, axis, reduction): torch.scatter (none,
// aten.scatter.src) or scatter_add (add), indices as int64.
Outputs Importer::ScatterElements(const NodeProto&) {
  TensorId data = In(0), indices = In(1), updates = In(2);
  const std::string reduction = StringAttr("reduction", "none");
  if (reduction != "none" && reduction != "add") {
    FailNode(fmt::format("reduction {} is not supported (none and add are)", Quote(reduction)));
  }
  const size_t rank = ShapeOf(data).size();
  if (ShapeOf(indices).size() != rank || ShapeOf(updates) != ShapeOf(indices)) {
    FailNode("data, indices and updates must have one rank, indices and updates one shape");
  }
  indices = Int64Indices(indices);
  RefuseNegativeIndices(1, "negative indices are not supported (ATen's scatter takes none)");
  return {b_.Call(reduction == "add" ? "aten.scatter_add" : "aten.scatter.src", {data, indices, updates},
                  {{"dim", Axis("axis", 0, rank)}})};
}

// TopK(x, k, axis, largest, sorted) -> (values, indices): aten.topk, k a constant.
Outputs Importer::TopK(const NodeProto&) {
  TensorId x = In(0);
  const size_t rank = ShapeOf(x).size();
  std::optional<int64_t> k;
  if (opset_ < 10) {
    k = IntAttr("k", -1);
  } else if (const auto given = IntConstant(InputName(1)); given && given->size() == 1) {
    k = (*given)[0];
  }
  if (!k || *k < 0) FailNode("'K' is not a constant non-negative integer");
  return b_.CallMulti("aten.topk", {x}, {{"k", *k}, {"dim", Axis("axis", -1, rank)}, {"largest", IntAttr("largest", 1) != 0},
                                         {"sorted", IntAttr("sorted", 1) != 0}});
}

// SoftmaxCrossEntropyLoss(scores, labels, weights?) -> (loss, log_prob?) and
// NegativeLogLikelihoodLoss(log_prob, labels, weights?) -> loss, as
// F.cross_entropy / F.nll_loss: aten._log_softmax over the classes (axis 1),
// then aten.nll_loss_forward; scores [N, C, d1, ...] have their classes moved
// last and are viewed [N * d1 * ..., C] (a reduction "none" viewed back).
Outputs Importer::ClassLoss(const NodeProto& node, bool softmax) {
  TensorId scores = In(0), labels = In(1);
  const Shape in = ShapeOf(scores), label_shape = ShapeOf(labels);
  if (in.size() < 2) FailNode(fmt::format("expects scores [N, C, ...], got {}", ShapeToString(in)));
  Shape want_labels = in;
  want_labels.erase(want_labels.begin() + 1);
  if (label_shape != want_labels) {
    FailNode(fmt::format("labels are {}, expected {}", ShapeToString(label_shape), ShapeToString(want_labels)));
  }
  const std::string reduction = StringAttr("reduction", "mean");
  const int64_t mode = reduction == "none" ? 0 : reduction == "mean" ? 1 : reduction == "sum" ? 2 : -1;
  if (mode < 0) FailNode(fmt::format("reduction {} is not supported", Quote(reduction)));
  labels = Int64Indices(labels);
  TensorId log_prob = softmax ? b_.Call("aten._log_softmax", {scores}, {{"dim", int64_t{1}}, {"half_to_float", false}}) : scores;
  TensorId flat = log_prob, flat_labels = labels;
  if (in.size() > 2) {
    std::vector<int64_t> last(in.size());
    std::iota(last.begin(), last.end(), 0);
    std::rotate(last.begin() + 1, last.begin() + 2, last.end());  // [N, d1, ..., C]
    const TensorId moved = b_.Call("aten.permute", {log_prob}, {{"dims", last}});
    non_contiguous_.insert(moved);
    flat = Reshape(moved, {Product(want_labels, 0, want_labels.size()), in[1]});
    flat_labels = Reshape(labels, {Product(want_labels, 0, want_labels.size())});
  }
  std::vector<TensorId> inputs = {flat, flat_labels};
  Attrs attrs = {{"reduction", mode}, {"ignore_index", IntAttr("ignore_index", -100)}};
  if (HasInput(2)) {
    inputs.push_back(In(2, TensorRole::kBuffer));  // class weights: not trained (ATen gives them no gradient)
  } else {
    attrs["weight"] = std::monostate{};
  }
  TensorId loss = b_.CallMulti("aten.nll_loss_forward", inputs, std::move(attrs))[0];
  if (mode == 0 && in.size() > 2) loss = Reshape(loss, want_labels);
  Outputs out = {loss};
  if (softmax && node.output_size() > 1) out.push_back(log_prob);
  return out;
}

// Trilu(x, k): aten.triu (upper, the default) or aten.tril of the last two
// dims, the diagonal k a constant (torch.triu / tril, a causal mask).
Outputs Importer::Trilu(const NodeProto&) {
  int64_t k = 0;
  if (HasInput(1)) {
    const auto given = IntConstant(InputName(1));
    if (!given || given->size() != 1) FailNode("'k' is not a constant integer");
    k = (*given)[0];
  }
  if (ShapeOf(In(0)).size() < 2) FailNode(fmt::format("expects at least 2 dims, got {}", ShapeToString(ShapeOf(In(0)))));
  return {b_.Call(IntAttr("upper", 1) ? "aten.triu" : "aten.tril", {In(0)}, {{"diagonal", k}})};
}

// PRelu(x, slope): x where x > 0, else x * slope (slope broadcast to x, one per
// channel as nn.PReLU exports it), as ATen's where and mul.
Outputs Importer::PRelu(const NodeProto&) {
  TensorId x = In(0);
  TensorId positive = b_.Call("aten.gt.Scalar", {x}, {{"other", 0.0}});
  return {b_.Call("aten.where.self", {positive, x, b_.Call("aten.mul.Tensor", {x, In(1)})})};
}

// --- Handlers -------------------------------------------------------------------

Outputs Importer::Gemm(const NodeProto&) {
  TensorId a = In(0);
  TensorId w = In(1);
  if (ShapeOf(a).size() != 2 || ShapeOf(w).size() != 2) {
    FailNode(fmt::format("expects 2-d A and B, got {} and {}", ShapeToString(ShapeOf(a)), ShapeToString(ShapeOf(w))));
  }
  if (IntAttr("transA", 0)) a = b_.Call("aten.t", {a});
  if (IntAttr("transB", 0)) w = b_.Call("aten.t", {w});
  const double alpha = FloatAttr("alpha", 1.0);
  const double beta = FloatAttr("beta", 1.0);
  if (HasInput(2) && beta != 0.0) {
    Attrs attrs;
    if (beta != 1.0) attrs["beta"] = beta;
    if (alpha != 1.0) attrs["alpha"] = alpha;
    return {b_.Call("aten.addmm", {In(2), a, w}, std::move(attrs))};
  }
  TensorId y = b_.Call("aten.mm", {a, w});
  if (alpha != 1.0) y = b_.Call("aten.mul.Scalar", {y}, {{"other", alpha}});
  return {y};
}

Outputs Importer::MatMul(const NodeProto&) {
  TensorId a = In(0);
  TensorId c = In(1);
  const Shape sa = ShapeOf(a), sc = ShapeOf(c);
  if (sa.size() == 2 && sc.size() == 2) return {b_.Call("aten.mm", {a, c})};
  if (sa.size() > 2 && sc.size() == 2) {
    // torch.matmul of [..., K] by [K, N]: flatten the leading dims around mm.
    TensorId y = b_.Call("aten.mm", {Reshape(a, {Product(sa, 0, sa.size() - 1), sa.back()}), c});
    Shape out = sa;
    out.back() = sc[1];
    return {Reshape(y, out)};
  }
  if (sa.size() >= 3 && sa.size() == sc.size() && std::equal(sa.begin(), sa.end() - 2, sc.begin())) {
    const int64_t batch = Product(sa, 0, sa.size() - 2);
    const size_t r = sa.size();
    TensorId a3 = sa.size() == 3 ? a : Reshape(a, {batch, sa[r - 2], sa[r - 1]});
    TensorId c3 = sc.size() == 3 ? c : Reshape(c, {batch, sc[r - 2], sc[r - 1]});
    TensorId y = b_.Call("aten.bmm", {a3, c3});
    Shape out = sa;
    out.back() = sc.back();
    return {Reshape(y, out)};
  }
  // A 1-d operand is a row (left) or a column (right), dropped from the result
  // afterwards (numpy's matmul, torch.matmul's mv / vector-matrix products).
  const auto refuse = [&](std::string_view why) {
    FailNode(fmt::format("MatMul of {} by {}: {}", ShapeToString(sa), ShapeToString(sc), why));
  };
  if (sa.size() == 1 || sc.size() == 1) {
    if (sa.size() == 1 && sc.size() == 1) {
      if (sa[0] != sc[0]) refuse("the lengths differ");
      return {Reshape(b_.Call("aten.mm", {Reshape(a, {1, sa[0]}), Reshape(c, {sc[0], 1})}), {})};
    }
    if (sc.size() == 1) {  // [..., M, K] by [K]: [..., M]
      if (sa.back() != sc[0]) refuse("inner dims differ");
      const TensorId y = b_.Call("aten.mm", {Reshape(a, {Product(sa, 0, sa.size() - 1), sa.back()}), Reshape(c, {sc[0], 1})});
      return {Reshape(y, Shape(sa.begin(), sa.end() - 1))};
    }
    if (sc.size() == 2) {  // [K] by [K, N]: [N]
      if (sa[0] != sc[0]) refuse("inner dims differ");
      return {Reshape(b_.Call("aten.mm", {Reshape(a, {1, sa[0]}), c}), {sc[1]})};
    }
  }
  // Batch dims that broadcast ([1, 6, M, K] by [4, 6, K, N]): both expanded to
  // the broadcast batch, then one bmm, as torch.matmul does.
  if (sa.size() >= 2 && sc.size() >= 2) {
    const Shape ba(sa.begin(), sa.end() - 2), bc(sc.begin(), sc.end() - 2);
    const auto batch = Broadcast(ba, bc);
    if (!batch) refuse("batch dims do not broadcast");
    if (sa.back() != sc[sc.size() - 2]) refuse("inner dims differ");
    const auto expanded = [&](TensorId t, const Shape& s) {
      Shape want = *batch;
      want.push_back(s[s.size() - 2]);
      want.push_back(s.back());
      if (want == s) return t;
      const TensorId e = b_.Call("aten.expand", {t}, {{"size", want}});
      non_contiguous_.insert(e);
      return e;
    };
    const int64_t n = Product(*batch, 0, batch->size());
    const TensorId a3 = Reshape(expanded(a, sa), {n, sa[sa.size() - 2], sa.back()});
    const TensorId c3 = Reshape(expanded(c, sc), {n, sc[sc.size() - 2], sc.back()});
    Shape out = *batch;
    out.push_back(sa[sa.size() - 2]);
    out.push_back(sc.back());
    return {Reshape(b_.Call("aten.bmm", {a3, c3}), out)};
  }
  FailNode(fmt::format("MatMul of {} by {} is not supported", ShapeToString(sa), ShapeToString(sc)));
}

// Einsum as torch.einsum decomposes it: each operand's labels that nothing
// else needs summed out, pairs contracted left to right by one aten.bmm of
// [batch, left, contracted] by [batch, contracted, right] (permuted and
// viewed), and the result permuted to the output's order. An ellipsis
// stands for the same leading axes in every operand; an axis may not repeat
// within one operand (a diagonal) nor broadcast from extent 1.
Outputs Importer::Einsum(const NodeProto&) {
  std::string equation = StringAttr("equation", "");
  std::erase(equation, ' ');
  const size_t arrow = equation.find("->");
  std::string lhs = equation.substr(0, arrow);
  std::optional<std::string> rhs;
  if (arrow != std::string::npos) rhs = equation.substr(arrow + 2);
  std::vector<std::string> terms;
  for (size_t start = 0;;) {
    const size_t comma = lhs.find(',', start);
    terms.push_back(lhs.substr(start, comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (terms.size() != static_cast<size_t>(node_->input_size())) {
    FailNode(fmt::format("equation {} names {} operands, the node has {} inputs", Quote(equation), terms.size(),
                         node_->input_size()));
  }
  // Ellipsis axes get labels of their own, the same from the right in every
  // operand: digits, which no equation uses. `expand` checks a term's labels
  // and spells its ellipsis as `hidden` of them.
  auto expand = [&](std::string t, size_t hidden) {
    const size_t dots = t.find("...");
    for (size_t a = 0; a < t.size(); ++a) {
      const bool in_ellipsis = dots != std::string::npos && a >= dots && a < dots + 3;
      if (!in_ellipsis && !std::isalpha(static_cast<unsigned char>(t[a]))) {
        FailNode(fmt::format("equation {}: {} is not a label", Quote(equation), Quote(std::string(1, t[a]))));
      }
    }
    if (hidden > 10) FailNode(fmt::format("equation {}: more than 10 axes under an ellipsis", Quote(equation)));
    std::string labels;
    for (size_t k = 0; k < hidden; ++k) labels.push_back(static_cast<char>('0' + (10 - hidden + k)));
    if (dots != std::string::npos) t.replace(dots, 3, labels);
    return t;
  };
  size_t ellipsis_rank = 0;
  std::vector<Labeled> operands;
  for (size_t i = 0; i < terms.size(); ++i) {
    const TensorId x = In(static_cast<int>(i));
    const size_t rank = ShapeOf(x).size();
    size_t hidden = 0;
    if (terms[i].find("...") != std::string::npos) {
      const size_t named = terms[i].size() - 3;
      if (named > rank) FailNode(fmt::format("operand {} has rank {}, {} names {} axes", i, rank, Quote(terms[i]), named));
      hidden = rank - named;
      ellipsis_rank = std::max(ellipsis_rank, hidden);
    }
    const std::string t = expand(terms[i], hidden);
    if (t.size() != rank) FailNode(fmt::format("operand {} has rank {}, {} names {} axes", i, rank, Quote(terms[i]), t.size()));
    for (size_t a = 0; a < t.size(); ++a) {
      if (t.find(t[a], a + 1) != std::string::npos) {
        FailNode(fmt::format("label {} repeats in operand {} (a diagonal) and is not supported", Quote(std::string(1, t[a])), i));
      }
    }
    operands.push_back({x, t});
  }
  std::map<char, int64_t> extent;
  std::map<char, int> count;
  for (size_t i = 0; i < operands.size(); ++i) {
    const Shape shape = ShapeOf(operands[i].value);
    for (size_t a = 0; a < shape.size(); ++a) {
      const char c = operands[i].labels[a];
      ++count[c];
      if (auto [it, fresh] = extent.emplace(c, shape[a]); !fresh && it->second != shape[a]) {
        FailNode(fmt::format("label {} has extents {} and {} (broadcasting is not supported)", Quote(std::string(1, c)),
                             it->second, shape[a]));
      }
    }
  }
  std::string out;
  if (rhs) {
    out = expand(*rhs, ellipsis_rank);
    for (size_t a = 0; a < out.size(); ++a) {
      if (!extent.count(out[a])) FailNode(fmt::format("output label {} is in no operand", Quote(std::string(1, out[a]))));
      if (out.find(out[a], a + 1) != std::string::npos) FailNode(fmt::format("output label {} repeats", Quote(std::string(1, out[a]))));
    }
  } else {
    // Implicit output: the ellipsis axes, then the labels used once, in order.
    for (const auto& [c, n] : count) {
      if (std::isdigit(static_cast<unsigned char>(c))) out.push_back(c);
    }
    for (const auto& [c, n] : count) {
      if (n == 1 && std::isalpha(static_cast<unsigned char>(c))) out.push_back(c);
    }
  }
  Labeled acc = operands[0];
  for (size_t i = 1; i < operands.size(); ++i) {
    // What the operands after this one or the output need.
    std::string keep = out;
    for (size_t j = i + 1; j < operands.size(); ++j) keep += operands[j].labels;
    acc = Contract(std::move(acc), operands[i], keep);
  }
  return {SumAndPermute(std::move(acc), out, out).value};
}

Importer::Labeled Importer::SumAndPermute(Labeled x, const std::string& keep, const std::string& order) {
  std::vector<int64_t> summed;
  std::string left;
  for (size_t a = 0; a < x.labels.size(); ++a) {
    if (keep.find(x.labels[a]) == std::string::npos) {
      summed.push_back(static_cast<int64_t>(a));
    } else {
      left.push_back(x.labels[a]);
    }
  }
  if (!summed.empty()) {
    x.value = b_.Call("aten.sum.dim_IntList", {x.value}, {{"dim", summed}, {"keepdim", false}, {"dtype", std::monostate{}}});
  }
  std::vector<int64_t> perm;
  std::string permuted;
  for (char c : order) {
    if (const size_t a = left.find(c); a != std::string::npos) {
      perm.push_back(static_cast<int64_t>(a));
      permuted.push_back(c);
    }
  }
  if (permuted != left) {
    x.value = b_.Call("aten.permute", {x.value}, {{"dims", perm}});
    non_contiguous_.insert(x.value);
  }
  x.labels = permuted;
  return x;
}

Importer::Labeled Importer::Contract(Labeled a, Labeled b, const std::string& keep) {
  // Labels only one side has and nothing later needs are summed out first.
  auto kept_by = [&](const Labeled& x, const Labeled& other) {
    std::string k;
    for (char c : x.labels) {
      if (keep.find(c) != std::string::npos || other.labels.find(c) != std::string::npos) k.push_back(c);
    }
    return k;
  };
  std::string batch, left, right, contracted;
  for (char c : kept_by(a, b)) {
    const bool in_b = b.labels.find(c) != std::string::npos, kept = keep.find(c) != std::string::npos;
    (in_b ? (kept ? batch : contracted) : left).push_back(c);
  }
  for (char c : kept_by(b, a)) {
    if (a.labels.find(c) == std::string::npos) right.push_back(c);
  }
  a = SumAndPermute(std::move(a), batch + left + contracted, batch + left + contracted);
  b = SumAndPermute(std::move(b), batch + contracted + right, batch + contracted + right);
  auto product = [&](const Labeled& x, const std::string& labels) {
    int64_t p = 1;
    for (char c : labels) p *= ShapeOf(x.value).at(x.labels.find(c));
    return p;
  };
  const int64_t nb = product(a, batch), nl = product(a, left), nk = product(a, contracted), nr = product(b, right);
  const TensorId y = b_.Call("aten.bmm", {Reshape(a.value, {nb, nl, nk}), Reshape(b.value, {nb, nk, nr})});
  Shape shape;
  for (char c : batch + left) shape.push_back(ShapeOf(a.value).at(a.labels.find(c)));
  for (char c : right) shape.push_back(ShapeOf(b.value).at(b.labels.find(c)));
  return {Reshape(y, shape), batch + left + right};
}

Importer::ConvGeometry Importer::ConvInputs() {
  ConvGeometry g;
  g.x = In(0);
  g.w = In(1);
  const Shape& in = ShapeOf(g.x);
  const Shape& ws = ShapeOf(g.w);
  if (in.size() < 3 || in.size() > 5 || ws.size() != in.size()) {
    FailNode(fmt::format("expects input and weight of rank 3 to 5, got {} and {}", ShapeToString(in), ShapeToString(ws)));
  }
  g.spatial = in.size() - 2;
  g.strides = IntsAttr("strides", std::vector<int64_t>(g.spatial, 1));
  g.dilations = IntsAttr("dilations", std::vector<int64_t>(g.spatial, 1));
  if (g.strides.size() != g.spatial || g.dilations.size() != g.spatial) {
    FailNode(fmt::format("'strides' and 'dilations' must have {} entries", g.spatial));
  }
  return g;
}

Outputs Importer::EmitConvolution(const ConvGeometry& g, std::vector<int64_t> padding, bool transposed,
                                  std::vector<int64_t> output_padding) {
  Attrs attrs = {{"stride", g.strides},
                 {"padding", std::move(padding)},
                 {"dilation", g.dilations},
                 {"transposed", transposed},
                 {"output_padding", std::move(output_padding)},
                 {"groups", IntAttr("group", 1)}};
  std::vector<TensorId> inputs = {g.x, g.w};
  if (HasInput(2)) {
    inputs.push_back(In(2));
  } else {
    attrs["bias"] = std::monostate{};
  }
  return {b_.Call("aten.convolution", std::move(inputs), std::move(attrs))};
}

Outputs Importer::Conv(const NodeProto&) {
  const ConvGeometry g = ConvInputs();
  const Shape& ws = ShapeOf(g.w);
  const std::vector<int64_t> kernel(ws.begin() + 2, ws.end());
  std::vector<int64_t> padding = Padding(ShapeOf(g.x), kernel, g.strides, g.dilations);
  return EmitConvolution(g, std::move(padding), false, std::vector<int64_t>(g.spatial, 0));
}

Outputs Importer::ConvTranspose(const NodeProto&) {
  if (Attr("output_shape")) FailNode("'output_shape' is not supported; export with 'pads' and 'output_padding'");
  const ConvGeometry g = ConvInputs();
  const size_t n = g.spatial;
  const std::string auto_pad = StringAttr("auto_pad", "NOTSET");
  if (auto_pad != "NOTSET" && auto_pad != "VALID") FailNode(fmt::format("auto_pad {} is not supported", Quote(auto_pad)));
  std::vector<int64_t> pads = auto_pad == "VALID" ? std::vector<int64_t>(2 * n, 0) : IntsAttr("pads", std::vector<int64_t>(2 * n, 0));
  if (pads.size() != 2 * n) FailNode(fmt::format("'pads' has {} entries, expected {}", pads.size(), 2 * n));
  for (size_t i = 0; i < n; ++i) {
    if (pads[i] != pads[i + n]) FailNode(fmt::format("asymmetric pads [{}] are not supported", fmt::join(pads, ", ")));
  }
  pads.resize(n);
  return EmitConvolution(g, std::move(pads), true, IntsAttr("output_padding", std::vector<int64_t>(n, 0)));
}

Outputs Importer::BatchNormalization(const NodeProto& node) {
  for (int i = 1; i < node.output_size(); ++i) {
    if (Present(node.output(i))) FailNode("training-mode outputs (running mean and variance) are not supported");
  }
  TensorId x = In(0);
  TensorId scale = In(1, TensorRole::kParameter);
  TensorId bias = In(2, TensorRole::kParameter);
  TensorId mean = In(3, TensorRole::kBuffer);
  TensorId var = In(4, TensorRole::kBuffer);
  // ONNX: running = running * momentum + batch * (1 - momentum); PyTorch
  // weighs the batch statistic by its momentum.
  const double momentum = 1.0 - FloatAttr("momentum", 0.9);
  return {b_.CallMulti("aten.native_batch_norm", {x, scale, bias, mean, var},
                       {{"training", options_.append_loss}, {"momentum", momentum}, {"eps", FloatAttr("epsilon", 1e-5)}})[0]};
}

Outputs Importer::LayerNormalization(const NodeProto&) {
  TensorId x = In(0);
  const Shape& in = ShapeOf(x);
  const int64_t axis = Axis("axis", -1, in.size());
  const std::vector<int64_t> normalized(in.begin() + axis, in.end());
  std::vector<TensorId> inputs = {x, In(1, TensorRole::kParameter)};
  Attrs attrs = {{"normalized_shape", normalized}, {"eps", FloatAttr("epsilon", 1e-5)}};
  if (HasInput(2)) {
    inputs.push_back(In(2, TensorRole::kParameter));
  } else {
    attrs["bias"] = std::monostate{};
  }
  return b_.CallMulti("aten.native_layer_norm", std::move(inputs), std::move(attrs));
}

// The spatial dims of an [N, C, ...] input of rank `rank`: 2 .. rank - 1.
std::vector<int64_t> SpatialDims(size_t rank) {
  std::vector<int64_t> dims;
  for (size_t d = 2; d < rank; ++d) dims.push_back(static_cast<int64_t>(d));
  return dims;
}

Outputs Importer::GlobalAveragePool(const NodeProto&) {
  TensorId x = In(0);
  const size_t rank = ShapeOf(x).size();
  if (rank < 3) FailNode(fmt::format("expects an input [N, C, ...], got {}", ShapeToString(ShapeOf(x))));
  if (rank == 4) return {b_.Call("aten._adaptive_avg_pool2d", {x}, {{"output_size", std::vector<int64_t>{1, 1}}})};
  // AdaptiveAvgPool1d(1) / AdaptiveAvgPool3d(1): the mean over every spatial dim, kept.
  return {b_.Call("aten.mean.dim", {x}, {{"dim", SpatialDims(rank)}, {"keepdim", true}, {"dtype", std::monostate{}}})};
}

// --- Recurrent layers ------------------------------------------------------
//
// LSTM, GRU and RNN nodes (one per layer, as torch.onnx.export writes
// nn.LSTM / nn.GRU / nn.RNN), unrolled over the sequence into ATen ops that
// have backward rules: per direction, the input projection of every step in
// one mm (X [S*B, I] by W^T, plus W's bias), then per step the hidden
// projection (mm by R^T, plus R's bias) and the gates. ONNX's gate order:
// LSTM i, o, f, c; GRU z, r, h. Y is [S, D, B, H], Y_h and Y_c [D, B, H]; the
// reverse direction reads the sequence backwards and writes Y at the step it
// read. Only the outputs something reads are made.
Outputs Importer::Recurrent(const NodeProto& node, Cell cell) {
  const int64_t gates = cell == Cell::kLstm ? 4 : cell == Cell::kGru ? 3 : 1;
  TensorId x = In(0);
  if (IntAttr("layout", 0) != 0) x = b_.Call("aten.transpose.int", {x}, {{"dim0", int64_t{0}}, {"dim1", int64_t{1}}});
  const Shape in = ShapeOf(x);
  if (in.size() != 3) FailNode(fmt::format("expects X [seq, batch, input], got {}", ShapeToString(in)));
  const int64_t steps = in[0], batch = in[1];
  const int64_t hidden = IntAttr("hidden_size", 0);
  const Shape w = ShapeOf(In(1));
  if (hidden <= 0 || w.size() != 3 || w[1] != gates * hidden || w[2] != in[2]) {
    FailNode(fmt::format("W {} does not match hidden_size {} and input size {}", ShapeToString(w), hidden, in[2]));
  }
  const std::string direction = StringAttr("direction", "forward");
  if (direction != "forward" && direction != "reverse" && direction != "bidirectional") {
    FailNode(fmt::format("direction {} is not supported", Quote(direction)));
  }
  const int64_t dirs = direction == "bidirectional" ? 2 : 1;
  if (w[0] != dirs) FailNode(fmt::format("W has {} directions, direction {} needs {}", w[0], Quote(direction), dirs));
  if (steps < 1) FailNode("the sequence is empty");
  const auto expect = [&](int input, const char* what, const Shape& want) {
    if (HasInput(input) && ShapeOf(In(input)) != want) {
      FailNode(fmt::format("{} is {}, expected {}", what, ShapeToString(ShapeOf(In(input))), ShapeToString(want)));
    }
  };
  expect(2, "R", {dirs, gates * hidden, hidden});
  expect(3, "B", {dirs, 2 * gates * hidden});
  expect(5, "initial_h", {dirs, batch, hidden});
  if (cell == Cell::kLstm) expect(6, "initial_c", {dirs, batch, hidden});
  if (HasInput(4)) FailNode("sequence_lens is not supported (every sequence runs the whole length)");
  if (cell == Cell::kLstm && HasInput(7)) FailNode("peephole weights (P) are not supported");
  if (Attr("clip")) FailNode("'clip' is not supported");
  if (IntAttr("input_forget", 0) != 0) FailNode("input_forget is not supported");
  // The activations ONNX defaults to (PyTorch's); RNN may use Relu, as nn.RNN(nonlinearity='relu').
  bool relu = false;
  if (const auto* a = Attr("activations")) {
    const std::vector<std::string> defaults = cell == Cell::kLstm  ? std::vector<std::string>{"Sigmoid", "Tanh", "Tanh"}
                                              : cell == Cell::kGru ? std::vector<std::string>{"Sigmoid", "Tanh"}
                                                                   : std::vector<std::string>{"Tanh"};
    std::vector<std::string> given(a->strings().begin(), a->strings().end());
    relu = cell == Cell::kRnn && given.size() >= 1 && given[0] == "Relu";
    for (size_t i = 0; i < given.size(); ++i) {
      if (given[i] != defaults[i % defaults.size()] && !(relu && given[i] == "Relu")) {
        FailNode(fmt::format("activation {} is not supported", Quote(given[i])));
      }
    }
  }
  const bool before_reset = IntAttr("linear_before_reset", 0) != 0;
  const DType dtype = b_.tensor(x).dtype;
  const auto slice = [&](TensorId t, int64_t dim, int64_t start, int64_t end) {
    return b_.Call("aten.slice.Tensor", {t}, {{"dim", dim}, {"start", start}, {"end", end}, {"step", int64_t{1}}});
  };
  const auto select = [&](TensorId t, int64_t dim, int64_t i) {
    return b_.Call("aten.select.int", {t}, {{"dim", dim}, {"index", i}});
  };
  const auto add = [&](TensorId a, TensorId b) { return b_.Call("aten.add.Tensor", {a, b}); };
  const auto mul = [&](TensorId a, TensorId b) { return b_.Call("aten.mul.Tensor", {a, b}); };
  const auto sigmoid = [&](TensorId t) { return b_.Call("aten.sigmoid", {t}); };
  const auto tanh = [&](TensorId t) { return b_.Call("aten.tanh", {t}); };
  const auto initial = [&](int input, int64_t d) {
    if (HasInput(input)) return select(In(input), 0, d);
    return b_.Call("aten.full", {}, {{"size", Shape{batch, hidden}}, {"fill_value", 0.0},
                                     {"dtype", std::string(ToString(dtype))}});
  };
  const auto wanted = [&](int i) { return node.output_size() > i && read_.count(node.output(i)) > 0; };
  const bool want_y = wanted(0), want_h = wanted(1), want_c = cell == Cell::kLstm && wanted(2);
  std::vector<std::vector<TensorId>> ys(dirs);  // per direction, h of each step in time order
  std::vector<TensorId> last_h, last_c;
  const TensorId flat_x = Reshape(x, {steps * batch, in[2]});
  for (int64_t d = 0; d < dirs; ++d) {
    const TensorId wd = b_.Call("aten.t", {select(In(1), 0, d)});
    const TensorId rd = b_.Call("aten.t", {select(In(2), 0, d)});
    std::optional<TensorId> wb, rb;
    if (HasInput(3)) {
      const TensorId bias = select(In(3), 0, d);
      wb = slice(bias, 0, 0, gates * hidden);
      rb = slice(bias, 0, gates * hidden, 2 * gates * hidden);
    }
    TensorId xw = wb ? b_.Call("aten.addmm", {*wb, flat_x, wd}) : b_.Call("aten.mm", {flat_x, wd});
    xw = Reshape(xw, {steps, batch, gates * hidden});
    TensorId h = initial(5, d);
    TensorId c = cell == Cell::kLstm ? initial(6, d) : h;
    ys[d].assign(steps, h);
    const bool backwards = direction == "reverse" || d == 1;
    for (int64_t k = 0; k < steps; ++k) {
      const int64_t t = backwards ? steps - 1 - k : k;
      const TensorId xt = select(xw, 0, t);
      const auto part = [&](TensorId g, int64_t i) { return slice(g, 1, i * hidden, (i + 1) * hidden); };
      if (cell == Cell::kGru) {
        // z, r from both projections; h~ from x's and r times h's (linear_before_reset, PyTorch's) or from
        // (r * h) projected.
        const TensorId rh = rb ? b_.Call("aten.addmm", {*rb, h, rd}) : b_.Call("aten.mm", {h, rd});
        const TensorId z = sigmoid(add(part(xt, 0), part(rh, 0)));
        const TensorId r = sigmoid(add(part(xt, 1), part(rh, 1)));
        TensorId candidate;
        if (before_reset) {
          candidate = tanh(add(part(xt, 2), mul(r, part(rh, 2))));
        } else {
          TensorId hr = b_.Call("aten.mm", {mul(r, h), slice(rd, 1, 2 * hidden, 3 * hidden)});
          if (rb) hr = add(hr, slice(*rb, 0, 2 * hidden, 3 * hidden));
          candidate = tanh(add(part(xt, 2), hr));
        }
        // (1 - z) * h~ + z * h, as h~ + z * (h - h~).
        h = add(candidate, mul(z, b_.Call("aten.sub.Tensor", {h, candidate})));
      } else {
        const TensorId g = add(xt, rb ? b_.Call("aten.addmm", {*rb, h, rd}) : b_.Call("aten.mm", {h, rd}));
        if (cell == Cell::kRnn) {
          h = relu ? b_.Call("aten.relu", {g}) : tanh(g);
        } else {
          c = add(mul(sigmoid(part(g, 2)), c), mul(sigmoid(part(g, 0)), tanh(part(g, 3))));
          h = mul(sigmoid(part(g, 1)), tanh(c));
        }
      }
      ys[d][t] = h;
    }
    last_h.push_back(h);
    last_c.push_back(c);
  }
  const auto stacked = [&](const std::vector<TensorId>& parts, const Shape& each) {
    std::vector<TensorId> viewed;
    for (TensorId t : parts) viewed.push_back(Reshape(t, each));
    return viewed.size() == 1 ? viewed[0] : b_.Call("aten.cat", std::move(viewed), {{"dim", int64_t{0}}});
  };
  // An output nothing reads is not made; its slot holds X (never read) where a later one is.
  Outputs out = {x, x};
  if (want_y) {
    std::vector<TensorId> per_direction;
    for (int64_t d = 0; d < dirs; ++d) per_direction.push_back(stacked(ys[d], {1, 1, batch, hidden}));
    out[0] = per_direction.size() == 1 ? per_direction[0]
                                       : b_.Call("aten.cat", std::move(per_direction), {{"dim", int64_t{1}}});
  }
  if (want_h) out[1] = stacked(last_h, {1, batch, hidden});
  if (want_c) out.push_back(stacked(last_c, {1, batch, hidden}));
  return out;
}

// GlobalMaxPool: the maximum over every spatial dim, kept (AdaptiveMaxPool to 1).
Outputs Importer::GlobalMaxPool(const NodeProto&) {
  TensorId x = In(0);
  const size_t rank = ShapeOf(x).size();
  if (rank < 3) FailNode(fmt::format("expects an input [N, C, ...], got {}", ShapeToString(ShapeOf(x))));
  return {b_.Call("aten.amax", {x}, {{"dim", SpatialDims(rank)}, {"keepdim", true}})};
}

Outputs Importer::Flatten(const NodeProto&) {
  TensorId x = In(0);
  const Shape in = ShapeOf(x);
  // Flatten's axis may equal the rank (everything in the outer dim).
  int64_t axis = IntAttr("axis", 1);
  const auto rank = static_cast<int64_t>(in.size());
  if (axis < -rank || axis > rank) FailNode(fmt::format("'axis' = {} is out of range for rank {}", axis, rank));
  if (axis < 0) axis += rank;
  return {Reshape(x, {Product(in, 0, axis), Product(in, axis, in.size())})};
}

Outputs Importer::ReshapeNode(const NodeProto&) {
  TensorId x = In(0);
  if (!HasInput(1)) FailNode("has no shape input");
  const auto target = IntConstant(node_->input(1));
  if (!target) {
    FailNode(fmt::format("shape input {} is not an integer constant (an initializer or Constant node); export with "
                         "static shapes and constant folding",
                         Quote(node_->input(1))));
  }
  const Shape in = ShapeOf(x);
  const bool allow_zero = IntAttr("allowzero", 0) != 0;
  Shape out;
  std::optional<size_t> inferred;
  for (size_t i = 0; i < target->size(); ++i) {
    int64_t d = (*target)[i];
    if (d == 0 && !allow_zero) {
      if (i >= in.size()) FailNode(fmt::format("shape {} copies dim {} of a rank-{} input", ShapeToString(*target), i, in.size()));
      d = in[i];
    }
    if (d == -1) {
      if (inferred) FailNode(fmt::format("shape {} has more than one -1", ShapeToString(*target)));
      inferred = i;
      d = 1;
    } else if (d < 0) {
      FailNode(fmt::format("shape {} has a negative extent", ShapeToString(*target)));
    }
    out.push_back(d);
  }
  const int64_t numel = Product(in, 0, in.size());
  const int64_t known = Product(out, 0, out.size());
  if (inferred) {
    if (known == 0 || numel % known != 0) {
      FailNode(fmt::format("cannot reshape {} to {}", ShapeToString(in), ShapeToString(*target)));
    }
    out[*inferred] = numel / known;
  }
  if (Product(out, 0, out.size()) != numel) {
    FailNode(fmt::format("cannot reshape {} to {}", ShapeToString(in), ShapeToString(*target)));
  }
  return {Reshape(x, out)};
}

Outputs Importer::Transpose(const NodeProto&) {
  TensorId x = In(0);
  const size_t rank = ShapeOf(x).size();
  std::vector<int64_t> identity(rank);
  for (size_t i = 0; i < rank; ++i) identity[i] = static_cast<int64_t>(i);
  std::vector<int64_t> perm = IntsAttr("perm", std::vector<int64_t>(identity.rbegin(), identity.rend()));
  if (perm.size() != rank) FailNode(fmt::format("'perm' has {} entries for a rank-{} input", perm.size(), rank));
  if (perm == identity) return {x};
  TensorId y = b_.Call("aten.permute", {x}, {{"dims", perm}});
  non_contiguous_.insert(y);
  return {y};
}

Outputs Importer::Gather(const NodeProto&) {
  const std::string& data = InputName(0);
  const std::string& index_name = InputName(1);
  const TensorProto* table = values_.count(data) ? nullptr : ConstantOf(data);
  const int64_t axis_attr = IntAttr("axis", 0);
  if (table && axis_attr == 0 && table->dims_size() == 2 && FromOnnxType(table->data_type()) &&
      IsFloatingPoint(*FromOnnxType(table->data_type()))) {
    // nn.Embedding: a float table indexed by integer ids.
    TensorId weight = In(0, TensorRole::kParameter);
    TensorId ids = In(1);
    return {b_.Call("aten.embedding", {weight, ids},
                    {{"padding_idx", int64_t{-1}}, {"scale_grad_by_freq", false}, {"sparse", false}})};
  }
  const auto index = IntConstant(index_name);
  const TensorProto* index_proto = ConstantOf(index_name);
  if (index && index->size() == 1) {
    // x[:, i]: a constant scalar index selects (and drops) the axis; a
    // one-element index list keeps it as a slice of extent 1.
    TensorId x = In(0);
    const Shape& in = ShapeOf(x);
    const int64_t axis = Axis("axis", 0, in.size());
    int64_t i = (*index)[0];
    if (i < 0) i += in[axis];
    if (i < 0 || i >= in[axis]) FailNode(fmt::format("index {} is out of range for extent {}", (*index)[0], in[axis]));
    if (index_proto->dims_size() == 0) {
      TensorId y = b_.Call("aten.select.int", {x}, {{"dim", axis}, {"index", i}});
      // x[:, i] is not row-major where an outer axis has more than one entry.
      if (Product(in, 0, static_cast<size_t>(axis)) > 1) non_contiguous_.insert(y);
      return {y};
    }
    if (index_proto->dims_size() == 1) {
      return {b_.Call("aten.slice.Tensor", {x}, {{"dim", axis}, {"start", i}, {"end", i + 1}, {"step", int64_t{1}}})};
    }
  }
  // Any other index tensor (x[:, [0, 2]], a table computed in the step, a
  // CRF's transitions picked by tag pairs): aten.index_select of the indices
  // flattened, viewed to data's dims before the axis, the indices' dims, and
  // data's after it (ONNX's Gather, numpy's take).
  TensorId x = In(0), ids = In(1);
  const Shape in = ShapeOf(x), index_shape = ShapeOf(ids);
  const DType index_dtype = b_.tensor(ids).dtype;
  if (index_dtype != DType::kI64 && index_dtype != DType::kI32) FailNode("the indices are not int64 or int32");
  RefuseNegativeIndices(1, "negative indices are only supported as one constant scalar (ATen's index_select takes none)");
  const int64_t axis = Axis("axis", 0, in.size());
  Shape out(in.begin(), in.begin() + axis);
  out.insert(out.end(), index_shape.begin(), index_shape.end());
  out.insert(out.end(), in.begin() + axis + 1, in.end());
  const TensorId flat = Reshape(ids, {Product(index_shape, 0, index_shape.size())});
  return {Reshape(b_.Call("aten.index_select", {x, flat}, {{"dim", axis}}), out)};
}

Outputs Importer::Concat(const NodeProto& node) {
  std::vector<TensorId> inputs;
  for (int i = 0; i < node.input_size(); ++i) inputs.push_back(In(i));
  if (inputs.empty()) FailNode("has no inputs");
  const int64_t axis = Axis("axis", 0, ShapeOf(inputs[0]).size());
  return {b_.Call("aten.cat", std::move(inputs), {{"dim", axis}})};
}

Outputs Importer::Pow(const NodeProto&) {
  const auto exponent = ScalarConstant(InputName(1));
  if (!exponent) FailNode("only a constant scalar exponent is supported");
  TensorId x = In(0);
  if (*exponent == 2.0) return {b_.Call("aten.mul.Tensor", {x, x})};
  if (*exponent == 1.0) return {x};
  if (*exponent == 0.5) return {b_.Call("aten.sqrt", {x})};
  return {b_.Call("aten.pow.Tensor_Scalar", {x}, {{"exponent", *exponent}})};
}

// Clip(x, min, max): bounds as attributes before opset 11, as optional
// constant inputs from it on. ReLU6 (min 0, max 6) and every clip with both
// bounds is hardtanh; a clip at 0 from below is a ReLU, any other one bound
// clamp_min or clamp_max.
Outputs Importer::Clip(const NodeProto&) {
  std::optional<double> lo, hi;
  if (opset_ < 11) {
    if (Attr("min")) lo = FloatAttr("min", 0);
    if (Attr("max")) hi = FloatAttr("max", 0);
  } else {
    for (int i : {1, 2}) {
      if (!HasInput(i)) continue;
      const auto bound = ScalarConstant(InputName(i));
      if (!bound) FailNode(fmt::format("bound {} is not a constant scalar", Quote(InputName(i))));
      (i == 1 ? lo : hi) = *bound;
    }
  }
  TensorId x = In(0);
  if (lo && hi) {
    if (*lo > *hi) FailNode(fmt::format("min {} is above max {}", *lo, *hi));
    return {b_.Call("aten.hardtanh", {x}, {{"min_val", *lo}, {"max_val", *hi}})};
  }
  if (lo && *lo == 0 && !hi) return {b_.Call("aten.relu", {x})};
  if (lo) return {b_.Call("aten.clamp_min", {x}, {{"min", *lo}})};
  if (hi) return {b_.Call("aten.clamp_max", {x}, {{"max", *hi}})};
  return {x};
}

// HardSigmoid(x) = max(0, min(1, alpha x + beta)); PyTorch's (alpha 1/6,
// beta 1/2) is aten.hardsigmoid, any other is the same arithmetic spelled out.
Outputs Importer::HardSigmoid(const NodeProto&) {
  const double alpha = FloatAttr("alpha", 0.2), beta = FloatAttr("beta", 0.5);
  TensorId x = In(0);
  if (std::abs(alpha - 1.0 / 6) < 1e-6 && beta == 0.5) return {b_.Call("aten.hardsigmoid", {x})};
  TensorId y = b_.Call("aten.add.Scalar", {b_.Call("aten.mul.Scalar", {x}, {{"other", alpha}})}, {{"other", beta}});
  return {b_.Call("aten.hardtanh", {y}, {{"min_val", 0.0}, {"max_val", 1.0}})};
}

// The axes a node names, normalized and sorted (empty: none given).
std::vector<int64_t> NormalizedAxes(const std::vector<int64_t>& axes, size_t rank,
                                    const std::function<void(const std::string&)>& fail) {
  std::vector<int64_t> out;
  const auto r = static_cast<int64_t>(rank);
  for (int64_t a : axes) {
    if (a < -r || a >= r) fail(fmt::format("axis {} is out of range for rank {}", a, rank));
    out.push_back(a < 0 ? a + r : a);
  }
  std::sort(out.begin(), out.end());
  if (std::adjacent_find(out.begin(), out.end()) != out.end()) fail("an axis is named twice");
  return out;
}

Outputs Importer::Reduce(const char* type, int64_t axes_input_since, std::optional<TensorId> input) {
  TensorId x = input.value_or(In(0));
  const size_t rank = ShapeOf(x).size();
  const auto fail = [this](const std::string& m) { FailNode(m); };
  std::vector<int64_t> axes = NormalizedAxes(IntsArgument("axes", 1, axes_input_since).value_or(std::vector<int64_t>{}),
                                             rank, fail);
  if (axes.empty()) {
    if (IntAttr("noop_with_empty_axes", 0)) return {x};
    for (size_t d = 0; d < rank; ++d) axes.push_back(static_cast<int64_t>(d));
  }
  Attrs attrs = {{"dim", axes}, {"keepdim", IntAttr("keepdims", 1) != 0}};
  const std::string_view op(type);
  if (op != "aten.amax" && op != "aten.amin" && op != "aten.logsumexp") attrs["dtype"] = std::monostate{};
  return {b_.Call(type, {x}, std::move(attrs))};
}

Outputs Importer::Squeeze(const NodeProto&) {
  TensorId x = In(0);
  const Shape in = ShapeOf(x);
  const auto fail = [this](const std::string& m) { FailNode(m); };
  const auto axes = NormalizedAxes(IntsArgument("axes", 1, 13).value_or(std::vector<int64_t>{}), in.size(), fail);
  Shape out;
  for (size_t d = 0; d < in.size(); ++d) {
    const bool named = std::binary_search(axes.begin(), axes.end(), static_cast<int64_t>(d));
    if (named && in[d] != 1) FailNode(fmt::format("cannot squeeze axis {} of extent {}", d, in[d]));
    if (!(named || (axes.empty() && in[d] == 1))) out.push_back(in[d]);
  }
  return {Reshape(x, out)};
}

Outputs Importer::Unsqueeze(const NodeProto&) {
  TensorId x = In(0);
  const Shape in = ShapeOf(x);
  const auto given = IntsArgument("axes", 1, 13);
  if (!given || given->empty()) FailNode("has no axes");
  const auto fail = [this](const std::string& m) { FailNode(m); };
  const auto axes = NormalizedAxes(*given, in.size() + given->size(), fail);
  Shape out;
  size_t next = 0;
  for (size_t d = 0; d < in.size() + axes.size(); ++d) {
    if (std::binary_search(axes.begin(), axes.end(), static_cast<int64_t>(d))) {
      out.push_back(1);
    } else {
      out.push_back(in[next++]);
    }
  }
  return {Reshape(x, out)};
}

// Slice with constant starts, ends, axes and steps (attributes before opset
// 10): one aten.slice per axis, ends clamped to the extent as Python's are.
Outputs Importer::Slice(const NodeProto&) {
  TensorId x = In(0);
  const auto starts = IntsArgument("starts", 1, 10);
  const auto ends = IntsArgument("ends", 2, 10);
  if (!starts || !ends || starts->size() != ends->size()) FailNode("needs 'starts' and 'ends' of the same length");
  std::vector<int64_t> axes = IntsArgument("axes", 3, 10).value_or(std::vector<int64_t>{});
  if (axes.empty()) {
    for (size_t i = 0; i < starts->size(); ++i) axes.push_back(static_cast<int64_t>(i));
  }
  const std::vector<int64_t> steps =
      IntsArgument("steps", 4, 10).value_or(std::vector<int64_t>(starts->size(), 1));
  if (axes.size() != starts->size() || steps.size() != starts->size()) {
    FailNode("'axes' and 'steps' must have as many entries as 'starts'");
  }
  for (size_t i = 0; i < axes.size(); ++i) {
    const Shape& in = ShapeOf(x);
    const auto rank = static_cast<int64_t>(in.size());
    int64_t axis = axes[i];
    if (axis < -rank || axis >= rank) FailNode(fmt::format("axis {} is out of range for rank {}", axis, rank));
    if (axis < 0) axis += rank;
    if (steps[i] == 0 || steps[i] == std::numeric_limits<int64_t>::min()) FailNode(fmt::format("step {}", steps[i]));
    const int64_t extent = in[axis];
    int64_t start = 0, end = 0, step = steps[i];
    if (step > 0) {
      auto clamp = [extent](int64_t v) {
        if (v < 0) v = std::max<int64_t>(0, v + extent);
        return std::min(v, extent);
      };
      start = clamp((*starts)[i]);
      end = std::max(start, clamp((*ends)[i]));
    } else {
      // A negative step walks from start down to (not reaching) end: the
      // axis flipped, then a positive-step slice of it (index i is
      // extent - 1 - i there).
      auto clamp = [extent](int64_t v) {
        if (v < 0) v = v < -extent ? -1 : v + extent;  // saturated ends (INT64_MIN) land before index 0
        return std::clamp<int64_t>(v, -1, extent - 1);
      };
      const int64_t first = clamp((*starts)[i]), last = clamp((*ends)[i]);
      x = b_.Call("aten.flip", {x}, {{"dims", std::vector<int64_t>{axis}}});
      start = extent - 1 - first;
      end = std::max(start, extent - 1 - last);
      step = -step;
    }
    if (start == 0 && end == extent && step == 1) continue;
    x = b_.Call("aten.slice.Tensor", {x}, {{"dim", axis}, {"start", start}, {"end", end}, {"step", step}});
    non_contiguous_.insert(x);
  }
  return {x};
}

// Pad in constant mode: ONNX lists every axis's begin pads, then every
// axis's end pads; ATen's constant_pad_nd pairs (begin, end) from the last
// axis backwards.
Outputs Importer::Pad(const NodeProto&) {
  const std::string mode = StringAttr("mode", "constant");
  if (mode != "constant" && mode != "reflect" && mode != "edge") {
    FailNode(fmt::format("mode {} is not supported (constant, reflect and edge are)", Quote(mode)));
  }
  TensorId x = In(0);
  const size_t rank = ShapeOf(x).size();
  const auto pads = IntsArgument("pads", 1, 11);
  if (!pads || pads->size() != 2 * rank) {
    FailNode(fmt::format("'pads' must have {} entries (begin and end of each axis)", 2 * rank));
  }
  double value = opset_ < 11 ? FloatAttr("value", 0.0) : 0.0;
  if (opset_ >= 11 && HasInput(2)) {
    const auto v = ScalarConstant(InputName(2));
    if (!v) FailNode("'constant_value' is not a constant scalar");
    value = *v;
  }
  if (opset_ >= 18 && HasInput(3)) FailNode("'axes' is not supported");
  std::vector<int64_t> pad;
  for (size_t d = rank; d-- > 0;) {
    pad.push_back((*pads)[d]);
    pad.push_back((*pads)[d + rank]);
  }
  while (pad.size() >= 2 && pad[pad.size() - 1] == 0 && pad[pad.size() - 2] == 0) pad.resize(pad.size() - 2);
  if (pad.empty()) return {x};
  if (mode == "constant") return {b_.Call("aten.constant_pad_nd", {x}, {{"pad", pad}, {"value", value}})};
  // reflect / edge: ATen's reflection_pad / replication_pad of the last 1-3
  // dims (nn.ReflectionPad2d, F.pad(mode="replicate")), after at least one
  // leading (channel) dim, the pads of every dim it covers given.
  const size_t n = std::min<size_t>(3, rank - 1);
  if (rank < 2 || pad.size() / 2 > n) {
    FailNode(fmt::format("{} padding of a {}-d input pads {} dims; ATen pads at most the last {}", mode, rank,
                         pad.size() / 2, rank < 2 ? 0 : n));
  }
  if (std::any_of(pad.begin(), pad.end(), [](int64_t v) { return v < 0; })) {
    FailNode(fmt::format("negative {} padding is not supported", mode));
  }
  const size_t padded = std::max<size_t>(pad.size() / 2, rank >= 4 ? rank - 2 : 1);
  pad.resize(2 * std::min(padded, n), 0);
  const std::string op = fmt::format("aten.{}_pad{}d", mode == "reflect" ? "reflection" : "replication", pad.size() / 2);
  return {b_.Call(op, {x}, {{"padding", pad}})};
}

// Resize of a 4-d NCHW input along H and W: nearest (torch's "asymmetric"
// coordinates, floor rounding: nn.Upsample(mode="nearest")) or bilinear
// (half-pixel coordinates, or align_corners). Scales or sizes must be
// constants; batch and channels stay.
Outputs Importer::Resize(const NodeProto&) {
  TensorId x = In(0);
  const Shape in = ShapeOf(x);
  if (in.size() != 4) FailNode(fmt::format("only 4-d (NCHW) inputs are supported, got {}", ShapeToString(in)));
  Shape out;
  const int scales_input = opset_ < 11 ? 1 : 2;
  if (opset_ >= 11 && HasInput(3)) {
    const auto sizes = IntConstant(InputName(3));
    if (!sizes || sizes->size() != 4) FailNode("'sizes' must be a constant of 4 entries");
    out = *sizes;
  } else if (HasInput(scales_input)) {
    const auto scales = FloatConstant(InputName(scales_input));
    if (!scales || scales->size() != 4) FailNode("'scales' must be a constant of 4 entries");
    out = ScaledShape(in, *scales);
  } else {
    FailNode("needs constant 'scales' or 'sizes'");
  }
  return ResizeTo(x, out, StringAttr("mode", "nearest"), StringAttr("coordinate_transformation_mode", "half_pixel"),
                  StringAttr("nearest_mode", "round_prefer_floor"));
}

// Upsample(x, scales): an attribute before opset 9, an input from it on. Its
// nearest mode indexes as Resize's "asymmetric" / "floor" (PyTorch's
// nearest); its linear mode is asymmetric too, which PyTorch's bilinear is not.
Outputs Importer::Upsample(const NodeProto&) {
  TensorId x = In(0);
  const Shape in = ShapeOf(x);
  if (in.size() != 4) FailNode(fmt::format("only 4-d (NCHW) inputs are supported, got {}", ShapeToString(in)));
  std::vector<double> scales;
  if (opset_ < 9) {
    const auto* a = Attr("scales");
    if (!a) FailNode("needs the attribute 'scales'");
    scales.assign(a->floats().begin(), a->floats().end());
  } else {
    const auto constant = HasInput(1) ? FloatConstant(InputName(1)) : std::nullopt;
    if (!constant) FailNode("'scales' must be a constant");
    scales = *constant;
  }
  if (scales.size() != 4) FailNode(fmt::format("'scales' has {} entries, expected 4", scales.size()));
  const std::string mode = StringAttr("mode", "nearest");
  if (mode != "nearest") {
    FailNode(fmt::format("mode {} is not supported: Upsample's linear mode uses asymmetric coordinates, which "
                         "PyTorch's bilinear does not (export at opset 11 or later for Resize)", Quote(mode)));
  }
  return ResizeTo(x, ScaledShape(in, scales), mode, "asymmetric", "floor");
}

Shape Importer::ScaledShape(const Shape& in, const std::vector<double>& scales) {
  Shape out;
  for (size_t d = 0; d < in.size(); ++d) {
    // Checked before the cast: a NaN or an out-of-range double has no int64.
    const double extent = std::floor(static_cast<double>(in[d]) * scales[d]);
    if (!(extent >= 1 && extent <= 0x1p40)) {
      FailNode(fmt::format("scale {} gives dim {} an extent of {} (it must be 1 to 2^40)", scales[d], d, extent));
    }
    out.push_back(static_cast<int64_t>(extent));
  }
  return out;
}

Outputs Importer::ResizeTo(TensorId x, const Shape& out, const std::string& mode, const std::string& coordinates,
                           const std::string& rounding) {
  const Shape in = ShapeOf(x);
  if (out.size() != 4 || out[0] != in[0] || out[1] != in[1]) FailNode("only H and W may be resized");
  if (out[2] <= 0 || out[3] <= 0) FailNode(fmt::format("output size {} is not positive", ShapeToString(out)));
  const std::vector<int64_t> size = {out[2], out[3]};
  Attrs attrs = {{"output_size", size},
                 {"scales_h", static_cast<double>(out[2]) / static_cast<double>(in[2])},
                 {"scales_w", static_cast<double>(out[3]) / static_cast<double>(in[3])}};
  if (mode == "nearest") {
    if (coordinates != "asymmetric" || rounding != "floor") {
      FailNode(fmt::format("nearest resize with coordinate_transformation_mode {} and nearest_mode {} is not supported "
                           "(PyTorch's nearest is \"asymmetric\" and \"floor\")",
                           Quote(coordinates), Quote(rounding)));
    }
    return {b_.Call("aten.upsample_nearest2d", {x}, std::move(attrs))};
  }
  if (mode == "linear") {
    if (coordinates != "half_pixel" && coordinates != "pytorch_half_pixel" && coordinates != "align_corners") {
      FailNode(fmt::format("linear resize with coordinate_transformation_mode {} is not supported", Quote(coordinates)));
    }
    attrs["align_corners"] = coordinates == "align_corners";
    return {b_.Call("aten.upsample_bilinear2d", {x}, std::move(attrs))};
  }
  FailNode(fmt::format("mode {} is not supported (nearest or linear)", Quote(mode)));
}

// DepthToSpace: "CRD" is PyTorch's pixel_shuffle; "DCR" (the default) moves
// the blocks from the outer channel dims: a view, a permutation, a view.
Outputs Importer::DepthToSpace(const NodeProto&) {
  TensorId x = In(0);
  const Shape in = ShapeOf(x);
  const int64_t bs = IntAttr("blocksize", 0);
  if (in.size() != 4) FailNode(fmt::format("only 4-d (NCHW) inputs are supported, got {}", ShapeToString(in)));
  if (bs < 1 || in[1] % (bs * bs) != 0) {
    FailNode(fmt::format("blocksize {} does not divide {} channels into blocks", bs, in[1]));
  }
  const int64_t c = in[1] / (bs * bs);
  if (StringAttr("mode", "DCR") == "CRD") return {b_.Call("aten.pixel_shuffle", {x}, {{"upscale_factor", bs}})};
  TensorId blocks = Reshape(x, {in[0], bs, bs, c, in[2], in[3]});
  TensorId moved = b_.Call("aten.permute", {blocks}, {{"dims", std::vector<int64_t>{0, 3, 4, 1, 5, 2}}});
  non_contiguous_.insert(moved);
  return {Reshape(moved, {in[0], c, in[2] * bs, in[3] * bs})};
}

// SpaceToDepth: each bs x bs block of pixels becomes bs * bs channels, the
// block offset outermost (DepthToSpace's "DCR" order backwards): a view, a
// permutation, a view.
Outputs Importer::SpaceToDepth(const NodeProto&) {
  TensorId x = In(0);
  const Shape in = ShapeOf(x);
  const int64_t bs = IntAttr("blocksize", 0);
  if (in.size() != 4) FailNode(fmt::format("only 4-d (NCHW) inputs are supported, got {}", ShapeToString(in)));
  if (bs < 1 || in[2] % bs != 0 || in[3] % bs != 0) {
    FailNode(fmt::format("blocksize {} does not divide H x W = {} x {}", bs, in[2], in[3]));
  }
  TensorId blocks = Reshape(x, {in[0], in[1], in[2] / bs, bs, in[3] / bs, bs});
  TensorId moved = b_.Call("aten.permute", {blocks}, {{"dims", std::vector<int64_t>{0, 3, 5, 1, 2, 4}}});
  non_contiguous_.insert(moved);
  return {Reshape(moved, {in[0], in[1] * bs * bs, in[2] / bs, in[3] / bs})};
}

// LRN: y = x / (bias + alpha / size * square_sum) ^ beta, square_sum over the
// channels c - floor((size - 1) / 2) .. c + ceil((size - 1) / 2) that exist.
// The squares are viewed [N, 1, C, rest], padded along C with zeros and
// averaged over a (size, 1) window with the padding counted (avg * alpha =
// square_sum * alpha / size), then viewed back.
Outputs Importer::LRN(const NodeProto&) {
  TensorId x = In(0);
  const Shape in = ShapeOf(x);
  const int64_t size = IntAttr("size", 0);
  if (in.size() < 2) FailNode(fmt::format("needs an input of rank 2 or more, got {}", ShapeToString(in)));
  if (size < 1) FailNode(fmt::format("size {} must be positive", size));
  int64_t rest = 1;
  for (size_t d = 2; d < in.size(); ++d) rest *= in[d];
  TensorId squares = Reshape(Squared(x), {in[0], 1, in[1], rest});
  const int64_t before = (size - 1) / 2, after = size - 1 - before;
  TensorId padded = b_.Call("aten.constant_pad_nd", {squares},
                            {{"pad", std::vector<int64_t>{0, 0, before, after}}, {"value", 0.0}});
  TensorId average = b_.Call("aten.avg_pool2d", {padded},
                             {{"kernel_size", std::vector<int64_t>{size, 1}},
                              {"stride", std::vector<int64_t>{1, 1}},
                              {"padding", std::vector<int64_t>{0, 0}},
                              {"ceil_mode", false},
                              {"count_include_pad", true},
                              {"divisor_override", std::monostate{}}});
  TensorId scaled = b_.Call("aten.mul.Scalar", {Reshape(average, in)}, {{"other", FloatAttr("alpha", 1e-4)}});
  TensorId base = b_.Call("aten.add.Scalar", {scaled}, {{"other", FloatAttr("bias", 1.0)}});
  TensorId denominator = b_.Call("aten.pow.Tensor_Scalar", {base}, {{"exponent", FloatAttr("beta", 0.75)}});
  return {b_.Call("aten.div.Tensor", {x, denominator})};
}

Outputs Importer::Variadic(const NodeProto& node, bool mean) {
  if (node.input_size() == 0) FailNode("has no inputs");
  for (int i = 0; i < node.input_size(); ++i) {
    if (!HasInput(i)) FailNode(fmt::format("input {} is empty", i));
  }
  TensorId y = In(0);
  for (int i = 1; i < node.input_size(); ++i) y = b_.Call("aten.add.Tensor", {y, In(i)});
  if (mean && node.input_size() > 1) {
    y = b_.Call("aten.div.Scalar", {y}, {{"other", static_cast<double>(node.input_size())}});
  }
  return {y};
}

// ArgMax / ArgMin along `axis` (keepdims by default); the first extremum, as
// ATen's (select_last_index is refused).
Outputs Importer::ArgExtremum(const char* type) {
  TensorId x = In(0);
  if (IntAttr("select_last_index", 0) != 0) FailNode("select_last_index 1 is not supported");
  const int64_t axis = Axis("axis", 0, ShapeOf(x).size());
  return {b_.Call(type, {x}, {{"dim", axis}, {"keepdim", IntAttr("keepdims", 1) != 0}})};
}

// InstanceNormalization: each sample's channel normalized over its spatial
// dims (biased variance), then scaled and shifted per channel, spelled out
// as the arithmetic it is.
Outputs Importer::InstanceNormalization(const NodeProto&) {
  TensorId x = In(0);
  const Shape in = ShapeOf(x);
  if (in.size() < 3) FailNode(fmt::format("needs an input of rank 3 or more, got {}", ShapeToString(in)));
  std::vector<int64_t> spatial;
  for (size_t d = 2; d < in.size(); ++d) spatial.push_back(static_cast<int64_t>(d));
  const Attrs over = {{"dim", spatial}, {"keepdim", true}, {"dtype", std::monostate{}}};
  TensorId centered = b_.Call("aten.sub.Tensor", {x, b_.Call("aten.mean.dim", {x}, over)});
  TensorId var = b_.Call("aten.mean.dim", {b_.Call("aten.mul.Tensor", {centered, centered})}, over);
  TensorId std = b_.Call("aten.sqrt", {b_.Call("aten.add.Scalar", {var}, {{"other", FloatAttr("epsilon", 1e-5)}})});
  TensorId y = b_.Call("aten.div.Tensor", {centered, std});
  Shape per_channel(in.size(), 1);
  per_channel[1] = in[1];
  TensorId scale = In(1, TensorRole::kParameter);
  TensorId bias = In(2, TensorRole::kParameter);
  if (Product(ShapeOf(scale), 0, ShapeOf(scale).size()) != in[1] || Product(ShapeOf(bias), 0, ShapeOf(bias).size()) != in[1]) {
    FailNode(fmt::format("scale and bias must have {} entries (the channels)", in[1]));
  }
  y = b_.Call("aten.mul.Tensor", {y, Reshape(scale, per_channel)});
  return {b_.Call("aten.add.Tensor", {y, Reshape(bias, per_channel)})};
}

Outputs Importer::Extremum(const NodeProto& node, bool max) {
  if (node.input_size() == 0) FailNode("has no inputs");
  std::vector<int> tensors;
  std::vector<double> scalars;
  for (int i = 0; i < node.input_size(); ++i) {
    if (!HasInput(i)) FailNode(fmt::format("input {} is empty", i));
    const auto scalar = ScalarConstant(InputName(i));
    if (scalar) {
      scalars.push_back(*scalar);
    } else {
      tensors.push_back(i);
    }
  }
  if (tensors.empty()) FailNode("every input is a constant; export with constant folding");
  TensorId y = In(tensors[0]);
  for (size_t k = 1; k < tensors.size(); ++k) y = b_.Call(max ? "aten.maximum" : "aten.minimum", {y, In(tensors[k])});
  if (!scalars.empty()) {
    const double c = max ? *std::max_element(scalars.begin(), scalars.end())
                         : *std::min_element(scalars.begin(), scalars.end());
    y = b_.Call(max ? "aten.clamp_min" : "aten.clamp_max", {y}, {{max ? "min" : "max", c}});
  }
  return {y};
}

Outputs Importer::Where(const NodeProto&) {
  const auto x_value = ScalarConstant(InputName(1)), y_value = ScalarConstant(InputName(2));
  if (x_value && y_value) FailNode("both values are constant scalars; export with constant folding");
  TensorId condition = In(0);
  if (b_.tensor(condition).dtype != DType::kBool) FailNode("the condition is not a bool tensor");
  if (!x_value && !y_value) return {b_.Call("aten.where.self", {condition, In(1), In(2)})};
  // masked_fill(self, mask, value): the result has self's shape, so self is
  // broadcast against the mask first.
  TensorId self = In(x_value ? 2 : 1);
  if (y_value) condition = b_.Call("aten.logical_not", {condition});
  const Shape mask = ShapeOf(condition), in = ShapeOf(self);
  const auto out = Broadcast(in, mask);
  if (!out) FailNode(fmt::format("cannot broadcast {} and {}", ShapeToString(in), ShapeToString(mask)));
  if (*out != in) {
    self = b_.Call("aten.expand", {self}, {{"size", *out}});
    non_contiguous_.insert(self);
  }
  return {b_.Call("aten.masked_fill.Scalar", {self, condition}, {{"value", x_value ? *x_value : *y_value}})};
}

Outputs Importer::IsInf(const NodeProto&) {
  const TensorId x = In(0);
  double largest = std::numeric_limits<double>::max();
  switch (b_.tensor(x).dtype) {
    case DType::kF32: largest = std::numeric_limits<float>::max(); break;
    case DType::kF16: largest = 65504.0; break;
    case DType::kBF16: largest = 3.3895313892515355e38; break;
    case DType::kF64: break;
    default: FailNode("IsInf of an integer tensor");  // no integer is infinite; ONNX types it float only
  }
  const bool positive = IntAttr("detect_positive", 1) != 0, negative = IntAttr("detect_negative", 1) != 0;
  if (positive && negative) return {b_.Call("aten.gt.Scalar", {b_.Call("aten.abs", {x})}, {{"other", largest}})};
  if (positive) return {b_.Call("aten.gt.Scalar", {x}, {{"other", largest}})};
  if (negative) return {b_.Call("aten.lt.Scalar", {x}, {{"other", -largest}})};
  // Neither sign detected: nothing is, not even NaN (|x| < 0 never holds).
  return {b_.Call("aten.lt.Scalar", {b_.Call("aten.abs", {x})}, {{"other", 0.0}})};
}

Outputs Importer::Shrink(const NodeProto&) {
  const TensorId x = In(0);
  const double lambd = FloatAttr("lambd", 0.5), bias = FloatAttr("bias", 0.0);
  const TensorId below = b_.Call("aten.masked_fill.Scalar", {b_.Call("aten.add.Scalar", {x}, {{"other", bias}}),
                                                             b_.Call("aten.ge.Scalar", {x}, {{"other", -lambd}})},
                                 {{"value", 0.0}});
  const TensorId above = b_.Call("aten.masked_fill.Scalar", {b_.Call("aten.add.Scalar", {x}, {{"other", -bias}}),
                                                             b_.Call("aten.le.Scalar", {x}, {{"other", lambd}})},
                                 {{"value", 0.0}});
  return {b_.Call("aten.add.Tensor", {below, above})};
}

Outputs Importer::CastLike(const NodeProto&) { return {CastTo(In(0), b_.tensor(In(1)).dtype)}; }

Outputs Importer::MeanVarianceNormalization(const NodeProto&) {
  const TensorId x = In(0);
  const auto axes = NormalizedAxes(IntsAttr("axes", {0, 2, 3}), ShapeOf(x).size(),
                                   [&](const std::string& why) { FailNode(why); });
  const Attrs over = {{"dim", axes}, {"keepdim", true}};
  const TensorId mean = b_.Call("aten.mean.dim", {x}, over);
  const TensorId variance =
      b_.Call("aten.sub.Tensor", {b_.Call("aten.mean.dim", {Squared(x)}, over), Squared(mean)});
  const TensorId deviation = b_.Call("aten.add.Scalar", {b_.Call("aten.sqrt", {variance})}, {{"other", 1e-9}});
  return {b_.Call("aten.div.Tensor", {b_.Call("aten.sub.Tensor", {x, mean}), deviation})};
}

TensorId Importer::LpNorm(TensorId x, const std::vector<int64_t>& dims, double p) {
  const Attrs over = {{"dim", dims}, {"keepdim", true}};
  if (p == 1.0) return b_.Call("aten.sum.dim_IntList", {b_.Call("aten.abs", {x})}, over);
  if (p == 2.0) return b_.Call("aten.sqrt", {b_.Call("aten.sum.dim_IntList", {Squared(x)}, over)});
  if (!(p > 0)) FailNode(fmt::format("p = {} must be positive", p));
  const TensorId powered = b_.Call("aten.pow.Tensor_Scalar", {b_.Call("aten.abs", {x})}, {{"exponent", p}});
  return b_.Call("aten.pow.Tensor_Scalar", {b_.Call("aten.sum.dim_IntList", {powered}, over)}, {{"exponent", 1.0 / p}});
}

Outputs Importer::LpNormalization(const NodeProto&) {
  const TensorId x = In(0);
  const int64_t p = IntAttr("p", 2);
  if (p != 1 && p != 2) FailNode(fmt::format("p = {}: LpNormalization takes 1 or 2", p));
  const auto axis =
      NormalizedAxes({IntAttr("axis", -1)}, ShapeOf(x).size(), [&](const std::string& why) { FailNode(why); });
  return {b_.Call("aten.div.Tensor", {x, LpNorm(x, axis, static_cast<double>(p))})};
}

Outputs Importer::GlobalLpPool(const NodeProto&) {
  const TensorId x = In(0);
  const size_t rank = ShapeOf(x).size();
  if (rank < 3) FailNode(fmt::format("expects [N, C, spatial...], got rank {}", rank));
  std::vector<int64_t> spatial;
  for (size_t d = 2; d < rank; ++d) spatial.push_back(static_cast<int64_t>(d));
  return {LpNorm(x, spatial, static_cast<double>(IntAttr("p", 2)))};
}

Outputs Importer::EyeLike(const NodeProto&) {
  const Shape shape = ShapeOf(In(0));
  if (shape.size() != 2) FailNode(fmt::format("expects a 2-d input, got {}", ShapeToString(shape)));
  DType dtype = b_.tensor(In(0)).dtype;
  if (const auto* a = Attr("dtype")) {
    const auto to = FromOnnxType(static_cast<int32_t>(a->i()));
    if (!to) FailNode(fmt::format("dtype {} is not supported", TypeName(static_cast<int32_t>(a->i()))));
    dtype = *to;
  }
  const int64_t k = IntAttr("k", 0);
  const TensorId ones = b_.Call("aten.ones", {}, {{"size", shape}, {"dtype", std::string(ToString(dtype))}});
  return {b_.Call("aten.tril", {b_.Call("aten.triu", {ones}, {{"diagonal", k}})}, {{"diagonal", k}})};
}

Outputs Importer::Cast(const NodeProto&) {
  const int64_t to = IntAttr("to", 0);
  const auto dtype = FromOnnxType(static_cast<int32_t>(to));
  if (!dtype) FailNode(fmt::format("cast to {} is not supported", TypeName(static_cast<int32_t>(to))));
  return {CastTo(In(0), *dtype)};
}

TensorId Importer::CastTo(TensorId x, DType dtype) {
  if (b_.tensor(x).dtype == dtype) return x;
  return b_.Call("aten._to_copy", {x}, {{"dtype", std::string(ToString(dtype))}});
}

// A comparison (bool result, numpy broadcasting); a constant scalar operand
// is the .Scalar overload's `other` (on the left, the comparison mirrored).
Outputs Importer::Compare(const char* packet) {
  if (auto other = ScalarConstant(InputName(1))) {
    return {b_.Call(std::string(packet) + ".Scalar", {In(0)}, {{"other", *other}})};
  }
  if (auto first = ScalarConstant(InputName(0))) {
    // c < x is x > c: the constant stays an attribute (as a source tensor it
    // would lose its value).
    static const std::map<std::string, std::string> mirrored = {
        {"aten.eq", "aten.eq"}, {"aten.lt", "aten.gt"}, {"aten.le", "aten.ge"}, {"aten.gt", "aten.lt"}, {"aten.ge", "aten.le"}};
    return {b_.Call(mirrored.at(packet) + ".Scalar", {In(1)}, {{"other", *first}})};
  }
  return {b_.Call(std::string(packet) + ".Tensor", {In(0), In(1)})};
}

// Tile(x, repeats): one repeat count per axis of x, as aten.repeat.
Outputs Importer::Tile(const NodeProto&) {
  TensorId x = In(0);
  const auto repeats = IntConstant(InputName(1));
  if (!repeats) FailNode("'repeats' is not an integer constant; export with static shapes and constant folding");
  if (repeats->size() != ShapeOf(x).size()) {
    FailNode(fmt::format("'repeats' has {} entries for an input of rank {}", repeats->size(), ShapeOf(x).size()));
  }
  for (int64_t r : *repeats) {
    if (r < 0) FailNode(fmt::format("negative repeat count {}", r));
  }
  if (std::all_of(repeats->begin(), repeats->end(), [](int64_t r) { return r == 1; })) return {x};
  return {b_.Call("aten.repeat", {x}, {{"repeats", *repeats}})};
}

// ScatterND(data, indices, updates): data with the slices that `indices`
// [..., k] names (k coordinates each) set to `updates` (added with reduction
// "add"), as aten.index_put with one index tensor per coordinate (selects of
// the last axis of indices). torch exports an indexed assignment so (Swin's
// shifted-window mask: img_mask[:, h, w, :] = cnt).
Outputs Importer::ScatterND(const NodeProto&) {
  TensorId data = In(0), indices = In(1), updates = In(2);
  const Shape d = ShapeOf(data), i = ShapeOf(indices), u = ShapeOf(updates);
  // ONNX's ScatterND takes int64 indices (as does torch 1.13's index_put).
  if (b_.graph().tensor(indices).dtype != DType::kI64) FailNode("'indices' is not an int64 tensor");
  if (i.empty()) FailNode("'indices' is a scalar: it needs a last axis of coordinates");
  const int64_t k = i.back();
  if (k < 1 || k > static_cast<int64_t>(d.size())) {
    FailNode(fmt::format("'indices' names {} coordinates for data of rank {}", k, d.size()));
  }
  Shape expected(i.begin(), i.end() - 1);
  expected.insert(expected.end(), d.begin() + k, d.end());
  if (u != expected) {
    FailNode(fmt::format("'updates' has shape {}, expected {} (indices {}, data {})", ShapeToString(u),
                         ShapeToString(expected), ShapeToString(i), ShapeToString(d)));
  }
  const std::string reduction = StringAttr("reduction", "none");
  if (reduction != "none" && reduction != "add") FailNode(fmt::format("reduction '{}' is not supported", reduction));
  std::vector<TensorId> inputs{data};
  for (int64_t j = 0; j < k; ++j) {
    inputs.push_back(
        b_.Call("aten.select.int", {indices}, {{"dim", static_cast<int64_t>(i.size()) - 1}, {"index", j}}));
  }
  inputs.push_back(updates);
  return {b_.Call("aten.index_put", std::move(inputs), {{"accumulate", reduction == "add"}})};
}

// ConstantOfShape(shape) that FoldIntegers does not fold (a float value:
// Swin's shifted-window mask starts as zeros of the padded image's shape):
// aten.full, made in the step (not a source without its values). The shape
// must be an integer constant.
Outputs Importer::ConstantOfShape(const NodeProto&) {
  const auto shape = IntConstant(InputName(0));
  if (!shape) FailNode("'input' (the shape) is not an integer constant; export with static shapes and constant folding");
  for (int64_t d : *shape) {
    if (d < 0) FailNode(fmt::format("negative extent {} in the shape", d));
  }
  DType dtype = DType::kF32;
  double fill = 0;
  if (const auto* a = Attr("value")) {
    const TensorProto& t = a->t();
    const std::optional<DType> type = FromOnnxType(t.data_type());
    if (!type) FailNode(fmt::format("'value' of type {} is not supported", TypeName(t.data_type())));
    dtype = *type;
    std::vector<double> v;
    switch (t.data_type()) {
      case TensorProto::FLOAT: v = Elements<float, double>(t, t.float_data()); break;
      case TensorProto::DOUBLE: v = Elements<double, double>(t, t.double_data()); break;
      case TensorProto::INT64: v = Elements<int64_t, double>(t, t.int64_data()); break;
      case TensorProto::INT32: v = Elements<int32_t, double>(t, t.int32_data()); break;
      case TensorProto::BOOL: v = Elements<uint8_t, double>(t, t.int32_data()); break;
      default: FailNode(fmt::format("'value' of type {} is not supported", TypeName(t.data_type())));
    }
    if (v.size() != 1) FailNode(fmt::format("'value' has {} elements, expected one", v.size()));
    fill = v[0];
  }
  return {b_.Call("aten.full", {}, {{"size", *shape}, {"fill_value", fill}, {"dtype", std::string(ToString(dtype))}})};
}

// Split(x, split) along `axis`: the sizes given (an attribute before opset
// 13, an input from it on), else equal parts, one per output (from opset
// 18 `num_outputs` parts of ceil(extent / n), the last smaller), as
// aten.split_with_sizes (views of x).
Outputs Importer::Split(const NodeProto& node) {
  TensorId x = In(0);
  const Shape in = ShapeOf(x);
  if (in.empty()) FailNode("cannot split a scalar");
  const int64_t axis = Axis("axis", 0, in.size());
  const int64_t extent = in[axis];
  const int64_t outputs = node.output_size();
  std::vector<int64_t> sizes = IntsArgument("split", 1, 13).value_or(std::vector<int64_t>{});
  if (sizes.empty()) {
    const int64_t parts = opset_ >= 18 && Attr("num_outputs") ? IntAttr("num_outputs", 0) : outputs;
    if (parts < 1) FailNode(fmt::format("cannot split into {} parts", parts));
    if (opset_ < 18 && extent % parts != 0) {
      FailNode(fmt::format("axis {} of extent {} does not split into {} equal parts", axis, extent, parts));
    }
    const int64_t each = extent / parts + (extent % parts != 0 ? 1 : 0);
    for (int64_t start = 0; start < extent; start += each) sizes.push_back(std::min(each, extent - start));
    if (extent == 0) sizes.assign(static_cast<size_t>(parts), 0);
  }
  if (static_cast<int64_t>(sizes.size()) != outputs) {
    FailNode(fmt::format("splits axis {} into {} parts for {} outputs", axis, sizes.size(), outputs));
  }
  int64_t total = 0;
  for (int64_t size : sizes) {
    if (size < 0) FailNode(fmt::format("negative split size {}", size));
    const auto sum = CheckedAdd(total, size);
    if (!sum) FailNode(fmt::format("split sizes [{}] overflow int64", fmt::join(sizes, ", ")));
    total = *sum;
  }
  if (total != extent) FailNode(fmt::format("split sizes sum to {}, axis {} has extent {}", total, axis, extent));
  if (sizes.size() == 1) return {x};
  Outputs pieces = b_.CallMulti("aten.split_with_sizes", {x}, {{"split_sizes", sizes}, {"dim", axis}});
  // A piece of any axis but the outermost non-unit one is not row-major.
  const bool contiguous = Product(in, 0, static_cast<size_t>(axis)) == 1;
  if (!contiguous || non_contiguous_.count(x)) {
    for (TensorId piece : pieces) non_contiguous_.insert(piece);
  }
  return pieces;
}

// Expand(x, shape): x broadcast against `shape` (both ways, as numpy's
// broadcasting: a 1 in `shape` keeps x's extent), as aten.expand.
Outputs Importer::Expand(const NodeProto&) {
  TensorId x = In(0);
  const auto target = IntConstant(InputName(1));
  if (!target) FailNode("'shape' is not an integer constant; export with static shapes and constant folding");
  const Shape in = ShapeOf(x);
  const auto out = Broadcast(in, *target);
  if (!out) FailNode(fmt::format("cannot broadcast {} to {}", ShapeToString(in), ShapeToString(*target)));
  if (*out == in) return {x};
  TensorId y = b_.Call("aten.expand", {x}, {{"size", *out}});
  non_contiguous_.insert(y);
  return {y};
}

}  // namespace

Graph ImportOnnx(std::string_view bytes, std::string_view source, const OnnxImportOptions& options) {
  onnx::ModelProto model;
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    Fail("{}: the model is larger than 2 GiB; save the weights as external data", source);
  }
  if (!model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    Fail("{}: not a valid ONNX model (the protobuf does not parse; truncated or not an ONNX file)", source);
  }
  if (model.ir_version() <= 0 || !model.has_graph()) {
    Fail("{}: not a valid ONNX model (no IR version or graph; empty or not an ONNX file)", source);
  }
  Graph graph;
  try {
    graph = Importer(model, std::string(source), options).Run();
  } catch (const Error& e) {
    // The graph builder's errors outside a node (an input's shape) do not
    // name the file.
    if (std::string_view(e.what()).starts_with(fmt::format("{}: ", source))) throw;
    Fail("{}: {}", source, e.what());
  }
  ValidateFrom(graph, source);
  return graph;
}

Graph ImportOnnxFile(const std::string& path, const OnnxImportOptions& options) {
  return ImportOnnx(ReadFile(path), path, options);
}

std::vector<std::string> SupportedOnnxOps() {
  std::vector<std::string> ops = {"Constant"};
  for (const std::string& type : Importer::FoldOnly()) ops.push_back(type);
  for (const auto& [type, handler] : Importer::Handlers()) ops.push_back(type);
  std::sort(ops.begin(), ops.end());
  return ops;
}

}  // namespace memfit
