#include "models/layers.h"

#include <fmt/format.h>

#include <string>
#include <vector>

namespace memfit::models {
namespace {

// memory_format of aten.clone when PyTorch makes a permuted tensor contiguous.
constexpr std::string_view kContiguous = "contiguous_format";

// [d0, ..., dn] -> [d0 * ... * d(n-1), dn].
Shape FlattenLeading(const Shape& shape) {
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
  return {rows, shape.back()};
}

TensorId View(GraphBuilder& b, TensorId x, Shape size) {
  return b.Call("aten.view", {x}, {{"size", std::move(size)}});
}

TensorId Contiguous(GraphBuilder& b, TensorId x) {
  return b.Call("aten.clone", {x}, {{"memory_format", std::string(kContiguous)}});
}

// A matmul-style product x @ w ([.., in] x [in, out]) with optional bias,
// flattening the leading dims around it.
TensorId Affine(GraphBuilder& b, TensorId x, TensorId w, std::optional<TensorId> bias) {
  const Shape in_shape = b.shape(x);
  const bool flatten = in_shape.size() != 2;
  TensorId x2 = flatten ? View(b, x, FlattenLeading(in_shape)) : x;
  TensorId y = bias ? b.Call("aten.addmm", {*bias, x2, w}) : b.Call("aten.mm", {x2, w});
  if (!flatten) return y;
  Shape out_shape = in_shape;
  out_shape.back() = b.shape(y)[1];
  return View(b, y, out_shape);
}

}  // namespace

std::string Indexed(std::string_view prefix, int64_t index) { return fmt::format("{}.{}", prefix, index); }

TensorId LinearWith(GraphBuilder& b, TensorId x, TensorId weight, std::optional<TensorId> bias) {
  TensorId wt = b.Call("aten.t", {weight});
  return Affine(b, x, wt, bias);
}

TensorId Linear(GraphBuilder& b, std::string_view module, TensorId x, int64_t out_features, bool bias) {
  ModuleScope scope(b, module);
  const int64_t in_features = b.shape(x).back();
  TensorId weight = b.Parameter("weight", {out_features, in_features});
  std::optional<TensorId> bias_id;
  if (bias) bias_id = b.Parameter("bias", {out_features});
  return LinearWith(b, x, weight, bias_id);
}

TensorId Conv1D(GraphBuilder& b, std::string_view module, TensorId x, int64_t out_features) {
  ModuleScope scope(b, module);
  const int64_t in_features = b.shape(x).back();
  TensorId weight = b.Parameter("weight", {in_features, out_features});
  TensorId bias = b.Parameter("bias", {out_features});
  return Affine(b, x, weight, bias);
}

TensorId LayerNorm(GraphBuilder& b, std::string_view module, TensorId x, double eps) {
  ModuleScope scope(b, module);
  const int64_t dim = b.shape(x).back();
  TensorId weight = b.Parameter("weight", {dim});
  TensorId bias = b.Parameter("bias", {dim});
  return b.CallMulti("aten.native_layer_norm", {x, weight, bias},
                     {{"normalized_shape", std::vector<int64_t>{dim}}, {"eps", eps}})[0];
}

TensorId Dropout(GraphBuilder& b, TensorId x, double p) {
  if (p == 0) return x;
  return b.CallMulti("aten.native_dropout", {x}, {{"p", p}, {"train", true}})[0];
}

TensorId Gelu(GraphBuilder& b, TensorId x, bool tanh) {
  return b.Call("aten.gelu", {x}, {{"approximate", std::string(tanh ? "tanh" : "none")}});
}

TensorId EmbeddingLookup(GraphBuilder& b, TensorId weight, TensorId ids, int64_t padding_idx) {
  return b.Call("aten.embedding", {weight, ids},
                {{"padding_idx", padding_idx}, {"scale_grad_by_freq", false}, {"sparse", false}});
}

TensorId Embedding(GraphBuilder& b, std::string_view module, TensorId ids, int64_t num, int64_t dim,
                   int64_t padding_idx) {
  ModuleScope scope(b, module);
  TensorId weight = b.Parameter("weight", {num, dim});
  return EmbeddingLookup(b, weight, ids, padding_idx);
}

TensorId Conv2d(GraphBuilder& b, std::string_view module, TensorId x, int64_t out_channels, int64_t kernel,
                const Conv2dOptions& options) {
  ModuleScope scope(b, module);
  const int64_t in_channels = b.shape(x)[1];
  const Shape weight_shape = options.transposed
                                 ? Shape{in_channels, out_channels / options.groups, kernel, kernel}
                                 : Shape{out_channels, in_channels / options.groups, kernel, kernel};
  std::vector<TensorId> inputs = {x, b.Parameter("weight", weight_shape)};
  Attrs attrs = {{"stride", std::vector<int64_t>{options.stride, options.stride}},
                 {"padding", std::vector<int64_t>{options.padding, options.padding}},
                 {"dilation", std::vector<int64_t>{1, 1}},
                 {"transposed", options.transposed},
                 {"output_padding", std::vector<int64_t>{0, 0}},
                 {"groups", options.groups}};
  if (options.bias) {
    inputs.push_back(b.Parameter("bias", {out_channels}));
  } else {
    attrs["bias"] = AttrValue{std::monostate{}};
  }
  return b.Call("aten.convolution", std::move(inputs), std::move(attrs));
}

TensorId BatchNorm2d(GraphBuilder& b, std::string_view module, TensorId x) {
  ModuleScope scope(b, module);
  const int64_t channels = b.shape(x)[1];
  TensorId weight = b.Parameter("weight", {channels});
  TensorId bias = b.Parameter("bias", {channels});
  // Running statistics in the model dtype, as after model.to(dtype).
  TensorId mean = b.Source("running_mean", {channels}, b.dtype(), TensorRole::kBuffer);
  TensorId var = b.Source("running_var", {channels}, b.dtype(), TensorRole::kBuffer);
  return b.CallMulti("aten.native_batch_norm", {x, weight, bias, mean, var},
                     {{"training", true}, {"momentum", 0.1}, {"eps", 1e-5}})[0];
}

TensorId Relu(GraphBuilder& b, TensorId x) { return b.Call("aten.relu", {x}); }

TensorId Relu6(GraphBuilder& b, TensorId x) {
  return b.Call("aten.hardtanh", {x}, {{"min_val", 0.0}, {"max_val", 6.0}});
}

TensorId MaxPool2d(GraphBuilder& b, TensorId x, int64_t kernel, int64_t stride, int64_t padding) {
  return b.CallMulti("aten.max_pool2d_with_indices", {x},
                     {{"kernel_size", std::vector<int64_t>{kernel, kernel}},
                      {"stride", std::vector<int64_t>{stride, stride}},
                      {"padding", std::vector<int64_t>{padding, padding}},
                      {"dilation", std::vector<int64_t>{1, 1}},
                      {"ceil_mode", false}})[0];
}

TensorId GlobalAvgPoolFlatten(GraphBuilder& b, TensorId x) {
  TensorId pooled = b.Call("aten._adaptive_avg_pool2d", {x}, {{"output_size", std::vector<int64_t>{1, 1}}});
  const Shape& s = b.shape(pooled);
  return b.Call("aten.view", {pooled}, {{"size", Shape{s[0], s[1]}}}, "flatten");
}

TensorId ScalarConstant(GraphBuilder& b, double value) {
  return b.Call("aten.full", {},
                {{"size", std::vector<int64_t>{}},
                 {"fill_value", value},
                 {"dtype", std::string(ToString(b.dtype()))}});
}

TensorId CrossEntropy(GraphBuilder& b, TensorId logits, TensorId labels) {
  ModuleScope scope(b, "loss");
  TensorId log_probs = b.Call("aten._log_softmax", {logits}, {{"dim", int64_t{1}}, {"half_to_float", false}});
  return b.CallMulti("aten.nll_loss_forward", {log_probs, labels},
                     {{"weight", AttrValue{std::monostate{}}}, {"reduction", int64_t{1}}, {"ignore_index", int64_t{-100}}})[0];
}

TensorId PixelCrossEntropy(GraphBuilder& b, TensorId logits, TensorId labels) {
  const Shape s = b.shape(logits);
  const int64_t pixels = s[0] * s[2] * s[3];
  logits = b.Call("aten.permute", {logits}, {{"dims", std::vector<int64_t>{0, 2, 3, 1}}});
  logits = View(b, Contiguous(b, logits), {pixels, s[1]});
  TensorId flat = b.Call("aten.view", {labels}, {{"size", Shape{pixels}}}, "labels_flat");
  return CrossEntropy(b, logits, flat);
}

TensorId MultiHeadAttention(GraphBuilder& b, TensorId q, TensorId k, TensorId v, const AttentionOptions& options) {
  const Shape& s = b.shape(q);
  const int64_t batch = s[0], seq = s[1], hidden = s[2], heads = options.heads;
  const int64_t head_dim = hidden / heads;
  // [B, S, H] -> [B, heads, S, dh]
  auto split_heads = [&](TensorId x) {
    TensorId v4 = View(b, x, {batch, seq, heads, head_dim});
    return b.Call("aten.permute", {v4}, {{"dims", std::vector<int64_t>{0, 2, 1, 3}}});
  };
  // A non-contiguous [B, heads, a, c] -> contiguous [B * heads, a, c] for bmm.
  auto flatten_heads = [&](TensorId x) {
    const Shape& xs = b.shape(x);
    return View(b, Contiguous(b, x), {batch * heads, xs[2], xs[3]});
  };
  TensorId qh = split_heads(q);
  TensorId kh = split_heads(k);
  TensorId vh = split_heads(v);
  TensorId kt = b.Call("aten.transpose.int", {kh}, {{"dim0", int64_t{-1}}, {"dim1", int64_t{-2}}});
  TensorId scores = b.Call("aten.bmm", {flatten_heads(qh), flatten_heads(kt)});
  scores = View(b, scores, {batch, heads, seq, seq});
  if (options.scale != 0) scores = b.Call("aten.div.Scalar", {scores}, {{"other", options.scale}});
  if (options.scale_tensor) scores = b.Call("aten.div.Tensor", {scores, *options.scale_tensor});
  if (options.mask) scores = b.Call("aten.add.Tensor", {scores, *options.mask});
  TensorId probs = b.Call("aten._softmax", {scores}, {{"dim", int64_t{-1}}, {"half_to_float", false}});
  probs = Dropout(b, probs, options.dropout);
  TensorId context = b.Call("aten.bmm", {View(b, probs, {batch * heads, seq, seq}), flatten_heads(vh)});
  context = View(b, context, {batch, heads, seq, head_dim});
  context = b.Call("aten.permute", {context}, {{"dims", std::vector<int64_t>{0, 2, 1, 3}}});
  return View(b, Contiguous(b, context), {batch, seq, hidden});
}

}  // namespace memfit::models
