#include "transform/fission.h"

#include <algorithm>
#include <set>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "analysis/liveness.h"
#include "ir/registry.h"
#include "transform/rewriter.h"
#include "util/error.h"

namespace memfit {
namespace {

// Dimension d as each tensor carries it: an axis of extent o * L * f (L is
// d's length) indexed (i_o * L + i_d) * f + i_f, where i_d is d's index.
// The dimension graph's group of d carries it with o = f = 1. Reshapes carry
// it on (OuterLink: a merge [X, Y] -> [X*Y] or the split back):
//   - d in the outer axis X with (o, f): the merged axis has (o, f * Y)
//     (BERT's [B, S, H] -> [B*S, H] carries the batch with f = S);
//   - d in the inner axis Y with (o, f): the merged axis has (X * o, f)
//     (attention's [B, heads, S, dh] -> [B*heads, S, dh] carries the heads
//     with o = B).
// Every same-extent link passes (o, f) on. A part [lo, hi) of d is, in each
// of the o blocks of the axis, the range [lo * f, hi * f): contiguous when
// o = 1, else o strided ranges (sliced and joined through a view [o, L*f]).
class Along {
 public:
  struct Carry {
    int axis = -1;
    int64_t outer = 1;
    int64_t factor = 1;
    bool operator==(const Carry&) const = default;
  };

  Along(const Graph& graph, const DimensionGraph& dims, int dim)
      : graph_(graph), dim_(dims.dims.at(dim)), carry_(graph.num_tensors()) {
    for (const Tensor& t : graph.tensors()) {
      const auto& axes = dims.dim_of.at(t.id.index());
      for (size_t a = 0; a < axes.size(); ++a) {
        if (axes[a] == dim) {
          carry_[t.id.index()] = {static_cast<int>(a), 1, 1};
          break;
        }
      }
    }
    for (const Op& op : graph.ops()) links_.push_back(ComputeDimLinks(graph, op));
    // Until nothing changes (each tensor is set at most once).
    for (bool changed = true; changed;) {
      changed = false;
      for (const Op& op : graph.ops()) {
        const DimLinks& l = links_[op.id.index()];
        auto pass = [&](TensorId to, std::optional<Carry> c) {
          if (!c || carry_[to.index()].axis >= 0 || !Fits(to, *c)) return;
          carry_[to.index()] = *c;
          changed = true;
        };
        for (const DimLink& k : l.links) {
          const TensorId in = op.inputs.at(k.input), out = op.outputs.at(k.output);
          pass(out, Relink(carry_[in.index()], k.input_dim, k.output_dim));
          pass(in, Relink(carry_[out.index()], k.output_dim, k.input_dim));
        }
        for (const OuterLink& k : l.outer) {
          const TensorId in = op.inputs.at(k.input), out = op.outputs.at(k.output);
          pass(out, Across(op, k, carry_[in.index()], /*from_input=*/true));
          pass(in, Across(op, k, carry_[out.index()], /*from_input=*/false));
        }
        if (l.row_major_reshape) {
          const TensorId in = op.inputs.at(0), out = op.outputs.at(0);
          pass(out, Reshaped(carry_[in.index()], graph_.tensor(in).shape, graph_.tensor(out).shape));
          pass(in, Reshaped(carry_[out.index()], graph_.tensor(out).shape, graph_.tensor(in).shape));
        }
      }
    }
  }

  int axis(TensorId t) const { return carry_.at(t.index()).axis; }
  int64_t outer(TensorId t) const { return carry_.at(t.index()).outer; }
  int64_t factor(TensorId t) const { return carry_.at(t.index()).factor; }
  const Carry& carry(TensorId t) const { return carry_.at(t.index()); }
  // The extent of t's axis along d for a part of `part_length` of d.
  int64_t Extent(TensorId t, int64_t part_length) const { return outer(t) * part_length * factor(t); }
  const Dimension& dim() const { return dim_; }
  const std::string& name() const { return dim_.name; }
  int64_t length() const { return dim_.length; }
  // The registry's dimension links of `op` (computed once, here).
  const DimLinks& links(OpId op) const { return links_.at(op.index()); }

  // Does output `o` of `op` carry d as input `i` passes it on (a same-extent
  // link or a merge/split)?
  bool Follows(const Op& op, const DimLinks& links, size_t i, size_t o) const {
    const TensorId in = op.inputs.at(i), out = op.outputs.at(o);
    if (axis(in) < 0 || axis(out) < 0) return false;
    for (const DimLink& l : links.links) {
      if (l.input == static_cast<int>(i) && l.output == static_cast<int>(o) &&
          Relink(carry(in), l.input_dim, l.output_dim) == carry(out)) {
        return true;
      }
    }
    for (const OuterLink& l : links.outer) {
      if (l.input == static_cast<int>(i) && l.output == static_cast<int>(o) &&
          Across(op, l, carry(in), /*from_input=*/true) == carry(out)) {
        return true;
      }
    }
    return links.row_major_reshape && i == 0 && o == 0 &&
           Reshaped(carry(in), graph_.tensor(in).shape, graph_.tensor(out).shape) == carry(out);
  }

 private:
  bool Fits(TensorId t, const Carry& c) const {
    const Shape& shape = graph_.tensor(t).shape;
    return c.axis >= 0 && c.axis < static_cast<int>(shape.size()) && c.outer >= 1 && c.factor >= 1 &&
           shape[c.axis] == c.outer * dim_.length * c.factor;
  }
  static std::optional<Carry> Relink(const Carry& c, int from_axis, int to_axis) {
    if (c.axis < 0 || c.axis != from_axis) return std::nullopt;
    return Carry{to_axis, c.outer, c.factor};
  }
  std::optional<Carry> Reshaped(const Carry& c, const Shape& from, const Shape& to) const {
    if (c.axis < 0 || c.axis >= static_cast<int>(from.size())) return std::nullopt;
    int64_t before = c.outer, after = c.factor;
    for (int k = 0; k < c.axis; ++k) before *= from[k];
    for (size_t k = c.axis + 1; k < from.size(); ++k) after *= from[k];
    int64_t prefix = 1;
    for (size_t j = 0; j < to.size(); ++j) {
      int64_t suffix = 1;
      for (size_t k = j + 1; k < to.size(); ++k) suffix *= to[k];
      if (prefix > 0 && suffix > 0 && before % prefix == 0 && after % suffix == 0) {
        const Carry carry{static_cast<int>(j), before / prefix, after / suffix};
        if (to[j] == carry.outer * dim_.length * carry.factor) return carry;
      }
      prefix *= to[j];
    }
    return std::nullopt;
  }

  // Carry `c` across merge/split link `k` of `op`, from its input side to
  // its output side or back. U is the unmerged tensor (outer axis a of
  // extent X, then the inner axes of product Y), M the merged one (axis b).
  std::optional<Carry> Across(const Op& op, const OuterLink& k, const Carry& c, bool from_input) const {
    if (c.axis < 0) return std::nullopt;
    const bool from_unmerged = k.merge == from_input;
    const TensorId u_id = k.merge ? op.inputs.at(k.input) : op.outputs.at(k.output);
    const Shape& u = graph_.tensor(u_id).shape;
    const int a = k.merge ? k.input_dim : k.output_dim, b = k.merge ? k.output_dim : k.input_dim;
    const int64_t x = u.at(a), y = k.inner;
    // d in the inner axis only when the merge is of two axes: [X, Y] -> [X*Y].
    const bool two_axes = a + 1 < static_cast<int>(u.size()) && u[a + 1] == y;
    if (from_unmerged) {
      if (c.axis == a) return Carry{b, c.outer, c.factor * y};
      if (two_axes && c.axis == a + 1) return Carry{b, x * c.outer, c.factor};
      return std::nullopt;
    }
    if (c.axis != b) return std::nullopt;
    if (c.factor % y == 0) return Carry{a, c.outer, c.factor / y};
    if (two_axes && c.outer % x == 0) return Carry{a + 1, c.outer / x, c.factor};
    return std::nullopt;
  }

  const Graph& graph_;
  const Dimension& dim_;
  std::vector<Carry> carry_;
  std::vector<DimLinks> links_;  // by op id
};

// How one output of a split op comes out of the parts.
enum class OutputKind : uint8_t {
  kSplit,        // carries d: the parts side by side
  kPartialSum,   // a sum over d: the parts added up
  kMeanLoss,     // nll_loss_forward's mean: the parts' sums added up, over the total weight
  kTotalWeight,  // nll_loss_forward's total weight: counted once, before the parts
  kHoisted,      // native_dropout's mask: drawn whole, before the parts
  kFirstPart,    // the same in every part: the first part's (BatchNorm's saved statistics in
                 // evaluation on CPU, which have no elements; nll_loss's total weight with reduction
                 // "none", always 0)
  kMeanOfElements,  // a mean over d (an element-wise loss's, aten.mean): the parts' sums added up,
                    // over the whole's count (OpRule::count)
  kInto,            // a scatter that accumulates over d (PartialCombine::kInto): each part adds into the
                    // part before's result, the first into self (in place where the op writes in place)
};

// Whether a part's result of this kind is only a piece of the whole's (a sum
// or a mean over d): whole once every part is in, so no op of S may read it.
bool IsPartial(OutputKind kind) {
  return kind == OutputKind::kPartialSum || kind == OutputKind::kMeanLoss || kind == OutputKind::kMeanOfElements ||
         kind == OutputKind::kInto;
}

struct OpRule {
  std::optional<std::string> refusal;
  std::vector<OutputKind> outputs;

  bool mean_loss() const { return !outputs.empty() && outputs[0] == OutputKind::kMeanLoss; }
  bool counts_targets() const { return outputs.size() == 2 && outputs[1] == OutputKind::kTotalWeight; }
  bool mean_of_elements() const { return !outputs.empty() && outputs[0] == OutputKind::kMeanOfElements; }
  double count = 0;  // a mean's (kMeanOfElements, scales_gradient): the whole's elements it divides by
  // An element-wise loss's backward of a mean: each part with reduction "sum"
  // on grad_output over the whole's element count (divided once, before the parts).
  bool scales_gradient = false;
  bool hoists_mask() const { return outputs.size() == 2 && outputs[1] == OutputKind::kHoisted; }
  bool into() const { return outputs.size() == 1 && outputs[0] == OutputKind::kInto; }
};

// nll_loss_forward(log_probs [N, C], target [N]) split along N (d, or d
// merged with pixels: N = B*H*W). Its second output, the total weight, is
// the targets' (their number, or with class weights the sum of
// weight[target], over the targets != ignore_index) with reduction "mean" or
// "sum", and 0 with "none". With "mean" the loss is the parts' sums over it,
// and it is known from the targets alone: so each part runs with reduction
// "sum", the total weight is counted before the parts, and
// nll_loss_backward's parts read it: a part's backward needs no other part's
// forward. With "sum" the parts' losses add up and the total weight is
// counted before them too; with "none" the parts' losses sit side by side
// and every part's total weight is the whole's 0. Class weights are shared
// by every part.
// nll_loss2d_forward (scores [N, C, H, W], targets [N, H, W]: a segmentation
// net's F.cross_entropy) likewise along N: the count is the targets' over
// every pixel, and nll_loss2d_backward reads it.
// The reduction, where the op splits so.
std::optional<int64_t> SplittableNllLoss(const Graph& graph, const Along& d, const Op& op) {
  const bool pixels = op.type == "aten.nll_loss2d_forward";
  if ((!pixels && op.type != "aten.nll_loss_forward") || op.inputs.size() < 2 || op.inputs.size() > 3) return {};
  if (op.inputs.size() == 3 && d.axis(op.inputs[2]) >= 0) return {};  // class weights are whole
  const int64_t* reduction = IntAttr(op, "reduction");
  const bool splits = reduction && *reduction >= 0 && *reduction <= 2 && IntAttr(op, "ignore_index") &&
                      graph.tensor(op.inputs[0]).shape.size() == (pixels ? 4u : 2u) && d.axis(op.inputs[0]) == 0 &&
                      d.axis(op.inputs[1]) == 0 && d.carry(op.inputs[0]).outer == 1 &&
                      d.carry(op.inputs[1]).outer == 1 && d.factor(op.inputs[0]) == d.factor(op.inputs[1]) &&
                      (*reduction != 0 || d.carry(op.outputs[0]) == d.carry(op.inputs[1]));
  if (!splits) return {};
  return *reduction;
}

// Losses computed element by element from self and target, then averaged
// (mse_loss, smooth_l1_loss, huber_loss, binary_cross_entropy(_with_logits);
// reduction "mean", ATen's default), and the backward kernels that divide by
// the element count themselves (mse_loss's, smooth_l1_loss's, huber_loss's,
// binary_cross_entropy's),
// split along d: self and target carry d alike, other inputs (a class weight)
// do not. The mean is the parts' sums over the whole's element count; the
// backward, norm * f(self, target) * g with norm = 1 / count, runs each part
// with reduction "sum" on g / count (made once, before the parts). A part
// left with reduction "mean" would divide by its own count.
enum class LossPass : uint8_t { kNone, kForward, kBackward };
LossPass ElementwiseLossPass(std::string_view type) {
  static const std::set<std::string_view> forward = {"aten.mse_loss", "aten.smooth_l1_loss", "aten.huber_loss",
                                                    "aten.binary_cross_entropy_with_logits",
                                                    "aten.binary_cross_entropy"};
  static const std::set<std::string_view> backward = {"aten.mse_loss_backward", "aten.smooth_l1_loss_backward",
                                                     "aten.huber_loss_backward", "aten.binary_cross_entropy_backward"};
  return forward.count(type) ? LossPass::kForward : backward.count(type) ? LossPass::kBackward : LossPass::kNone;
}

bool IsSplittableElementwiseMean(const Graph& graph, const Along& d, const Op& op) {
  const LossPass pass = ElementwiseLossPass(op.type);
  if (pass == LossPass::kNone) return false;
  const bool forward = pass == LossPass::kForward;
  const size_t first = forward ? 0 : 1;  // self; target follows
  if (op.inputs.size() < first + 2) return false;
  const int64_t* reduction = IntAttr(op, "reduction");
  if (reduction && *reduction != 1) return false;  // ATen's default is the mean
  const TensorId self = op.inputs[first], target = op.inputs[first + 1];
  if (!forward && graph.tensor(op.inputs[0]).numel() != 1) return false;  // the gradient of one scalar
  for (size_t i = 0; i < op.inputs.size(); ++i) {
    if (i != first && i != first + 1 && d.axis(op.inputs[i]) >= 0) return false;
  }
  return graph.tensor(self).shape == graph.tensor(target).shape && d.axis(self) >= 0 &&
         d.axis(self) == d.axis(target) && d.carry(self) == d.carry(target);
}

// aten.mean over dims that include d's (a loss averaged over the batch,
// `(out - y).pow(2).mean()`): split, each part sums over the same dims
// (aten.sum, as the mean's own kernel does) and the parts' sums are divided
// by the whole's count, the product of the reduced extents. Its backward
// (expand, then a division by that count) is element-wise already. The
// count, or nullopt when `op` is no such mean.
std::optional<double> SplittableMeanCount(const Graph& graph, const Along& d, const Op& op) {
  if (op.type != "aten.mean" || op.inputs.size() != 1 || op.outputs.size() != 1) return std::nullopt;
  if (op.overload != "" && op.overload != "default" && op.overload != "dim") return std::nullopt;
  const int axis = d.axis(op.inputs[0]);
  if (axis < 0 || d.axis(op.outputs[0]) >= 0) return std::nullopt;
  const Shape& shape = graph.tensor(op.inputs[0]).shape;
  double count = 1;
  bool reduces_d = false;
  for (const ReducedDim& r : ComputeDimLinks(graph, op).reduced) {
    if (r.input != 0) continue;
    count *= static_cast<double>(shape.at(static_cast<size_t>(r.dim)));
    reduces_d |= r.dim == axis;
  }
  if (!reduces_d) return std::nullopt;
  return count;
}

// native_dropout(x, p, train) draws its mask as
// empty_like(x).bernoulli_(1 - p) and returns (x * mask * 1/(1-p), mask != 0)
// (ATen's Dropout.cpp; checked against torch in the executor tests). Split,
// the mask is drawn whole before the parts, from the same generator in the
// same order, and each part multiplies its slice: the same numbers as the
// unsplit graph.
bool IsSplittableDropout(const Graph& graph, const Along& d, const Op& op) {
  if (op.type != "aten.native_dropout" || op.inputs.size() != 1 || op.outputs.size() != 2) return false;
  auto train = op.attrs.find("train");
  const bool* training = train == op.attrs.end() ? nullptr : std::get_if<bool>(&train->second);
  const Tensor& x = graph.tensor(op.inputs[0]);
  return training && *training && x.strides.empty() && d.axis(op.inputs[0]) >= 0 &&
         d.carry(op.outputs[1]) == d.carry(op.inputs[0]);
}

OpRule Classify(const Graph& graph, const Along& d, const Op& op) {
  OpRule rule;
  if (IsSplittableDropout(graph, d, op)) {
    rule.outputs = {OutputKind::kSplit, OutputKind::kHoisted};
    return rule;
  }
  if (const auto reduction = SplittableNllLoss(graph, d, op)) {
    switch (*reduction) {
      case 0: rule.outputs = {OutputKind::kSplit, OutputKind::kFirstPart}; break;
      case 1: rule.outputs = {OutputKind::kMeanLoss, OutputKind::kTotalWeight}; break;
      default: rule.outputs = {OutputKind::kPartialSum, OutputKind::kTotalWeight}; break;
    }
    return rule;
  }
  if (IsSplittableElementwiseMean(graph, d, op)) {
    const bool forward = ElementwiseLossPass(op.type) == LossPass::kForward;
    rule.outputs = {forward ? OutputKind::kMeanOfElements : OutputKind::kSplit};
    rule.count = static_cast<double>(graph.tensor(op.inputs[forward ? 0 : 1]).numel());  // self's
    rule.scales_gradient = !forward;
    return rule;
  }
  if (const auto count = SplittableMeanCount(graph, d, op)) {
    rule.outputs = {OutputKind::kMeanOfElements};
    rule.count = *count;
    return rule;
  }
  auto refuse = [&](std::string_view why) {
    rule.refusal = Refusal(op, why);
    return rule;
  };
  const OpSchema* schema = FindOpSchema(op.type);
  if (!schema) return refuse("is unknown to the registry");
  if (schema->random) return refuse("draws random numbers: its parts would not draw what the whole draws");
  if (!MutatedInputs(graph, op).empty()) return refuse("writes state that every part shares");
  const DimLinks& links = d.links(op.id);

  bool reads_dim = false, sums_dim = false, into = false;
  std::optional<size_t> contracted;  // an input whose d only is summed away (no output axis follows it)
  std::optional<std::string> unpaired;  // why a paired sum does not pair (refused after the other checks)
  for (size_t i = 0; i < op.inputs.size(); ++i) {
    const int axis = d.axis(op.inputs[i]);
    if (axis < 0) continue;
    reads_dim = true;
    bool linked = false, summed = false, whole = false;
    for (size_t o = 0; o < op.outputs.size(); ++o) linked |= d.Follows(op, links, i, o);
    for (const ReducedDim& r : links.reduced) {
      if (r.input != static_cast<int>(i) || r.dim != axis) continue;
      (r.combine == PartialCombine::kWhole ? whole : summed) = true;
      into |= r.combine == PartialCombine::kInto;
    }
    if (whole) return refuse(fmt::format("needs the whole of {} (input {} is reduced over it)", d.name(), i));
    if (!linked && !summed) {
      return refuse(fmt::format("reads input {} along {} without computing each part from its own part", i, d.name()));
    }
    if (summed && !linked) contracted = i;
    sums_dim |= summed;
    // An index summed over several inputs (ReducedDim::pair): each must carry
    // d on its axis of that index. A relative-position bias's table gradient,
    // whose grad_output carried the key positions on axis 0 and whose bucket
    // indices carried them on axis 1, summed the wrong rows into the table.
    for (const ReducedDim& r : links.reduced) {
      if (r.input != static_cast<int>(i) || r.dim != axis || r.pair < 0) continue;
      for (const ReducedDim& other : links.reduced) {
        if (other.pair != r.pair || other.input == r.input) continue;
        const int carried = d.axis(op.inputs.at(static_cast<size_t>(other.input)));
        if (carried != other.dim && !unpaired) {
          unpaired = fmt::format("sums input {} over {} with input {}, whose axis {} it pairs with does not carry it",
                                 i, d.name(), other.input, other.dim);
        }
      }
    }
    // A sum pairs this axis with an axis of another input the op sums too
    // (mm's two contracted axes; an embedding gradient's rows and the
    // indices that pick them): that one must be split alike. Another input
    // that does not carry d at all but is summed over an axis of this extent
    // is taken for the partner (an embedding gradient whose sequence came
    // from a broadcast, not from the token ids, failed to run in parts).
    const int64_t extent = graph.tensor(op.inputs[i]).shape.at(static_cast<size_t>(axis));
    for (const ReducedDim& r : links.reduced) {
      if (!summed || r.input == static_cast<int>(i) || r.combine == PartialCombine::kWhole) continue;
      const TensorId other = op.inputs.at(static_cast<size_t>(r.input));
      if (d.axis(other) < 0 && graph.tensor(other).shape.at(static_cast<size_t>(r.dim)) == extent) {
        return refuse(fmt::format("sums input {} over {} with input {}, whose axis {} it pairs with does not carry it",
                                  i, d.name(), r.input, r.dim));
      }
    }
  }
  if (schema->inplace && !op.inputs.empty() && !graph.tensor(graph.StorageRoot(op.inputs[0])).producer) {
    return refuse("writes in place into a tensor that exists before the step (a parameter or optimizer state)");
  }
  // A scatter into self that does not carry d: the parts add into it in turn.
  if (into && (op.outputs.size() != 1 || d.axis(op.inputs[0]) >= 0 || d.axis(op.outputs[0]) >= 0)) {
    return refuse(fmt::format("adds parts of {} into a result that carries it", d.name()));
  }
  if (into) {
    rule.outputs = {OutputKind::kInto};
    if (unpaired) return refuse(*unpaired);
    return rule;
  }
  if (schema->inplace && (op.inputs.empty() || d.axis(op.inputs[0]) < 0)) {
    return refuse("writes in place into a tensor that does not carry the dimension");
  }
  for (size_t o = 0; o < op.outputs.size(); ++o) {
    if (d.axis(op.outputs[o]) >= 0) {
      // Carried from an input, or made from scratch: by a factory or a
      // broadcast (expand) whose size attribute is rescaled, checked by
      // inference on every part. An op that makes d out of inputs that do
      // not carry it reads every part: refused.
      bool linked = false;
      for (size_t i = 0; i < op.inputs.size(); ++i) linked |= d.Follows(op, links, i, o);
      if (!linked && !op.inputs.empty() && op.type != "aten.expand") {
        return refuse(fmt::format("makes {} (output {}) out of inputs that do not carry it", d.name(), o));
      }
      rule.outputs.push_back(OutputKind::kSplit);
    } else if (sums_dim) {
      rule.outputs.push_back(OutputKind::kPartialSum);
    } else if (graph.tensor(op.outputs[o]).numel() == 0) {
      rule.outputs.push_back(OutputKind::kFirstPart);
    } else if (!reads_dim) {
      return refuse(fmt::format("does not touch {}", d.name()));
    } else {
      return refuse(fmt::format("output {} depends on all of {} but is not a sum over it", o, d.name()));
    }
  }
  const bool splits = std::find(rule.outputs.begin(), rule.outputs.end(), OutputKind::kSplit) != rule.outputs.end();
  if (!reads_dim && !splits) return refuse(fmt::format("does not touch {}", d.name()));
  // A contraction of d on one input while an output carries d (from another
  // input) pairs two different axes as one: an attention's scores times the
  // keys, where the keys' sequence joined the queries' group. A part of the
  // output would need every part of the contraction.
  if (contracted && splits) {
    return refuse(fmt::format("sums input {} over {} while an output carries it (two axes taken for one)", *contracted,
                              d.name()));
  }
  if (unpaired) return refuse(*unpaired);
  return rule;
}

// A dropout mask as PyTorch 1.13 decomposes dropout for capture:
// empty(x's shape) filled by bernoulli_(1 - p), scaled in place (div_ by
// 1 - p), read only by ops of S (the product in the forward, its gradient
// in the backward). Drawn whole before the parts, it would hold 4 bytes per
// element of every layer's mask across the parts (6 GiB of BERT-base's at
// batch 32, seq 512). Compacted, the draw fills a bool tensor (ATen draws
// one number per element whatever the dtype, as DrawMask relies on), and
// each part turns its slice back into the scaled float mask: the same
// values, 1 byte per element held whole.
struct MaskChain {
  // What the draw fills (aten.empty, bernoulli_ in place), or the template
  // it draws like (bernoulli.p out of place: an expand of `element`, a
  // one-element aten.empty; transform/out_of_place.h).
  OpId empty, draw;
  std::optional<OpId> element;
  std::vector<OpId> scales;  // scalar ops on the mask (div_ / mul_, or div / mul out of place), in order
  TensorId result;           // what S reads
};

std::vector<MaskChain> FindMaskChains(const Graph& graph, const RegionContext& region, const Along& d) {
  std::vector<MaskChain> chains;
  const auto outside = [&](OpId id) { return !region.in_s[id.index()]; };
  for (const Op& draw : graph.ops()) {
    const bool in_place = draw.type == "aten.bernoulli_" && draw.overload == "float";
    const bool drawn_like = draw.type == "aten.bernoulli" && draw.overload == "p";
    if (!outside(draw.id) || !(in_place || drawn_like) || draw.inputs.size() != 1 || draw.outputs.size() != 1) {
      continue;
    }
    const Tensor& noise = graph.tensor(draw.inputs[0]);
    if (!noise.producer || !outside(*noise.producer) || !IsFloatingPoint(noise.dtype) ||
        region.consumers[noise.id.index()].size() != 1 || !graph.tensor(draw.outputs[0]).strides.empty()) {
      continue;
    }
    const Op& alloc = graph.op(*noise.producer);
    std::optional<OpId> element;
    if (in_place) {
      if (!noise.strides.empty() || alloc.type != "aten.empty") continue;
    } else {
      if (alloc.type != "aten.expand" || alloc.inputs.size() != 1) continue;
      const Tensor& one = graph.tensor(alloc.inputs[0]);
      if (!one.shape.empty() || !one.producer || !outside(*one.producer) ||
          graph.op(*one.producer).type != "aten.empty" || region.consumers[one.id.index()].size() != 1) {
        continue;
      }
      element = *one.producer;
    }
    MaskChain chain{alloc.id, draw.id, element, {}, draw.outputs[0]};
    bool compactable = false;
    for (;;) {
      const std::vector<OpId>& readers = region.consumers[chain.result.index()];
      if (!readers.empty() && std::none_of(readers.begin(), readers.end(), outside)) {
        compactable = true;
        break;
      }
      if (readers.size() != 1) break;
      const Op& scale = graph.op(readers[0]);
      const bool scales = scale.type == "aten.div_" || scale.type == "aten.mul_" || scale.type == "aten.div" ||
                          scale.type == "aten.mul";
      if (!scales || scale.overload != "Scalar" || scale.inputs.size() != 1) break;
      chain.scales.push_back(scale.id);
      chain.result = scale.outputs[0];
    }
    const bool result = IsResult(graph, chain.result);
    if (compactable && !result && d.axis(chain.result) >= 0) chains.push_back(std::move(chain));
  }
  return chains;
}

// Builds the transformed graph: copies of the ops outside S, S's parts, the
// joins. Tensor ids of the input graph map to ids of the output graph per
// part (index 0..n-1) and for the whole (outside S).
class Builder : public Rewriter {
 public:
  Builder(const Graph& in, const Along& d, const FissionSpec& spec, std::vector<OpRule> rules,
          std::vector<bool> rebuilt, std::vector<MaskChain> masks)
      : Rewriter(in), d_(d), spec_(spec), rules_(std::move(rules)), rebuilt_(std::move(rebuilt)),
        masks_(std::move(masks)) {
    for (const MaskChain& m : masks_) {
      for (OpId id : {m.empty, m.draw}) mask_of_op_[id.index()] = &m;
      if (m.element) mask_of_op_[m.element->index()] = &m;
      for (OpId id : m.scales) mask_of_op_[id.index()] = &m;
      mask_of_result_[m.result.index()] = &m;
    }
  }

  // Ops outside S, copied; a compacted mask's (MaskChain) are drawn as a
  // bool tensor, which stands for the scaled mask until the parts expand it.
  void CopyOp(const Op& op) override {
    auto it = mask_of_op_.find(op.id.index());
    if (it == mask_of_op_.end()) return Rewriter::CopyOp(op);
    const MaskChain& m = *it->second;
    const Tensor& mask = in_.tensor(m.result);
    if (m.element && op.id == *m.element) {
      Op one = NewOp(op.name, "aten.empty", "memory_format", {},
                     {{"size", Shape{}}, {"dtype", std::string(ToString(DType::kBool))}}, op.phase);
      SetWhole(op.outputs[0], EmitNamed(std::move(one), in_.tensor(op.outputs[0])));
    } else if (m.element && op.id == m.empty) {
      Op expand = NewOp(op.name, "aten.expand", "", {Whole(op.inputs[0])}, {{"size", mask.shape}}, op.phase);
      SetWhole(op.outputs[0], EmitNamed(std::move(expand), in_.tensor(op.outputs[0])));
    } else if (op.id == m.empty) {
      Op empty = NewOp(op.name, "aten.empty", "memory_format", {},
                       {{"size", mask.shape}, {"dtype", std::string(ToString(DType::kBool))}}, op.phase);
      SetWhole(op.outputs[0], EmitNamed(std::move(empty), in_.tensor(op.outputs[0])));
    } else if (op.id == m.draw) {
      // Out of place: remat may drop the whole mask and draw it again.
      Op draw = NewOp(op.name, "aten.bernoulli", "p", {Whole(op.inputs[0])}, {{"p", DoubleAttr(op, "p", 0.5)}},
                      op.phase);
      SetWhole(m.result, EmitNamed(std::move(draw), in_.tensor(op.outputs[0])));
    }  // the scales run on each part (ExpandMask)
  }

  // Runs every op of S (in program order) once per part, then joins.
  void EmitParts(const std::vector<OpId>& s_ops, const std::vector<bool>& used_outside) {
    const int64_t n = spec_.parts, length = d_.length();
    s_first_ = s_ops.front();
    in_s_.assign(in_.num_ops(), false);
    for (OpId id : s_ops) in_s_[id.index()] = true;
    std::vector<std::vector<TensorId>> parts_of(in_.num_tensors());  // S outputs: one per part
    std::vector<TensorId> sums(in_.num_tensors());                    // running partial sums
    // nll losses: the total weight, counted once from the targets.
    std::unordered_map<uint32_t, TensorId> total_weight;  // input-graph tensor -> its count
    for (OpId id : s_ops) {
      if (rules_[id.index()].counts_targets()) total_weight[in_.op(id).outputs[1].value] = CountTargets(in_.op(id));
    }
    // Dropout masks: drawn whole.
    for (OpId id : s_ops) {
      if (rules_[id.index()].hoists_mask()) DrawMask(in_.op(id));
    }
    // A mean's gradient over the whole's element count, for its parts' sums.
    std::unordered_map<uint32_t, TensorId> scaled_gradient;  // op id -> grad_output / count
    for (OpId id : s_ops) {
      const OpRule& rule = rules_[id.index()];
      if (rule.scales_gradient) scaled_gradient[id.value] = GradientOverCount(in_.op(id), rule.count);
    }
    CompactViews(s_ops);
    for (int64_t k = 0; k < n; ++k) {
      const int64_t lo = k * (length / n) + std::min(k, length % n);
      const int64_t hi = lo + length / n + (k < length % n ? 1 : 0);
      std::unordered_map<uint32_t, TensorId> part(total_weight);  // input-graph tensor -> this part's tensor
      for (OpId id : s_ops) {
        const Op& op = in_.op(id);
        const OpRule& rule = rules_[id.index()];
        Op clone = NewOp(PartName(op.name, k), op.type, op.overload, {}, op.attrs, op.phase);
        // An index by 0, 1, ..., n-1 into self's rows along d (`h[arange(B),
        // last]`): on a part, 0, 1, ... into the part's rows.
        const bool rebases = IsIndexing(op) && d_.axis(op.inputs[0]) >= 0;
        for (TensorId t : op.inputs) {
          if (rebases && t != op.inputs[0] && d_.axis(t) >= 0 && IsIota(in_, t)) {
            clone.inputs.push_back(Iota(hi - lo, in_.tensor(t).dtype, op.phase));
            continue;
          }
          if (auto it = part.find(t.value); it != part.end()) {
            clone.inputs.push_back(it->second);
          } else if (d_.axis(t) >= 0) {
            const auto mask = mask_of_result_.find(t.index());
            clone.inputs.push_back(mask == mask_of_result_.end() ? Slice(t, lo, hi, k)
                                                                  : ExpandMask(*mask->second, lo, hi, k));
            part[t.value] = clone.inputs.back();
          } else {
            clone.inputs.push_back(Whole(t));
          }
        }
        if (rule.mean_loss()) clone.attrs["reduction"] = int64_t{2};  // sum
        if (rule.mean_of_elements()) {
          if (op.type == "aten.mean") {
            clone.type = "aten.sum";
            clone.overload = op.overload == "dim" ? "dim_IntList" : "";
          } else {
            clone.attrs["reduction"] = int64_t{2};  // sum
          }
        }
        if (rule.scales_gradient) {
          clone.inputs[0] = scaled_gradient.at(id.value);
          clone.attrs["reduction"] = int64_t{2};
        }
        if (rule.into()) {  // adds part k into the parts before it, in the whole's order
          const TensorId orig = op.outputs[0];
          if (k > 0) clone.inputs[0] = sums[orig.index()];
          sums[orig.index()] = EmitClone(op, std::move(clone), hi - lo, k)[0];
          continue;
        }
        if (k > 0 && AccumulatesInGemm(op, rule, used_outside)) {
          const TensorId orig = op.outputs[0];
          sums[orig.index()] = AddProduct(sums[orig.index()], std::move(clone), op, k == n - 1);
          part[orig.value] = sums[orig.index()];  // read by no op of S (a partial sum only leaves S)
          continue;
        }
        const std::vector<TensorId> outs = rule.hoists_mask() ? ApplyMask(op, clone.inputs[0], lo, hi, k)
                                                              : EmitClone(op, std::move(clone), hi - lo, k);
        for (size_t o = 0; o < outs.size(); ++o) {
          const TensorId orig = op.outputs[o];
          if (rule.outputs[o] == OutputKind::kTotalWeight) continue;  // the count made before the parts
          part[orig.value] = outs[o];
          if (rule.outputs[o] == OutputKind::kHoisted || !used_outside[orig.index()]) continue;
          if (rule.outputs[o] == OutputKind::kSplit) {
            parts_of[orig.index()].push_back(outs[o]);
          } else if (rule.outputs[o] == OutputKind::kFirstPart) {
            if (k == 0) sums[orig.index()] = outs[o];
          } else {
            const bool whole = rule.outputs[o] == OutputKind::kPartialSum && k == n - 1;
            sums[orig.index()] = k == 0 ? outs[o] : Add(sums[orig.index()], outs[o], op, orig, whole);
          }
        }
      }
    }
    // Outputs that carry d: the parts side by side.
    for (OpId id : s_ops) {
      const Op& op = in_.op(id);
      for (size_t o = 0; o < op.outputs.size(); ++o) {
        const TensorId orig = op.outputs[o];
        if (!used_outside[orig.index()]) continue;
        if (rebuilt_[orig.index()]) {
          Rebuild(orig);
          continue;
        }
        switch (rules_[id.index()].outputs[o]) {
          case OutputKind::kPartialSum:
          case OutputKind::kInto:
          case OutputKind::kFirstPart: SetWhole(orig, sums[orig.index()]); continue;
          case OutputKind::kTotalWeight: SetWhole(orig, total_weight.at(orig.value)); continue;
          case OutputKind::kHoisted: continue;  // drawn whole before the parts
          case OutputKind::kMeanLoss: {
            Op div = NewOp(fmt::format("{}.mean", op.name), "aten.div", "Tensor",
                           {sums[orig.index()], total_weight.at(op.outputs[1].value)}, {}, op.phase);
            SetWhole(orig, EmitNamed(std::move(div), in_.tensor(orig)));
            continue;
          }
          case OutputKind::kMeanOfElements: {
            Op div = NewOp(fmt::format("{}.mean", op.name), "aten.div", "Scalar", {sums[orig.index()]},
                           {{"other", rules_[id.index()].count}}, op.phase);
            SetWhole(orig, EmitNamed(std::move(div), in_.tensor(orig)));
            continue;
          }
          case OutputKind::kSplit: break;
        }
        ++record_.joined_outputs;
        if (d_.outer(orig) > 1) {
          SetWhole(orig, JoinBlocks(op, o, parts_of[orig.index()]));
          continue;
        }
        Join(orig, parts_of[orig.index()], d_.axis(orig), fmt::format("{}.join{}", op.name, o), op.phase);
      }
    }
  }

  FissionRecord& record() { return record_; }
 private:

  // A part of an op of S: inferred again, with shape attributes rescaled
  // when the first inference disagrees with the part's expected types.
  std::vector<TensorId> EmitClone(const Op& op, Op clone, int64_t part_length, int64_t k) {
    // A part is laid out in its own shape, not as the whole it is part of: a
    // view that relies on the whole's layout (a transposed whole viewed flat) is a
    // reshape, the same values (a perceiver's latents recomputed in parts failed
    // in aten.view: "view size is not compatible with input tensor's size and stride").
    AsReshape(clone);
    const OpSchema* schema = FindOpSchema(clone.type);
    std::vector<TensorType> expected;
    int scaled_axis = -1;  // output 0's axis along d, its extent whole and in the part
    int64_t whole_extent = 0, part_extent = 0;
    for (TensorId t : op.outputs) {
      const Tensor& orig = in_.tensor(t);
      TensorType type{orig.shape, orig.dtype};
      if (const int axis = d_.axis(t); axis >= 0) {
        type.shape[axis] = d_.Extent(t, part_length);
        if (scaled_axis < 0 && t == op.outputs[0]) {
          scaled_axis = axis;
          whole_extent = d_.Extent(t, d_.length());
          part_extent = type.shape[axis];
        }
      }
      expected.push_back(type);
    }
    auto infer = [&]() -> std::optional<std::vector<TensorType>> {
      try {
        return InferOutputTypes(*schema, out_, clone);
      } catch (const Error&) {
        return std::nullopt;
      }
    };
    auto types = infer();
    if ((!types || *types != expected) && scaled_axis >= 0) {
      RescaleShapeAttrs(clone, scaled_axis, whole_extent, part_extent);
      types = infer();
    }
    if (!types || *types != expected) {
      Fail("fission: op {} ({}) does not keep its meaning on a part of {}: its shapes do not follow the part",
           Quote(op.name), op.qualified_type(), d_.name());
    }
    std::vector<const Tensor*> like;
    for (TensorId t : op.outputs) like.push_back(&in_.tensor(t));
    auto ids = Emit(std::move(clone), like, fmt::format(".part{}", k));
    // Parts are intermediates even where the whole is a result of the step.
    for (TensorId id : ids) {
      Tensor& t = out_.mutable_tensor(id);
      if (t.role == TensorRole::kOutput) t.role = TensorRole::kActivation;
    }
    return ids;
  }

  // The whole of view `t` of a tensor from outside S: its chain of views
  // copied after the parts.
  TensorId Rebuild(TensorId t) {
    if (HasWhole(t)) return Whole(t);
    const auto producer = in_.tensor(t).producer;
    if (!producer) return Whole(t);
    const Op& op = in_.op(*producer);
    const OpSchema* schema = FindOpSchema(op.type);
    if (!schema || !schema->is_view()) return Whole(t);  // not a view: only its parts exist
    for (TensorId input : op.inputs) Rebuild(input);
    CopyOp(op);
    return Whole(t);
  }

  // This part of input `t` (of the input graph) along `axis`: a view when
  // the part is contiguous in memory (the leading axis, or only extent-1
  // axes before it), else a contiguous copy of it.
  TensorId Slice(TensorId t, int64_t lo, int64_t hi, int64_t k) {
    const Tensor& orig = in_.tensor(t);
    const int axis = d_.axis(t);
    const int64_t f = d_.factor(t);
    if (d_.outer(t) > 1) return SliceBlocks(t, lo, hi, k);
    const auto compact = compacted_.find(t.value);  // a dense copy made before the parts (CompactViews)
    const bool compacted = compact != compacted_.end();
    Op slice = NewOp(fmt::format("{}.slice{}", orig.name, k), "aten.slice", "Tensor",
                     {compacted ? compact->second : Whole(t)},
                     {{"dim", int64_t{axis}}, {"start", lo * f}, {"end", hi * f}, {"step", int64_t{1}}},
                     orig.producer ? in_.op(*orig.producer).phase : Phase::kForward);
    Tensor like = orig;
    like.role = orig.role == TensorRole::kOutput ? TensorRole::kActivation : orig.role;
    if (compacted) like.strides.clear();
    TensorId view = Emit(slice, {&like}, fmt::format(".part{}", k))[0];
    ++record_.sliced_inputs;
    bool contiguous = compacted || orig.strides.empty();
    for (int a = 0; a < axis && contiguous; ++a) contiguous = orig.shape[a] == 1;
    if (contiguous) return view;
    like.role = IsSourceRole(like.role) ? TensorRole::kActivation : like.role;
    return Contiguous(view, like, slice.phase, fmt::format("{}.contiguous{}", orig.name, k),
                      fmt::format(".part{}.contiguous", k));
  }

  // This part of input `t` whose axis holds d in o > 1 blocks (the heads in
  // [B*heads, ...]): viewed as [o, L*f], sliced along the second, copied
  // contiguous and viewed as [o * (hi - lo) * f]. The whole is made
  // contiguous first when it is not.
  TensorId SliceBlocks(TensorId t, int64_t lo, int64_t hi, int64_t k) {
    const Tensor& orig = in_.tensor(t);
    const int axis = d_.axis(t);
    const int64_t o = d_.outer(t), f = d_.factor(t);
    const Phase phase = orig.producer ? in_.op(*orig.producer).phase : Phase::kForward;
    Tensor like = orig;
    like.role = IsSourceRole(orig.role) || orig.role == TensorRole::kOutput ? TensorRole::kActivation : orig.role;
    like.strides.clear();
    TensorId whole = Whole(t);
    if (!orig.strides.empty()) {
      whole = Contiguous(whole, like, phase, fmt::format("{}.dense{}", orig.name, k), fmt::format(".dense{}", k));
    }
    Shape blocks = orig.shape;
    blocks[axis] = d_.length() * f;
    blocks.insert(blocks.begin() + axis, o);
    const TensorId viewed = View(whole, blocks, like, phase, fmt::format(".blocks{}", k));
    Op slice = NewOp(fmt::format("{}.slice{}", orig.name, k), "aten.slice", "Tensor", {viewed},
                     {{"dim", int64_t{axis + 1}}, {"start", lo * f}, {"end", hi * f}, {"step", int64_t{1}}}, phase);
    const TensorId part = Emit(slice, {&like}, fmt::format(".part{}", k))[0];
    ++record_.sliced_inputs;
    const TensorId dense = Contiguous(part, like, phase, fmt::format("{}.contiguous{}", orig.name, k),
                                      fmt::format(".part{}.contiguous", k));
    Shape merged = orig.shape;
    merged[axis] = d_.Extent(t, hi - lo);
    return View(dense, merged, like, phase, fmt::format(".part{}.merged", k));
  }

  // The parts of output `t` (o > 1 blocks along its axis) joined: each
  // viewed as [o, part * f], concatenated along the second, viewed whole.
  TensorId JoinBlocks(const Op& op, size_t o_index, const std::vector<TensorId>& parts) {
    const Tensor& orig = in_.tensor(op.outputs[o_index]);
    const int axis = d_.axis(orig.id);
    const int64_t o = d_.outer(orig.id);
    Tensor like = orig;
    like.role = orig.role == TensorRole::kOutput ? TensorRole::kActivation : orig.role;
    like.strides.clear();
    std::vector<TensorId> blocks;
    for (size_t k = 0; k < parts.size(); ++k) {
      Shape shape = out_.tensor(parts[k]).shape;
      shape[axis] /= o;
      shape.insert(shape.begin() + axis, o);
      blocks.push_back(View(parts[k], shape, like, op.phase, fmt::format(".part{}.blocks", k)));
    }
    Op cat = NewOp(fmt::format("{}.join{}", op.name, o_index), "aten.cat", "", blocks, {{"dim", int64_t{axis + 1}}},
                   op.phase);
    const TensorId joined = Emit(cat, {&like}, ".blocks")[0];
    Op view = NewOp(fmt::format("{}.join{}.merged", op.name, o_index), "aten.reshape", "", {joined},
                    {{"shape", orig.shape}}, op.phase);
    return EmitNamed(std::move(view), orig);
  }

  // `t` as `shape`: aten.reshape, a view of a contiguous tensor (a part
  // emitted here may be a permuted view, which reshape copies).
  TensorId View(TensorId t, const Shape& shape, const Tensor& like, Phase phase, const std::string& suffix) {
    Op view = NewOp(like.name + suffix, "aten.reshape", "", {t}, {{"shape", shape}}, phase);
    return Emit(view, {&like}, suffix)[0];
  }

  // A contiguous copy of `t` (op `name`, its result named like `like` +
  // `suffix`).
  TensorId Contiguous(TensorId t, const Tensor& like, Phase phase, const std::string& name,
                      const std::string& suffix) {
    Op clone = NewOp(name, "aten.clone", "", {t}, {{"memory_format", std::string("contiguous_format")}}, phase);
    return Emit(clone, {&like}, suffix)[0];
  }

  // The mask of native_dropout `op`, drawn whole: bernoulli(template, 1 - p)
  // over an uninitialized bool template of x's shape. ATen draws one number
  // per element whatever the dtype (empty_like(x).bernoulli_(1 - p) != 0, as
  // native_dropout does it, gives the same mask; checked against torch by the
  // executor tests), so the mask is one pass of 1 byte per element. Drawn out
  // of place, it stays recomputable (the executor replays the generator's
  // state): remat may drop a mask and draw it again before its backward.
  void DrawMask(const Op& op) {
    const Tensor& x = in_.tensor(op.inputs[0]);
    const Tensor& mask = in_.tensor(op.outputs[1]);
    const double p = DoubleAttr(op, "p", 0.5);
    Op empty = NewOp(fmt::format("{}.noise", op.name), "aten.empty", "memory_format", {},
                     {{"size", x.shape}, {"dtype", std::string(ToString(mask.dtype))}}, op.phase);
    Tensor like = mask;
    like.role = TensorRole::kActivation;
    like.strides.clear();
    const TensorId shape = Emit(empty, {&like}, ".noise")[0];
    Op draw = NewOp(fmt::format("{}.draw", op.name), "aten.bernoulli", "p", {shape}, {{"p", 1.0 - p}}, op.phase);
    SetWhole(mask.id, EmitNamed(std::move(draw), mask));
  }

  // A part of native_dropout `op`: (x_k * mask_k * 1/(1-p), mask_k), in one
  // op: native_dropout_backward computes exactly that product (the same
  // kernel order as the forward's input.mul(mask).mul_(scale); checked
  // against torch by the executor tests).
  std::vector<TensorId> ApplyMask(const Op& op, TensorId x_part, int64_t lo, int64_t hi, int64_t k) {
    const TensorId mask_part = Slice(op.outputs[1], lo, hi, k);
    const double p = DoubleAttr(op, "p", 0.5);
    Op apply = NewOp(PartName(op.name, k), "aten.native_dropout_backward", "", {x_part, mask_part},
                     {{"scale", p == 1 ? 0.0 : 1.0 / (1.0 - p)}}, op.phase);
    const TensorId kept = Emit(apply, {&in_.tensor(op.outputs[0])}, fmt::format(".part{}", k))[0];
    return {kept, mask_part};
  }

  // The loss's targets `t` whole, before the parts: the whole S reads, or
  // the reshapes, slices and copies that make them inside S applied again to
  // the whole they start from (labels [B, H, W] flattened inside S; a
  // language model's next tokens `x[:, 1:].reshape(-1)`, a slice of the
  // tokens S splits, copied contiguous, then viewed).
  TensorId WholeTargets(TensorId t) {
    static const std::set<std::string_view> kAgain = {
        "aten.view",    "aten._unsafe_view", "aten.reshape",   "aten.alias",   "aten.detach",
        "aten.clone",   "aten.contiguous",   "aten.slice",     "aten.select",  "aten.narrow",
        "aten.squeeze", "aten.unsqueeze",    "aten.transpose", "aten.permute", "aten.t"};
    std::vector<OpId> chain;  // from t back to what has a whole
    while (!HasWhole(t)) {
      const auto producer = in_.tensor(t).producer;
      if (!producer) break;
      const Op& op = in_.op(*producer);
      if (!kAgain.contains(op.type) || op.inputs.size() != 1 || op.outputs.size() != 1) break;
      chain.push_back(*producer);
      t = op.inputs[0];
    }
    TensorId whole = Whole(t);  // fails clearly where the chain ends at a part
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      const Op& op = in_.op(*it);
      Tensor like = in_.tensor(op.outputs[0]);
      like.role = TensorRole::kActivation;
      whole = Emit(NewOp(fmt::format("{}.targets", op.name), op.type, op.overload, {whole}, op.attrs, op.phase),
                   {&like}, ".targets")[0];
    }
    return whole;
  }

  // The total weight of nll_loss_forward, made before the parts:
  // sum(target != ignore_index) in the loss's dtype, or with class weights
  // sum(weight[target]) over the targets not ignored.
  TensorId CountTargets(const Op& loss) {
    const Tensor& target = in_.tensor(loss.inputs[1]);
    const Tensor& weight = in_.tensor(loss.outputs[1]);
    const TensorId whole = WholeTargets(loss.inputs[1]);
    const int64_t ignore_index = *IntAttr(loss, "ignore_index");
    Tensor counted = target;
    counted.role = TensorRole::kActivation;
    counted.alias_of.reset();
    counted.strides.clear();
    TensorId summed;
    if (loss.inputs.size() < 3) {
      Op ne = NewOp(fmt::format("{}.counted", loss.name), "aten.ne", "Scalar", {whole},
                    {{"other", ignore_index}}, loss.phase);
      summed = Emit(ne, {&counted}, ".counted")[0];
    } else {
      // weight.index_select(0, target with ignored targets at class 0), the
      // ignored ones' weights then zeroed.
      TensorId flat = whole;
      if (counted.shape.size() != 1) {
        Op view = NewOp(fmt::format("{}.targets", loss.name), "aten.view", "", {flat},
                        {{"size", Shape{counted.numel()}}}, loss.phase);
        counted.shape = {counted.numel()};
        flat = Emit(view, {&counted}, ".targets")[0];
      }
      Op eq = NewOp(fmt::format("{}.ignored", loss.name), "aten.eq", "Scalar", {flat}, {{"other", ignore_index}},
                    loss.phase);
      const TensorId ignored = Emit(eq, {&counted}, ".ignored")[0];
      Op safe = NewOp(fmt::format("{}.classes", loss.name), "aten.masked_fill", "Scalar", {flat, ignored},
                      {{"value", int64_t{0}}}, loss.phase);
      const TensorId classes = Emit(safe, {&counted}, ".classes")[0];
      Op pick = NewOp(fmt::format("{}.weights", loss.name), "aten.index_select", "", {Whole(loss.inputs[2]), classes},
                      {{"dim", int64_t{0}}}, loss.phase);
      const TensorId picked = Emit(pick, {&counted}, ".weights")[0];
      Op zero = NewOp(fmt::format("{}.counted", loss.name), "aten.masked_fill", "Scalar", {picked, ignored},
                      {{"value", 0.0}}, loss.phase);
      summed = Emit(zero, {&counted}, ".counted")[0];
    }
    Op sum = NewOp(fmt::format("{}.total_weight", loss.name), "aten.sum", "", {summed},
                   {{"dtype", std::string(ToString(weight.dtype))}}, loss.phase);
    return EmitNamed(std::move(sum), weight);
  }

  // grad_output / count for an element-wise loss's backward `back` (a mean's): made once,
  // before the parts, which run with reduction "sum" on it.
  TensorId GradientOverCount(const Op& back, double count) {
    Tensor scaled = in_.tensor(back.inputs[0]);
    scaled.role = TensorRole::kActivation;
    scaled.alias_of.reset();
    scaled.strides.clear();
    Op div = NewOp(fmt::format("{}.over_count", back.name), "aten.div", "Scalar", {Whole(back.inputs[0])},
                   {{"other", count}}, back.phase);
    return Emit(div, {&scaled}, ".over_count")[0];
  }

  // acc += part: the running sum of a partial result (named like the whole
  // once the last part is in).
  TensorId Add(TensorId acc, TensorId part, const Op& op, TensorId orig, bool last) {
    // In place into part 0's result (which no op of S reads): the running
    // sum and one part's result are alive, never a third copy.
    return EmitSum(NewOp(fmt::format("{}.sum", op.name), "aten.add_", "Tensor", {acc, part}, {}, op.phase), orig,
                   last);
  }

  // `add`, an op that adds a part into the running sum of `orig`: named like
  // the whole once the last part is in.
  TensorId EmitSum(Op add, TensorId orig, bool last) {
    if (last) ++record_.summed_outputs;
    return Emit(std::move(add), {&in_.tensor(orig)}, last ? "" : ".partial")[0];
  }

  // Whether `op`'s parts after the first add their result to the running
  // sum in a GEMM (AddProduct): one kernel instead of the op and an add_.
  // The partial result is never written and read back (a GEMM reads and
  // writes the sum in its epilogue), and there is one launch less per part:
  //   a weight gradient mm(dy_k^T, x_k)      -> addmm_(sum, dy_k^T, x_k)
  //   a bias gradient sum(dy_k, [0], keepdim) -> addmm_(sum, ones[1, rows_k], dy_k)
  bool AccumulatesInGemm(const Op& op, const OpRule& rule, const std::vector<bool>& used_outside) const {
    if (op.outputs.size() != 1 || rule.outputs[0] != OutputKind::kPartialSum || !used_outside[op.outputs[0].index()]) {
      return false;
    }
    if (op.type == "aten.mm") return true;
    return IsColumnSum(op);
  }

  // sum(x, [0], keepdim=True) of a matrix x [rows, cols] (no dtype change).
  bool IsColumnSum(const Op& op) const {
    if (op.type != "aten.sum" || op.inputs.size() != 1 || op.attrs.size() != 2) return false;
    const auto dim = op.attrs.find("dim"), keep = op.attrs.find("keepdim");
    if (dim == op.attrs.end() || keep == op.attrs.end()) return false;
    const auto* dims = std::get_if<std::vector<int64_t>>(&dim->second);
    const bool* keepdim = std::get_if<bool>(&keep->second);
    const Tensor& x = in_.tensor(op.inputs[0]);
    return dims && *dims == std::vector<int64_t>{0} && keepdim && *keepdim && x.shape.size() == 2 &&
           x.dtype == in_.tensor(op.outputs[0]).dtype;
  }

  // sum += part k of `op` (an mm or a column sum, AccumulatesInGemm);
  // `clone` is part k of `op`.
  TensorId AddProduct(TensorId acc, Op clone, const Op& op, bool last) {
    const TensorId x = clone.inputs[0];
    std::vector<TensorId> inputs =
        op.type == "aten.mm"
            ? std::vector<TensorId>{acc, x, clone.inputs[1]}
            : std::vector<TensorId>{acc, Ones(out_.tensor(x).shape[0], out_.tensor(x).dtype, op.phase), x};
    return EmitSum(NewOp(clone.name, "aten.addmm_", "", std::move(inputs), {}, op.phase), op.outputs[0], last);
  }

  static bool IsIndexing(const Op& op) {
    return op.type == "aten.index" || op.type == "aten.index_put" || op.type == "aten.index_put_" ||
           op.type == "aten._index_put_impl_";
  }

  // 0, 1, ..., n-1 of `dtype` (made once per length and dtype, where first
  // needed).
  TensorId Iota(int64_t n, DType dtype, Phase phase) {
    const std::string key = fmt::format("iota:{}:{}", n, ToString(dtype));
    if (auto it = constants_.find(key); it != constants_.end()) return it->second;
    Op iota = NewOp("fission.iota", "aten.arange", "", {}, {{"end", n}, {"dtype", std::string(ToString(dtype))}}, phase);
    Tensor row;  // what Emit names and marks the result by
    row.name = "fission.iota";
    row.role = TensorRole::kActivation;
    row.dtype = dtype;
    return constants_[key] = Emit(std::move(iota), {&row}, fmt::format(".{}", n))[0];
  }

  // A row of ones [1, rows] of `dtype` (made once per length and dtype,
  // where first needed): the left factor of a column sum as a GEMM.
  TensorId Ones(int64_t rows, DType dtype, Phase phase) {
    const std::string key = fmt::format("{}:{}", rows, ToString(dtype));
    if (auto it = constants_.find(key); it != constants_.end()) return it->second;
    Op ones = NewOp("fission.ones", "aten.full", "", {},
                    {{"size", Shape{1, rows}}, {"fill_value", 1.0}, {"dtype", std::string(ToString(dtype))}}, phase);
    Tensor row;  // what Emit names and marks the result by
    row.name = "fission.ones";
    row.role = TensorRole::kActivation;
    return constants_[key] = Emit(std::move(ones), {&row}, fmt::format(".{}", rows))[0];
  }

  // Part k of a compacted mask: its slice of the bool draw as the mask's
  // float dtype, scaled in place as the whole was (the same kernels on the
  // same values).
  TensorId ExpandMask(const MaskChain& m, int64_t lo, int64_t hi, int64_t k) {
    const Tensor& mask = in_.tensor(m.result);
    const Tensor& drawn = in_.tensor(in_.op(m.draw).outputs[0]);
    const TensorId bits = Slice(m.result, lo, hi, k);
    Op to = NewOp(PartName(in_.op(m.draw).name, k), "aten._to_copy", "", {bits},
                  {{"dtype", std::string(ToString(mask.dtype))}}, in_.op(m.draw).phase);
    TensorId part = Emit(std::move(to), {&drawn}, fmt::format(".part{}", k))[0];
    for (OpId id : m.scales) {
      const Op& scale = in_.op(id);
      Op clone = NewOp(PartName(scale.name, k), scale.type, scale.overload, {part}, scale.attrs,
                       scale.phase);
      part = Emit(std::move(clone), {&in_.tensor(scale.outputs[0])}, fmt::format(".part{}", k))[0];
    }
    return part;
  }

  // Views that would hold larger storages through the parts, copied dense
  // before them (ViewHoldsMore).
  //
  // View `t` (from outside S) of a storage at least twice its size
  // that the step made and that nothing reads after S begins but through
  // `t`: a channel slice of a concatenation's gradient, a U-Net's skip
  // connection. Sliced as it is, each part's slice would hold the whole
  // storage until the last part; copied dense once before the parts, the
  // storage can die before them. (A view the storage outlives anyway is
  // sliced as it is: a copy would only add its bytes.)
  void CompactViews(const std::vector<OpId>& s_ops) {
    for (OpId id : s_ops) {
      for (TensorId t : in_.op(id).inputs) {
        const auto& producer = in_.tensor(t).producer;
        if ((producer && in_s_[producer->index()]) || d_.axis(t) < 0 || d_.outer(t) > 1 ||
            mask_of_result_.count(t.index()) || compacted_.count(t.value) || !ViewHoldsMore(t)) {
          continue;
        }
        const Tensor& orig = in_.tensor(t);
        Tensor like = orig;
        like.role = IsSourceRole(like.role) || like.role == TensorRole::kOutput ? TensorRole::kActivation : like.role;
        like.strides.clear();
        like.alias_of.reset();
        compacted_[t.value] = Contiguous(Whole(t), like, producer ? in_.op(*producer).phase : Phase::kForward,
                                         fmt::format("{}.compact", orig.name), ".compact");
      }
    }
  }
  bool ViewHoldsMore(TensorId t) const {
    const TensorId root = in_.StorageRoot(t);
    const Tensor& base = in_.tensor(root);
    if (root == t || IsSourceRole(base.role) || base.role == TensorRole::kOutput) return false;
    if (base.size_bytes() < 2 * in_.tensor(t).size_bytes()) return false;
    for (const Op& op : in_.ops()) {
      if (in_s_[op.id.index()] || op.id.index() < s_first_.index()) continue;
      for (TensorId u : op.inputs) {
        if (in_.StorageRoot(u) == root) return false;
      }
    }
    for (TensorId out : in_.outputs) {
      if (in_.StorageRoot(out) == root) return false;
    }
    return true;
  }

  std::unordered_map<std::string, TensorId> constants_;  // Ones and Iota: by length and dtype
  std::unordered_map<uint32_t, TensorId> compacted_;  // by input-graph tensor: its dense copy (ViewHoldsMore)
  OpId s_first_;                                     // S's first op (program order)
  std::vector<bool> in_s_;                           // by input-graph op
  const Along& d_;
  const FissionSpec& spec_;
  std::vector<OpRule> rules_;
  std::vector<bool> rebuilt_;  // by input-graph tensor: a view of an outside tensor, made again whole
  std::vector<MaskChain> masks_;  // compacted dropout masks (FindMaskChains)
  std::unordered_map<size_t, const MaskChain*> mask_of_op_, mask_of_result_;  // by op / tensor index
  FissionRecord record_;
};

// ones_like(x), zeros_like(x) and empty_like(x) read only x's shape and
// dtype, new_zeros / new_ones / new_empty / new_full(x, size) only its
// dtype: as aten.full / aten.empty they no longer depend on x. The seed of
// the backward pass, ones_like(loss), otherwise makes every part's backward
// wait for the whole loss; new_zeros(x) before a gather's scatter_add (its
// backward) was a barrier to every dim.
Graph DetachShapeOnlyReads(const Graph& graph) {
  Graph g = graph;
  for (const Op& op : graph.ops()) {
    const bool ones = op.type == "aten.ones_like" || op.type == "aten.new_ones";
    const bool zeros = op.type == "aten.zeros_like" || op.type == "aten.new_zeros";
    const bool empty = op.type == "aten.empty_like" || op.type == "aten.new_empty";
    const bool full_of = op.type == "aten.new_full";
    if (!(ones || zeros || empty || full_of) || op.outputs.size() != 1) continue;
    const Tensor& out = graph.tensor(op.outputs[0]);
    if (out.alias_of || !out.strides.empty()) continue;
    Op& full = g.mutable_op(op.id);
    full.overload.clear();
    full.inputs.clear();
    if (empty) {
      full.type = "aten.empty";
      full.overload = "memory_format";
      full.attrs = {{"size", out.shape}, {"dtype", std::string(ToString(out.dtype))}};
      continue;
    }
    const AttrValue fill = full_of ? op.attrs.at("fill_value") : AttrValue{ones ? 1.0 : 0.0};
    full.type = "aten.full";
    full.attrs = {{"size", out.shape}, {"fill_value", fill}, {"dtype", std::string(ToString(out.dtype))}};
  }
  return g;
}

}  // namespace

std::string PartName(std::string_view name, int64_t k) { return fmt::format("{}.part{}", name, k); }

std::optional<std::pair<std::string, int64_t>> SplitPartName(std::string_view name) {
  const size_t dot = name.rfind(".part");
  if (dot == std::string_view::npos || dot + 5 == name.size()) return std::nullopt;
  int64_t k = 0;
  for (char c : name.substr(dot + 5)) {
    if (c < '0' || c > '9' || k > (int64_t{1} << 40)) return std::nullopt;
    k = 10 * k + (c - '0');
  }
  return std::pair{std::string(name.substr(0, dot)), k};
}

std::string ToString(const FissionRecord& r) {
  std::string dim = r.dim_kind.empty() ? r.dim_name : fmt::format("{} ({})", r.dim_name, r.dim_kind);
  return fmt::format("{} x{} over {} ops ({} .. {})", dim, r.parts, r.num_ops, r.first_op, r.last_op);
}

std::vector<std::optional<std::string>> Refusals(const Graph& original, const DimensionGraph& dims, int dim) {
  const Graph graph = DetachShapeOnlyReads(original);
  const Along d(graph, dims, dim);
  std::vector<std::optional<std::string>> refusals;
  for (const Op& op : graph.ops()) refusals.push_back(Classify(graph, d, op).refusal);
  return refusals;
}

std::optional<std::string> WhyNotSplittable(const Graph& graph, const DimensionGraph& dims, OpId op, int dim) {
  return Refusals(graph, dims, dim).at(op.index());
}

FissionResult ApplyFission(const Graph& original, const DimensionGraph& dims, const FissionSpec& spec) {
  const Graph graph = DetachShapeOnlyReads(original);
  if (spec.dim < 0 || spec.dim >= static_cast<int>(dims.dims.size())) {
    Fail("fission: dimension {} does not exist (the graph has {})", spec.dim, dims.dims.size());
  }
  const Dimension& d = dims.dims[spec.dim];
  if (spec.parts < 2 || spec.parts > d.length) {
    Fail("fission: {} parts of {} (length {}): need 2 to {}", spec.parts, d.name, d.length, d.length);
  }
  const std::string what = fmt::format("fission along {}", d.name);
  RegionContext region = AnalyzeRegion(graph, spec.ops, what);
  const std::vector<OpId>& s_ops = region.s_ops;
  const std::vector<bool>& in_s = region.in_s;

  const Along along(graph, dims, spec.dim);
  std::vector<OpRule> rules(graph.num_ops());
  for (OpId id : s_ops) {
    rules[id.index()] = Classify(graph, along, graph.op(id));
    if (rules[id.index()].refusal) Fail("{}: {}", what, *rules[id.index()].refusal);
  }

  // Masks drawn before the parts keep eager's order of random draws only if
  // no random op outside S runs between S's first and last op.
  const bool draws = std::any_of(s_ops.begin(), s_ops.end(), [&](OpId id) { return IsRandomOp(graph.op(id).type); });
  for (size_t i = s_ops.front().index(); draws && i < s_ops.back().index(); ++i) {
    if (!in_s[i] && IsRandomOp(graph.ops()[i].type)) {
      Fail("{}: random op {} runs between the split ops, which draw random numbers too", what,
           Quote(graph.ops()[i].name));
    }
  }

  // The rules of the outputs that leave S.
  std::vector<bool> rebuilt(graph.num_tensors(), false);  // views of outside tensors, made whole again
  for (OpId id : s_ops) {
    const Op& op = graph.op(id);
    for (size_t o = 0; o < op.outputs.size(); ++o) {
      const TensorId t = op.outputs[o];
      const OutputKind kind = rules[id.index()].outputs[o];
      for (OpId c : region.consumers[t.index()]) {
        if (in_s[c.index()] && IsPartial(kind)) {
          Fail("{}: op {} reads a partial sum over the parts (output {} of op {})", what, Quote(graph.op(c).name), o,
               Quote(op.name));
        }
      }
      // A scatter that adds its parts into self in turn: in place, no other
      // op of S may read self's storage between the parts.
      if (kind == OutputKind::kInto) {
        const OpSchema* schema = FindOpSchema(op.type);
        const TensorId root = graph.StorageRoot(op.inputs[0]);
        for (OpId other : s_ops) {
          if (other == id || !schema || !schema->inplace) continue;
          for (TensorId in : graph.op(other).inputs) {
            if (graph.StorageRoot(in) == root) {
              Fail("{}: op {} reads the tensor that op {} adds its parts into", what, Quote(graph.op(other).name),
                   Quote(op.name));
            }
          }
        }
        continue;
      }
      // A view (or in-place result) of a storage made inside S leaves S as
      // a copy joined from the parts. A view into a tensor from outside S
      // is made again, whole, after the parts (views cost nothing); an
      // in-place write into one is refused (its writers would miss a copy).
      if (region.used_outside[t.index()] && graph.tensor(t).alias_of) {
        const auto root = graph.tensor(graph.StorageRoot(t)).producer;
        if (!root || !in_s[root->index()]) {
          const OpSchema* schema = FindOpSchema(op.type);
          if (!schema || !schema->is_view()) {
            Fail("{}: op {} writes in place into a tensor from outside the split ops, used after them", what,
                 Quote(op.name));
          }
          rebuilt[t.index()] = true;
        }
      }
    }
  }

  Builder b(graph, along, spec, std::move(rules), std::move(rebuilt), FindMaskChains(graph, region, along));
  RewriteAroundRegion(graph, region, what, b, [&] { b.EmitParts(s_ops, region.used_outside); });

  FissionRecord& record = b.record();
  record.dim_name = d.name;
  record.dim_kind = d.kind;
  record.length = d.length;
  record.parts = spec.parts;
  record.num_ops = static_cast<int>(s_ops.size());
  record.first_op = graph.op(s_ops.front()).name;
  record.last_op = graph.op(s_ops.back()).name;
  const size_t index = RecordedFissions(graph).size();
  FissionResult result{b.Take(), record};
  result.graph.metadata[fmt::format("fission.{}", index)] = ToString(record);
  return result;
}

// By tensor: a buffer filled by hand, made by a factory of constants
// (zeros, a full, an empty) and written in place through views by ops that
// draw nothing, and that no random op reads (a dropout mask's template is
// no buffer). A temporal shift's `out = zeros_like(x); out[:, 1:, :c] = ...`.
// Each part makes its own part of it, which the writes then fill: kept whole
// before the parts, the first write into it ended the run. Only where every
// op that reads or writes its storage splits along d: the parts' views of it
// are joined one by one, so a write outside the run (MAE's `mask[:, :keep]
// = 0` along the patches, which the slice does not carry) would land in one
// join and not in the others (FissionRegions drops a run that holds a
// buffer without every op on its storage).
std::vector<bool> WrittenBuffers(const Graph& graph, const std::vector<OpRule>& rules) {
  std::vector<bool> written(graph.num_tensors(), false), drawn(graph.num_tensors(), false);
  std::vector<bool> split_everywhere(graph.num_tensors(), true);  // by storage root
  for (const Op& op : graph.ops()) {
    const OpSchema* schema = FindOpSchema(op.type);
    if (!schema || op.inputs.empty()) continue;
    if (schema->random) {
      for (TensorId t : op.inputs) drawn[graph.StorageRoot(t).index()] = true;
    } else if (schema->inplace) {
      written[graph.StorageRoot(op.inputs[0]).index()] = true;
    }
    if (!rules[op.id.index()].refusal) continue;
    for (TensorId t : op.inputs) split_everywhere[graph.StorageRoot(t).index()] = false;
  }
  std::vector<bool> buffers(graph.num_tensors(), false);
  for (const Op& op : graph.ops()) {
    const bool constant = op.type == "aten.full" || op.type == "aten.empty" || op.type == "aten.zeros" ||
                          op.type == "aten.ones";
    if (!constant || !op.inputs.empty() || op.outputs.size() != 1) continue;
    const size_t t = op.outputs[0].index();
    buffers[t] = written[t] && !drawn[t] && split_everywhere[t];
  }
  return buffers;
}

// `runs` less those that make a buffer (WrittenBuffers) without every op
// that reads or writes its storage (the run ended between them).
std::vector<std::vector<OpId>> WithWholeBuffers(const Graph& graph, const std::vector<bool>& buffers,
                                                std::vector<std::vector<OpId>> runs) {
  std::vector<std::vector<OpId>> users(graph.num_tensors());  // by buffer: the ops on its storage
  for (const Op& op : graph.ops()) {
    std::set<size_t> roots;
    for (TensorId t : op.inputs) roots.insert(graph.StorageRoot(t).index());
    for (size_t root : roots) {
      if (buffers[root]) users[root].push_back(op.id);
    }
  }
  std::erase_if(runs, [&](const std::vector<OpId>& run) {
    const std::set<OpId> in_run(run.begin(), run.end());
    for (OpId id : run) {
      const Op& op = graph.op(id);
      if (op.outputs.size() != 1 || !buffers[op.outputs[0].index()]) continue;
      for (OpId user : users[op.outputs[0].index()]) {
        if (!in_run.contains(user)) return true;
      }
    }
    return false;
  });
  return runs;
}

// By op: a sum over d of labels, masks or counts made from the step's
// inputs, buffers and constants alone (the total weight of the targets a
// weighted label smoothing divides by; CenterNet's number of positives,
// `gt.eq(1).float().sum()`), and the ops that make what it reads. The
// backward's parts need that sum whole, so made in the run it would end the
// run at the loss; made whole before the parts from the whole inputs, it
// ends nothing. What it sums is integer or made through a bool (a
// comparison): a sum of floating-point inputs themselves (images) is left
// to the parts, what it reads may be as large as they are.
std::vector<bool> InputOnlySums(const Graph& graph, const std::vector<OpRule>& rules) {
  std::vector<bool> input_only(graph.num_tensors(), false), counted(graph.num_tensors(), false);
  for (const Tensor& t : graph.tensors()) {
    input_only[t.id.index()] = !t.producer && (t.role == TensorRole::kInput || t.role == TensorRole::kBuffer);
    counted[t.id.index()] = input_only[t.id.index()] && (!IsFloatingPoint(t.dtype) || t.role == TensorRole::kBuffer);
  }
  std::vector<bool> whole(graph.num_ops(), false);
  for (const Op& op : graph.ops()) {
    const auto is = [&](const std::vector<bool>& set) {
      return std::all_of(op.inputs.begin(), op.inputs.end(), [&](TensorId t) { return set[t.index()]; });
    };
    if (!is(input_only) || IsRandomOp(op.type)) continue;
    const bool counts = is(counted);
    for (TensorId t : op.outputs) {
      input_only[t.index()] = true;
      counted[t.index()] = counts || graph.tensor(t).dtype == DType::kBool;
    }
    if (op.inputs.empty() || !counts) continue;
    const OpRule& rule = rules[op.id.index()];
    whole[op.id.index()] = !rule.refusal && std::any_of(rule.outputs.begin(), rule.outputs.end(), IsPartial);
  }
  // What they read, back to the inputs.
  for (size_t i = graph.num_ops(); i-- > 0;) {
    if (!whole[i]) continue;
    for (TensorId t : graph.ops()[i].inputs) {
      if (const auto p = graph.tensor(t).producer; p && input_only[t.index()]) whole[p->index()] = true;
    }
  }
  return whole;
}

std::vector<std::vector<OpId>> FissionRegions(const Graph& original, const DimensionGraph& dims, int dim,
                                              size_t min_ops) {
  const Graph graph = DetachShapeOnlyReads(original);
  const Along d(graph, dims, dim);
  RegionRuns runs(graph, min_ops);
  bool run_draws = false, whole_draws = false;  // random ops split (dropout) / kept whole in the run
  std::vector<bool> factory_made(graph.num_tensors(), false);  // by tensor: a factory's output, or a view of one
  // Each op's rule along d, read by the buffers, the sums made whole and the runs.
  std::vector<OpRule> rules;
  rules.reserve(graph.num_ops());
  for (const Op& op : graph.ops()) rules.push_back(Classify(graph, d, op));
  const std::vector<bool> buffers = WrittenBuffers(graph, rules);
  const std::vector<bool> whole_before = InputOnlySums(graph, rules);
  // Sums over d (and means) made by the run: whole only once every part is
  // in, so an op of the run must not read one (by tensor: the run's number).
  std::vector<int> partial_in(graph.num_tensors(), -1);
  int run_number = 0;
  auto close = [&] {
    runs.Close();
    run_draws = whole_draws = false;
    ++run_number;
  };
  for (const Op& op : graph.ops()) {
    OpRule rule = rules[op.id.index()];
    // An in-place write into a storage made before the run would be split
    // into writes through slices of it: the run ends there.
    const OpSchema* schema = FindOpSchema(op.type);
    if (!rule.refusal && schema && schema->inplace && !op.inputs.empty() && !rule.into()) {
      const auto root = graph.tensor(graph.StorageRoot(op.inputs[0])).producer;
      if (!root || !runs.InRun(*root)) rule.refusal = "writes in place into a tensor made before the run";
    }
    const bool draws = IsRandomOp(op.type);
    // Factories (aten.empty, aten.full, and the *_like ops detached above)
    // and views of them (a dropout mask's template, out_of_place.h) stay
    // whole before the parts: what fills them or draws like them (a draw)
    // must be whole.
    if (whole_before[op.id.index()]) continue;  // made from the inputs alone, whole before the parts
    const bool buffer = op.outputs.size() == 1 && buffers[op.outputs[0].index()] && d.axis(op.outputs[0]) >= 0;
    if (op.inputs.empty() && !buffer) {
      for (TensorId t : op.outputs) factory_made[t.index()] = true;
      continue;
    }
    if (schema && !schema->views.empty() && std::all_of(op.inputs.begin(), op.inputs.end(), [&](TensorId t) {
          return factory_made[t.index()];
        })) {
      for (TensorId t : op.outputs) factory_made[t.index()] = true;
      continue;
    }
    if (!rule.refusal) {
      if (draws && whole_draws) close();  // the mask drawn before the parts would pass a whole draw
      // An input made outside the run from the run's results would leave
      // the run and come back: the run ends before this op (convexity).
      if (runs.ReadsAfterRun(op)) close();
      // A centred value (x - x.mean(0)) reads the run's mean: a new run starts
      // there. An op that touches no part of d (a mean's division of its
      // sum, a loss's arithmetic) runs after the run instead, which goes on.
      const auto reads_partial = [&](TensorId t) { return partial_in[t.index()] == run_number; };
      if (std::any_of(op.inputs.begin(), op.inputs.end(), reads_partial)) {
        const auto carries = [&](TensorId t) { return d.axis(t) >= 0; };
        if (std::none_of(op.inputs.begin(), op.inputs.end(), carries) &&
            std::none_of(op.outputs.begin(), op.outputs.end(), carries)) {
          runs.MarkAfter(op.id);
          continue;
        }
        close();
      }
      runs.Add(op);
      for (size_t o = 0; o < op.outputs.size() && o < rule.outputs.size(); ++o) {
        if (IsPartial(rule.outputs[o])) partial_in[op.outputs[o].index()] = run_number;
      }
      run_draws |= draws;
      continue;
    }
    // An op that needs nothing from the run stays whole, before the parts
    // (a dropout mask drawn with bernoulli_ into an empty tensor): the run
    // goes on around it ...
    const bool needs_run = runs.NeedsRun(op);
    // ... unless it overwrites what the run has read (the parts would read
    // it after the write).
    if (runs.OverwritesRead(op)) {
      close();
      continue;
    }
    if (!needs_run && !(draws && run_draws)) {
      whole_draws |= draws;
      continue;
    }
    bool touches = false;
    for (TensorId t : op.inputs) touches |= d.axis(t) >= 0;
    for (TensorId t : op.outputs) touches |= d.axis(t) >= 0;
    if (touches) {
      close();
    } else {
      runs.MarkAfter(op.id);
    }
  }
  return WithWholeBuffers(graph, buffers, runs.Finish());
}

std::vector<OpId> WithoutHeavySums(const Graph& original, const DimensionGraph& dims, int dim,
                                   std::vector<OpId> run) {
  const Graph graph = DetachShapeOnlyReads(original);
  const Along d(graph, dims, dim);
  std::erase_if(run, [&](OpId id) {
    const Op& op = graph.op(id);
    const OpRule rule = Classify(graph, d, op);
    if (rule.refusal) return false;
    // Only an op whose every result is a sum: one that also passes rows on
    // (convolution_backward's input gradient) feeds the region.
    int64_t summed = 0, read = 0;
    for (size_t o = 0; o < op.outputs.size(); ++o) {
      if (rule.outputs[o] != OutputKind::kPartialSum) return false;
      summed += graph.tensor(op.outputs[o]).size_bytes();
    }
    for (TensorId t : op.inputs) {
      if (d.axis(t) >= 0) read += graph.tensor(t).size_bytes();
    }
    return summed > read;
  });
  return run;
}

namespace {

// What `op` holds along d: the bytes of the storages it reads and writes
// that carry d (the parts divide them), and its workspace.
int64_t WorkingSetAlong(const Graph& graph, const Along& d, OpId id) {
  const Op& op = graph.op(id);
  std::vector<TensorId> roots;
  for (const auto* list : {&op.inputs, &op.outputs}) {
    for (TensorId t : *list) {
      if (d.axis(t) >= 0) roots.push_back(graph.StorageRoot(t));
    }
  }
  std::sort(roots.begin(), roots.end());
  roots.erase(std::unique(roots.begin(), roots.end()), roots.end());
  int64_t bytes = OpWorkspaceBytes(graph, op);
  for (TensorId r : roots) bytes += graph.tensor(r).size_bytes();
  return bytes;
}

}  // namespace

std::vector<OpId> PeakBand(const Graph& original, const DimensionGraph& dims, int dim, const std::vector<OpId>& run,
                           double share) {
  const Graph graph = DetachShapeOnlyReads(original);
  const Along d(graph, dims, dim);
  std::vector<int64_t> sets;
  for (OpId id : run) sets.push_back(WorkingSetAlong(graph, d, id));
  if (sets.empty()) return {};
  const double cut = share * static_cast<double>(*std::max_element(sets.begin(), sets.end()));
  size_t first = sets.size(), last = 0;
  for (size_t i = 0; i < sets.size(); ++i) {
    if (static_cast<double>(sets[i]) < cut) continue;
    first = std::min(first, i);
    last = i;
  }
  if (first == 0 && last + 1 == run.size()) return {};
  return {run.begin() + static_cast<std::ptrdiff_t>(first), run.begin() + static_cast<std::ptrdiff_t>(last) + 1};
}

namespace {

std::vector<std::vector<OpId>> HeavyRunsOf(const Graph& graph, const DimensionGraph& dims, int dim, double share,
                                           bool forward_too) {
  std::vector<std::vector<OpId>> backward;
  for (auto& run : FissionRegions(graph, dims, dim)) {
    if (forward_too || graph.op(run.front()).phase == Phase::kBackward) {
      backward.push_back(WithoutHeavySums(graph, dims, dim, run));
    }
  }
  const Graph detached = DetachShapeOnlyReads(graph);
  const Along d(detached, dims, dim);
  std::vector<int64_t> heaviest;
  for (const auto& run : backward) {
    int64_t most = 0;
    for (OpId id : run) most = std::max(most, WorkingSetAlong(detached, d, id));
    heaviest.push_back(most);
  }
  const int64_t most = heaviest.empty() ? 0 : *std::max_element(heaviest.begin(), heaviest.end());
  std::vector<std::vector<OpId>> heavy;
  for (size_t i = 0; i < backward.size(); ++i) {
    if (backward[i].size() >= 2 && static_cast<double>(heaviest[i]) >= share * static_cast<double>(most)) {
      heavy.push_back(std::move(backward[i]));
    }
  }
  std::sort(heavy.begin(), heavy.end(), [](const auto& a, const auto& b) { return a.front() < b.front(); });
  return heavy;
}

}  // namespace

std::vector<std::vector<OpId>> HeavyBackwardRuns(const Graph& graph, const DimensionGraph& dims, int dim,
                                                 double share) {
  return HeavyRunsOf(graph, dims, dim, share, false);
}

std::vector<std::vector<OpId>> HeavyRuns(const Graph& graph, const DimensionGraph& dims, int dim, double share) {
  return HeavyRunsOf(graph, dims, dim, share, true);
}

std::vector<OpId> OpsNamed(const Graph& graph, const std::vector<std::string>& names, std::string_view after) {
  std::unordered_map<std::string_view, OpId> by_name;
  for (const Op& op : graph.ops()) by_name.emplace(op.name, op.id);
  std::vector<OpId> ops;
  for (const std::string& name : names) {
    const auto it = by_name.find(name);
    if (it == by_name.end()) Fail("fission: op {} of a run is gone after {}", Quote(name), after);
    ops.push_back(it->second);
  }
  return ops;
}

namespace {

// The dimension of `was`'s name after an earlier split where it still
// spans every op of `run`, else the first of its length and kind (or of
// none) that does: a split renames a group whose naming axis it slices
// (SimCLR's cat[0] once the cat runs in parts). nullopt where none does
// (the split cut the links that held the run's ops in one group).
std::optional<int> DimensionOfRun(const Graph& graph, const DimensionGraph& dims, const Dimension& was,
                                  const std::vector<OpId>& run) {
  auto spans = [&](const Dimension& d) {
    const std::vector<std::optional<std::string>> refusals = Refusals(graph, dims, d.id);  // every op, once
    return std::all_of(run.begin(), run.end(), [&](OpId id) { return !refusals[id.index()].has_value(); });
  };
  if (const std::optional<int> named = FindDimension(dims, was.name); named && spans(dims.dims[*named])) return named;
  for (const Dimension& d : dims.dims) {
    if (d.length == was.length && (d.kind.empty() || d.kind == was.kind) && spans(d)) return d.id;
  }
  return std::nullopt;
}

}  // namespace

FissionResult ApplyFissions(const Graph& graph, const DimensionGraph& dims, int dim,
                            const std::vector<std::vector<OpId>>& runs, int parts) {
  if (runs.empty()) Fail("fission: no run of {} to split", Quote(dims.dims.at(dim).name));
  // Ops outside a region keep their names: each run is found again by them.
  std::vector<std::vector<std::string>> names;
  for (const auto& run : runs) {
    names.emplace_back();
    for (OpId id : run) names.back().push_back(graph.op(id).name);
  }
  const std::string& dim_name = dims.dims.at(dim).name;
  FissionResult result{graph, {}};
  for (size_t i = 0; i < names.size(); ++i) {
    const DimensionGraph current = i == 0 ? dims : ComputeDimensions(result.graph);
    std::vector<OpId> run = OpsNamed(result.graph, names[i], "an earlier split");
    const std::optional<int> d =
        i == 0 ? std::optional<int>(dim) : DimensionOfRun(result.graph, current, dims.dims.at(dim), run);
    if (!d) Fail("fission: no dimension spans the ops of {} after a split", Quote(dim_name));
    FissionResult r = ApplyFission(result.graph, current, {std::move(run), *d, parts});
    FissionRecord& total = result.record;
    if (i == 0) {
      total = r.record;
    } else {
      total.num_ops += r.record.num_ops;
      total.last_op = r.record.last_op;
      total.sliced_inputs += r.record.sliced_inputs;
      total.joined_outputs += r.record.joined_outputs;
      total.summed_outputs += r.record.summed_outputs;
    }
    result.graph = std::move(r.graph);
  }
  return result;
}

std::vector<std::string> RecordedFissions(const Graph& graph) { return NumberedRecords(graph, "fission"); }

}  // namespace memfit
