// Building blocks of the zoo: PyTorch modules decomposed into the ATen ops
// that make_fx captures for them in training mode.
//
// Each block that owns parameters takes the module's name relative to the
// builder's current scope ("attention.self.query") and creates
// "<scope>.<module>.weight" etc., so parameter names are the state_dict keys.
// Ops are named "<scope>.<module>.<packet>" ("...query.addmm").
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "ir/builder.h"

namespace memfit::models {

// Pushes a scope on construction and pops it on destruction.
class ModuleScope {
 public:
  ModuleScope(GraphBuilder& builder, std::string_view name) : builder_(builder) { builder_.PushScope(name); }
  ~ModuleScope() { builder_.PopScope(); }
  ModuleScope(const ModuleScope&) = delete;
  ModuleScope& operator=(const ModuleScope&) = delete;

 private:
  GraphBuilder& builder_;
};

// "layer" + "." + index, for numbered submodules ("encoder.layer.3").
std::string Indexed(std::string_view prefix, int64_t index);

// F.linear(x, weight, bias) with an existing weight [out, in]: on a 2-D input
// t(weight) then addmm(bias, x, w_t) (mm without bias); on a higher-rank
// input the leading dims are flattened with aten.view first and restored
// after.
TensorId LinearWith(GraphBuilder& b, TensorId x, TensorId weight, std::optional<TensorId> bias);
// nn.Linear `module`: weight [out, in], bias [out].
TensorId Linear(GraphBuilder& b, std::string_view module, TensorId x, int64_t out_features, bool bias = true);
// HuggingFace Conv1D (GPT-2): weight [in, out], bias [out];
// view -> addmm(bias, x, weight) -> view, no transpose.
TensorId Conv1D(GraphBuilder& b, std::string_view module, TensorId x, int64_t out_features);

// nn.LayerNorm over the last dim: aten.native_layer_norm, output 0.
TensorId LayerNorm(GraphBuilder& b, std::string_view module, TensorId x, double eps);
// nn.Dropout in training mode: aten.native_dropout output 0; no op when p == 0.
TensorId Dropout(GraphBuilder& b, TensorId x, double p);
// aten.gelu; `tanh` selects GPT-2's gelu_new approximation.
TensorId Gelu(GraphBuilder& b, TensorId x, bool tanh);
// nn.Embedding `module` with weight [num, dim]; returns the lookup of `ids`.
TensorId Embedding(GraphBuilder& b, std::string_view module, TensorId ids, int64_t num, int64_t dim,
                   int64_t padding_idx = -1);
// aten.embedding(weight, ids) with an existing weight.
TensorId EmbeddingLookup(GraphBuilder& b, TensorId weight, TensorId ids, int64_t padding_idx = -1);

struct Conv2dOptions {
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t groups = 1;
  bool bias = false;        // torchvision convs before BatchNorm have none
  bool transposed = false;  // nn.ConvTranspose2d: weight [in, out / groups, k, k]
};
// nn.Conv2d / nn.ConvTranspose2d `module` as aten.convolution; a missing bias
// is the attribute "bias" = None.
TensorId Conv2d(GraphBuilder& b, std::string_view module, TensorId x, int64_t out_channels, int64_t kernel,
                const Conv2dOptions& options);
// nn.BatchNorm2d `module` in training mode: weight, bias (parameters),
// running_mean, running_var (buffers, updated in place) ->
// aten.native_batch_norm output 0.
TensorId BatchNorm2d(GraphBuilder& b, std::string_view module, TensorId x);
TensorId Relu(GraphBuilder& b, TensorId x);
// nn.ReLU6: aten.hardtanh(min_val 0, max_val 6).
TensorId Relu6(GraphBuilder& b, TensorId x);
// nn.MaxPool2d as aten.max_pool2d_with_indices, output 0.
TensorId MaxPool2d(GraphBuilder& b, TensorId x, int64_t kernel, int64_t stride, int64_t padding);
// adaptive_avg_pool2d to [1, 1] then torch.flatten(x, 1) as aten.view.
TensorId GlobalAvgPoolFlatten(GraphBuilder& b, TensorId x);

// torch.full([], value, dtype): a 0-dim constant (the attention scale).
TensorId ScalarConstant(GraphBuilder& b, double value);

// F.cross_entropy(logits [N, C], labels [N], reduction mean):
// aten._log_softmax(dim 1) then aten.nll_loss_forward output 0 (scalar).
TensorId CrossEntropy(GraphBuilder& b, TensorId logits, TensorId labels);

// Per-pixel F.cross_entropy of logits [N, C, H, W] against labels [N, H, W]:
// permute to [N, H, W, C], aten.clone to contiguous, view [N * H * W, C]
// (the labels as [N * H * W]), then CrossEntropy.
TensorId PixelCrossEntropy(GraphBuilder& b, TensorId logits, TensorId labels);

struct AttentionOptions {
  int64_t heads = 1;
  // Divides the scores by this Python scalar (aten.div.Scalar, attr
  // "other"), as BERT and ViT do with sqrt(head_dim); 0: no scalar division.
  double scale = 0;
  // Divides the scores by this 0-dim tensor instead (aten.div.Tensor), as
  // GPT-2 does with torch.full([], sqrt(head_dim)); none: no such division.
  std::optional<TensorId> scale_tensor;
  // Added to the scores [B, heads, S, S] (broadcast): padding or causal mask.
  std::optional<TensorId> mask;
  double dropout = 0;  // on the attention probabilities
};
// The core of multi-head self-attention on projected q, k, v [B, S, H] ->
// context [B, S, H] before the output projection. Heads are split with
// view + permute, made contiguous with aten.clone and flattened to
// [B * heads, S, dh] for aten.bmm, as torch.matmul does.
TensorId MultiHeadAttention(GraphBuilder& b, TensorId q, TensorId k, TensorId v, const AttentionOptions& options);

}  // namespace memfit::models
