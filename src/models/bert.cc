// BERT (HuggingFace BertForSequenceClassification) with Google's configs:
// post-LN encoder layers, GELU (erf), a tanh pooler on the first token and a
// 2-class classifier trained with cross-entropy on [batch] labels.
#include <cmath>
#include <string_view>

#include "models/families.h"
#include "models/layers.h"
#include "util/error.h"

namespace memfit::models {
namespace {

struct BertConfig {
  std::string_view name;
  int64_t layers;
  int64_t hidden;
};

constexpr BertConfig kConfigs[] = {
    {"bert-tiny", 2, 128},    {"bert-mini", 4, 256},  {"bert-small", 4, 512},
    {"bert-medium", 8, 512},  {"bert-base", 12, 768}, {"bert-large", 24, 1024},
};
constexpr int64_t kVocab = 30522;
constexpr int64_t kMaxPositions = 512;
constexpr int64_t kTokenTypes = 2;
constexpr int64_t kHeadDim = 64;
constexpr int64_t kPadTokenId = 0;  // word_embeddings padding_idx
constexpr int64_t kClasses = 2;
constexpr double kLayerNormEps = 1e-12;

// BertLayer: self-attention + output (dense, dropout, residual, LayerNorm),
// intermediate (dense, GELU), output (dense, dropout, residual, LayerNorm).
TensorId BertLayer(GraphBuilder& b, TensorId x, TensorId mask, int64_t hidden, double dropout) {
  TensorId attention;
  {
    ModuleScope attn(b, "attention");
    TensorId context;
    {
      ModuleScope self(b, "self");
      TensorId q = Linear(b, "query", x, hidden);
      TensorId k = Linear(b, "key", x, hidden);
      TensorId v = Linear(b, "value", x, hidden);
      context = MultiHeadAttention(b, q, k, v, {.heads = hidden / kHeadDim,
                                                        .scale = std::sqrt(static_cast<double>(kHeadDim)),
                                                        .scale_tensor = std::nullopt,
                                                        .mask = mask,
                                                        .dropout = dropout});
    }
    ModuleScope out(b, "output");
    TensorId h = Dropout(b, Linear(b, "dense", context, hidden), dropout);
    attention = LayerNorm(b, "LayerNorm", b.Call("aten.add.Tensor", {h, x}), kLayerNormEps);
  }
  TensorId inter;
  {
    ModuleScope scope(b, "intermediate");
    inter = Gelu(b, Linear(b, "dense", attention, 4 * hidden), /*tanh=*/false);
  }
  ModuleScope out(b, "output");
  TensorId h = Dropout(b, Linear(b, "dense", inter, hidden), dropout);
  return LayerNorm(b, "LayerNorm", b.Call("aten.add.Tensor", {h, attention}), kLayerNormEps);
}

}  // namespace

Graph BuildBert(const ZooRequest& r) {
  const BertConfig& c = FindConfig(kConfigs, r.model, "BERT");
  const int64_t H = c.hidden;
  GraphBuilder b(r.model, r.dtype);
  TensorId input_ids = b.Input("input_ids", {r.batch, r.seq}, DType::kI64);
  TensorId token_type_ids = b.Input("token_type_ids", {r.batch, r.seq}, DType::kI64);
  // The extended attention mask (1 - attention_mask) * min, broadcast over
  // heads and query positions; all zeros when nothing is padded.
  TensorId mask = b.Input("extended_attention_mask", {r.batch, 1, 1, r.seq});
  TensorId labels = b.Input("labels", {r.batch}, DType::kI64);

  TensorId hidden;
  {
    ModuleScope bert(b, "bert");
    {
      ModuleScope emb(b, "embeddings");
      TensorId position_ids_table = b.Source("position_ids", {1, kMaxPositions}, DType::kI64, TensorRole::kBuffer);
      TensorId position_ids = b.Call("aten.slice.Tensor", {position_ids_table},
                                     {{"dim", int64_t{1}}, {"start", int64_t{0}}, {"end", r.seq}, {"step", int64_t{1}}});
      TensorId words = Embedding(b, "word_embeddings", input_ids, kVocab, H, kPadTokenId);
      TensorId types = Embedding(b, "token_type_embeddings", token_type_ids, kTokenTypes, H);
      TensorId x = b.Call("aten.add.Tensor", {words, types});
      TensorId positions = Embedding(b, "position_embeddings", position_ids, kMaxPositions, H);
      x = b.Call("aten.add.Tensor", {x, positions});
      x = LayerNorm(b, "LayerNorm", x, kLayerNormEps);
      hidden = Dropout(b, x, r.dropout);
    }
    {
      ModuleScope encoder(b, "encoder");
      for (int64_t i = 0; i < c.layers; ++i) {
        ModuleScope layer(b, Indexed("layer", i));
        hidden = BertLayer(b, hidden, mask, H, r.dropout);
      }
    }
    ModuleScope pooler(b, "pooler");
    TensorId first = b.Call("aten.select.int", {hidden}, {{"dim", int64_t{1}}, {"index", int64_t{0}}});
    hidden = b.Call("aten.tanh", {Linear(b, "dense", first, H)});
  }
  TensorId logits = Linear(b, "classifier", Dropout(b, hidden, r.dropout), kClasses);
  return FinishZooGraph(b, CrossEntropy(b, logits, labels), r, /*has_seq=*/true, /*has_image=*/false);
}

}  // namespace memfit::models
