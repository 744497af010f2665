// Vision Transformer (HuggingFace ViTForImageClassification): patch
// embedding as a strided aten.convolution, a class token and learned
// position embeddings, pre-LN encoder layers with GELU MLPs (4x), a final
// LayerNorm and a 1000-class head on the class token.
//
// The position table has one row per patch of the requested image plus the
// class token, so the parameter count depends on the image size (HuggingFace
// would interpolate a 224-pixel table instead).
#include <cmath>
#include <string_view>

#include "models/families.h"
#include "models/layers.h"
#include "util/error.h"

namespace memfit::models {
namespace {

struct VitConfig {
  std::string_view name;
  int64_t patch;
  int64_t hidden;
  int64_t layers;
  int64_t heads;
};

constexpr VitConfig kConfigs[] = {
    {"vit-tiny", 16, 192, 12, 3},   {"vit-small", 16, 384, 12, 6},   {"vit-base", 16, 768, 12, 12},
    {"vit-large", 16, 1024, 24, 16}, {"vit-huge", 14, 1280, 32, 16},
};
constexpr int64_t kClasses = 1000;
constexpr int64_t kChannels = 3;
constexpr double kLayerNormEps = 1e-12;

// ViTLayer: x + attention(layernorm_before(x)), then + mlp(layernorm_after).
TensorId VitLayer(GraphBuilder& b, TensorId x, const VitConfig& c, double dropout) {
  TensorId attended;
  {
    TensorId h = LayerNorm(b, "layernorm_before", x, kLayerNormEps);
    ModuleScope attention(b, "attention");
    TensorId context;
    {
      ModuleScope self(b, "attention");
      TensorId q = Linear(b, "query", h, c.hidden);
      TensorId k = Linear(b, "key", h, c.hidden);
      TensorId v = Linear(b, "value", h, c.hidden);
      context = MultiHeadAttention(b, q, k, v, {.heads = c.heads,
                                                        .scale = std::sqrt(static_cast<double>(c.hidden / c.heads)),
                                                        .scale_tensor = std::nullopt,
                                                        .mask = std::nullopt,
                                                        .dropout = dropout});
    }
    ModuleScope output(b, "output");
    h = Dropout(b, Linear(b, "dense", context, c.hidden), dropout);
    attended = b.Call("aten.add.Tensor", {h, x});
  }
  TensorId h = LayerNorm(b, "layernorm_after", attended, kLayerNormEps);
  {
    ModuleScope intermediate(b, "intermediate");
    h = Gelu(b, Linear(b, "dense", h, 4 * c.hidden), /*tanh=*/false);
  }
  ModuleScope output(b, "output");
  h = Dropout(b, Linear(b, "dense", h, c.hidden), dropout);
  return b.Call("aten.add.Tensor", {h, attended});
}

}  // namespace

Graph BuildVit(const ZooRequest& r) {
  const VitConfig& c = FindConfig(kConfigs, r.model, "ViT");
  const int64_t side = r.image / c.patch;
  const int64_t patches = side * side;

  GraphBuilder b(r.model, r.dtype);
  TensorId pixels = b.Input("pixel_values", {r.batch, kChannels, r.image, r.image});
  TensorId labels = b.Input("labels", {r.batch}, DType::kI64);
  TensorId hidden;
  {
    ModuleScope vit(b, "vit");
    {
      ModuleScope emb(b, "embeddings");
      TensorId cls = b.Parameter("cls_token", {1, 1, c.hidden});
      TensorId positions = b.Parameter("position_embeddings", {1, patches + 1, c.hidden});
      TensorId x;
      {
        ModuleScope pe(b, "patch_embeddings");
        x = Conv2d(b, "projection", pixels, c.hidden, c.patch, {.stride = c.patch, .bias = true});
        // flatten(2).transpose(1, 2): [B, D, h, w] -> [B, h * w, D].
        x = b.Call("aten.view", {x}, {{"size", Shape{r.batch, c.hidden, patches}}});
        x = b.Call("aten.transpose.int", {x}, {{"dim0", int64_t{1}}, {"dim1", int64_t{2}}});
      }
      TensorId cls_tokens = b.Call("aten.expand", {cls}, {{"size", Shape{r.batch, 1, c.hidden}}});
      x = b.Call("aten.cat", {cls_tokens, x}, {{"dim", int64_t{1}}}, "tokens");
      x = b.Call("aten.add.Tensor", {x, positions});
      hidden = Dropout(b, x, r.dropout);
    }
    {
      ModuleScope encoder(b, "encoder");
      for (int64_t i = 0; i < c.layers; ++i) {
        ModuleScope layer(b, Indexed("layer", i));
        hidden = VitLayer(b, hidden, c, r.dropout);
      }
    }
    hidden = LayerNorm(b, "layernorm", hidden, kLayerNormEps);
  }
  TensorId first = b.Call("aten.select.int", {hidden}, {{"dim", int64_t{1}}, {"index", int64_t{0}}}, "cls_output");
  TensorId logits = Linear(b, "classifier", first, kClasses);
  return FinishZooGraph(b, CrossEntropy(b, logits, labels), r, /*has_seq=*/false, /*has_image=*/true);
}

}  // namespace memfit::models
