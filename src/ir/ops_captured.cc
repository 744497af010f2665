// Ops that captured real programs use beyond the core set (issue 20's
// idioms corpus, python/bench/capture_corpus.py): elementwise math and
// activations, gather / scatter / index_select, group norm, top-k, cumulative
// and triangular ops, padding, pixel shuffle, smooth L1 loss; PReLU, weight
// norm, embedding bags, CTC loss, grid sampling, im2col / col2im, and the
// data-dependent nonzero / masked_select.
#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <optional>

#include "ir/ops_common.h"
#include "util/checked_math.h"

namespace memfit::ops {
namespace {

using Types = std::vector<TensorType>;

OpSchema Unary(std::string type, std::vector<std::string_view> args, double flops = 1) {
  OpSchema schema = Pointwise(std::move(type), std::move(args), flops);
  schema.infer = [](const OpCall& call) {
    TensorType out = call.input(0);
    if (auto d = call.dtype_attr("dtype")) out.dtype = *d;
    return Types{out};
  };
  schema.dim_links = IdentityLinks;
  return schema;
}

// Output 0 has the shape of input `like`; its dims are linked to it.
OpSchema ShapedLike(std::string type, std::vector<std::string_view> args, size_t like) {
  OpSchema schema;
  schema.type = std::move(type);
  schema.tensor_args = std::move(args);
  schema.infer = [like](const OpCall& call) { return Types{call.input(like)}; };
  schema.dim_links = [like](const OpCall& call, const Types& outs) {
    DimLinks links;
    for (size_t d = 0; d < outs[0].shape.size() && d < call.input(like).shape.size(); ++d) {
      links.links.push_back({0, static_cast<int>(d), static_cast<int>(like), static_cast<int>(d)});
    }
    return links;
  };
  return schema;
}

// The extent a data-dependent op (nonzero, masked_select) gives dim `d`:
// read from the declared output of rank `rank`, which must not exceed
// `most` (the elements it selects from).
int64_t DeclaredExtent(const OpCall& call, size_t rank, size_t d, int64_t most) {
  const auto& declared = call.declared_outputs();
  if (declared.empty() || declared[0].shape.size() != rank) {
    call.Fail("selects a data-dependent number of elements; the graph must declare the output shape");
  }
  const int64_t n = declared[0].shape[d];
  if (n < 0 || n > most) call.Fail(fmt::format("declares {} selected elements of {}", n, most));
  return n;
}

// The sliding-window count of im2col / col2im over `spatial` ([H, W]).
int64_t WindowCount(const OpCall& call, const std::vector<int64_t>& spatial) {
  const auto kernel = call.ints_attr("kernel_size");
  const auto dilation = call.ints_attr("dilation", {1, 1});
  const auto padding = call.ints_attr("padding", {0, 0});
  const auto stride = call.ints_attr("stride", {1, 1});
  if (kernel.size() != 2 || dilation.size() != 2 || padding.size() != 2 || stride.size() != 2) {
    call.Fail("kernel_size, dilation, padding and stride must have 2 entries");
  }
  int64_t count = 1;
  for (size_t i = 0; i < 2; ++i) {
    if (kernel[i] <= 0 || dilation[i] <= 0 || stride[i] <= 0 || padding[i] < 0) {
      call.Fail("kernel_size, dilation and stride must be positive and padding non-negative");
    }
    const int64_t span = spatial[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1;
    if (span < 0) call.Fail(fmt::format("extent {} is smaller than the kernel {}", spatial[i], kernel[i]));
    count *= span / stride[i] + 1;
  }
  return count;
}

// Dimension links that do not depend on the call's attributes.
std::function<DimLinks(const OpCall&, const Types&)> FixedLinks(std::vector<DimLink> links) {
  return [links](const OpCall&, const Types&) { return DimLinks{links, {}, {}}; };
}

void AddMoreCapturedOps(Schemas& s);

}  // namespace

void AddCapturedOps(Schemas& s) {
  AddMoreCapturedOps(s);
  // Elementwise, result dtype by promotion.
  for (const char* name : {"aten.xlogy", "aten.remainder", "aten.logical_xor", "aten.atan2", "aten.fmod",
                           "aten.logaddexp", "aten.hypot", "aten.fmin", "aten.fmax", "aten.bitwise_and",
                           "aten.bitwise_or", "aten.bitwise_xor", "aten.special_xlog1py"}) {
    s.push_back(Pointwise(name, {"self", "other?"}));
  }
  // lerp(self, end, weight: tensor or scalar), addcdiv(self, tensor1, tensor2, value): broadcast.
  s.push_back(Pointwise("aten.lerp", {"self", "end", "weight?"}, 3));
  s.push_back(Pointwise("aten.addcdiv", {"self", "tensor1", "tensor2"}, 3));
  // The backward of shrinkage and logit: grad_output's and self's shape.
  for (const char* name : {"aten.hardshrink_backward", "aten.softshrink_backward", "aten.logit_backward"}) {
    s.push_back(Pointwise(name, {"grad_output", "self"}, 2));
  }
  for (const char* name : {"aten.logical_and", "aten.logical_or"}) {
    s.push_back(Pointwise(name, {"self", "other"}));
    s.back().infer = [infer = s.back().infer](const OpCall& call) {
      auto outs = infer(call);
      outs[0].dtype = DType::kBool;
      return outs;
    };
  }
  for (const char* name : {"aten.logical_and_", "aten.logical_or_", "aten.logical_not_"}) {
    const bool unary = std::string_view(name) == "aten.logical_not_";
    OpSchema schema = unary ? ShapedLike(name, {"self"}, 0) : ShapedLike(name, {"self", "other"}, 0);
    schema.inplace = true;
    // other broadcasts to self, element by element (clamp's backward:
    // ge(x, min).logical_and_(le(x, max))).
    if (!unary) schema.dim_links = PointwiseLinks;
    s.push_back(schema);
  }
  for (const char* name : {"aten.sgn", "aten.bitwise_not", "aten.elu", "aten.softplus", "aten.mish", "aten.log1p",
                           "aten.expm1", "aten.sin", "aten.cos", "aten.floor", "aten.ceil", "aten.round",
                           "aten.square", "aten.logit", "aten.celu", "aten.hardshrink", "aten.softshrink",
                           "aten.threshold", "aten.sinc", "aten.erfinv", "aten.lgamma", "aten.digamma",
                           "aten.polygamma", "aten.nan_to_num", "aten.special_ndtri"}) {
    s.push_back(Unary(name, {"self"}));
  }
  // Same shape, not element-wise: a scan along `dim` (every element reads
  // the ones before it), a triangle of the last two dims (an element's
  // value depends on its row and column). Those dims are not linked.
  for (const char* name : {"aten.cumsum", "aten.cumprod", "aten.logcumsumexp", "aten.triu", "aten.tril"}) {
    s.push_back(Unary(name, {"self"}));
    s.back().pointwise = false;
    const bool scan = std::string_view(name).find("cum") != std::string_view::npos;
    s.back().dim_links = [scan](const OpCall& call, const Types& outs) {
      DimLinks links;
      const size_t rank = call.input(0).shape.size();
      std::vector<bool> tied(rank, false);
      if (scan) {
        tied = call.dim_mask({call.int_attr("dim", 0)}, rank, "dim");
      } else {
        for (size_t d = rank >= 2 ? rank - 2 : 0; d < rank; ++d) tied[d] = true;
      }
      for (size_t d = 0; d < rank && d < outs[0].shape.size(); ++d) {
        if (!tied[d]) links.links.push_back({0, static_cast<int>(d), 0, static_cast<int>(d)});
      }
      return links;
    };
  }
  for (const char* name : {"aten.isnan", "aten.isinf", "aten.logical_not"}) {
    s.push_back(Unary(name, {"self"}));
    s.back().infer = [](const OpCall& call) { return Types{{call.input(0).shape, DType::kBool}}; };
  }
  // flip(self, dims): the flipped dims are not linked.
  s.push_back(Unary("aten.flip", {"self"}, 0));
  s.back().dim_links = [](const OpCall& call, const Types& outs) {
    DimLinks links;
    const size_t rank = call.input(0).shape.size();
    const std::vector<bool> flipped = call.dim_mask(call.ints_attr("dims", {}), rank, "dims");
    for (size_t d = 0; d < rank && d < outs[0].shape.size(); ++d) {
      if (!flipped[d]) links.links.push_back({0, static_cast<int>(d), 0, static_cast<int>(d)});
    }
    return links;
  };
  // Element-wise backward ops: the gradient and the saved tensor are read
  // where the result is written.
  for (const char* name : {"aten.elu_backward", "aten.softplus_backward", "aten.mish_backward"}) {
    const bool elu = std::string_view(name) == "aten.elu_backward";
    s.push_back(Schema(name, {"grad_output", elu ? "self_or_result" : "self"}, [](const OpCall& call) {
      if (call.input(0).shape != call.input(1).shape) call.Fail("grad_output and self shapes differ");
      return Types{call.input(1)};
    }));
    s.back().dim_links = SameShapeLinks;
  }
  // glu_backward(grad_output, self, dim): self's `dim` holds the two halves
  // that each output element pairs (not linked); the others are element-wise.
  OpSchema glu_back = ShapedLike("aten.glu_backward", {"grad_output", "self"}, 1);
  glu_back.dim_links = [](const OpCall& call, const Types& outs) {
    DimLinks links;
    const int64_t dim = call.dim(call.int_attr("dim", -1), outs[0].shape.size(), "dim");
    for (int d = 0; d < static_cast<int>(outs[0].shape.size()); ++d) {
      if (d == dim) continue;
      for (int input : {0, 1}) links.links.push_back({0, d, input, d});
    }
    return links;
  };
  s.push_back(glu_back);
  // smooth_l1 / huber backward(grad_output, self, target): ElementwiseLossBackwardLinks.
  // Their result is self's; grad_output a scalar (a reduced loss's) or self's shape.
  const auto like_self = [](const OpCall& call) {
    if (call.input(1).shape != call.input(2).shape) call.Fail("self and target shapes differ");
    const Shape& grad = call.input(0).shape;
    if (!grad.empty() && grad != call.input(1).shape) call.Fail("grad_output is neither a scalar nor self's shape");
    return Types{call.input(1)};
  };
  for (const char* name : {"aten.smooth_l1_loss_backward", "aten.huber_loss_backward"}) {
    OpSchema back = Schema(name, {"grad_output", "self", "target"}, like_self);
    back.dim_links = ElementwiseLossBackwardLinks;
    s.push_back(back);
  }
  // binary_cross_entropy's backward (grad_output, self, target, weight?): nn.BCELoss after a sigmoid.
  OpSchema bce_back =
      Schema("aten.binary_cross_entropy_backward", {"grad_output", "self", "target", "weight?"}, like_self);
  bce_back.dim_links = ElementwiseLossBackwardLinks;
  s.push_back(bce_back);
  for (const char* name : {"aten.smooth_l1_loss", "aten.huber_loss", "aten.binary_cross_entropy_with_logits",
                           "aten.binary_cross_entropy"}) {
    OpSchema loss;
    loss.type = name;
    const std::string_view type = name;
    loss.tensor_args = {"self", "target"};
    if (type == "aten.binary_cross_entropy_with_logits") {
      loss.tensor_args = {"self", "target", "weight?", "pos_weight?"};
    }
    if (type == "aten.binary_cross_entropy") loss.tensor_args = {"self", "target", "weight?"};
    loss.infer = [](const OpCall& call) {
      if (call.input(0).shape != call.input(1).shape) call.Fail("self and target shapes differ");
      const int64_t reduction = call.int_attr("reduction", 1);
      return Types{{reduction == 0 ? call.input(0).shape : Shape{}, call.input(0).dtype}};
    };
    loss.dim_links = ElementwiseLossLinks;
    s.push_back(loss);
  }

  // glu(self, dim): halves `dim`.
  OpSchema glu = Schema("aten.glu", {"self"}, [](const OpCall& call) {
    TensorType out = call.input(0);
    const int64_t d = call.axis(call.int_attr("dim", -1), out.shape.size(), "dim");
    if (out.shape[d] % 2 != 0) call.Fail(fmt::format("dim {} has odd extent {}", d, out.shape[d]));
    out.shape[d] /= 2;
    return Types{out};
  });
  glu.dim_links = [](const OpCall& call, const Types& outs) {
    return AllBut(call, outs, call.dim(call.int_attr("dim", -1), outs[0].shape.size(), "dim"));
  };
  s.push_back(glu);

  // gather(self, dim, index) -> index's shape; scatter / scatter_add /
  // index_add (self, dim, index, src / source) -> self's shape.
  //
  // Their `dim` is addressed by the values of the index: a part of it would
  // need the indices shifted into the part and the others dropped, so it is
  // linked to nothing but, for gather, the index's own positions. Off `dim`
  // every tensor input of the output's extent is indexed like the output
  // (self, index and src of a scatter; self and index of a gather).
  auto indexed_along = [](const OpCall& call, const Types& outs) {
    DimLinks links;
    const Shape& out = outs[0].shape;
    const int64_t dim = call.dim(call.int_attr("dim", 0), std::max<size_t>(out.size(), 1), "dim");
    const bool gather = call.op().type == "aten.gather";
    for (size_t i = 0; i < call.num_inputs(); ++i) {
      const Shape& in = call.input(i).shape;
      if (in.size() != out.size()) continue;  // index_add's 1-d index
      for (size_t d = 0; d < out.size(); ++d) {
        const bool along = static_cast<int64_t>(d) == dim;
        if (in[d] == out[d] && (!along || (gather && i == 1))) {
          links.links.push_back({0, static_cast<int>(d), static_cast<int>(i), static_cast<int>(d)});
        }
      }
    }
    return links;
  };
  OpSchema gather = ShapedLike("aten.gather", {"self", "index"}, 1);
  gather.infer = [](const OpCall& call) {
    if (call.input(0).shape.size() != call.input(1).shape.size()) call.Fail("self and index ranks differ");
    return Types{{call.input(1).shape, call.input(0).dtype}};
  };
  gather.dim_links = indexed_along;
  s.push_back(gather);
  // scatter_add / scatter_reduce (self, dim, index, src): src's position i
  // along `dim` goes to self's position index[i]; index_add(self, dim,
  // index, source, alpha): source's row i goes to self's row index[i]. Parts
  // of those positions add into self one after another (kInto): with a
  // reduction, sum, prod, amax and amin with self included (a mean divides
  // by counts, and without self a part would drop what the parts before it
  // wrote).
  auto adds_into = [indexed_along](const OpCall& call, const Types& outs) {
    DimLinks links = indexed_along(call, outs);
    if (call.num_inputs() != 3 || call.input(1).shape.empty() || call.input(2).shape.empty()) return links;
    const std::string_view type = call.op().type;
    const Shape& index = call.input(1).shape;
    const Shape& src = call.input(2).shape;
    const int64_t dim = call.dim(call.int_attr("dim", 0), src.size(), "dim");
    const bool rows = type.starts_with("aten.index_add");  // a 1-d index of rows
    const size_t index_axis = rows ? 0 : static_cast<size_t>(dim);
    if ((rows ? index.size() != 1 : index.size() != src.size()) || index[index_axis] != src[dim]) return links;
    if (type == "aten.scatter_reduce") {
      const std::string reduce = call.string_attr("reduce", "");
      if (!call.bool_attr("include_self", true) ||
          (reduce != "sum" && reduce != "prod" && reduce != "amax" && reduce != "amin")) {
        return links;
      }
    }
    links.reduced.push_back({2, static_cast<int>(dim), PartialCombine::kInto, 0});
    links.reduced.push_back({1, static_cast<int>(index_axis), PartialCombine::kInto, 0});
    return links;
  };
  auto adds = [](std::string_view name) {
    return name.starts_with("aten.scatter_add") || name == "aten.scatter_reduce" || name.starts_with("aten.index_add");
  };
  for (const char* name : {"aten.scatter", "aten.scatter_add", "aten.scatter_reduce", "aten.index_add",
                           "aten.index_copy", "aten.index_fill"}) {
    s.push_back(ShapedLike(name, {"self", "index?", "src?"}, 0));
    if (adds(name)) {
      s.back().dim_links = adds_into;
    } else {
      s.back().dim_links = indexed_along;
    }
  }
  // masked_scatter(self, mask, source): source's elements go, in order, to
  // the positions the mask sets: which of them a position gets depends on
  // every position before it. No links.
  s.push_back(ShapedLike("aten.masked_scatter", {"self", "mask", "source"}, 0));
  s.back().dim_links = nullptr;
  for (const char* name : {"aten.scatter_", "aten.scatter_add_", "aten.index_add_", "aten.index_copy_",
                           "aten.index_fill_"}) {
    s.push_back(ShapedLike(name, {"self", "index?", "src?"}, 0));
    if (adds(name)) {
      s.back().dim_links = adds_into;
    } else {
      s.back().dim_links = indexed_along;
    }
    s.back().inplace = true;
  }
  // index_select(self, dim, index): `dim` becomes index's length.
  OpSchema index_select = Schema("aten.index_select", {"self", "index"}, [](const OpCall& call) {
    TensorType out = call.input(0);
    const int64_t d = call.dim(call.int_attr("dim"), out.shape.size(), "dim");
    if (call.input(1).shape.size() > 1) call.Fail("index must be 0-d or 1-d");
    if (out.shape.empty()) {  // a 0-d tensor: its one element, picked by a one-element index
      if (Numel(call.input(1).shape) != 1) call.Fail("index of a 0-d tensor must have one element");
      return Types{out};
    }
    out.shape[d] = call.input(1).shape.empty() ? 1 : call.input(1).shape[0];
    return Types{out};
  });
  // Row i of the result is self's row index[i].
  index_select.dim_links = [](const OpCall& call, const Types& outs) {
    const int64_t dim = call.dim(call.int_attr("dim"), outs[0].shape.size(), "dim");
    DimLinks links = AllBut(call, outs, dim);
    if (call.input(1).shape.size() == 1 && !outs[0].shape.empty()) links.links.push_back({0, static_cast<int>(dim), 1, 0});
    return links;
  };
  s.push_back(index_select);

  // topk(self, k, dim) / max.dim / min.dim / sort -> (values, indices);
  // cummax / cummin(self, dim): a running extremum, self's shape, like sort's.
  for (const char* name : {"aten.topk", "aten.max", "aten.min", "aten.sort", "aten.kthvalue", "aten.median",
                           "aten.nanmedian", "aten.mode", "aten.cummax", "aten.cummin"}) {
    OpSchema select = Schema(name, {"self", "other?"}, [](const OpCall& call) {
      const TensorType& in = call.input(0);
      const std::string& type = call.op().type;
      if (call.num_inputs() == 2) {  // max.other
        const auto shape = Broadcast(in.shape, call.input(1).shape);
        if (!shape) {
          call.Fail(fmt::format("shapes {} and {} do not broadcast", ShapeToString(in.shape),
                                ShapeToString(call.input(1).shape)));
        }
        return Types{{*shape, in.dtype}};
      }
      const bool overall = type == "aten.max" || type == "aten.min" || type == "aten.median" ||
                           type == "aten.nanmedian";
      if (overall && !call.has_attr("dim")) return Types{{{}, in.dtype}};  // max(self): the overall maximum
      const bool keeps_shape = type == "aten.sort" || type == "aten.cummax" || type == "aten.cummin";
      Shape shape = in.shape;
      const int64_t d = call.dim(call.int_attr("dim", -1), shape.size(), "dim");
      if (type == "aten.topk") {
        const int64_t k = call.int_attr("k");
        if (k < 0 || k > (shape.empty() ? 1 : shape[d])) call.Fail(fmt::format("k = {} is out of range", k));
        if (!shape.empty()) shape[d] = k;
      } else if (!keeps_shape && !shape.empty()) {
        if (call.bool_attr("keepdim", false)) {
          shape[d] = 1;
        } else {
          shape.erase(shape.begin() + d);
        }
      }
      return Types{{shape, in.dtype}, {shape, DType::kI64}};
    });
    // Every dim but `dim` is independent (values and indices alike); `dim` itself
    // (sorted, picked from, reduced) is not linked. max.other is element-wise; an
    // overall max / min / median links nothing.
    select.dim_links = [](const OpCall& call, const Types& outs) {
      if (call.num_inputs() == 2) return PointwiseLinks(call, outs);
      const std::string& type = call.op().type;
      const bool overall = type == "aten.max" || type == "aten.min" || type == "aten.median" ||
                           type == "aten.nanmedian";
      if (call.input(0).shape.empty() || (overall && !call.has_attr("dim"))) return DimLinks{};
      const bool removes = type != "aten.topk" && type != "aten.sort" && type != "aten.cummax" &&
                           type != "aten.cummin" && !call.bool_attr("keepdim", false);
      return PieceLinks(removes, -1)(call, outs);
    };
    s.push_back(select);
  }

  // linspace(start, end, steps).
  OpSchema linspace;
  linspace.type = "aten.linspace";
  linspace.infer = [](const OpCall& call) {
    const int64_t steps = call.int_attr("steps");
    if (steps < 0) call.Fail(fmt::format("steps = {} must be non-negative", steps));
    return Types{{{steps}, call.dtype_attr("dtype").value_or(DType::kF32)}};
  };
  s.push_back(linspace);

  // repeat(self, repeats).
  OpSchema repeat = Schema("aten.repeat", {"self"}, [](const OpCall& call) {
    const auto repeats = call.ints_attr("repeats");
    Shape in = call.input(0).shape;
    if (repeats.size() < in.size()) call.Fail("'repeats' has fewer entries than self has dims");
    in.insert(in.begin(), repeats.size() - in.size(), 1);
    for (size_t i = 0; i < in.size(); ++i) {
      if (repeats[i] < 0) call.Fail("negative repeat");
      const auto extent = CheckedMul(in[i], repeats[i]);
      if (!extent) call.Fail(fmt::format("dim {} of extent {} repeated {} times overflows int64", i, in[i], repeats[i]));
      in[i] = *extent;
    }
    return Types{{in, call.input(0).dtype}};
  });
  // An axis repeated once runs through (self's axes line up with the last
  // ones of `repeats`); one repeated more is made of copies of the whole axis.
  repeat.dim_links = [](const OpCall& call, const Types&) {
    DimLinks links;
    const auto repeats = call.ints_attr("repeats");
    const int rank = static_cast<int>(call.input(0).shape.size());
    const int lead = static_cast<int>(repeats.size()) - rank;
    for (int i = 0; i < rank; ++i) {
      if (repeats[lead + i] == 1) links.links.push_back({0, lead + i, 0, i});
    }
    return links;
  };
  s.push_back(repeat);

  // unsafe_split(self, split_size, dim): split without the view (copies).
  OpSchema unsafe_split;
  unsafe_split.type = "aten.unsafe_split";
  unsafe_split.tensor_args = {"self"};
  unsafe_split.infer = SplitPieces;
  unsafe_split.dim_links = PieceLinks(false);
  s.push_back(unsafe_split);

  // dot(self, tensor) -> []; mv(self [n, m], vec [m]) -> [n].
  OpSchema dot = Schema("aten.dot", {"self", "tensor"}, [](const OpCall& call) {
    ExpectRank(call, 0, 1);
    if (call.input(0).shape != call.input(1).shape) call.Fail("dot of vectors of different lengths");
    return Types{{{}, call.input(0).dtype}};
  });
  // One index summed over both vectors: parts of it add up.
  dot.dim_links = [](const OpCall&, const Types&) {
    DimLinks links;
    links.reduced = {{0, 0, PartialCombine::kSum, 0}, {1, 0, PartialCombine::kSum, 0}};
    return links;
  };
  s.push_back(dot);
  OpSchema mv = Schema("aten.mv", {"self", "vec"}, [](const OpCall& call) {
    ExpectRank(call, 0, 2);
    ExpectRank(call, 1, 1);
    if (call.input(0).shape[1] != call.input(1).shape[0]) call.Fail("inner dimensions do not match");
    return Types{{{call.input(0).shape[0]}, call.input(0).dtype}};
  });
  mv.flops = [](const OpCall& call, const Types&) { return 2.0 * static_cast<double>(Numel(call.input(0).shape)); };
  // The rows are the result's; m is summed over the matrix's columns and the
  // vector (a deep & cross network's x @ w, and its weight gradient x.t() @ g
  // summed over the batch).
  mv.dim_links = [](const OpCall&, const Types&) {
    DimLinks links;
    links.links = {{0, 0, 0, 0}};
    links.reduced = {{0, 1, PartialCombine::kSum, 0}, {1, 0, PartialCombine::kSum, 0}};
    return links;
  };
  s.push_back(mv);

  // native_group_norm(input, weight?, bias?, N, C, HxW, group, eps) ->
  // (out, mean [N, group], rstd [N, group]).
  OpSchema gn = Schema("aten.native_group_norm", {"input", "weight?", "bias?"}, [](const OpCall& call) {
    const TensorType& in = call.input(0);
    const int64_t n = call.int_attr("N"), group = call.int_attr("group");
    if (in.shape.empty() || in.shape[0] != n) call.Fail(fmt::format("N = {} does not match input {}", n, ShapeToString(in.shape)));
    return Types{in, {{n, group}, StatisticsDType(call, 1, in.dtype)},
                 {{n, group}, StatisticsDType(call, 2, in.dtype)}};
  });
  // Each sample is normalized alone: the batch (dim 0) is linked through
  // the output and the statistics [N, group]; the channels of a group and
  // every spatial position are reduced together (statistics of the whole).
  // On a part of the batch the op's N follows the part (fission's
  // RescaleShapeAttrs).
  gn.dim_links = [](const OpCall&, const Types& outs) {
    DimLinks links;
    links.links = {{0, 0, 0, 0}, {1, 0, 0, 0}, {2, 0, 0, 0}};
    for (size_t d = 1; d < outs[0].shape.size(); ++d) links.reduced.push_back({0, static_cast<int>(d)});
    return links;
  };
  s.push_back(gn);
  // native_group_norm_backward(grad_out, input, mean, rstd, weight?, N, C,
  // HxW, group, output_mask) -> (grad_input, grad_weight [C], grad_bias [C]):
  // grad_input's samples are indexed like the inputs' (dim 0 of each); the
  // parameter gradients sum over the batch.
  OpSchema gn_back = Schema("aten.native_group_norm_backward", {"grad_out", "input", "mean", "rstd", "weight?"},
                            [](const OpCall& call) {
                              const TensorType& in = call.input(1);
                              const int64_t n = call.int_attr("N");
                              if (in.shape.size() < 2 || in.shape[0] != n || in.shape[1] != call.int_attr("C")) {
                                call.Fail(fmt::format("N = {}, C = {} do not match input {}", n, call.int_attr("C"),
                                                      ShapeToString(in.shape)));
                              }
                              if (call.input(0).shape != in.shape) call.Fail("grad_out and input shapes differ");
                              const auto mask = call.bools_attr("output_mask", {true, true, true});
                              const Shape channels = {call.int_attr("C")};
                              Types outs;
                              if (mask.size() > 0 && mask[0]) outs.push_back(in);
                              if (mask.size() > 1 && mask[1]) outs.push_back({channels, in.dtype});
                              if (mask.size() > 2 && mask[2]) outs.push_back({channels, in.dtype});
                              return outs;
                            });
  gn_back.dim_links = [](const OpCall& call, const Types&) {
    DimLinks links;
    const auto mask = call.bools_attr("output_mask", {true, true, true});
    const bool grad_input = !mask.empty() && mask[0];
    const bool params = (mask.size() > 1 && mask[1]) || (mask.size() > 2 && mask[2]);
    for (int input = 0; input < 4; ++input) {
      if (grad_input) links.links.push_back({0, 0, input, 0});
      if (params) links.reduced.push_back({input, 0, PartialCombine::kSum, 0});
    }
    return links;
  };
  s.push_back(gn_back);

  // reflection / replication padding: the last len(padding) / 2 dims grow.
  // The dims before the padded ones (a batch, the channels) are element-wise
  // in `inputs`; the padded ones read mirrored or repeated borders.
  auto unpadded_links = [](std::vector<int> inputs) {
    return [inputs](const OpCall& call, const Types& outs) {
      DimLinks links;
      const size_t padded = call.ints_attr("padding").size() / 2;
      for (size_t d = 0; d + padded < outs[0].shape.size(); ++d) {
        for (int input : inputs) links.links.push_back({0, static_cast<int>(d), input, static_cast<int>(d)});
      }
      return links;
    };
  };
  for (const char* dims : {"1d", "2d", "3d"}) {
    for (const char* kind : {"aten.reflection_pad", "aten.replication_pad"}) {
      OpSchema pad;
      pad.type = std::string(kind) + dims;
      pad.tensor_args = {"self"};
      pad.infer = [](const OpCall& call) {
        Shape out = call.input(0).shape;
        const auto p = call.ints_attr("padding");
        if (p.size() % 2 != 0 || p.size() / 2 > out.size()) call.Fail("'padding' needs 2 entries per padded dim");
        for (size_t i = 0; i < p.size() / 2; ++i) out[out.size() - 1 - i] += p[2 * i] + p[2 * i + 1];
        return Types{{out, call.input(0).dtype}};
      };
      pad.dim_links = unpadded_links({0});
      s.push_back(pad);
      s.push_back(ShapedLike(std::string(kind) + dims + "_backward", {"grad_output", "self"}, 1));
      s.back().dim_links = unpadded_links({0, 1});
    }
  }

  // pixel_shuffle(self, upscale_factor) / pixel_unshuffle(self, downscale_factor).
  for (const char* name : {"aten.pixel_shuffle", "aten.pixel_unshuffle"}) {
    OpSchema shuffle = Schema(name, {"self"}, [](const OpCall& call) {
      Shape s = call.input(0).shape;
      if (s.size() < 3) call.Fail("expects at least 3 dims");
      const bool up = call.op().type == "aten.pixel_shuffle";
      const int64_t r = call.int_attr(up ? "upscale_factor" : "downscale_factor");
      const size_t c = s.size() - 3;
      if (r <= 0) call.Fail("factor must be positive");
      if (up) {
        if (s[c] % (r * r) != 0) call.Fail("channels not divisible by the factor squared");
        s[c] /= r * r, s[c + 1] *= r, s[c + 2] *= r;
      } else {
        if (s[c + 1] % r != 0 || s[c + 2] % r != 0) call.Fail("height / width not divisible by the factor");
        s[c] *= r * r, s[c + 1] /= r, s[c + 2] /= r;
      }
      return Types{{s, call.input(0).dtype}};
    });
    // The leading (batch) axes run through; channels, height and width are
    // interleaved by the factor and not linked.
    shuffle.dim_links = [](const OpCall& call, const Types&) {
      DimLinks links;
      for (int i = 0; i + 3 < static_cast<int>(call.input(0).shape.size()); ++i) links.links.push_back({0, i, 0, i});
      return links;
    };
    s.push_back(shuffle);
  }
}


namespace {

void AddMoreCapturedOps(Schemas& s) {
  // log_sigmoid_forward(self) -> (output, buffer): the buffer is self's shape
  // on the CPU and empty on CUDA, as the graph declares it. Its backward
  // (grad_output, self, buffer) gives self's shape.
  OpSchema log_sigmoid = Schema("aten.log_sigmoid_forward", {"self"}, [](const OpCall& call) {
    const auto& declared = call.declared_outputs();
    const bool empty = declared.size() == 2 && Numel(declared[1].shape) == 0;
    return Types{call.input(0), empty ? TensorType{{0}, call.input(0).dtype} : call.input(0)};
  });
  log_sigmoid.flops = [](const OpCall& call, const Types&) {
    return 4.0 * static_cast<double>(Numel(call.input(0).shape));
  };
  log_sigmoid.dim_links = SameShapeLinks;
  log_sigmoid.pointwise = true;
  s.push_back(log_sigmoid);
  OpSchema log_sigmoid_back =
      Schema("aten.log_sigmoid_backward", {"grad_output", "self", "buffer"}, [](const OpCall& call) {
        if (call.input(0).shape != call.input(1).shape) call.Fail("grad_output and self shapes differ");
        return Types{call.input(1)};
      });
  log_sigmoid_back.dim_links = SameShapeLinks;
  log_sigmoid_back.pointwise = true;
  s.push_back(log_sigmoid_back);

  // _cdist_forward(x1 [..., P, M], x2 [..., R, M], p) -> [..., P, R]: the
  // p-norm distance of every row pair. Rows run through (P from x1, R from
  // x2), the batch dims broadcast, M is reduced whole (a norm).
  OpSchema cdist = Schema("aten._cdist_forward", {"x1", "x2"}, [](const OpCall& call) {
    const Shape& a = call.input(0).shape;
    const Shape& b = call.input(1).shape;
    if (a.size() < 2 || b.size() < 2) call.Fail("x1 and x2 must have at least 2 dims");
    if (a.back() != b.back()) call.Fail(fmt::format("x1 and x2 rows differ in length: {} and {}", a.back(), b.back()));
    const auto batch = Broadcast(Shape(a.begin(), a.end() - 2), Shape(b.begin(), b.end() - 2));
    if (!batch) call.Fail("the batch dims of x1 and x2 do not broadcast");
    Shape out = *batch;
    out.push_back(a[a.size() - 2]);
    out.push_back(b[b.size() - 2]);
    return Types{{out, call.input(0).dtype}};
  });
  cdist.flops = [](const OpCall& call, const Types& outs) {
    return 3.0 * static_cast<double>(Numel(outs[0].shape)) * static_cast<double>(call.input(0).shape.back());
  };
  cdist.dim_links = [](const OpCall& call, const Types& outs) {
    DimLinks links;
    const Shape& out = outs[0].shape;
    const int rank = static_cast<int>(out.size());
    const Shape batch(out.begin(), out.end() - 2);
    for (int i : {0, 1}) {
      const Shape& in = call.input(static_cast<size_t>(i)).shape;
      LinkBroadcast(links, 0, batch, i, Shape(in.begin(), in.end() - 2));
      links.links.push_back({0, rank - 2 + i, i, static_cast<int>(in.size()) - 2});
      links.reduced.push_back({i, static_cast<int>(in.size()) - 1, PartialCombine::kWhole});
    }
    return links;
  };
  s.push_back(cdist);
  // _cdist_backward(grad [..., P, R], x1 [..., P, M], x2 [..., R, M], p,
  // cdist [..., P, R]) -> x1's gradient: a sum over the rows R of x2.
  OpSchema cdist_back = Schema("aten._cdist_backward", {"grad", "x1", "x2", "cdist"}, [](const OpCall& call) {
    if (call.input(0).shape != call.input(3).shape) call.Fail("grad and cdist shapes differ");
    return Types{call.input(1)};
  });
  cdist_back.dim_links = [](const OpCall& call, const Types& outs) {
    DimLinks links;
    const int rank = static_cast<int>(outs[0].shape.size());
    for (int d = 0; d < rank; ++d) links.links.push_back({0, d, 1, d});  // x1's own shape
    const Shape& grad = call.input(0).shape;
    if (static_cast<int>(grad.size()) == rank) {
      for (int d = 0; d < rank - 1; ++d) {
        for (int i : {0, 3}) links.links.push_back({0, d, i, d});  // the batch dims and P
      }
      for (int i : {0, 3}) links.reduced.push_back({i, rank - 1, PartialCombine::kSum, 0});  // R
    }
    const int x2_rank = static_cast<int>(call.input(2).shape.size());
    links.reduced.push_back({2, x2_rank - 2, PartialCombine::kSum, 0});
    if (x2_rank == rank) {
      for (int d = 0; d < rank - 2; ++d) links.links.push_back({0, d, 2, d});
      links.links.push_back({0, rank - 1, 2, rank - 1});  // M
    }
    return links;
  };
  s.push_back(cdist_back);

  // nonzero(self) -> [count, rank] int64; masked_select(self, mask) -> [count]:
  // the count is data-dependent, taken from the declared output.
  OpSchema nonzero = Schema("aten.nonzero", {"self"}, [](const OpCall& call) {
    const Shape& in = call.input(0).shape;
    const int64_t n = DeclaredExtent(call, 2, 0, Numel(in));
    return Types{{{n, static_cast<int64_t>(in.size())}, DType::kI64}};
  });
  s.push_back(nonzero);
  OpSchema masked_select = Schema("aten.masked_select", {"self", "mask"}, [](const OpCall& call) {
    if (call.input(1).dtype != DType::kBool) call.Fail("mask must be a bool tensor");
    const auto shape = Broadcast(call.input(0).shape, call.input(1).shape);
    if (!shape) call.Fail("self and mask do not broadcast");
    return Types{{{DeclaredExtent(call, 1, 0, Numel(*shape))}, call.input(0).dtype}};
  });
  s.push_back(masked_select);
  // repeat_interleave(repeats [n]) -> [sum(repeats)] int64 (the indices that
  // repeat each position): the sum is data-dependent, taken as declared.
  OpSchema repeat_interleave = Schema("aten.repeat_interleave", {"repeats"}, [](const OpCall& call) {
    if (call.input(0).shape.size() > 1) call.Fail("repeats must be 0-d or 1-d");
    const int64_t declared = DeclaredExtent(call, 1, 0, std::numeric_limits<int64_t>::max());
    if (call.has_attr("output_size") && !call.is_none("output_size") && call.int_attr("output_size") != declared) {
      call.Fail(fmt::format("output_size {} differs from the declared {}", call.int_attr("output_size"), declared));
    }
    return Types{{{declared}, DType::kI64}};
  });
  s.push_back(repeat_interleave);

  // argmax / argmin(self, dim?, keepdim): int64 positions, `dim` reduced (every
  // dim without one: a scalar).
  for (const char* name : {"aten.argmax", "aten.argmin"}) {
    OpSchema arg = Schema(name, {"self"}, [](const OpCall& call) {
      Shape shape = call.input(0).shape;
      if (call.is_none("dim")) return Types{{call.bool_attr("keepdim", false) ? Shape(shape.size(), 1) : Shape{},
                                             DType::kI64}};
      const int64_t d = call.dim(call.int_attr("dim"), shape.size(), "dim");
      if (shape.empty()) return Types{{shape, DType::kI64}};  // a 0-d tensor's position: 0
      if (call.bool_attr("keepdim", false)) {
        shape[d] = 1;
      } else {
        shape.erase(shape.begin() + d);
      }
      return Types{{shape, DType::kI64}};
    });
    arg.dim_links = [](const OpCall& call, const Types& outs) {
      DimLinks links;
      if (call.is_none("dim")) return links;
      const size_t rank = call.input(0).shape.size();
      const int64_t d = call.dim(call.int_attr("dim"), rank, "dim");
      const bool keep = call.bool_attr("keepdim", false);
      for (size_t i = 0, o = 0; i < rank; ++i) {
        if (static_cast<int64_t>(i) == d) {
          links.reduced.push_back({0, static_cast<int>(i), PartialCombine::kWhole});
          if (keep) ++o;
          continue;
        }
        if (o < outs[0].shape.size()) links.links.push_back({0, static_cast<int>(o), 0, static_cast<int>(i)});
        ++o;
      }
      return links;
    };
    s.push_back(arg);
  }

  // prelu(self, weight [C] or [1]) -> self's shape; prelu_backward(grad_output,
  // self, weight) -> (grad self, grad weight).
  OpSchema prelu = ShapedLike("aten.prelu", {"self", "weight"}, 0);
  prelu.infer = [](const OpCall& call) {
    const TensorType& in = call.input(0);
    const int64_t w = Numel(call.input(1).shape);
    const int64_t channels = in.shape.size() >= 2 ? in.shape[1] : 1;
    if (w != 1 && w != channels) call.Fail(fmt::format("weight has {} entries, expected 1 or {}", w, channels));
    return Types{in};
  };
  s.push_back(prelu);
  OpSchema prelu_back = ShapedLike("aten.prelu_backward", {"grad_output", "self", "weight"}, 1);
  prelu_back.infer = [](const OpCall& call) {
    if (call.input(0).shape != call.input(1).shape) call.Fail("grad_output and self shapes differ");
    return Types{call.input(1), call.input(2)};
  };
  // grad self is element-wise in grad_output and self; grad weight sums
  // them over every dim but the channels it has one entry for.
  prelu_back.dim_links = [](const OpCall& call, const Types& outs) {
    DimLinks links;
    const Shape& in = call.input(1).shape;
    const bool per_channel = in.size() >= 2 && Numel(call.input(2).shape) == in[1] && in[1] > 1;
    for (size_t d = 0; d < in.size(); ++d) {
      for (int input : {0, 1}) {
        links.links.push_back({0, static_cast<int>(d), input, static_cast<int>(d)});
        if (per_channel && d == 1) {
          links.links.push_back({1, 0, input, 1});
        } else {
          links.reduced.push_back({input, static_cast<int>(d), PartialCombine::kSum});
        }
      }
    }
    if (per_channel && outs.size() > 1 && call.input(2).shape.size() == 1) links.links.push_back({1, 0, 2, 0});
    return links;
  };
  s.push_back(prelu_back);

  // _weight_norm_interface(v, g, dim) -> (w = v's shape, norms = g's shape);
  // its backward(grad_w, saved_v, saved_g, saved_norms, dim) -> (grad v, grad g).
  // The norms are over every dim of v but `dim`: only `dim` is linked.
  auto weight_norm_links = [](const OpCall& call, const Types& outs) {
    DimLinks links;
    const size_t rank = call.input(0).shape.size();
    const int64_t dim = call.int_attr("dim", 0);
    if (dim < 0 || dim >= static_cast<int64_t>(rank)) return links;  // -1: one norm of the whole
    const int d = static_cast<int>(dim);
    for (size_t o = 0; o < outs.size(); ++o) {
      for (size_t i = 0; i < call.num_inputs(); ++i) {
        if (outs[o].shape.size() == rank && call.input(i).shape.size() == rank &&
            outs[o].shape[d] == call.input(i).shape[d]) {
          links.links.push_back({static_cast<int>(o), d, static_cast<int>(i), d});
        }
      }
    }
    for (size_t k = 0; k < rank; ++k) {
      if (static_cast<int>(k) != d) links.reduced.push_back({0, static_cast<int>(k)});
    }
    return links;
  };
  OpSchema weight_norm = ShapedLike("aten._weight_norm_interface", {"v", "g"}, 0);
  weight_norm.infer = [](const OpCall& call) {
    if (call.input(0).shape.size() != call.input(1).shape.size()) call.Fail("v and g ranks differ");
    return Types{call.input(0), call.input(1)};
  };
  weight_norm.dim_links = weight_norm_links;
  s.push_back(weight_norm);
  OpSchema weight_norm_back = ShapedLike("aten._weight_norm_interface_backward",
                                         {"grad_w", "saved_v", "saved_g", "saved_norms"}, 1);
  weight_norm_back.infer = [](const OpCall& call) {
    if (call.input(0).shape != call.input(1).shape) call.Fail("grad_w and saved_v shapes differ");
    return Types{call.input(1), call.input(2)};
  };
  weight_norm_back.dim_links = weight_norm_links;
  s.push_back(weight_norm_back);

  // _embedding_bag(weight [V, D], indices, offsets, ..., mode, ...,
  // per_sample_weights?, include_last_offset) -> (output [bags, D], offset2bag,
  // bag_size, max_indices): the three bookkeeping tensors are int64 of sizes
  // that depend on the mode and the CPU / CUDA kernel (taken as declared).
  OpSchema bag;
  bag.type = "aten._embedding_bag";
  bag.tensor_args = {"weight", "indices", "offsets", "per_sample_weights?"};
  bag.infer = [](const OpCall& call) {
    ExpectRank(call, 0, 2);
    if (call.input(1).shape.size() > 2) call.Fail("indices must be 1-d or 2-d");
    const Shape& offsets = call.input(2).shape;
    int64_t bags = 0;
    if (call.input(1).shape.size() == 2) {
      bags = call.input(1).shape[0];
    } else {
      if (offsets.size() != 1) call.Fail("offsets must be 1-d");
      bags = offsets[0] - (call.bool_attr("include_last_offset", false) ? 1 : 0);
    }
    Types outs = {{{bags, call.input(0).shape[1]}, call.input(0).dtype}};
    const auto& declared = call.declared_outputs();
    for (size_t i = 1; i < 4; ++i) {
      outs.push_back({declared.size() == 4 ? declared[i].shape : Shape{bags}, DType::kI64});
    }
    return outs;
  };
  bag.dim_links = FixedLinks({{0, 1, 0, 1}});
  s.push_back(bag);
  OpSchema bag_back;
  bag_back.type = "aten._embedding_bag_dense_backward";
  bag_back.tensor_args = {"grad", "indices", "offset2bag", "bag_size", "maximum_indices", "per_sample_weights?"};
  bag_back.infer = [](const OpCall& call) {
    ExpectRank(call, 0, 2);
    const int64_t v = call.int_attr("num_weights");
    if (v < 0) call.Fail(fmt::format("num_weights = {} must be non-negative", v));
    return Types{{{v, call.input(0).shape[1]}, call.input(0).dtype}};
  };
  bag_back.dim_links = FixedLinks({{0, 1, 0, 1}});
  s.push_back(bag_back);

  // _ctc_loss(log_probs [T, N, C], targets, input_lengths, target_lengths, blank)
  // -> (neg_log_likelihood [N], log_alpha [N, T, 2 * max target + 1]);
  // _ctc_loss_backward(grad [N], log_probs, targets, [input_lengths,
  // target_lengths,] neg_log_likelihood, log_alpha) -> log_probs' shape.
  // The lengths are int lists (attributes), or in the .Tensor overloads 1-D
  // integer tensors of N entries: their values are then data, so log_alpha's
  // last extent is taken from the declared output. Batch N is linked.
  auto ctc_lengths = [](const OpCall& call, int64_t batch) -> std::optional<int64_t> {
    for (std::string_view name : {"input_lengths", "target_lengths"}) {
      if (const auto t = call.arg(name)) {
        if (t->shape != Shape{batch} || IsFloatingPoint(t->dtype)) {
          call.Fail(fmt::format("{} must be an integer tensor of {} entries (the batch)", name, batch));
        }
      } else if (static_cast<int64_t>(call.ints_attr(name).size()) != batch) {
        call.Fail(fmt::format("input_lengths and target_lengths need {} entries (the batch)", batch));
      }
    }
    if (call.arg("target_lengths")) return std::nullopt;
    int64_t longest = 0;
    for (int64_t l : call.ints_attr("target_lengths")) longest = std::max(longest, l);
    return longest;
  };
  OpSchema ctc = Schema("aten._ctc_loss", {"log_probs", "targets", "input_lengths?", "target_lengths?"},
                        [ctc_lengths](const OpCall& call) {
    ExpectRank(call, 0, 3);
    const Shape& lp = call.input(0).shape;
    const std::optional<int64_t> longest = ctc_lengths(call, lp[1]);
    int64_t alpha = longest ? 2 * *longest + 1 : 0;
    if (!longest) {
      const auto& declared = call.declared_outputs();
      if (declared.size() != 2 || declared[1].shape.size() != 3) {
        call.Fail("target_lengths is a tensor, so log_alpha's extent is data; "
                  "the graph must declare the output shapes");
      }
      alpha = declared[1].shape[2];
      if (alpha < 1 || alpha % 2 == 0) {
        call.Fail(fmt::format("declares log_alpha's last extent {}, not 2 * longest target + 1", alpha));
      }
    }
    return Types{{{lp[1]}, call.input(0).dtype}, {{lp[1], lp[0], alpha}, call.input(0).dtype}};
  });
  // Each batch item's loss is its own: the batch links log_probs, the
  // per-item inputs (2-D targets, length tensors) and the results; time and
  // classes do not (the recursions run over the whole of both).
  auto ctc_batch = [](const OpCall& call, int output, int output_dim, DimLinks& links) {
    for (std::string_view name : {"grad", "targets", "input_lengths", "target_lengths", "neg_log_likelihood",
                                  "log_alpha"}) {
      const auto i = call.arg_index(name);
      if (!i || (name == "targets" && call.input(*i).shape.size() != 2)) continue;
      links.links.push_back({output, output_dim, static_cast<int>(*i), 0});
    }
  };
  ctc.dim_links = [ctc_batch](const OpCall& call, const Types&) {
    DimLinks links;
    links.links = {{0, 0, 0, 1}, {1, 0, 0, 1}, {1, 1, 0, 0}};
    ctc_batch(call, 0, 0, links);
    ctc_batch(call, 1, 0, links);
    return links;
  };
  s.push_back(ctc);
  OpSchema ctc_back = ShapedLike("aten._ctc_loss_backward", {"grad", "log_probs", "targets", "input_lengths?",
                                                             "target_lengths?", "neg_log_likelihood", "log_alpha"}, 1);
  ctc_back.infer = [ctc_lengths](const OpCall& call) {
    ExpectRank(call, 1, 3);
    if (call.input(0).shape != Shape{call.input(1).shape[1]}) call.Fail("grad must have one entry per batch item");
    ctc_lengths(call, call.input(1).shape[1]);
    return Types{call.input(1)};
  };
  // The batch only: a part of the classes or of the time steps needs the
  // whole (ShapedLike linked every axis, and a split along the classes,
  // from a CTC model's log_softmax, changed the gradients by their size).
  ctc_back.dim_links = [ctc_batch](const OpCall& call, const Types&) {
    DimLinks links;
    links.links = {{0, 1, 1, 1}};
    ctc_batch(call, 0, 1, links);
    return links;
  };
  s.push_back(ctc_back);

  // affine_grid_generator(theta [N, 2, 3], size [N, C, H, W]) -> [N, H, W, 2];
  // grid_sampler_2d(input [N, C, H, W], grid [N, Ho, Wo, 2]) -> [N, C, Ho, Wo];
  // its backward -> (grad input, grad grid) as output_mask asks.
  OpSchema affine = Schema("aten.affine_grid_generator", {"theta"}, [](const OpCall& call) {
    ExpectRank(call, 0, 3);
    const auto size = call.ints_attr("size");
    if (size.size() != 4) call.Fail("'size' must have 4 entries (2-d grids only)");
    if (call.input(0).shape != Shape{size[0], 2, 3}) call.Fail("theta must be [N, 2, 3]");
    return Types{{{size[0], size[2], size[3], 2}, call.input(0).dtype}};
  });
  affine.dim_links = FixedLinks({{0, 0, 0, 0}});
  s.push_back(affine);
  OpSchema sampler = Schema("aten.grid_sampler_2d", {"input", "grid"}, [](const OpCall& call) {
    ExpectRank(call, 0, 4);
    ExpectRank(call, 1, 4);
    const Shape& in = call.input(0).shape;
    const Shape& grid = call.input(1).shape;
    if (grid[0] != in[0] || grid[3] != 2) call.Fail("grid must be [N, H_out, W_out, 2] with input's N");
    return Types{{{in[0], in[1], grid[1], grid[2]}, call.input(0).dtype}};
  });
  sampler.flops = [](const OpCall&, const Types& outs) { return 8.0 * static_cast<double>(Numel(outs[0].shape)); };
  sampler.dim_links = FixedLinks({{0, 0, 0, 0}, {0, 0, 1, 0}, {0, 1, 0, 1}, {0, 2, 1, 1}, {0, 3, 1, 2}});
  s.push_back(sampler);
  OpSchema sampler_back;
  sampler_back.type = "aten.grid_sampler_2d_backward";
  sampler_back.tensor_args = {"grad_output", "input", "grid"};
  sampler_back.infer = [](const OpCall& call) {
    ExpectRank(call, 0, 4);
    const auto mask = call.bools_attr("output_mask", {true, true});
    Types outs;
    if (mask.size() > 0 && mask[0]) outs.push_back(call.input(1));
    if (mask.size() < 2 || mask[1]) outs.push_back(call.input(2));
    return outs;
  };
  // grad_input [N, C, H, W] sums over the output positions (Ho, Wo of
  // grad_output and the grid, one index each) what the grid points at; its H
  // and W are where the grid points, not linked. grad_grid [N, Ho, Wo, 2]
  // sums over the channels of grad_output and input (one index).
  sampler_back.dim_links = [](const OpCall& call, const Types&) {
    const auto mask = call.bools_attr("output_mask", {true, true});
    const bool input_grad = mask.empty() || mask[0], grid_grad = mask.size() < 2 || mask[1];
    DimLinks links;
    int o = 0;
    if (input_grad) {
      links.links = {{o, 0, 0, 0}, {o, 0, 1, 0}, {o, 0, 2, 0}, {o, 1, 0, 1}, {o, 1, 1, 1}};
      links.reduced = {{0, 2, PartialCombine::kSum, 1}, {2, 1, PartialCombine::kSum, 1},
                       {0, 3, PartialCombine::kSum, 2}, {2, 2, PartialCombine::kSum, 2}};
      ++o;
    }
    if (grid_grad) {
      for (const DimLink& l : std::vector<DimLink>{{o, 0, 0, 0}, {o, 0, 1, 0}, {o, 0, 2, 0}, {o, 1, 0, 2},
                                                   {o, 1, 2, 1}, {o, 2, 0, 3}, {o, 2, 2, 2}}) {
        links.links.push_back(l);
      }
      links.reduced.push_back({0, 1, PartialCombine::kSum, 0});
      links.reduced.push_back({1, 1, PartialCombine::kSum, 0});
    }
    return links;
  };
  s.push_back(sampler_back);

  // im2col(self [N, C, H, W], kernel_size, dilation, padding, stride) ->
  // [N, C * kh * kw, L]; col2im(self [N, C * kh * kw, L], output_size, ...) -> [N, C, H, W].
  OpSchema im2col = Schema("aten.im2col", {"self"}, [](const OpCall& call) {
    ExpectRank(call, 0, 4);
    const Shape& in = call.input(0).shape;
    const auto kernel = call.ints_attr("kernel_size");
    const int64_t windows = WindowCount(call, {in[2], in[3]});
    return Types{{{in[0], in[1] * kernel[0] * kernel[1], windows}, call.input(0).dtype}};
  });
  im2col.dim_links = FixedLinks({{0, 0, 0, 0}});
  s.push_back(im2col);
  OpSchema col2im = Schema("aten.col2im", {"self"}, [](const OpCall& call) {
    ExpectRank(call, 0, 3);
    const Shape& in = call.input(0).shape;
    const auto size = call.ints_attr("output_size");
    if (size.size() != 2) call.Fail("'output_size' must have 2 entries");
    const auto kernel = call.ints_attr("kernel_size");
    const int64_t windows = WindowCount(call, size);
    if (kernel[0] * kernel[1] == 0 || in[1] % (kernel[0] * kernel[1]) != 0) {
      call.Fail(fmt::format("dim 1 ({}) is not a multiple of the kernel's {} entries", in[1], kernel[0] * kernel[1]));
    }
    if (in[2] != windows) call.Fail(fmt::format("has {} windows, output_size gives {}", in[2], windows));
    return Types{{{in[0], in[1] / (kernel[0] * kernel[1]), size[0], size[1]}, call.input(0).dtype}};
  });
  col2im.dim_links = FixedLinks({{0, 0, 0, 0}});
  s.push_back(col2im);
}

}  // namespace
}  // namespace memfit::ops
