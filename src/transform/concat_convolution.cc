#include "transform/concat_convolution.h"

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ir/registry.h"
#include "transform/fission.h"
#include "transform/rewriter.h"

namespace memfit {
namespace {

// The attributes a convolution and its backward share (the backward's own:
// bias_sizes, output_mask).
constexpr std::string_view kConvAttrs[] = {"stride", "padding", "dilation", "transposed", "output_padding", "groups"};

// A concatenation, the convolution that reads it and its backward.
struct Match {
  const Op* cat = nullptr;
  const Op* conv = nullptr;
  const Op* backward = nullptr;       // absent: the weight and the pieces need no gradient
  std::vector<int64_t> channels;      // of each piece
  std::vector<std::vector<OpId>> slices;  // by piece: the slices of grad_input that are its gradient
};

// `op`'s dim attribute normalized against `rank`; nullopt where absent or out of range.
std::optional<int64_t> Dim(const Op& op, size_t rank, int64_t fallback) {
  const int64_t* d = IntAttr(op, "dim");
  int64_t dim = d ? *d : fallback;
  if (dim < 0) dim += static_cast<int64_t>(rank);
  if (dim < 0 || dim >= static_cast<int64_t>(rank)) return std::nullopt;
  return dim;
}


// Which piece the slice `op` of a [.., C, ..] gradient is exactly, or nullopt.
std::optional<size_t> PieceOf(const Op& op, const std::vector<int64_t>& channels, size_t rank) {
  if (op.type != "aten.slice" || op.inputs.size() != 1) return std::nullopt;
  if (Dim(op, rank, 0) != 1) return std::nullopt;
  const int64_t* step = IntAttr(op, "step");
  if (step && *step != 1) return std::nullopt;
  const int64_t* start = IntAttr(op, "start");
  const int64_t* end = IntAttr(op, "end");
  int64_t total = 0;
  for (int64_t c : channels) total += c;
  const int64_t from = start ? *start : 0;
  const int64_t to = end ? std::min(*end, total) : total;
  int64_t offset = 0;
  for (size_t i = 0; i < channels.size(); ++i) {
    if (from == offset && to == offset + channels[i]) return i;
    offset += channels[i];
  }
  return std::nullopt;
}

// By storage root: the last op (in program order) that writes it in place
// (an in-place op's result, a mutated input).
std::vector<std::optional<size_t>> LastWrites(const Graph& graph) {
  std::vector<std::optional<size_t>> last(graph.num_tensors());
  for (const Op& op : graph.ops()) {
    const OpFlags flags = ComputeOpFlags(graph, op);
    if (flags.inplace) {
      for (TensorId t : op.outputs) {
        if (graph.tensor(t).alias_of) last[graph.StorageRoot(t).index()] = op.id.index();
      }
    }
    for (size_t i : flags.mutated_inputs) last[graph.StorageRoot(op.inputs.at(i)).index()] = op.id.index();
  }
  return last;
}

// The pieces are read by the rewritten convolutions where the original read
// the concatenation's copy of them: after the concatenation, nothing may
// write into them.
std::optional<Match> FindMatch(const Graph& graph, const std::vector<std::vector<OpId>>& consumers,
                               const std::vector<std::optional<size_t>>& last_writes, const Op& cat) {
  if (cat.type != "aten.cat" || cat.inputs.size() < 2 || cat.outputs.size() != 1) return std::nullopt;
  const TensorId c = cat.outputs[0];
  const Tensor& whole = graph.tensor(c);
  if (whole.shape.size() < 3 || IsResult(graph, c) || Dim(cat, whole.shape.size(), 0) != 1) return std::nullopt;
  Match m;
  m.cat = &cat;
  for (TensorId piece : cat.inputs) {
    const Tensor& p = graph.tensor(piece);
    if (p.shape.size() != whole.shape.size() || p.dtype != whole.dtype || p.shape[1] <= 0) return std::nullopt;
    const std::optional<size_t> written = last_writes[graph.StorageRoot(piece).index()];
    if (written && *written > cat.id.index()) return std::nullopt;
    m.channels.push_back(p.shape[1]);
  }
  for (OpId id : consumers[c.index()]) {
    const Op& op = graph.op(id);
    if (op.type == "aten.convolution" && !m.conv && op.inputs.size() >= 2 && op.inputs[0] == c &&
        std::count(op.inputs.begin(), op.inputs.end(), c) == 1) {
      m.conv = &op;
    } else if (op.type == "aten.convolution_backward" && !m.backward && op.inputs.size() == 3 && op.inputs[1] == c &&
               std::count(op.inputs.begin(), op.inputs.end(), c) == 1) {
      m.backward = &op;
    } else {
      return std::nullopt;  // read otherwise: the concatenation is needed anyway
    }
  }
  if (!m.conv) return std::nullopt;
  const int64_t* groups = IntAttr(*m.conv, "groups");
  if (groups && *groups != 1) return std::nullopt;
  const bool transposed = BoolAttr(*m.conv, "transposed", false);
  const Tensor& weight = graph.tensor(m.conv->inputs[1]);
  if (weight.shape.size() != whole.shape.size() || weight.shape[transposed ? 0 : 1] != whole.shape[1]) {
    return std::nullopt;
  }
  if (!m.backward) return m;
  if (m.backward->inputs[2] != m.conv->inputs[1]) return std::nullopt;
  for (std::string_view name : kConvAttrs) {
    auto a = m.conv->attrs.find(std::string(name)), b = m.backward->attrs.find(std::string(name));
    if ((a == m.conv->attrs.end()) != (b == m.backward->attrs.end())) return std::nullopt;
    if (a != m.conv->attrs.end() && !(a->second == b->second)) return std::nullopt;
  }
  m.slices.resize(m.channels.size());
  if (OutputMask(*m.backward)[0]) {
    if (m.backward->outputs.empty()) return std::nullopt;
    const TensorId grad = m.backward->outputs[0];
    if (IsResult(graph, grad)) return std::nullopt;
    for (OpId id : consumers[grad.index()]) {
      const std::optional<size_t> piece = PieceOf(graph.op(id), m.channels, whole.shape.size());
      if (!piece) return std::nullopt;  // read whole, or across pieces
      m.slices[*piece].push_back(id);
    }
  }
  return m;
}

class ConcatRewriter : public Rewriter {
 public:
  using Rewriter::Rewriter;

  // The convolution of the concatenation, per piece and summed.
  void EmitForward(const Match& m) {
    const Op& conv = *m.conv;
    const Tensor& y = in_.tensor(conv.outputs[0]);
    const auto at = ResolveTensorArgs(FindOpSchema(conv.type)->tensor_args, conv, conv.inputs.size());
    const std::optional<size_t> bias = at.at(2);
    const int weight_dim = BoolAttr(conv, "transposed", false) ? 0 : 1;
    const Tensor& weight = in_.tensor(conv.inputs[1]);
    std::optional<TensorId> sum;
    int64_t offset = 0;
    for (size_t i = 0; i < m.channels.size(); ++i) {
      Tensor w_like = weight;
      w_like.name = UniqueTensorName(fmt::format("{}.cat{}", weight.name, i));
      const TensorId w = Emit(NewOp(fmt::format("{}.weight{}", conv.name, i), "aten.slice", "Tensor",
                                    {Whole(conv.inputs[1])},
                                    {{"dim", int64_t{weight_dim}}, {"start", offset}, {"end", offset + m.channels[i]},
                                     {"step", int64_t{1}}},
                                    conv.phase),
                              {&w_like}, "")[0];
      weights_[&m].push_back(w);
      offset += m.channels[i];
      Op part = NewOp(fmt::format("{}.cat{}", conv.name, i), conv.type, conv.overload, {Whole(m.cat->inputs[i]), w},
                      conv.attrs, conv.phase);
      if (bias && i == 0) {
        part.inputs.push_back(Whole(conv.inputs[*bias]));
      } else {
        part.attrs["bias"] = AttrValue{std::monostate{}};
      }
      Tensor like = Intermediate(y, fmt::format("{}.cat{}", y.name, i));
      const TensorId out = Emit(std::move(part), {&like}, "")[0];
      if (!sum) {
        sum = out;
        continue;
      }
      const bool last = i + 1 == m.channels.size();
      Tensor sum_like = last ? y : Intermediate(y, fmt::format("{}.sum{}", y.name, i));
      Op add = NewOp(fmt::format("{}.sum{}", conv.name, i), "aten.add", "Tensor", {*sum, out}, {}, conv.phase);
      if (last) add.name = conv.name;  // the original is not copied: its name is free
      sum = Emit(std::move(add), {&sum_like}, "")[0];
    }
    SetWhole(conv.outputs[0], *sum);
  }

  // The convolution's backward per piece: each piece's gradient and weight
  // gradient from the same grad_output; the weight gradients joined.
  void EmitBackward(const Match& m) {
    const Op& back = *m.backward;
    const std::vector<bool> mask = OutputMask(back);
    size_t next = mask[0] ? 1 : 0;
    const Tensor* grad_weight = mask[1] ? &in_.tensor(back.outputs.at(next++)) : nullptr;
    const Tensor* grad_bias = mask[2] ? &in_.tensor(back.outputs.at(next++)) : nullptr;
    std::vector<TensorId> weight_grads;
    for (size_t i = 0; i < m.channels.size(); ++i) {
      const bool input = mask[0] && !m.slices[i].empty(), bias = mask[2] && i == 0;
      if (!input && !mask[1] && !bias) continue;
      Op part = NewOp(fmt::format("{}.cat{}", back.name, i), back.type, back.overload,
                      {Whole(back.inputs[0]), Whole(m.cat->inputs[i]), weights_.at(&m).at(i)}, back.attrs, back.phase);
      part.attrs["output_mask"] = std::vector<int64_t>{input, mask[1], bias};
      // Each piece's gradient is named after the first slice that was it.
      std::vector<Tensor> likes;
      if (input) likes.push_back(Intermediate(in_.tensor(in_.op(m.slices[i][0]).outputs[0]), ""));
      if (mask[1]) likes.push_back(Intermediate(*grad_weight, fmt::format("{}.cat{}", grad_weight->name, i)));
      if (bias) likes.push_back(*grad_bias);
      std::vector<const Tensor*> like;
      for (const Tensor& t : likes) like.push_back(&t);
      const std::vector<TensorId> outs = Emit(std::move(part), like, "");
      size_t o = 0;
      if (input) {
        for (OpId slice : m.slices[i]) SetWhole(in_.op(slice).outputs[0], outs[0]);
        ++o;
      }
      if (mask[1]) weight_grads.push_back(outs[o++]);
      if (bias) SetWhole(back.outputs[mask[0] + mask[1]], outs[o]);
    }
    if (mask[1]) {
      Op join = NewOp(back.name + ".weight", "aten.cat", "", weight_grads, {{"dim", int64_t{BoolAttr(back, "transposed", false) ? 0 : 1}}},
                      back.phase);
      join.name = back.name;  // the original is not copied: its name is free
      SetWhole(back.outputs[mask[0]], Emit(std::move(join), {grad_weight}, "")[0]);
    }
  }

 private:
  // An intermediate of the step like `like`, named `name` (made unique; the
  // original's name where empty: a tensor it stands for from now on).
  Tensor Intermediate(const Tensor& like, const std::string& name) {
    Tensor t = like;
    if (!name.empty()) t.name = UniqueTensorName(name);
    t.role = like.role == TensorRole::kOutput ? TensorRole::kActivation : like.role;
    t.alias_of.reset();
    t.strides.clear();
    t.storage_offset = 0;
    return t;
  }

  std::map<const Match*, std::vector<TensorId>> weights_;  // by match: the weight's slices, made in the forward
};

}  // namespace

bool HasConcatenatedConvolution(const Graph& graph, const Op& op) {
  return FindMatch(graph, ComputeConsumers(graph), LastWrites(graph), op).has_value();
}

Graph SplitConcatenatedConvolutions(const Graph& graph) {
  const std::vector<std::vector<OpId>> consumers = ComputeConsumers(graph);
  const std::vector<std::optional<size_t>> last_writes = LastWrites(graph);
  // By op: the match it starts (the cat), or is part of.
  std::vector<std::optional<Match>> at_cat(graph.num_ops());
  std::vector<const Match*> at_conv(graph.num_ops()), at_backward(graph.num_ops());
  std::vector<bool> skipped(graph.num_ops(), false);
  int rewritten = 0;
  for (const Op& op : graph.ops()) {
    if (!(at_cat[op.id.index()] = FindMatch(graph, consumers, last_writes, op))) continue;
    const Match& m = *at_cat[op.id.index()];
    skipped[op.id.index()] = true;
    at_conv[m.conv->id.index()] = &m;
    if (m.backward) at_backward[m.backward->id.index()] = &m;
    for (const auto& slices : m.slices) {
      for (OpId id : slices) skipped[id.index()] = true;
    }
    ++rewritten;
  }
  if (rewritten == 0) return graph;
  ConcatRewriter b(graph);
  for (const Op& op : graph.ops()) {
    if (const Match* m = at_conv[op.id.index()]) {
      b.EmitForward(*m);
    } else if (const Match* m = at_backward[op.id.index()]) {
      b.EmitBackward(*m);
    } else if (!skipped[op.id.index()]) {
      b.CopyOp(op);
    }
  }
  b.MapOutputs();
  Graph out = b.Take();
  out.metadata[fmt::format("fission.{}", RecordedFissions(graph).size())] = fmt::format("{}{}", kConcatRecordPrefix, rewritten);
  return out;
}

}  // namespace memfit
