// Backward rules in the form PyTorch's derivatives.yaml gives them, so that
// the training graphs match what autograd records.
#include "autodiff/backward_rules.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <tuple>
#include <utility>
#include <unordered_map>

#include "ir/registry.h"
#include "util/error.h"

namespace memfit::autodiff {
namespace {

using Grads = std::vector<std::optional<TensorId>>;

const AttrValue* FindAttr(const Op& op, std::string_view name) {
  auto it = op.attrs.find(name);
  return it == op.attrs.end() ? nullptr : &it->second;
}

int64_t IntAttr(const Op& op, std::string_view name, int64_t fallback) {
  const AttrValue* v = FindAttr(op, name);
  if (!v) return fallback;
  if (auto* i = std::get_if<int64_t>(v)) return *i;
  if (auto* b = std::get_if<bool>(v)) return *b;
  return fallback;
}

double DoubleAttr(const Op& op, std::string_view name, double fallback) {
  const AttrValue* v = FindAttr(op, name);
  if (!v) return fallback;
  if (auto* d = std::get_if<double>(v)) return *d;
  if (auto* i = std::get_if<int64_t>(v)) return static_cast<double>(*i);
  return fallback;
}

AttrValue AttrOr(const Op& op, std::string_view name, AttrValue fallback) {
  const AttrValue* v = FindAttr(op, name);
  return v ? *v : fallback;
}

bool IsScalarOverload(const Op& op) { return op.inputs.size() == 1; }

int64_t NormDim(int64_t d, size_t rank) { return d < 0 ? d + static_cast<int64_t>(rank) : d; }

// The dims a reduction's "dim" names (one, or a list), every dim when it is
// absent or empty; each in [0, rank).
std::vector<int64_t> ReducedDims(const Op& op, size_t rank) {
  std::vector<int64_t> dims;
  if (const AttrValue* v = FindAttr(op, "dim")) {
    if (auto* list = std::get_if<std::vector<int64_t>>(v)) dims = *list;
    if (auto* one = std::get_if<int64_t>(v)) dims = {*one};
  }
  if (dims.empty()) {
    dims.resize(rank);
    std::iota(dims.begin(), dims.end(), 0);
  }
  for (int64_t& d : dims) d = NormDim(d, rank);
  return dims;
}

// A reduction's gradient and result with its reduced dims kept (extent 1), to
// broadcast against its input (logsumexp, amax / amin).
struct KeptReduction {
  std::vector<int64_t> dims;
  TensorId grad, result;
};
KeptReduction KeepReducedDims(const BackwardContext& c) {
  const Shape in = c.shape(c.in(0));
  KeptReduction r{ReducedDims(c.op, in.size()), c.grad(), c.out(0)};
  if (!IntAttr(c.op, "keepdim", 0)) {
    Shape kept = in;
    for (int64_t d : r.dims) kept[d] = 1;
    r.grad = c.Reshape(r.grad, kept);
    r.result = c.Reshape(r.result, kept);
  }
  return r;
}

// A bool mask as the gradient's dtype (1 where true), to multiply it by.
TensorId MaskAsGrad(const BackwardContext& c, TensorId mask) {
  return c.Call("aten._to_copy", {mask}, {{"dtype", std::string(ToString(c.builder.tensor(c.grad()).dtype))}});
}

// Whether `t` may be laid out non-contiguously when it runs: made by a view
// that changes strides, or by an element-wise op reading such a tensor
// (TensorIterator lays its result out like its inputs: a gradient summed
// from a permuted one is permuted too; maxvit's grid attention).
bool ProducedByNonContiguousView(const Graph& g, TensorId t, int depth = 0) {
  const auto& producer = g.tensor(t).producer;
  if (!producer) return false;
  const Op& op = g.op(*producer);
  if (op.type == "aten.t") return g.tensor(t).shape.size() == 2;
  if (op.type == "aten.permute" || op.type == "aten.transpose" || op.type == "aten.expand" ||
      op.type == "aten.slice" || op.type == "aten.select" || op.type == "aten.split" ||
      op.type == "aten.split_with_sizes") {
    return true;
  }
  const OpSchema* schema = FindOpSchema(op.type);
  if (!schema || !schema->pointwise || depth >= 8) return false;
  return std::any_of(op.inputs.begin(), op.inputs.end(), [&](TensorId in) {
    return g.tensor(in).shape == g.tensor(t).shape && ProducedByNonContiguousView(g, in, depth + 1);
  });
}

Grads Linear(const BackwardContext& c, size_t a, size_t b, bool batched) {
  Grads grads(c.op.inputs.size());
  const TensorId g = c.grad();
  if (batched) {
    if (c.needs_grad[a]) grads[a] = c.Call("aten.bmm", {g, c.Call("aten.transpose.int", {c.in(b)}, {{"dim0", int64_t{1}}, {"dim1", int64_t{2}}})});
    if (c.needs_grad[b]) grads[b] = c.Call("aten.bmm", {c.Call("aten.transpose.int", {c.in(a)}, {{"dim0", int64_t{1}}, {"dim1", int64_t{2}}}), g});
  } else {
    if (c.needs_grad[a]) grads[a] = c.Call("aten.mm", {g, c.Call("aten.t", {c.in(b)})});
    if (c.needs_grad[b]) grads[b] = c.Call("aten.mm", {c.Call("aten.t", {c.in(a)}), g});
  }
  return grads;
}

// Output mask for ops whose backward computes (input, weight, bias) grads.
std::vector<int64_t> Mask(const BackwardContext& c, std::optional<size_t> input, std::optional<size_t> weight,
                          std::optional<size_t> bias) {
  auto need = [&](std::optional<size_t> i) -> int64_t { return i && *i < c.needs_grad.size() && c.needs_grad[*i]; };
  return {need(input), need(weight), need(bias)};
}

// Spreads `outs` (present per mask entry) onto input positions.
void Scatter(const std::vector<int64_t>& mask, const std::vector<TensorId>& outs,
             const std::vector<std::optional<size_t>>& positions, Grads& grads) {
  size_t next = 0;
  for (size_t k = 0; k < 3; ++k) {
    if (!mask[k]) continue;
    if (positions[k]) grads[*positions[k]] = outs.at(next);
    ++next;
  }
}

// Position of tensor argument `name` among op.inputs (per the registry's
// schema and the op's None attributes).
std::optional<size_t> ArgPosition(const Op& op, std::string_view name) {
  const OpSchema* schema = FindOpSchema(op.type);
  const auto positions = ResolveTensorArgs(schema->tensor_args, op, op.inputs.size());
  for (size_t k = 0; k < schema->tensor_args.size(); ++k) {
    std::string_view arg = schema->tensor_args[k];
    if (arg.substr(0, arg.find_first_of("?[")) == name) return positions[k];
  }
  return std::nullopt;
}

std::unordered_map<std::string_view, BackwardRule> MakeRules() {
  std::unordered_map<std::string_view, BackwardRule> r;

  // --- Views and layout ---------------------------------------------------
  for (const char* v : {"aten.view", "aten._unsafe_view", "aten.reshape", "aten.unsqueeze", "aten.squeeze"}) {
    r[v] = [](const BackwardContext& c) { return Grads{c.Reshape(c.grad(), c.shape(c.in(0)))}; };
  }
  r["aten.t"] = [](const BackwardContext& c) { return Grads{c.Call("aten.t", {c.grad()})}; };
  r["aten.transpose"] = [](const BackwardContext& c) {
    return Grads{c.Call("aten.transpose.int", {c.grad()}, {{"dim0", IntAttr(c.op, "dim0", 0)}, {"dim1", IntAttr(c.op, "dim1", 1)}})};
  };
  r["aten.permute"] = [](const BackwardContext& c) {
    const auto& dims = std::get<std::vector<int64_t>>(c.op.attrs.at("dims"));
    std::vector<int64_t> inverse(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) inverse[NormDim(dims[i], dims.size())] = static_cast<int64_t>(i);
    return Grads{c.Call("aten.permute", {c.grad()}, {{"dims", inverse}})};
  };
  r["aten.flip"] = [](const BackwardContext& c) { return Grads{c.Call("aten.flip", {c.grad()}, {{"dims", c.op.attrs.at("dims")}})}; };
  r["aten.expand"] = [](const BackwardContext& c) { return Grads{c.ReduceTo(c.grad(), c.shape(c.in(0)))}; };
  for (const char* v : {"aten.clone", "aten.alias", "aten._to_copy"}) {
    r[v] = [](const BackwardContext& c) {
      if (c.builder.tensor(c.grad()).dtype == c.builder.tensor(c.in(0)).dtype) return Grads{c.grad()};
      return Grads{c.Call("aten._to_copy", {c.grad()}, {{"dtype", std::string(ToString(c.builder.tensor(c.in(0)).dtype))}})};
    };
  }
  r["aten.slice"] = [](const BackwardContext& c) {
    const Shape& in = c.shape(c.in(0));
    return Grads{c.Call("aten.slice_backward", {c.grad()},
                        {{"input_sizes", in}, {"dim", IntAttr(c.op, "dim", 0)}, {"start", IntAttr(c.op, "start", 0)},
                         {"end", IntAttr(c.op, "end", in.empty() ? 0 : in[NormDim(IntAttr(c.op, "dim", 0), in.size())])},
                         {"step", IntAttr(c.op, "step", 1)}})};
  };
  // constant_pad_nd: the gradient cropped back by the negated pad (negative
  // entries crop), as PyTorch's autograd does; a crop's gradient is zero-padded.
  r["aten.constant_pad_nd"] = [](const BackwardContext& c) {
    std::vector<int64_t> pad = std::get<std::vector<int64_t>>(c.op.attrs.at("pad"));
    for (int64_t& p : pad) p = -p;
    return Grads{c.Call("aten.constant_pad_nd", {c.grad()}, {{"pad", pad}, {"value", 0.0}})};
  };
  r["aten.select"] = [](const BackwardContext& c) {
    return Grads{c.Call("aten.select_backward", {c.grad()},
                        {{"input_sizes", c.shape(c.in(0))}, {"dim", IntAttr(c.op, "dim", 0)}, {"index", IntAttr(c.op, "index", 0)}})};
  };
  r["aten.cat"] = [](const BackwardContext& c) {
    Grads grads(c.op.inputs.size());
    const int64_t dim = NormDim(IntAttr(c.op, "dim", 0), c.shape(c.out(0)).size());
    int64_t start = 0;
    for (size_t i = 0; i < c.op.inputs.size(); ++i) {
      const int64_t extent = c.shape(c.in(i))[dim];
      if (c.needs_grad[i]) {
        grads[i] = c.Call("aten.slice.Tensor", {c.grad()},
                          {{"dim", dim}, {"start", start}, {"end", start + extent}, {"step", int64_t{1}}});
      }
      start += extent;
    }
    return grads;
  };
  for (const char* split : {"aten.split", "aten.split_with_sizes"}) {
    r[split] = [](const BackwardContext& c) {
      std::vector<TensorId> pieces;
      for (size_t i = 0; i < c.op.outputs.size(); ++i) pieces.push_back(c.grad(i));
      return Grads{c.Call("aten.cat", pieces, {{"dim", IntAttr(c.op, "dim", 0)}})};
    };
  }
  // repeat: the gradient of every tile summed. The gradient [r0 s0, r1 s1,
  // ...] viewed as [r0, s0, r1, s1, ...] (s: the input's extents, 1 for the
  // leading dims repeat adds) and summed over the r's.
  r["aten.repeat"] = [](const BackwardContext& c) {
    const auto& repeats = std::get<std::vector<int64_t>>(c.op.attrs.at("repeats"));
    Shape in = c.shape(c.in(0));
    Shape padded(repeats.size() - in.size(), 1);
    padded.insert(padded.end(), in.begin(), in.end());
    Shape tiles;
    std::vector<int64_t> over;
    for (size_t i = 0; i < repeats.size(); ++i) {
      over.push_back(static_cast<int64_t>(tiles.size()));
      tiles.push_back(repeats[i]);
      tiles.push_back(padded[i]);
    }
    const TensorId sum = c.Call("aten.sum.dim_IntList", {c.Reshape(c.grad(), tiles)},
                                {{"dim", over}, {"keepdim", false}, {"dtype", std::monostate{}}});
    return Grads{c.Reshape(sum, in)};
  };

  // --- Linear algebra -----------------------------------------------------
  r["aten.mm"] = [](const BackwardContext& c) { return Linear(c, 0, 1, false); };
  r["aten.bmm"] = [](const BackwardContext& c) { return Linear(c, 0, 1, true); };
  r["aten.addmm"] = [](const BackwardContext& c) {
    Grads grads = Linear(c, 1, 2, false);
    if (c.needs_grad[0]) grads[0] = c.ReduceTo(c.grad(), c.shape(c.in(0)));
    return grads;
  };

  // --- Pointwise ----------------------------------------------------------
  r["aten.add"] = [](const BackwardContext& c) {
    Grads grads(c.op.inputs.size());
    if (c.needs_grad[0]) grads[0] = c.ReduceTo(c.grad(), c.shape(c.in(0)));
    if (!IsScalarOverload(c.op) && c.needs_grad[1]) {
      TensorId g = c.grad();
      const double alpha = DoubleAttr(c.op, "alpha", 1.0);
      if (alpha != 1.0) g = c.Call("aten.mul.Scalar", {g}, {{"other", alpha}});
      grads[1] = c.ReduceTo(g, c.shape(c.in(1)));
    }
    return grads;
  };
  r["aten.sub"] = [](const BackwardContext& c) {
    Grads grads(c.op.inputs.size());
    if (c.needs_grad[0]) grads[0] = c.ReduceTo(c.grad(), c.shape(c.in(0)));
    if (!IsScalarOverload(c.op) && c.needs_grad[1]) {
      TensorId g = c.Call("aten.neg", {c.grad()});
      const double alpha = DoubleAttr(c.op, "alpha", 1.0);
      if (alpha != 1.0) g = c.Call("aten.mul.Scalar", {g}, {{"other", alpha}});
      grads[1] = c.ReduceTo(g, c.shape(c.in(1)));
    }
    return grads;
  };
  r["aten.mul"] = [](const BackwardContext& c) {
    Grads grads(c.op.inputs.size());
    if (IsScalarOverload(c.op)) {
      grads[0] = c.Call("aten.mul.Scalar", {c.grad()}, {{"other", AttrOr(c.op, "other", 1.0)}});
      return grads;
    }
    if (c.needs_grad[0]) grads[0] = c.ReduceTo(c.Call("aten.mul.Tensor", {c.grad(), c.in(1)}), c.shape(c.in(0)));
    if (c.needs_grad[1]) grads[1] = c.ReduceTo(c.Call("aten.mul.Tensor", {c.grad(), c.in(0)}), c.shape(c.in(1)));
    return grads;
  };
  r["aten.div"] = [](const BackwardContext& c) {
    Grads grads(c.op.inputs.size());
    if (IsScalarOverload(c.op)) {
      grads[0] = c.Call("aten.div.Scalar", {c.grad()}, {{"other", AttrOr(c.op, "other", 1.0)}});
      return grads;
    }
    if (c.needs_grad[0]) grads[0] = c.ReduceTo(c.Call("aten.div.Tensor", {c.grad(), c.in(1)}), c.shape(c.in(0)));
    if (c.needs_grad[1]) {
      // d(a/b)/db = -grad * a / b^2
      TensorId q = c.Call("aten.div.Tensor", {c.Call("aten.div.Tensor", {c.in(0), c.in(1)}), c.in(1)});
      grads[1] = c.ReduceTo(c.Call("aten.neg", {c.Call("aten.mul.Tensor", {c.grad(), q})}), c.shape(c.in(1)));
    }
    return grads;
  };
  r["aten.neg"] = [](const BackwardContext& c) { return Grads{c.Call("aten.neg", {c.grad()})}; };
  r["aten.abs"] = [](const BackwardContext& c) { return Grads{c.Call("aten.mul.Tensor", {c.grad(), c.Call("aten.sgn", {c.in(0)})})}; };
  // d (1/x) = -1/x^2 = -out^2.
  r["aten.reciprocal"] = [](const BackwardContext& c) {
    const TensorId square = c.Call("aten.mul.Tensor", {c.out(0), c.out(0)});
    return Grads{c.Call("aten.neg", {c.Call("aten.mul.Tensor", {c.grad(), square})})};
  };
  r["aten.sin"] = [](const BackwardContext& c) { return Grads{c.Call("aten.mul.Tensor", {c.grad(), c.Call("aten.cos", {c.in(0)})})}; };
  r["aten.cos"] = [](const BackwardContext& c) {
    return Grads{c.Call("aten.mul.Tensor", {c.grad(), c.Call("aten.neg", {c.Call("aten.sin", {c.in(0)})})})};
  };
  r["aten.elu"] = [](const BackwardContext& c) {
    return Grads{c.Call("aten.elu_backward", {c.grad(), c.in(0)},
                        {{"alpha", AttrOr(c.op, "alpha", 1.0)}, {"scale", AttrOr(c.op, "scale", 1.0)},
                         {"input_scale", AttrOr(c.op, "input_scale", 1.0)}, {"is_result", false}})};
  };
  r["aten.softplus"] = [](const BackwardContext& c) {
    return Grads{c.Call("aten.softplus_backward", {c.grad(), c.in(0)},
                        {{"beta", AttrOr(c.op, "beta", 1.0)}, {"threshold", AttrOr(c.op, "threshold", 20.0)}})};
  };
  // maximum / minimum: the gradient goes to the larger (smaller) input, half
  // to each where they tie (derivatives.yaml).
  for (const auto& [extremum, wins] : {std::pair{"aten.maximum", "aten.gt.Tensor"}, std::pair{"aten.minimum", "aten.lt.Tensor"}}) {
    r[extremum] = [wins = std::string(wins)](const BackwardContext& c) {
      Grads grads(c.op.inputs.size());
      const TensorId ties =
          c.Call("aten.mul.Scalar", {MaskAsGrad(c, c.Call("aten.eq.Tensor", {c.in(0), c.in(1)}))}, {{"other", 0.5}});
      const TensorId share = c.Call("aten.add.Tensor", {MaskAsGrad(c, c.Call(wins, {c.in(0), c.in(1)})), ties});
      const TensorId first = c.Call("aten.mul.Tensor", {c.grad(), share});
      if (c.needs_grad[0]) grads[0] = c.ReduceTo(first, c.shape(c.in(0)));
      if (c.needs_grad[1]) grads[1] = c.ReduceTo(c.Call("aten.sub.Tensor", {c.grad(), first}), c.shape(c.in(1)));
      return grads;
    };
  }
  // where(condition, a, b) and masked_fill(self, mask, value): the gradient
  // where each input was taken, zero elsewhere.
  r["aten.where"] = [](const BackwardContext& c) {
    Grads grads(c.op.inputs.size());
    const TensorId taken = c.in(0);
    const auto zero_where = [&](TensorId mask) { return c.Call("aten.masked_fill.Scalar", {c.grad(), mask}, {{"value", 0.0}}); };
    if (c.needs_grad[1]) grads[1] = c.ReduceTo(zero_where(c.Call("aten.logical_not", {taken})), c.shape(c.in(1)));
    if (c.needs_grad[2]) grads[2] = c.ReduceTo(zero_where(taken), c.shape(c.in(2)));
    return grads;
  };
  // index_put(self, indices..., values): self's gradient with the written
  // positions zeroed (kept where the values were added: accumulate), the
  // values' gradient read back at them (aten.index). Index tensors get none;
  // `indices` with absent (None) entries, or values broadcast to the indexed
  // shape, have no rule.
  r["aten.index_put"] = [](const BackwardContext& c) {
    const size_t n = c.op.inputs.size();
    if (n < 3 || (c.op.attrs.count("indices") && !std::holds_alternative<std::monostate>(c.op.attrs.at("indices")))) {
      Fail("{}: no backward rule for index_put with absent index entries", c.op.name);
    }
    std::vector<TensorId> indices(c.op.inputs.begin() + 1, c.op.inputs.end() - 1);
    const TensorId values = c.op.inputs.back();
    Grads grads(n);
    const AttrValue accumulate = AttrOr(c.op, "accumulate", false);
    if (const bool* on = std::get_if<bool>(&accumulate); on && *on) {
      grads[0] = c.grad();
    } else {
      std::vector<TensorId> put{c.grad()};
      put.insert(put.end(), indices.begin(), indices.end());
      put.push_back(c.Call("aten.zeros_like", {values}));
      grads[0] = c.Call("aten.index_put", put);
    }
    std::vector<TensorId> read{c.grad()};
    read.insert(read.end(), indices.begin(), indices.end());
    const TensorId picked = c.Call("aten.index.Tensor", read);
    if (c.shape(picked) != c.shape(values)) {
      Fail("{}: no backward rule for values {} broadcast to the indexed shape {}", c.op.name,
           ShapeToString(c.shape(values)), ShapeToString(c.shape(picked)));
    }
    grads[n - 1] = picked;
    return grads;
  };
  r["aten.masked_fill"] = [](const BackwardContext& c) {
    if (c.op.inputs.size() != 2) Fail("{}: no backward rule for a tensor fill value", c.op.name);
    Grads grads(c.op.inputs.size());
    grads[0] = c.Call("aten.masked_fill.Scalar", {c.grad(), c.in(1)}, {{"value", 0.0}});
    return grads;
  };
  // clamp_min / clamp_max with a scalar bound: the gradient where the input is
  // inside it (at the bound included, as PyTorch).
  for (const auto& [clamp, inside, bound] : {std::tuple{"aten.clamp_min", "aten.ge.Scalar", "min"},
                                              std::tuple{"aten.clamp_max", "aten.le.Scalar", "max"}}) {
    r[clamp] = [inside = std::string(inside), bound = std::string(bound)](const BackwardContext& c) {
      if (c.op.inputs.size() != 1) Fail("{}: no backward rule for a tensor bound", c.op.name);
      const TensorId mask = c.Call(inside, {c.in(0)}, {{"other", AttrOr(c.op, bound, 0.0)}});
      return Grads{c.Call("aten.mul.Tensor", {c.grad(), MaskAsGrad(c, mask)})};
    };
  }
  r["aten.relu"] = [](const BackwardContext& c) {
    return Grads{c.Call("aten.threshold_backward", {c.grad(), c.out(0)}, {{"threshold", int64_t{0}}})};
  };
  r["aten.gelu"] = [](const BackwardContext& c) {
    return Grads{c.Call("aten.gelu_backward", {c.grad(), c.in(0)}, {{"approximate", AttrOr(c.op, "approximate", std::string("none"))}})};
  };
  r["aten.tanh"] = [](const BackwardContext& c) { return Grads{c.Call("aten.tanh_backward", {c.grad(), c.out(0)})}; };
  r["aten.sigmoid"] = [](const BackwardContext& c) { return Grads{c.Call("aten.sigmoid_backward", {c.grad(), c.out(0)})}; };
  r["aten.silu"] = [](const BackwardContext& c) { return Grads{c.Call("aten.silu_backward", {c.grad(), c.in(0)})}; };
  r["aten.hardtanh"] = [](const BackwardContext& c) {
    return Grads{c.Call("aten.hardtanh_backward", {c.grad(), c.in(0)},
                        {{"min_val", AttrOr(c.op, "min_val", -1.0)}, {"max_val", AttrOr(c.op, "max_val", 1.0)}})};
  };
  r["aten.leaky_relu"] = [](const BackwardContext& c) {
    return Grads{c.Call("aten.leaky_relu_backward", {c.grad(), c.in(0)},
                        {{"negative_slope", AttrOr(c.op, "negative_slope", 0.01)}, {"self_is_result", false}})};
  };
  r["aten.hardsigmoid"] = [](const BackwardContext& c) {
    return Grads{c.Call("aten.hardsigmoid_backward", {c.grad(), c.in(0)})};
  };
  r["aten.hardswish"] = [](const BackwardContext& c) {
    return Grads{c.Call("aten.hardswish_backward", {c.grad(), c.in(0)})};
  };
  // d exp(x) = exp(x); d log(x) = 1/x; d sqrt(x) = 1/(2 sqrt(x));
  // d erf(x) = 2/sqrt(pi) exp(-x^2); d x^p = p x^(p-1) (derivatives.yaml).
  r["aten.exp"] = [](const BackwardContext& c) { return Grads{c.Call("aten.mul.Tensor", {c.grad(), c.out(0)})}; };
  r["aten.log"] = [](const BackwardContext& c) { return Grads{c.Call("aten.div.Tensor", {c.grad(), c.in(0)})}; };
  r["aten.sqrt"] = [](const BackwardContext& c) {
    return Grads{c.Call("aten.div.Tensor", {c.grad(), c.Call("aten.mul.Scalar", {c.out(0)}, {{"other", 2.0}})})};
  };
  r["aten.erf"] = [](const BackwardContext& c) {
    const TensorId x = c.in(0);
    const TensorId gauss = c.Call("aten.exp", {c.Call("aten.neg", {c.Call("aten.mul.Tensor", {x, x})})});
    const double two_over_sqrt_pi = 1.1283791670955126;
    return Grads{c.Call("aten.mul.Tensor", {c.grad(), c.Call("aten.mul.Scalar", {gauss}, {{"other", two_over_sqrt_pi}})})};
  };
  r["aten.pow"] = [](const BackwardContext& c) {
    if (!IsScalarOverload(c.op)) Fail("{}: no backward rule for a tensor exponent", c.op.name);
    const double p = DoubleAttr(c.op, "exponent", 1.0);
    const TensorId lower = c.Call("aten.pow.Tensor_Scalar", {c.in(0)}, {{"exponent", p - 1.0}});
    return Grads{c.Call("aten.mul.Tensor", {c.grad(), c.Call("aten.mul.Scalar", {lower}, {{"other", p}})})};
  };
  r["aten.native_dropout"] = [](const BackwardContext& c) {
    const double p = DoubleAttr(c.op, "p", 0.5);
    const double scale = p >= 1.0 ? 0.0 : 1.0 / (1.0 - p);
    return Grads{c.Call("aten.native_dropout_backward", {c.grad(), c.out(1)}, {{"scale", scale}})};
  };

  // --- Softmax and losses -------------------------------------------------
  for (const char* sm : {"aten._softmax", "aten._log_softmax"}) {
    const std::string back = std::string(sm) + "_backward_data";
    r[sm] = [back](const BackwardContext& c) {
      return Grads{c.Call(back, {c.grad(), c.out(0)},
                          {{"dim", IntAttr(c.op, "dim", -1)}, {"input_dtype", std::string(ToString(c.builder.tensor(c.in(0)).dtype))}})};
    };
  }
  r["aten.nll_loss_forward"] = [](const BackwardContext& c) {
    Grads grads(c.op.inputs.size());
    std::vector<TensorId> inputs = {c.grad(0), c.in(0), c.in(1)};
    Attrs attrs = {{"reduction", IntAttr(c.op, "reduction", 1)}, {"ignore_index", IntAttr(c.op, "ignore_index", -100)}};
    if (c.op.inputs.size() > 2) {
      inputs.push_back(c.in(2));
    } else {
      attrs["weight"] = std::monostate{};
    }
    inputs.push_back(c.out(1));
    grads[0] = c.Call("aten.nll_loss_backward", inputs, attrs);
    return grads;
  };

  // --- Normalization ------------------------------------------------------
  r["aten.native_layer_norm"] = [](const BackwardContext& c) {
    const auto weight = ArgPosition(c.op, "weight");
    const auto bias = ArgPosition(c.op, "bias");
    const auto mask = Mask(c, 0, weight, bias);
    std::vector<TensorId> inputs = {c.grad(0), c.in(0), c.out(1), c.out(2)};
    Attrs attrs = {{"normalized_shape", c.op.attrs.at("normalized_shape")}, {"output_mask", mask}};
    if (weight) inputs.push_back(c.in(*weight)); else attrs["weight"] = std::monostate{};
    if (bias) inputs.push_back(c.in(*bias)); else attrs["bias"] = std::monostate{};
    Grads grads(c.op.inputs.size());
    Scatter(mask, c.CallMulti("aten.native_layer_norm_backward", inputs, attrs), {0, weight, bias}, grads);
    return grads;
  };
  r["aten.native_batch_norm"] = [](const BackwardContext& c) {
    const auto weight = ArgPosition(c.op, "weight");
    const auto bias = ArgPosition(c.op, "bias");
    const auto mean = ArgPosition(c.op, "running_mean");
    const auto var = ArgPosition(c.op, "running_var");
    const auto mask = Mask(c, 0, weight, bias);
    std::vector<TensorId> inputs = {c.grad(0), c.in(0)};
    Attrs attrs = {{"train", AttrOr(c.op, "training", true)}, {"eps", AttrOr(c.op, "eps", 1e-5)}, {"output_mask", mask}};
    if (weight) inputs.push_back(c.in(*weight)); else attrs["weight"] = std::monostate{};
    if (mean) inputs.push_back(c.in(*mean)); else attrs["running_mean"] = std::monostate{};
    if (var) inputs.push_back(c.in(*var)); else attrs["running_var"] = std::monostate{};
    inputs.push_back(c.out(1));
    inputs.push_back(c.out(2));
    Grads grads(c.op.inputs.size());
    Scatter(mask, c.CallMulti("aten.native_batch_norm_backward", inputs, attrs), {0, weight, bias}, grads);
    return grads;
  };

  // --- Convolution and pooling -------------------------------------------
  r["aten.convolution"] = [](const BackwardContext& c) {
    const std::optional<size_t> bias = ArgPosition(c.op, "bias");
    const auto mask = Mask(c, 0, 1, bias);
    Attrs attrs;
    for (const char* name : {"stride", "padding", "dilation", "transposed", "output_padding", "groups"}) {
      if (const AttrValue* v = FindAttr(c.op, name)) attrs[name] = *v;
    }
    attrs["bias_sizes"] = bias ? AttrValue(c.shape(c.in(2))) : AttrValue(std::monostate{});
    attrs["output_mask"] = mask;
    Grads grads(c.op.inputs.size());
    Scatter(mask, c.CallMulti("aten.convolution_backward", {c.grad(), c.in(0), c.in(1)}, attrs), {0, 1, bias}, grads);
    return grads;
  };
  for (const char* pool : {"aten.max_pool2d_with_indices", "aten.max_pool3d_with_indices"}) {
    r[pool] = [](const BackwardContext& c) {
      return Grads{c.Call(c.op.type + "_backward", {c.grad(0), c.in(0), c.out(1)}, c.op.attrs)};
    };
  }
  for (const char* pool : {"aten.avg_pool2d", "aten.avg_pool3d"}) {
    r[pool] = [](const BackwardContext& c) {
      return Grads{c.Call(c.op.type + "_backward", {c.grad(), c.in(0)}, c.op.attrs)};
    };
  }
  r["aten._adaptive_avg_pool2d"] = [](const BackwardContext& c) {
    return Grads{c.Call("aten._adaptive_avg_pool2d_backward", {c.grad(), c.in(0)})};
  };
  for (const char* up : {"aten.upsample_nearest2d", "aten.upsample_bilinear2d"}) {
    r[up] = [](const BackwardContext& c) {
      Attrs attrs = c.op.attrs;
      attrs["input_size"] = c.shape(c.in(0));
      return Grads{c.Call(c.op.type + "_backward", {c.grad()}, attrs)};
    };
  }
  r["aten.pixel_shuffle"] = [](const BackwardContext& c) {
    return Grads{c.Call("aten.pixel_unshuffle", {c.grad()}, {{"downscale_factor", IntAttr(c.op, "upscale_factor", 1)}})};
  };
  r["aten.embedding"] = [](const BackwardContext& c) {
    Grads grads(c.op.inputs.size());
    grads[0] = c.Call("aten.embedding_dense_backward", {c.grad(), c.in(1)},
                      {{"num_weights", c.shape(c.in(0))[0]},
                       {"padding_idx", IntAttr(c.op, "padding_idx", -1)},
                       {"scale_grad_by_freq", static_cast<bool>(IntAttr(c.op, "scale_grad_by_freq", 0))}});
    return grads;
  };

  // --- Reductions ---------------------------------------------------------
  for (const char* red : {"aten.sum", "aten.mean"}) {
    const bool mean = std::string_view(red) == "aten.mean";
    r[red] = [mean](const BackwardContext& c) {
      const Shape& in = c.shape(c.in(0));
      TensorId g = c.grad();
      int64_t count = 1;
      Shape kept = in;
      for (int64_t d : ReducedDims(c.op, in.size())) {
        count *= in[d];
        kept[d] = 1;
      }
      if (!IntAttr(c.op, "keepdim", 0)) g = c.Reshape(g, kept);
      g = c.Call("aten.expand", {g}, {{"size", in}});
      if (mean) g = c.Call("aten.div.Scalar", {g}, {{"other", static_cast<double>(count)}});
      return Grads{g};
    };
  }
  // reflection / replication padding: ATen's own backward (the reflected or
  // repeated border entries' gradients added into the ones they copy).
  for (const char* pad : {"aten.reflection_pad1d", "aten.reflection_pad2d", "aten.reflection_pad3d",
                          "aten.replication_pad1d", "aten.replication_pad2d", "aten.replication_pad3d"}) {
    r[pad] = [back = std::string(pad) + "_backward"](const BackwardContext& c) {
      return Grads{c.Call(back, {c.grad(), c.in(0)}, {{"padding", AttrOr(c.op, "padding", AttrValue{})}})};
    };
  }
  // logsumexp over dims: the gradient times softmax, exp(x - result).
  r["aten.logsumexp"] = [](const BackwardContext& c) {
    const KeptReduction k = KeepReducedDims(c);
    return Grads{c.Call("aten.mul.Tensor", {k.grad, c.Call("aten.exp", {c.Call("aten.sub.Tensor", {c.in(0), k.result})})})};
  };
  // gather(self, dim, index) and topk's values: the gradient added back at the
  // indices, into zeros of the input's shape (aten.scatter_add).
  const auto scattered = [](const BackwardContext& c, TensorId index, int64_t dim) {
    return c.Call("aten.scatter_add", {c.Zeros(c.in(0)), index, c.grad()}, {{"dim", dim}});
  };
  r["aten.gather"] = [scattered](const BackwardContext& c) {
    Grads grads(c.op.inputs.size());
    if (c.needs_grad[0]) grads[0] = scattered(c, c.in(1), IntAttr(c.op, "dim", 0));
    return grads;
  };
  // index_select(self, dim, index): the gradient's rows added back at the indices.
  r["aten.index_select"] = [](const BackwardContext& c) {
    Grads grads(c.op.inputs.size());
    if (c.needs_grad[0]) {
      grads[0] = c.Call("aten.index_add", {c.Zeros(c.in(0)), c.in(1), c.grad()}, {{"dim", IntAttr(c.op, "dim", 0)}});
    }
    return grads;
  };
  // scatter(self, dim, index, src) / scatter_add: self's gradient where src did not
  // overwrite it (all of it for scatter_add), src's the gradient read at the indices.
  for (const char* scatter : {"aten.scatter", "aten.scatter_add"}) {
    r[scatter] = [](const BackwardContext& c) {
      Grads grads(c.op.inputs.size());
      if (c.op.inputs.size() < 3) Fail("{}: no backward rule for {} without a src tensor", c.op.name, c.op.type);
      const int64_t dim = IntAttr(c.op, "dim", 0);
      if (c.needs_grad[0]) {
        grads[0] = c.op.type == "aten.scatter_add"
                       ? c.grad()
                       : c.Call("aten.scatter.value", {c.grad(), c.in(1)}, {{"dim", dim}, {"value", 0.0}});
      }
      if (c.needs_grad[2]) grads[2] = c.Call("aten.gather", {c.grad(), c.in(1)}, {{"dim", dim}});
      return grads;
    };
  }
  r["aten.topk"] = [scattered](const BackwardContext& c) {
    return Grads{scattered(c, c.out(1), NormDim(IntAttr(c.op, "dim", -1), c.shape(c.in(0)).size()))};
  };
  // cumsum along dim: the gradient summed from the end (reversed, cumsum, reversed back).
  r["aten.cumsum"] = [](const BackwardContext& c) {
    const Attrs flip = {{"dims", std::vector<int64_t>{IntAttr(c.op, "dim", 0)}}};
    const TensorId sums =
        c.Call("aten.cumsum", {c.Call("aten.flip", {c.grad()}, flip)}, {{"dim", IntAttr(c.op, "dim", 0)}, {"dtype", std::monostate{}}});
    return Grads{c.Call("aten.flip", {sums}, flip)};
  };
  // triu / tril: the gradient's same triangle.
  for (const char* tri : {"aten.triu", "aten.tril"}) {
    r[tri] = [tri](const BackwardContext& c) {
      return Grads{c.Call(tri, {c.grad()}, {{"diagonal", IntAttr(c.op, "diagonal", 0)}})};
    };
  }
  // amax / amin: the gradient shared evenly among the elements equal to the
  // extremum, as autograd's scale_grad_by_count: (grad / count) * mask.
  for (const char* red : {"aten.amax", "aten.amin"}) {
    r[red] = [](const BackwardContext& c) {
      const KeptReduction k = KeepReducedDims(c);
      const TensorId mask = MaskAsGrad(c, c.Call("aten.eq.Tensor", {c.in(0), k.result}));
      const TensorId count =
          c.Call("aten.sum.dim_IntList", {mask}, {{"dim", k.dims}, {"keepdim", true}, {"dtype", std::monostate{}}});
      return Grads{c.Call("aten.mul.Tensor", {c.Call("aten.div.Tensor", {k.grad, count}), mask})};
    };
  }
  return r;
}

}  // namespace

TensorId BackwardContext::grad(size_t i) const {
  if (i < output_grads.size() && output_grads[i]) return *output_grads[i];
  return Zeros(out(i));
}

TensorId BackwardContext::Zeros(TensorId t) const {
  const Tensor& like = builder.tensor(t);
  return builder.Call("aten.zeros", {}, {{"size", like.shape}, {"dtype", std::string(ToString(like.dtype))}}, name);
}

TensorId BackwardContext::ReduceTo(TensorId g, const Shape& target) const {
  const Shape& from = shape(g);
  if (from == target) return g;
  // Sum leading extra dims away, then broadcast dims (size 1 in target)
  // with keepdim, as autograd's sum_to does.
  std::vector<int64_t> dims;
  const size_t lead = from.size() - target.size();
  for (size_t d = 0; d < from.size(); ++d) {
    if (d < lead || (target[d - lead] == 1 && from[d] != 1)) dims.push_back(static_cast<int64_t>(d));
  }
  TensorId summed = Call("aten.sum.dim_IntList", {g}, {{"dim", dims}, {"keepdim", true}});
  return shape(summed) == target ? summed : Reshape(summed, target);
}

TensorId BackwardContext::Reshape(TensorId g, const Shape& target) const {
  if (shape(g) == target) return g;
  if (ProducedByNonContiguousView(builder.graph(), g)) {
    g = Call("aten.clone", {g}, {{"memory_format", std::string("contiguous_format")}});
    return Call("aten._unsafe_view", {g}, {{"size", target}});
  }
  return Call("aten.view", {g}, {{"size", target}});
}

const BackwardRule* FindBackwardRule(std::string_view type) {
  static const auto rules = MakeRules();
  auto it = rules.find(type);
  return it == rules.end() ? nullptr : &it->second;
}

bool IsNonDifferentiable(std::string_view type) {
  static const std::unordered_map<std::string_view, bool> ops = {
      {"aten.zeros", true}, {"aten.ones", true}, {"aten.empty", true}, {"aten.full", true},
      {"aten.zeros_like", true}, {"aten.ones_like", true}, {"aten.full_like", true}, {"aten.scalar_tensor", true},
      {"aten.bernoulli", true}, {"aten.rand_like", true}, {"aten.randn_like", true}, {"aten.detach", true},
      {"aten.eq", true}, {"aten.ne", true}, {"aten.lt", true}, {"aten.gt", true}, {"aten.le", true}, {"aten.ge", true},
      {"aten.sign", true}, {"aten.logical_not", true}, {"aten.sgn", true},
      // Piecewise constant: zero gradient almost everywhere, as autograd gives.
      {"aten.floor", true}, {"aten.ceil", true}, {"aten.round", true}};
  return ops.count(type) > 0;
}

}  // namespace memfit::autodiff
