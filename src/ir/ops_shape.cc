// Shape and layout ops. Views (view, permute, expand, slice, ...) share
// their input's storage and move no bytes; cat and clone copy.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <numeric>
#include <optional>

#include "ir/ops_common.h"
#include "util/checked_math.h"

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

// The shape of a view that names its extents in "size" (as_strided,
// _reshape_alias, resize_), each checked non-negative.
// diagonal's dim1 and dim2 (attributes, defaults 0 and 1), distinct.
std::pair<int64_t, int64_t> DiagonalDims(const OpCall& call, size_t rank) {
  if (rank < 2) call.Fail("expects at least 2 dims");
  const int64_t d1 = call.dim(call.int_attr("dim1", 0), rank, "dim1");
  const int64_t d2 = call.dim(call.int_attr("dim2", 1), rank, "dim2");
  if (d1 == d2) call.Fail(fmt::format("dim1 and dim2 are both {}", d1));
  return {d1, d2};
}

// diagonal's links: the axes other than dim1 and dim2, in order.
DimLinks DiagonalLinks(const OpCall& call, const Types&) {
  DimLinks links;
  const size_t rank = call.input(0).shape.size();
  const auto [d1, d2] = DiagonalDims(call, rank);
  int kept = 0;
  for (int i = 0; i < static_cast<int>(rank); ++i) {
    if (i != d1 && i != d2) links.links.push_back({0, kept++, 0, i});
  }
  return links;
}

Shape SizeAttr(const OpCall& call, const Shape&) {
  Shape out = call.ints_attr("size");
  for (int64_t d : out) {
    if (d < 0) call.Fail(fmt::format("negative extent in 'size' {}", ShapeToString(out)));
  }
  return out;
}

// view/reshape: resolves one -1 and checks the element count. The new
// shape is ATen's argument: "size" for view and _unsafe_view, "shape" for
// reshape.
Shape ReshapeTo(const OpCall& call, const Shape& in, std::string_view attr) {
  Shape out = call.ints_attr(attr);
  Shape given;  // the entries but the -1
  std::optional<size_t> infer_at;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      if (infer_at) call.Fail(fmt::format("'{}' has more than one -1", attr));
      infer_at = i;
    } else if (out[i] < 0) {
      call.Fail(fmt::format("'{}' has a negative entry {}", attr, out[i]));
    } else {
      given.push_back(out[i]);
    }
  }
  const std::optional<int64_t> checked = CheckedNumel(given);
  if (!checked) call.Fail(fmt::format("'{}' [{}] has more elements than a tensor may hold", attr, fmt::join(out, ", ")));
  const int64_t known = *checked;
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
  links.row_major_reshape = true;
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

// A slice that keeps the whole of its axis (start 0, end at or past the
// extent, step 1; x[:, 0] traces as such a slice along the batch): the
// identity on it, and on any part of it (a part's extent is smaller).
bool KeepsWholeAxis(const OpCall& call, int64_t extent) {
  int64_t start = 0;
  return call.int_attr("step", 1) == 1 && SliceExtent(call, extent, start) == extent;
}


// Advanced indexing: index(self, indices: Tensor?[]) and index_put. The
// indexed dims of self (one per integer index tensor, idx.rank per boolean
// mask) are replaced by the broadcast shape of the index tensors: in place
// when the tensor entries are adjacent, in front otherwise (NumPy's rule). A
// boolean mask selects a data-dependent number of elements; that extent is
// taken from the graph's declared output.
struct Indexing {
  Shape out;
  // (output dim, self dim) for the dims of self that are not indexed.
  std::vector<std::pair<int, int>> kept;
  std::vector<bool> indexed;  // per dim of self
  // (output dim, input, input dim) for the axes of the integer index tensors
  // that the result's broadcast block takes whole (not broadcast from 1):
  // row i of the block is self at the indices' row i. None with a mask.
  std::vector<std::array<int, 3>> gathered;
  // (input, self dim) for each integer index tensor: the dim it indexes.
  std::vector<std::pair<int, int>> indexes;
};

// The broadcast block's axes that an iota (OpCall::iota) indexes along a
// dim of self of its length, by output axis: that dim of self. Row i of the
// block is self's row i there (`h[torch.arange(B), last]`).
std::map<int, int> Diagonals(const OpCall& call, const Indexing& r) {
  std::map<int, int> diagonal;
  for (auto [input, self_dim] : r.indexes) {
    if (!call.iota(static_cast<size_t>(input))) continue;
    for (auto [out, in, axis] : r.gathered) {
      if (in == input && axis == 0 && r.out[static_cast<size_t>(out)] == call.input(0).shape[static_cast<size_t>(self_dim)]) {
        diagonal[out] = self_dim;
      }
    }
  }
  return diagonal;
}

Indexing AdvancedIndex(const OpCall& call, size_t first, size_t count, bool infer_mask_extent) {
  const Shape& self = call.input(0).shape;
  const std::vector<bool> entries = call.list_entries("indices", count);
  Indexing r;
  r.indexed.assign(self.size(), false);
  std::optional<Shape> broadcast;
  bool has_mask = false;
  size_t dim = 0, input = first;
  std::optional<size_t> first_entry, last_entry;
  size_t first_dim = 0;
  for (size_t e = 0; e < entries.size(); ++e) {
    if (!entries[e]) {
      ++dim;
      continue;
    }
    const TensorType& idx = call.input(input++);
    if (!first_entry) first_dim = dim;
    if (!first_entry) first_entry = e;
    last_entry = e;
    Shape piece;
    size_t covers = 1;
    if (idx.dtype == DType::kBool || idx.dtype == DType::kU8) {
      has_mask = true;
      covers = std::max<size_t>(idx.shape.size(), 1);
      for (size_t k = 0; k < idx.shape.size(); ++k) {
        if (dim + k >= self.size() || idx.shape[k] != self[dim + k]) {
          call.Fail(fmt::format("mask {} does not match self {} at dim {}", ShapeToString(idx.shape),
                                ShapeToString(self), dim));
        }
      }
      piece = {-1};
    } else if (IsFloatingPoint(idx.dtype)) {
      call.Fail(fmt::format("index {} must be an integer or boolean tensor, got {}", e, ToString(idx.dtype)));
    } else {
      piece = idx.shape;
      r.indexes.push_back({static_cast<int>(input - 1), static_cast<int>(dim)});
    }
    if (dim + covers > self.size()) {
      call.Fail(fmt::format("too many indices for a tensor of rank {}", self.size()));
    }
    for (size_t k = 0; k < covers; ++k) r.indexed[dim + k] = true;
    dim += covers;
    if (!broadcast) {
      broadcast = piece;
    } else if (piece == Shape{-1} || *broadcast == Shape{-1}) {
      const Shape& other = piece == Shape{-1} ? *broadcast : piece;
      if (Numel(other) != 1 && !(other.size() == 1)) call.Fail("a boolean mask index broadcasts only with 1-d indices");
      broadcast = Shape{-1};
    } else {
      auto b = Broadcast(*broadcast, piece);
      if (!b) call.Fail(fmt::format("index shapes {} and {} do not broadcast", ShapeToString(*broadcast), ShapeToString(piece)));
      broadcast = *b;
    }
  }
  if (dim > self.size()) call.Fail(fmt::format("too many indices for a tensor of rank {}", self.size()));
  if (!broadcast) broadcast = Shape{};
  bool adjacent = true;
  if (first_entry) {
    for (size_t e = *first_entry; e <= *last_entry; ++e) adjacent = adjacent && entries[e];
  }
  // Output: the broadcast index shape in front (indices not adjacent) or in
  // place of the first indexed dim, and the dims not indexed in order.
  if (first_entry && !adjacent) r.out = *broadcast;
  size_t block = 0;
  for (size_t d = 0; d < self.size(); ++d) {
    if (first_entry && adjacent && d == first_dim) {
      block = r.out.size();
      r.out.insert(r.out.end(), broadcast->begin(), broadcast->end());
    }
    if (r.indexed[d]) continue;
    r.kept.push_back({static_cast<int>(r.out.size()), static_cast<int>(d)});
    r.out.push_back(self[d]);
  }
  if (has_mask && infer_mask_extent) {
    const auto& declared = call.declared_outputs();
    const auto unknown = std::find(r.out.begin(), r.out.end(), -1) - r.out.begin();
    if (declared.empty() || declared[0].shape.size() != r.out.size()) {
      call.Fail("a boolean mask index selects a data-dependent number of elements; the graph must declare the output shape");
    }
    r.out[unknown] = declared[0].shape[unknown];
  }
  if (!has_mask) {
    for (size_t input = first; input < first + count && input < call.num_inputs(); ++input) {
      const Shape& idx = call.input(input).shape;
      const size_t lead = broadcast->size() - idx.size();  // right-aligned in the block
      for (size_t a = 0; a < idx.size(); ++a) {
        if (idx[a] != 1 && idx[a] == (*broadcast)[lead + a]) {
          r.gathered.push_back({static_cast<int>(block + lead + a), static_cast<int>(input), static_cast<int>(a)});
        }
      }
    }
  }
  return r;
}

}  // namespace

void AddShapeOps(Schemas& s) {
  for (const char* name : {"aten.view", "aten._unsafe_view"}) {
    s.push_back(View(name, [](const OpCall& call, const Shape& in) { return ReshapeTo(call, in, "size"); },
                     ReshapeLinks));
  }
  s.push_back(View("aten.reshape", [](const OpCall& call, const Shape& in) { return ReshapeTo(call, in, "shape"); },
                   ReshapeLinks));
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
    const bool whole = KeepsWholeAxis(call, call.input(0).shape[d]);
    for (size_t i = 0; i < outs[0].shape.size(); ++i) {
      if (static_cast<int64_t>(i) != d || whole) links.links.push_back({0, static_cast<int>(i), 0, static_cast<int>(i)});
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
  // diagonal(self, offset, dim1, dim2): dim1 and dim2 removed, the diagonal
  // appended last; the other axes keep their index.
  s.push_back(View("aten.diagonal", [](const OpCall& call, const Shape& in) {
    const auto [d1, d2] = DiagonalDims(call, in.size());
    const int64_t offset = call.int_attr("offset", 0);
    const int64_t length = std::max<int64_t>(0, offset >= 0 ? std::min(in[d1], in[d2] - offset)
                                                             : std::min(in[d1] + offset, in[d2]));
    Shape out;
    for (size_t i = 0; i < in.size(); ++i) {
      if (static_cast<int64_t>(i) != d1 && static_cast<int64_t>(i) != d2) out.push_back(in[i]);
    }
    out.push_back(length);
    return out;
  }, DiagonalLinks));
  // diagonal_backward(grad_output, input_sizes, offset, dim1, dim2): the
  // gradient of diagonal, zeros of input_sizes with grad_output on the diagonal.
  OpSchema diagonal_back;
  diagonal_back.type = "aten.diagonal_backward";
  diagonal_back.tensor_args = {"grad_output"};
  diagonal_back.infer = [](const OpCall& call) {
    const Shape out = call.ints_attr("input_sizes");
    DiagonalDims(call, out.size());
    return Types{{out, call.input(0).dtype}};
  };
  diagonal_back.dim_links = [](const OpCall& call, const Types& outs) {
    DimLinks links;
    const auto [d1, d2] = DiagonalDims(call, outs[0].shape.size());
    int kept = 0;
    for (int i = 0; i < static_cast<int>(outs[0].shape.size()); ++i) {
      if (i != d1 && i != d2) links.links.push_back({0, i, 0, kept++});
    }
    return links;
  };
  s.push_back(diagonal_back);
  // unfold(self, dimension, size, step): dimension becomes its number of
  // windows, (extent - size) / step + 1, and a last axis of `size` holds each
  // window; the other axes keep their index (a sliding window, patches).
  s.push_back(View("aten.unfold", [](const OpCall& call, const Shape& in) {
    const int64_t d = in.empty() ? 0 : call.dim(call.int_attr("dimension"), in.size(), "dimension");
    const int64_t size = call.int_attr("size"), step = call.int_attr("step");
    const int64_t extent = in.empty() ? 1 : in[d];
    if (size < 0 || size > extent) call.Fail(fmt::format("size {} is outside [0, {}]", size, extent));
    if (step <= 0) call.Fail(fmt::format("step {} must be positive", step));
    Shape out = in;
    if (!out.empty()) out[d] = (extent - size) / step + 1;
    out.push_back(size);
    return out;
  }, [](const OpCall& call, const Types& outs) {
    const size_t rank = call.input(0).shape.size();
    return AllBut(call, outs, rank == 0 ? -1 : call.dim(call.int_attr("dimension"), rank, "dimension"));
  }));
  // unfold_backward(grad_in, input_sizes, dim, size, step): the windows' gradients added back into input_sizes.
  OpSchema unfold_back;
  unfold_back.type = "aten.unfold_backward";
  unfold_back.tensor_args = {"grad_in"};
  unfold_back.infer = [](const OpCall& call) {
    const Shape out = call.ints_attr("input_sizes");
    if (call.input(0).shape.size() != out.size() + 1) call.Fail("grad_in must have one axis more than input_sizes");
    return Types{{out, call.input(0).dtype}};
  };
  unfold_back.dim_links = [](const OpCall& call, const Types& outs) {
    const size_t rank = outs[0].shape.size();
    return AllBut(call, outs, rank == 0 ? -1 : call.dim(call.int_attr("dim"), rank, "dim"));
  };
  s.push_back(unfold_back);
  for (const char* name : {"aten.alias", "aten.detach"}) {
    s.push_back(View(name, [](const OpCall&, const Shape& in) { return in; }, IdentityLinks));
  }

  // _reshape_alias / as_strided (what PyTorch 1.13 traces for some reshapes):
  // views with explicit sizes and strides.
  for (const char* name : {"aten._reshape_alias", "aten.as_strided"}) {
    s.push_back(View(name, SizeAttr));
  }
  // _reshape_alias with the contiguous strides of its size is a reshape of
  // a contiguous input: linked like one. Other strides (and as_strided) are
  // not followed.
  s[s.size() - 2].dim_links = [](const OpCall& call, const Types& outs) {
    const Shape& size = outs[0].shape;
    std::vector<int64_t> contiguous(size.size(), 1);
    for (size_t i = size.size(); i-- > 1;) contiguous[i - 1] = contiguous[i] * size[i];
    if (call.ints_attr("stride", {}) != contiguous) return DimLinks{};
    return ReshapeLinks(call, outs);
  };

  OpSchema split_sizes = Schema("aten.split_with_sizes", {"self"}, [](const OpCall& call) {
    const TensorType& in = call.input(0);
    const int64_t d = call.axis(call.int_attr("dim", 0), in.shape.size(), "dim");
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
  });
  split_sizes.flops = [](const OpCall&, const Types&) { return 0.0; };
  split_sizes.views = {{-1, 0}};
  split_sizes.dim_links = PieceLinks(false);
  s.push_back(split_sizes);

  OpSchema unbind = Schema("aten.unbind", {"self"}, [](const OpCall& call) {
    const TensorType& in = call.input(0);
    if (in.shape.empty()) call.Fail("cannot unbind a scalar");
    const int64_t d = call.dim(call.int_attr("dim", 0), in.shape.size(), "dim");
    CheckPieceCount(call, in.shape[d]);
    TensorType piece = in;
    piece.shape.erase(piece.shape.begin() + d);
    return Types(static_cast<size_t>(in.shape[d]), piece);
  });
  unbind.flops = [](const OpCall&, const Types&) { return 0.0; };
  unbind.views = {{-1, 0}};
  unbind.dim_links = PieceLinks(true);
  s.push_back(unbind);

  OpSchema stack = Schema("aten.stack", {"tensors[]"}, [](const OpCall& call) {
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
  });
  stack.flops = [](const OpCall&, const Types&) { return 0.0; };
  // Every axis of every input runs through to the output's, past the new one.
  stack.dim_links = [](const OpCall& call, const Types& outs) {
    DimLinks links;
    const int rank = static_cast<int>(outs[0].shape.size());
    const int d = static_cast<int>(call.dim(call.int_attr("dim", 0), rank, "dim"));
    for (int i = 0; i < static_cast<int>(call.num_inputs()); ++i) {
      for (int k = 0; k + 1 < rank; ++k) links.links.push_back({0, k < d ? k : k + 1, i, k});
    }
    return links;
  };
  s.push_back(stack);

  // Backward of slice/select: scatter grad_output into zeros of
  // "input_sizes".
  for (const char* name : {"aten.slice_backward", "aten.select_backward"}) {
    OpSchema back = Schema(name, {"grad_output"}, [](const OpCall& call) {
      const Shape sizes = call.ints_attr("input_sizes");
      if (!CheckedNumel(sizes)) call.Fail(fmt::format("invalid 'input_sizes' {}", ShapeToString(sizes)));
      // A select removed `dim`; a slice kept every axis.
      const size_t removed = call.op().type == "aten.select_backward" ? 1 : 0;
      if (call.input(0).shape.size() + removed != sizes.size()) {
        call.Fail(fmt::format("grad_output of rank {} does not fit 'input_sizes' {}", call.input(0).shape.size(),
                              ShapeToString(sizes)));
      }
      call.axis(call.int_attr("dim"), sizes.size(), "dim");
      return Types{{sizes, call.input(0).dtype}};
    });
    // grad_output's axes keep their index in the result; a slice's sliced
    // axis and a select's removed one do not, unless the slice kept the
    // whole of it.
    const bool select = std::string_view(name) == "aten.select_backward";
    back.dim_links = [select](const OpCall& call, const Types& outs) {
      DimLinks links;
      const size_t rank = outs[0].shape.size();
      const int d = static_cast<int>(call.dim(call.int_attr("dim"), rank, "dim"));
      const bool whole = !select && KeepsWholeAxis(call, outs[0].shape[d]);
      for (int i = 0; i < static_cast<int>(call.input(0).shape.size()); ++i) {
        const int out = select && i >= d ? i + 1 : i;
        if ((out != d || whole) && outs[0].shape[out] == call.input(0).shape[i]) links.links.push_back({0, out, 0, i});
      }
      return links;
    };
    s.push_back(back);
  }

  // split(self, split_size, dim) -> views of consecutive chunks.
  OpSchema split;
  split.type = "aten.split";
  split.tensor_args = {"self"};
  split.infer = SplitPieces;
  split.flops = [](const OpCall&, const Types&) { return 0.0; };
  // Every output is a view of input 0; the vector is sized at use sites via
  // the op's output count (see Graph validation).
  split.views = {{-1, 0}};
  split.dim_links = PieceLinks(false);
  s.push_back(split);

  OpSchema cat = Schema("aten.cat", {"tensors[]"}, [](const OpCall& call) {
    TensorType out = call.input(0);
    for (size_t i = 0; i < call.num_inputs(); ++i) {
      if (call.input(i).shape.empty()) call.Fail(fmt::format("input {} is a scalar, which cannot be concatenated", i));
    }
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
  });
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

  // index(self, indices: Tensor?[]) -> a gather (new storage).
  OpSchema index = Schema("aten.index", {"self", "indices[]"}, [](const OpCall& call) {
    if (call.num_inputs() < 2) call.Fail("expects self and at least one index tensor");
    return Types{{AdvancedIndex(call, 1, call.num_inputs() - 1, true).out, call.input(0).dtype}};
  });
  index.dim_links = [](const OpCall& call, const Types&) {
    DimLinks links;
    const Indexing r = AdvancedIndex(call, 1, call.num_inputs() - 1, true);
    for (auto [out, in] : r.kept) links.links.push_back({0, out, 0, in});
    for (auto [out, input, axis] : r.gathered) links.links.push_back({0, out, input, axis});
    for (auto [out, self_dim] : Diagonals(call, r)) links.links.push_back({0, out, 0, self_dim});
    return links;
  };
  s.push_back(index);
  // index_put(self, indices: Tensor?[], values, accumulate): self with the
  // indexed elements set (or accumulated); index_put_ / _index_put_impl_
  // write self in place.
  for (const char* name : {"aten.index_put", "aten.index_put_", "aten._index_put_impl_"}) {
    OpSchema put;
    put.type = name;
    put.tensor_args = {"self", "indices[]", "values"};
    put.inplace = std::string_view(name) != "aten.index_put";
    put.infer = [](const OpCall& call) {
      if (call.num_inputs() < 3) call.Fail("expects self, at least one index tensor and values");
      AdvancedIndex(call, 1, call.num_inputs() - 2, false);
      if (call.input(call.num_inputs() - 1).dtype != call.input(0).dtype) {
        call.Fail(fmt::format("values are {}, self is {}", ToString(call.input(call.num_inputs() - 1).dtype),
                              ToString(call.input(0).dtype)));
      }
      return Types{call.input(0)};
    };
    put.flops = [](const OpCall& call, const Types&) {
      return static_cast<double>(Numel(call.input(call.num_inputs() - 1).shape));
    };
    // The dims not indexed: self's, and the values' that broadcast to them
    // (values broadcast to the indexing result, right-aligned; unlinked, a
    // pointer network's gradient split along its features got all of the
    // values and half of self).
    put.dim_links = [](const OpCall& call, const Types&) {
      DimLinks links;
      const Indexing r = AdvancedIndex(call, 1, call.num_inputs() - 2, false);
      const int values = static_cast<int>(call.num_inputs() - 1);
      const Shape& v = call.input(static_cast<size_t>(values)).shape;
      const int offset = static_cast<int>(r.out.size()) - static_cast<int>(v.size());
      for (auto [result_dim, self_dim] : r.kept) {
        links.links.push_back({0, self_dim, 0, self_dim});
        const int vd = result_dim - offset;
        if (vd >= 0 && v[static_cast<size_t>(vd)] == call.input(0).shape[static_cast<size_t>(self_dim)] &&
            v[static_cast<size_t>(vd)] != 1) {
          links.links.push_back({0, self_dim, values, vd});
        }
      }
      // The values' rows picked by the indices' rows (the gradient of a
      // gather, `new_zeros(...).index_put_(indices, grad, accumulate=True)`):
      // with accumulate, parts of them add into self one after the other.
      // Along an iota's block axis (the gradient of `h[torch.arange(B), last]`)
      // row i of the result is self's row i with the values' row i put in.
      const PartialCombine combine = call.bool_attr("accumulate", false) ? PartialCombine::kInto : PartialCombine::kWhole;
      const std::map<int, int> diagonal = Diagonals(call, r);
      for (auto [out, self_dim] : diagonal) {
        links.links.push_back({0, self_dim, 0, self_dim});
        const int vd = out - offset;
        if (vd >= 0 && v[static_cast<size_t>(vd)] == r.out[static_cast<size_t>(out)]) links.links.push_back({0, self_dim, values, vd});
      }
      for (auto [out, input, axis] : r.gathered) {
        if (const auto it = diagonal.find(out); it != diagonal.end()) {
          links.links.push_back({0, it->second, input, axis});
          continue;
        }
        const int vd = out - offset;
        if (vd < 0 || v[static_cast<size_t>(vd)] != r.out[static_cast<size_t>(out)]) continue;
        links.reduced.push_back({values, vd, combine, out});
        links.reduced.push_back({input, axis, combine, out});
      }
      // One boolean mask and one value (`x[mask] = v`, masked_fill_ as
      // make_fx writes it): element-wise over the masked dims too.
      const TensorType& mask = call.input(1);
      if (call.num_inputs() == 3 && (mask.dtype == DType::kBool || mask.dtype == DType::kU8) && Numel(v) == 1) {
        int k = 0;
        for (int d = 0; d < static_cast<int>(r.indexed.size()); ++d) {
          if (!r.indexed[static_cast<size_t>(d)]) continue;
          links.links.push_back({0, d, 0, d});
          if (k < static_cast<int>(mask.shape.size())) links.links.push_back({0, d, 1, k++});
        }
      }
      return links;
    };
    s.push_back(put);
  }

  // constant_pad_nd(self, pad, value): pad = [last_lo, last_hi, prev_lo, ...]
  // (negative entries crop).
  OpSchema pad = Schema("aten.constant_pad_nd", {"self"}, [](const OpCall& call) {
    Shape out = call.input(0).shape;
    const auto p = call.ints_attr("pad");
    if (p.size() % 2 != 0 || p.size() / 2 > out.size()) {
      call.Fail(fmt::format("'pad' has {} entries for a tensor of rank {} (2 per padded dim)", p.size(), out.size()));
    }
    for (size_t i = 0; i < p.size() / 2; ++i) {
      int64_t& extent = out[out.size() - 1 - i];
      const auto both = CheckedAdd(p[2 * i], p[2 * i + 1]);
      const auto padded = both ? CheckedAdd(extent, *both) : std::nullopt;
      if (!padded) call.Fail(fmt::format("'pad' of dim {} overflows int64", out.size() - 1 - i));
      extent = *padded;
      if (extent < 0) call.Fail(fmt::format("'pad' makes dim {} negative", out.size() - 1 - i));
    }
    return Types{{out, call.input(0).dtype}};
  });
  pad.flops = [](const OpCall&, const Types&) { return 0.0; };
  pad.dim_links = [](const OpCall& call, const Types& outs) {
    DimLinks links;
    const auto p = call.ints_attr("pad");
    const size_t rank = outs[0].shape.size();
    for (size_t d = 0; d < rank; ++d) {
      const size_t from_end = rank - 1 - d;
      const bool padded = from_end < p.size() / 2 && (p[2 * from_end] != 0 || p[2 * from_end + 1] != 0);
      if (!padded) links.links.push_back({0, static_cast<int>(d), 0, static_cast<int>(d)});
    }
    return links;
  };
  s.push_back(pad);

  // In-place metadata ops (unsqueeze_, squeeze_, transpose_, t_): self
  // re-viewed; the result shares its storage.
  for (const char* name : {"aten.unsqueeze_", "aten.squeeze_", "aten.transpose_", "aten.t_"}) {
    const std::string base(std::string_view(name).substr(0, std::string_view(name).size() - 1));
    OpSchema schema = *std::find_if(s.begin(), s.end(), [&](const OpSchema& x) { return x.type == base; });
    schema.type = name;
    s.push_back(schema);
  }
  // as_strided_(self, size, stride, storage_offset): self re-viewed in place;
  // resize_(self, size): self with a new shape (x.new().resize_(n, m)).
  for (const char* name : {"aten.as_strided_", "aten.resize_"}) {
    s.push_back(View(name, SizeAttr));
  }
}

}  // namespace memfit::ops
