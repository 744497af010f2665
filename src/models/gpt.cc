// GPT-2 (HuggingFace GPT2LMHeadModel) and GPT-Neo (GPTNeoForCausalLM):
// pre-LN decoder blocks with causal self-attention, gelu_new (tanh GELU), a
// final LayerNorm and an LM head tied to the token embedding (the wte
// parameter is reused; no new parameter). The loss is the language-model
// cross-entropy over [batch * seq] labels (labels arrive already shifted).
//
// The causal mask is one additive buffer [1, 1, S, S] (0 on and below the
// diagonal, the dtype's minimum above) shared by all layers; HuggingFace
// keeps a boolean buffer per layer and applies it with aten.where, which
// costs the same.
#include <cmath>
#include <string_view>

#include "models/families.h"
#include "models/layers.h"
#include "util/error.h"

namespace memfit::models {
namespace {

struct GptConfig {
  std::string_view name;
  int64_t layers;
  int64_t hidden;
  int64_t heads;
};

constexpr GptConfig kGpt2Configs[] = {
    {"gpt2-small", 12, 768, 12},
    {"gpt2-medium", 24, 1024, 16},
    {"gpt2-large", 36, 1280, 20},
    {"gpt2-xl", 48, 1600, 25},
};
constexpr GptConfig kGptNeoConfigs[] = {{"gpt-neo-1.3b", 24, 2048, 16}};
constexpr int64_t kVocab = 50257;
constexpr int64_t kGpt2Positions = 1024;
constexpr int64_t kGptNeoPositions = 2048;
constexpr double kLayerNormEps = 1e-5;

struct Embedded {
  TensorId hidden;
  TensorId wte;
  TensorId causal_mask;
  TensorId labels;
};

// Inputs, token + position embeddings and the causal mask, in scope
// "transformer".
Embedded Embed(GraphBuilder& b, const ZooRequest& r, int64_t hidden, int64_t positions) {
  Embedded e;
  TensorId input_ids = b.Input("input_ids", {r.batch, r.seq}, DType::kI64);
  // torch.arange(seq) in HuggingFace; an input here (the registry has no arange).
  TensorId position_ids = b.Input("position_ids", {1, r.seq}, DType::kI64);
  e.labels = b.Input("labels", {r.batch, r.seq}, DType::kI64);
  ModuleScope transformer(b, "transformer");
  e.causal_mask = b.Source("causal_mask", {1, 1, r.seq, r.seq}, r.dtype, TensorRole::kBuffer);
  e.wte = b.Parameter("wte.weight", {kVocab, hidden});
  TensorId tokens = EmbeddingLookup(b, e.wte, input_ids);
  TensorId pos = Embedding(b, "wpe", position_ids, positions, hidden);
  e.hidden = Dropout(b, b.Call("aten.add.Tensor", {tokens, pos}), r.dropout);
  return e;
}

// ln_f, the tied LM head and the loss.
Graph Finish(GraphBuilder& b, const ZooRequest& r, const Embedded& e, TensorId hidden) {
  {
    ModuleScope transformer(b, "transformer");
    hidden = LayerNorm(b, "ln_f", hidden, kLayerNormEps);
  }
  TensorId logits;
  {
    ModuleScope head(b, "lm_head");
    logits = LinearWith(b, hidden, e.wte, std::nullopt);
    logits = b.Call("aten.view", {logits}, {{"size", Shape{r.batch * r.seq, kVocab}}});
  }
  TensorId labels = b.Call("aten.view", {e.labels}, {{"size", Shape{r.batch * r.seq}}}, "labels_flat");
  return FinishZooGraph(b, CrossEntropy(b, logits, labels), r, /*has_seq=*/true, /*has_image=*/false);
}

// The second half of a GPT block: attended + mlp(ln_2(attended)), the MLP's
// two projections (c_fc to 4 * hidden, c_proj back) made by `project`
// (module name, input, out features).
template <typename Project>
TensorId MlpResidual(GraphBuilder& b, TensorId attended, const GptConfig& c, double dropout, Project project) {
  TensorId h = LayerNorm(b, "ln_2", attended, kLayerNormEps);
  ModuleScope mlp(b, "mlp");
  h = Gelu(b, project("c_fc", h, 4 * c.hidden), /*tanh=*/true);
  h = Dropout(b, project("c_proj", h, c.hidden), dropout);
  return b.Call("aten.add.Tensor", {attended, h});
}

// GPT2Block: x + attn(ln_1(x)), then + mlp(ln_2(x)). Conv1D projections.
TensorId Gpt2Block(GraphBuilder& b, TensorId x, TensorId scale, TensorId mask, const GptConfig& c, double dropout) {
  TensorId attended;
  {
    TensorId h = LayerNorm(b, "ln_1", x, kLayerNormEps);
    ModuleScope attn(b, "attn");
    TensorId qkv = Conv1D(b, "c_attn", h, 3 * c.hidden);
    auto parts = b.CallMulti("aten.split.Tensor", {qkv}, {{"split_size", c.hidden}, {"dim", int64_t{2}}});
    TensorId context = MultiHeadAttention(b, parts[0], parts[1], parts[2],
                                          {.heads = c.heads, .scale = 0, .scale_tensor = scale, .mask = mask, .dropout = dropout});
    h = Dropout(b, Conv1D(b, "c_proj", context, c.hidden), dropout);
    attended = b.Call("aten.add.Tensor", {h, x});
  }
  return MlpResidual(b, attended, c, dropout, [&](std::string_view module, TensorId in, int64_t out) {
    return Conv1D(b, module, in, out);
  });
}

// GPTNeoBlock: as GPT-2 with nn.Linear projections, q/k/v without bias and
// no scaling of the scores. Local attention layers are modelled as full
// causal attention (same shapes and cost at seq <= window 256).
TensorId GptNeoBlock(GraphBuilder& b, TensorId x, TensorId mask, const GptConfig& c, double dropout) {
  TensorId attended;
  {
    TensorId h = LayerNorm(b, "ln_1", x, kLayerNormEps);
    ModuleScope attn(b, "attn.attention");
    TensorId q = Linear(b, "q_proj", h, c.hidden, /*bias=*/false);
    TensorId k = Linear(b, "k_proj", h, c.hidden, /*bias=*/false);
    TensorId v = Linear(b, "v_proj", h, c.hidden, /*bias=*/false);
    TensorId context = MultiHeadAttention(b, q, k, v, {.heads = c.heads, .scale = 0, .scale_tensor = std::nullopt, .mask = mask, .dropout = dropout});
    h = Dropout(b, Linear(b, "out_proj", context, c.hidden), dropout);
    attended = b.Call("aten.add.Tensor", {h, x});
  }
  return MlpResidual(b, attended, c, dropout, [&](std::string_view module, TensorId in, int64_t out) {
    return Linear(b, module, in, out);
  });
}

// The skeleton GPT-2 and GPT-Neo share: embeddings, then under
// "transformer" what `make_block` adds once (it returns the block builder)
// and one block per layer ("transformer.h.<i>"), then the head and loss.
template <typename MakeBlock>
Graph BuildGpt(const ZooRequest& r, const GptConfig& c, int64_t positions, MakeBlock make_block) {
  GraphBuilder b(r.model, r.dtype);
  Embedded e = Embed(b, r, c.hidden, positions);
  TensorId hidden = e.hidden;
  {
    ModuleScope transformer(b, "transformer");
    auto block = make_block(b);
    for (int64_t i = 0; i < c.layers; ++i) {
      ModuleScope scope(b, Indexed("h", i));
      hidden = block(hidden, e.causal_mask);
    }
  }
  return Finish(b, r, e, hidden);
}

}  // namespace

Graph BuildGpt2(const ZooRequest& r) {
  const GptConfig& c = FindConfig(kGpt2Configs, r.model, "GPT");
  return BuildGpt(r, c, kGpt2Positions, [&](GraphBuilder& b) {
    // torch.full([], sqrt(head_dim)) divides the scores, as in HuggingFace.
    const TensorId scale = ScalarConstant(b, std::sqrt(static_cast<double>(c.hidden / c.heads)));
    return [&b, &c, &r, scale](TensorId x, TensorId mask) { return Gpt2Block(b, x, scale, mask, c, r.dropout); };
  });
}

Graph BuildGptNeo(const ZooRequest& r) {
  const GptConfig& c = FindConfig(kGptNeoConfigs, r.model, "GPT");
  return BuildGpt(r, c, kGptNeoPositions, [&](GraphBuilder& b) {
    return [&b, &c, &r](TensorId x, TensorId mask) { return GptNeoBlock(b, x, mask, c, r.dropout); };
  });
}

}  // namespace memfit::models
