// Shape and layout ops. Views (view, permute, expand, slice, ...) share
// their input's storage and move no bytes; cat and clone copy.
#include <fmt/format.h>

#include <numeric>

#include "ir/ops_common.h"

namespace memfit::ops {
namespace {

using Types = std::vector<TensorType>;

OpSchema View(std::string type, std::function<Shape(const OpCall&, const Shape&)> shape_fn,
              std::function<DimLinks(const OpCall&, const Types&)> links = nullptr) {
  OpSchema schema;
  schema.type = std::move(type);
  schema.tensor_args = {"self"};
  schema.views = {{0, 0}};
  schema.infer = [shape_fn](const OpCall& call) {
    return Types{{shape_fn(call, call.input(0).shape), call.input(0).dtype}};
  };
  schema.flops = [](const OpCall&, const Types&) { return 0.0; };
  schema.dim_links = std::move(links);
  return schema;
}

// view/reshape: resolves one -1 and checks the element count.
Shape Reshape(const OpCall& call, const Shape& in) {
  Shape out = call.ints_attr("size");
  int64_t known = 1;
  std::optional<size_t> infer_at;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      if (infer_at) call.Fail("'size' has more than one -1");
      infer_at = i;
    } else if (out[i] < 0) {
      call.Fail(fmt::format("'size' has a negative entry {}", out[i]));
    } else {
      known *= out[i];
    }
  }
  const int64_t numel = Numel(in);
  if (infer_at) {
    if (known == 0 || numel % known != 0) {
      call.Fail(fmt::format("cannot view {} as [{}]", ShapeToString(in), fmt::join(out, ", ")));
    }
    out[*infer_at] = numel / known;
  } else if (known != numel) {
    call.Fail(fmt::format("cannot view {} ({} elements) as {} ({} elements)", ShapeToString(in), numel,
                          ShapeToString(out), known));
  }
  return out;
}

// Links the dims a reshape leaves intact: a common prefix and suffix whose
// extents match (splitting a batch dim survives reshapes that keep it).
DimLinks ReshapeLinks(const OpCall& call, const Types& outs) {
  DimLinks links;
  const Shape& in = call.input(0).shape;
  const Shape& out = outs[0].shape;
  size_t prefix = 0;
  while (prefix < in.size() && prefix < out.size() && in[prefix] == out[prefix]) {
    links.links.push_back({0, static_cast<int>(prefix), 0, static_cast<int>(prefix)});
    ++prefix;
  }
  size_t suffix = 0;
  for (size_t k = 1; k <= in.size() - prefix && k <= out.size() - prefix; ++k) {
    if (in[in.size() - k] != out[out.size() - k]) break;
    links.links.push_back({0, static_cast<int>(out.size() - k), 0, static_cast<int>(in.size() - k)});
    suffix = k;
  }
  // The middle: runs of axes with equal products, merged or split.
  size_t i = prefix, j = prefix;
  const size_t in_end = in.size() - suffix, out_end = out.size() - suffix;
  while (i < in_end && j < out_end) {
    const size_t i0 = i, j0 = j;
    int64_t a = in[i], b = out[j];
    while (a != b && a > 0 && b > 0) {
      if (a < b) {
        if (++i == in_end) return links;
        a *= in[i];
      } else {
        if (++j == out_end) return links;
        b *= out[j];
      }
    }
    if (a == 0 || b == 0) return links;
    if (i > i0 && j == j0 && in[i0] > 1) {
      links.outer.push_back({0, static_cast<int>(j0), 0, static_cast<int>(i0), b / in[i0], true});
    } else if (j > j0 && i == i0 && out[j0] > 1) {
      links.outer.push_back({0, static_cast<int>(j0), 0, static_cast<int>(i0), a / out[j0], false});
    }
    ++i;
    ++j;
  }
  return links;
}

std::vector<int64_t> Permutation(const OpCall& call, size_t rank) {
  std::vector<int64_t> dims = call.ints_attr("dims");
  if (dims.size() != rank) call.Fail(fmt::format("'dims' has {} entries for a tensor of rank {}", dims.size(), rank));
  std::vector<bool> seen(rank, false);
  for (int64_t& d : dims) {
    d = call.dim(d, rank, "dims");
    if (seen[d]) call.Fail("'dims' repeats a dimension");
    seen[d] = true;
  }
  return dims;
}

std::pair<int64_t, int64_t> TransposeDims(const OpCall& call, size_t rank) {
  if (call.op().type == "aten.t") {
    if (rank > 2) call.Fail("aten.t expects a tensor of rank <= 2");
    return {0, rank == 2 ? 1 : 0};
  }
  return {call.dim(call.int_attr("dim0"), rank, "dim0"), call.dim(call.int_attr("dim1"), rank, "dim1")};
}

DimLinks TransposeLinks(const OpCall& call, const Types& outs) {
  DimLinks links;
  const size_t rank = outs[0].shape.size();
  auto [a, b] = TransposeDims(call, rank);
  for (size_t d = 0; d < rank; ++d) {
    int64_t src = static_cast<int64_t>(d) == a ? b : static_cast<int64_t>(d) == b ? a : static_cast<int64_t>(d);
    links.links.push_back({0, static_cast<int>(d), 0, static_cast<int>(src)});
  }
  return links;
}

// slice(self, dim, start, end, step): PyTorch clamps start/end.
int64_t SliceExtent(const OpCall& call, int64_t extent, int64_t& start_out) {
  int64_t start = call.int_attr("start", 0);
  int64_t end = call.int_attr("end", extent);
  const int64_t step = call.int_attr("step", 1);
  if (step <= 0) call.Fail(fmt::format("'step' = {} must be positive", step));
  if (start < 0) start += extent;
  if (end < 0) end += extent;
  start = std::clamp<int64_t>(start, 0, extent);
  end = std::clamp<int64_t>(end, start, extent);
  start_out = start;
  return (end - start + step - 1) / step;
}

}  // namespace

void AddShapeOps(Schemas& s) {
  for (const char* name : {"aten.view", "aten._unsafe_view", "aten.reshape"}) {
    s.push_back(View(name, Reshape, ReshapeLinks));
  }
  s.push_back(View(
      "aten.permute",
      [](const OpCall& call, const Shape& in) {
        Shape out;
        for (int64_t d : Permutation(call, in.size())) out.push_back(in[d]);
        return out;
      },
      [](const OpCall& call, const Types& outs) {
        DimLinks links;
        const auto perm = Permutation(call, outs[0].shape.size());
        for (size_t d = 0; d < perm.size(); ++d) links.links.push_back({0, static_cast<int>(d), 0, static_cast<int>(perm[d])});
        return links;
      }));
  for (const char* name : {"aten.transpose", "aten.t"}) {
    s.push_back(View(
        name,
        [](const OpCall& call, const Shape& in) {
          Shape out = in;
          auto [a, b] = TransposeDims(call, in.size());
          if (!in.empty()) std::swap(out[a], out[b]);
          return out;
        },
        TransposeLinks));
  }
  s.push_back(View(
      "aten.expand",
      [](const OpCall& call, const Shape& in) {
        Shape out = call.ints_attr("size");
        if (out.size() < in.size()) call.Fail("'size' has fewer dims than self");
        const size_t shift = out.size() - in.size();
        for (size_t i = 0; i < out.size(); ++i) {
          const int64_t src = i < shift ? 1 : in[i - shift];
          if (out[i] == -1) {
            if (i < shift) call.Fail("-1 is not allowed in a new leading dimension");
            out[i] = src;
          } else if (src != 1 && src != out[i]) {
            call.Fail(fmt::format("cannot expand {} to [{}]", ShapeToString(in), fmt::join(call.ints_attr("size"), ", ")));
          }
        }
        return out;
      },
      PointwiseLinks));
  s.push_back(View(
      "aten.unsqueeze",
      [](const OpCall& call, const Shape& in) {
        Shape out = in;
        const int64_t d = call.dim(call.int_attr("dim"), in.size() + 1, "dim");
        out.insert(out.begin() + d, 1);
        return out;
      },
      ReshapeLinks));
  s.push_back(View(
      "aten.squeeze",
      [](const OpCall& call, const Shape& in) {
        Shape out;
        if (call.is_none("dim")) {
          for (int64_t e : in) {
            if (e != 1) out.push_back(e);
          }
          return out;
        }
        const int64_t d = call.dim(call.int_attr("dim"), in.size(), "dim");
        for (size_t i = 0; i < in.size(); ++i) {
          if (static_cast<int64_t>(i) != d || in[i] != 1) out.push_back(in[i]);
        }
        return out;
      },
      ReshapeLinks));
  s.push_back(View(
      "aten.slice",
      [](const OpCall& call, const Shape& in) {
        if (in.empty()) call.Fail("cannot slice a scalar");
        Shape out = in;
        const int64_t d = call.dim(call.int_attr("dim", 0), in.size(), "dim");
        int64_t start = 0;
        out[d] = SliceExtent(call, in[d], start);
        return out;
      },
      SameShapeLinks));
  s.back().dim_links = [](const OpCall& call, const Types& outs) {
    DimLinks links;
    const int64_t d = call.dim(call.int_attr("dim", 0), outs[0].shape.size(), "dim");
    for (size_t i = 0; i < outs[0].shape.size(); ++i) {
      if (static_cast<int64_t>(i) != d) links.links.push_back({0, static_cast<int>(i), 0, static_cast<int>(i)});
    }
    return links;
  };
  s.push_back(View("aten.select", [](const OpCall& call, const Shape& in) {
    if (in.empty()) call.Fail("cannot select from a scalar");
    const int64_t d = call.dim(call.int_attr("dim"), in.size(), "dim");
    const int64_t index = call.int_attr("index");
    if (index < -in[d] || index >= in[d]) call.Fail(fmt::format("'index' = {} is out of range for extent {}", index, in[d]));
    Shape out = in;
    out.erase(out.begin() + d);
    return out;
  }));
  // Every axis but the selected one keeps its index.
  s.back().dim_links = [](const OpCall& call, const Types& outs) {
    DimLinks links;
    const int d = static_cast<int>(call.dim(call.int_attr("dim"), call.input(0).shape.size(), "dim"));
    for (int i = 0; i < static_cast<int>(outs[0].shape.size()); ++i) links.links.push_back({0, i, 0, i < d ? i : i + 1});
    return links;
  };
  for (const char* name : {"aten.alias", "aten.detach"}) {
    s.push_back(View(name, [](const OpCall&, const Shape& in) { return in; }, IdentityLinks));
  }

  // _reshape_alias / as_strided (what PyTorch 1.13 traces for some reshapes):
  // views with explicit sizes and strides.
  for (const char* name : {"aten._reshape_alias", "aten.as_strided"}) {
    s.push_back(View(name, [](const OpCall& call, const Shape&) {
      Shape out = call.ints_attr("size");
      for (int64_t d : out) {
        if (d < 0) call.Fail(fmt::format("negative extent in 'size' {}", ShapeToString(out)));
      }
      return out;
    }));
  }

  // split_with_sizes / unbind: views of consecutive pieces along `dim`.
  OpSchema split_sizes;
  split_sizes.type = "aten.split_with_sizes";
  split_sizes.tensor_args = {"self"};
  split_sizes.infer = [](const OpCall& call) {
    const TensorType& in = call.input(0);
    const int64_t d = call.dim(call.int_attr("dim", 0), in.shape.size(), "dim");
    const auto sizes = call.ints_attr("split_sizes");
    int64_t total = 0;
    Types outs;
    for (int64_t size : sizes) {
      if (size < 0) call.Fail(fmt::format("negative split size {}", size));
      total += size;
      TensorType piece = in;
      piece.shape[d] = size;
      outs.push_back(piece);
    }
    if (total != in.shape[d]) {
      call.Fail(fmt::format("split sizes sum to {} but dim {} has extent {}", total, d, in.shape[d]));
    }
    return outs;
  };
  split_sizes.flops = [](const OpCall&, const Types&) { return 0.0; };
  split_sizes.views = {{-1, 0}};
  s.push_back(split_sizes);

  OpSchema unbind;
  unbind.type = "aten.unbind";
  unbind.tensor_args = {"self"};
  unbind.infer = [](const OpCall& call) {
    const TensorType& in = call.input(0);
    if (in.shape.empty()) call.Fail("cannot unbind a scalar");
    const int64_t d = call.dim(call.int_attr("dim", 0), in.shape.size(), "dim");
    TensorType piece = in;
    piece.shape.erase(piece.shape.begin() + d);
    return Types(static_cast<size_t>(in.shape[d]), piece);
  };
  unbind.flops = [](const OpCall&, const Types&) { return 0.0; };
  unbind.views = {{-1, 0}};
  s.push_back(unbind);

  OpSchema stack;
  stack.type = "aten.stack";
  stack.tensor_args = {"tensors[]"};
  stack.infer = [](const OpCall& call) {
    const TensorType& first = call.input(0);
    for (size_t i = 1; i < call.num_inputs(); ++i) {
      if (call.input(i).shape != first.shape) {
        call.Fail(fmt::format("input {} has shape {}, expected {}", i, ShapeToString(call.input(i).shape),
                              ShapeToString(first.shape)));
      }
    }
    const int64_t d = call.dim(call.int_attr("dim", 0), first.shape.size() + 1, "dim");
    TensorType out = first;
    out.shape.insert(out.shape.begin() + d, static_cast<int64_t>(call.num_inputs()));
    return Types{out};
  };
  stack.flops = [](const OpCall&, const Types&) { return 0.0; };
  s.push_back(stack);

  // Backward of slice/select: scatter grad_output into zeros of
  // "input_sizes".
  for (const char* name : {"aten.slice_backward", "aten.select_backward"}) {
    OpSchema back;
    back.type = name;
    back.tensor_args = {"grad_output"};
    back.infer = [](const OpCall& call) {
      const Shape sizes = call.ints_attr("input_sizes");
      if (!CheckedNumel(sizes)) call.Fail(fmt::format("invalid 'input_sizes' {}", ShapeToString(sizes)));
      return Types{{sizes, call.input(0).dtype}};
    };
    // grad_output's axes keep their index in the result; a slice's sliced
    // axis and a select's removed one do not.
    const bool select = std::string_view(name) == "aten.select_backward";
    back.dim_links = [select](const OpCall& call, const Types& outs) {
      DimLinks links;
      const size_t rank = outs[0].shape.size();
      const int d = static_cast<int>(call.dim(call.int_attr("dim"), rank, "dim"));
      for (int i = 0; i < static_cast<int>(call.input(0).shape.size()); ++i) {
        const int out = select && i >= d ? i + 1 : i;
        if (out != d && outs[0].shape[out] == call.input(0).shape[i]) links.links.push_back({0, out, 0, i});
      }
      return links;
    };
    s.push_back(back);
  }

  // split(self, split_size, dim) -> views of consecutive chunks.
  OpSchema split;
  split.type = "aten.split";
  split.tensor_args = {"self"};
  split.infer = [](const OpCall& call) {
    const TensorType& in = call.input(0);
    const int64_t d = call.dim(call.int_attr("dim", 0), in.shape.size(), "dim");
    const int64_t size = call.int_attr("split_size");
    if (size <= 0) call.Fail(fmt::format("'split_size' = {} must be positive", size));
    Types outs;
    for (int64_t start = 0; start < in.shape[d]; start += size) {
      TensorType piece = in;
      piece.shape[d] = std::min(size, in.shape[d] - start);
      outs.push_back(piece);
    }
    return outs;
  };
  split.flops = [](const OpCall&, const Types&) { return 0.0; };
  // Every output is a view of input 0; the vector is sized at use sites via
  // the op's output count (see Graph validation).
  split.views = {{-1, 0}};
  s.push_back(split);

  OpSchema cat;
  cat.type = "aten.cat";
  cat.tensor_args = {"tensors[]"};
  cat.infer = [](const OpCall& call) {
    TensorType out = call.input(0);
    const int64_t d = call.dim(call.int_attr("dim", 0), out.shape.size(), "dim");
    for (size_t i = 1; i < call.num_inputs(); ++i) {
      const Shape& s = call.input(i).shape;
      if (s.size() != out.shape.size()) call.Fail("inputs have different ranks");
      for (size_t k = 0; k < s.size(); ++k) {
        if (static_cast<int64_t>(k) != d && s[k] != out.shape[k]) {
          call.Fail(fmt::format("input {} has shape {}, incompatible with {} along dim {}", i, ShapeToString(s),
                                ShapeToString(call.input(0).shape), d));
        }
      }
      out.shape[d] += s[d];
    }
    return Types{out};
  };
  cat.flops = [](const OpCall&, const Types&) { return 0.0; };
  cat.dim_links = [](const OpCall& call, const Types& outs) {
    DimLinks links;
    const int64_t d = call.dim(call.int_attr("dim", 0), outs[0].shape.size(), "dim");
    for (size_t i = 0; i < call.num_inputs(); ++i) {
      for (size_t k = 0; k < outs[0].shape.size(); ++k) {
        if (static_cast<int64_t>(k) != d) links.links.push_back({0, static_cast<int>(k), static_cast<int>(i), static_cast<int>(k)});
      }
    }
    return links;
  };
  s.push_back(cat);
}

}  // namespace memfit::ops
