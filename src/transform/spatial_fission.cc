#include "transform/spatial_fission.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "ir/registry.h"
#include "transform/rewriter.h"
#include "util/error.h"

namespace memfit {
namespace {

// Rows [lo, hi) along the axis; "virtual" rows may lie outside [0, extent)
// (padding).
struct Range {
  int64_t lo = 0;
  int64_t hi = 0;
  bool empty() const { return hi <= lo; }
  int64_t size() const { return hi - lo; }
  bool operator==(const Range&) const = default;
};

Range Hull(Range a, Range b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return {std::min(a.lo, b.lo), std::max(a.hi, b.hi)};
}
Range Clip(Range r, int64_t extent) { return {std::max<int64_t>(r.lo, 0), std::min(r.hi, extent)}; }
int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0)) ? 1 : 0); }
int64_t CeilDiv(int64_t a, int64_t b) { return -FloorDiv(-a, b); }

// Part k of n even parts of [0, extent), the last extent % n parts one row
// longer (so that the last part is never empty, even with fewer rows than
// parts: those tiles then own no rows of that tensor).
Range Owned(int64_t extent, int64_t n, int64_t k) {
  const int64_t longer_from = n - extent % n;
  const int64_t lo = k * (extent / n) + std::max<int64_t>(0, k - longer_from);
  return {lo, lo + extent / n + (k >= longer_from ? 1 : 0)};
}

// The input rows (of `extent`) upsampling by f reads for output rows
// `out`: nearest-neighbour row r reads floor(r / f); bilinear (halo 1) also
// the rows on either side it blends with.
Range UpsampleReads(Range out, int64_t f, int64_t halo, int64_t extent) {
  return Clip({FloorDiv(out.lo, f) - halo, FloorDiv(out.hi - 1, f) + 1 + halo}, extent);
}

// A sliding window along the axis (the file comment draws its arithmetic).
struct Window {
  int64_t kernel = 1;
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t dilation = 1;

  // The (virtual) input rows output rows `out` read.
  Range Reads(Range out) const {
    return {out.lo * stride - padding, (out.hi - 1) * stride - padding + dilation * (kernel - 1) + 1};
  }
  // The output rows whose windows reach input rows `in`.
  Range ReachedBy(Range in, int64_t out_extent) const {
    return Clip({CeilDiv(in.lo + padding - dilation * (kernel - 1), stride), FloorDiv(in.hi - 1 + padding, stride) + 1},
                out_extent);
  }
  int64_t OutExtent(int64_t in) const { return FloorDiv(in + 2 * padding - dilation * (kernel - 1) - 1, stride) + 1; }
};

// kConvTransposed and its backward: `window` is the convolution it
// transposes, its output side the transposed one's output.
enum class Kind : uint8_t {
  kElementwise,
  kConv,
  kConvBackward,
  kConvTransposed,
  kConvTransposedBackward,
  kMaxPool,
  kMaxPoolBackward,
  kAvgPool,
  kAvgPoolBackward,
  kUpsample,
  kUpsampleBackward,
  kShift,     // a crop or a constant padding along the axis, or a crop's backward: output row r is input
              // row r + offset (`fill` outside the input)
  kSliceView  // a crop along another axis: a view of the tile
};

struct TileRule {
  std::optional<std::string> refusal;
  Kind kind = Kind::kElementwise;
  Window window;
  int64_t factor = 1;             // kUpsample*: output rows per input row
  int64_t halo = 0;               // kUpsample*: input rows each side a tile blends with (bilinear: 1)
  int64_t offset = 0;             // kShift
  double fill = 0;                // kShift: the value of rows outside the input
  std::vector<bool> spatial_in;   // by input: carries the axis
  std::vector<bool> spatial_out;  // by output: carries it (else a sum over it: weight and bias gradients)
};

// An int-list attribute with ATen's conventions: empty -> fallback, one
// entry -> that entry for every spatial dim.
std::vector<int64_t> SpatialAttr(const Op& op, std::string_view name, std::vector<int64_t> fallback) {
  std::vector<int64_t> v = IntsAttr(op, name);
  if (const int64_t* one = IntAttr(op, name)) v = {*one};
  if (v.empty()) v = std::move(fallback);
  if (v.size() == 1) v.assign(2, v[0]);
  return v;
}



TileRule ClassifyOp(const Graph& graph, const Op& op, int axis) {
  TileRule rule;
  auto refuse = [&](std::string_view why) {
    rule.refusal = Refusal(op, why);
    return rule;
  };
  const OpSchema* schema = FindOpSchema(op.type);
  if (!schema) return refuse("is not in the registry (opaque)");
  if (schema->random) return refuse("draws random numbers");
  if (schema->inplace || !MutatedInputs(graph, op).empty()) return refuse("writes in place");
  auto shape = [&](size_t i) -> const Shape& { return graph.tensor(op.inputs.at(i)).shape; };
  auto rank4 = [&](size_t i) { return i < op.inputs.size() && shape(i).size() == 4; };
  const size_t sp = static_cast<size_t>(axis - 2);  // index into stride/padding/dilation
  rule.spatial_in.assign(op.inputs.size(), false);
  rule.spatial_out.assign(op.outputs.size(), true);

  // A crop (a slice with step 1), and its backward along the axis (along
  // another axis it is element-wise along this one, below).
  auto int_attr = [&](std::string_view name, int64_t fallback) {
    const int64_t* i = IntAttr(op, name);
    return i ? *i : fallback;
  };
  const bool slice = op.type == "aten.slice";
  const int64_t slice_dim = (slice || op.type == "aten.slice_backward") ? (int_attr("dim", 0) + 4) % 4 : -1;
  if (slice || slice_dim == axis) {
    if (!rank4(0) || graph.tensor(op.outputs.at(0)).shape.size() != 4) return refuse("does not crop NCHW tensors");
    if (int_attr("step", 1) != 1) return refuse("crops with a step");
    rule.spatial_in[0] = true;
    if (slice_dim != axis) {
      rule.kind = Kind::kSliceView;
      return rule;
    }
    // The crop's first row along the axis, clamped as PyTorch does.
    const int64_t whole = slice ? shape(0)[axis] : graph.tensor(op.outputs[0]).shape[axis];
    int64_t first = int_attr("start", 0);
    if (first < 0) first += whole;
    first = std::clamp<int64_t>(first, 0, whole);
    rule.kind = Kind::kShift;
    rule.offset = slice ? first : -first;
    return rule;
  }
  // Constant padding along the axis (negative entries crop): output row r
  // is input row r - before, `value` outside the input. Padding only along
  // other axes is element-wise along this one (below).
  if (op.type == "aten.constant_pad_nd" && rank4(0)) {
    const std::vector<int64_t> pad = IntsAttr(op, "pad");
    const size_t from_end = static_cast<size_t>(3 - axis);
    if (from_end < pad.size() / 2 && (pad[2 * from_end] != 0 || pad[2 * from_end + 1] != 0)) {
      rule.kind = Kind::kShift;
      rule.offset = -pad[2 * from_end];
      rule.fill = DoubleAttr(op, "value", 0.0);
      rule.spatial_in[0] = true;
      return rule;
    }
  }
  if (schema->is_view()) return refuse("is a view");

  // Convolutions and pooling: window `w` over input `in` makes output extent `out`.
  // Max pooling's stride defaults to its kernel, a convolution's to 1.
  auto window_rule = [&](Kind kind, size_t in, int64_t kernel, int64_t out_extent) -> TileRule {
    rule.kind = kind;
    const bool pool = kind == Kind::kMaxPool || kind == Kind::kMaxPoolBackward || kind == Kind::kAvgPool ||
                      kind == Kind::kAvgPoolBackward;
    const auto stride = SpatialAttr(op, "stride", {pool ? kernel : 1});
    const auto padding = SpatialAttr(op, "padding", {0});
    const auto dilation = SpatialAttr(op, "dilation", {1});
    if (stride.size() != 2 || padding.size() != 2 || dilation.size() != 2) return refuse("is not 2-D");
    rule.window = {kernel, stride[sp], padding[sp], dilation[sp]};
    if (rule.window.stride <= 0 || rule.window.dilation <= 0 || rule.window.padding < 0 ||
        rule.window.OutExtent(shape(in)[axis]) != out_extent) {
      return refuse("has a window whose output extent does not follow the usual formula (ceil_mode)");
    }
    return rule;
  };

  if (op.type == "aten.convolution" || op.type == "aten.convolution_backward") {
    const bool backward = op.type == "aten.convolution_backward";
    const size_t in = backward ? 1 : 0, weight = backward ? 2 : 1;
    if (!rank4(in) || !rank4(weight)) return refuse("is not a 2-D convolution");
    const int64_t out_extent = backward ? shape(0)[axis] : graph.tensor(op.outputs[0]).shape[axis];
    if (BoolAttr(op, "transposed", false)) {
      // The convolution it transposes maps its output rows (out_extent)
      // back to its input rows: the window of that convolution.
      const auto stride = SpatialAttr(op, "stride", {1});
      const auto padding = SpatialAttr(op, "padding", {0});
      const auto dilation = SpatialAttr(op, "dilation", {1});
      const auto output_padding = SpatialAttr(op, "output_padding", {0});
      if (stride.size() != 2 || padding.size() != 2 || dilation.size() != 2 || output_padding.size() != 2) {
        return refuse("is not 2-D");
      }
      rule.kind = backward ? Kind::kConvTransposedBackward : Kind::kConvTransposed;
      rule.window = {shape(weight)[axis], stride[sp], padding[sp], dilation[sp]};
      const Window& w = rule.window;
      if (w.stride <= 0 || w.dilation <= 0 || w.padding < 0 || output_padding[sp] < 0 ||
          (shape(in)[axis] - 1) * w.stride - 2 * w.padding + w.dilation * (w.kernel - 1) + output_padding[sp] + 1 !=
              out_extent) {
        return refuse("has an output extent that does not follow the transposed convolution's formula");
      }
      // A tile pads with zeros the rows no input row reaches (a stride
      // longer than the kernel, output padding past the padding); with a
      // bias those rows would hold the bias.
      const bool unreached = w.stride > w.dilation * (w.kernel - 1) + 1 || output_padding[sp] > w.padding;
      if (!backward && unreached && op.inputs.size() > 2) {
        return refuse("has a bias on output rows no input row reaches");
      }
    } else {
      window_rule(backward ? Kind::kConvBackward : Kind::kConv, in, shape(weight)[axis], out_extent);
      if (rule.refusal) return rule;
    }
    rule.spatial_in[in] = true;
    if (backward) {
      rule.spatial_in[0] = true;
      const auto mask = OutputMask(op);
      rule.spatial_out.clear();
      for (size_t o = 0; o < 3; ++o) {
        if (mask[o]) rule.spatial_out.push_back(o == 0);
      }
      if (rule.spatial_out.size() != op.outputs.size()) return refuse("has outputs that do not match its output_mask");
    }
    return rule;
  }
  if (op.type.starts_with("aten.upsample_nearest2d") || op.type.starts_with("aten.upsample_bilinear2d")) {
    const bool backward = op.type.ends_with("_backward");
    const bool bilinear = op.type.starts_with("aten.upsample_bilinear2d");
    if (!rank4(0)) return refuse("is not an upsampling of NCHW tensors");
    // Bilinear with aligned corners maps rows with (in - 1) / (out - 1): a
    // tile's own ratio differs.
    if (bilinear && BoolAttr(op, "align_corners", false)) return refuse("aligns corners (a tile's row ratio differs)");
    const int64_t small = backward ? graph.tensor(op.outputs[0]).shape[axis] : shape(0)[axis];
    const int64_t large = backward ? shape(0)[axis] : graph.tensor(op.outputs[0]).shape[axis];
    // Output row r reads input row floor(r / f) (bilinear: blends rows
    // floor((r + 0.5) / f - 0.5) and the next, clamped at the borders):
    // tiles that start at a multiple of f read and make the same rows as
    // the whole, bilinear ones with a row of halo each side so that their
    // own clamping only touches rows they cut off. PyTorch computes
    // r * (1 / f) in float, exact only where 1 / f is.
    const int64_t f = small > 0 && large % small == 0 ? large / small : 0;
    if (f <= 0 || (f & (f - 1)) != 0) return refuse("scales the axis by other than a power of two");
    const std::string scale_name = axis == 2 ? "scales_h" : "scales_w";
    std::optional<double> scale;
    if (auto it = op.attrs.find(scale_name); it != op.attrs.end()) {
      if (auto* d = std::get_if<double>(&it->second)) scale = *d;
    }
    if (auto it = op.attrs.find("scale_factors"); it != op.attrs.end()) {
      if (auto* d = std::get_if<std::vector<double>>(&it->second); d && !d->empty()) {
        scale = (*d)[d->size() == 1 ? 0 : sp];
      }
    }
    if (scale && *scale != static_cast<double>(f)) return refuse("has a scale factor other than its sizes' ratio");
    rule.kind = backward ? Kind::kUpsampleBackward : Kind::kUpsample;
    rule.factor = f;
    rule.halo = bilinear ? 1 : 0;
    rule.spatial_in[0] = true;
    return rule;
  }
  const bool max_pool = op.type == "aten.max_pool2d_with_indices" || op.type == "aten.max_pool2d_with_indices_backward";
  const bool avg_pool = op.type == "aten.avg_pool2d" || op.type == "aten.avg_pool2d_backward";
  if (max_pool || avg_pool) {
    const bool backward = op.type.ends_with("_backward");
    const size_t in = backward ? 1 : 0;
    if (!rank4(in)) return refuse("is not a 2-D pooling of NCHW tensors");
    const auto kernel = SpatialAttr(op, "kernel_size", {});
    if (kernel.size() != 2) return refuse("is not 2-D");
    const int64_t out_extent = backward ? shape(0)[axis] : graph.tensor(op.outputs[0]).shape[axis];
    const Kind kind = max_pool ? (backward ? Kind::kMaxPoolBackward : Kind::kMaxPool)
                               : (backward ? Kind::kAvgPoolBackward : Kind::kAvgPool);
    window_rule(kind, in, kernel[sp], out_extent);
    if (rule.refusal) return rule;
    if (max_pool) {
      // Its indices are flat (h * W + w): a tile along H shifts them by a
      // constant; a tile of width Wt along W renumbers them (TileToWhole).
      if (rule.window.padding != 0) return refuse("pads along the axis (a tile would need -inf padding)");
    } else {
      if (BoolAttr(op, "ceil_mode", false)) return refuse("rounds its output extent up (ceil_mode)");
      // Padded explicitly, a tile's windows count the zeros as
      // count_include_pad does (without ceil_mode a window never passes the
      // padding, so the divisor is the kernel's area either way).
      const auto include_pad = op.attrs.find("count_include_pad");
      if (rule.window.padding > 0 && include_pad != op.attrs.end() && !BoolAttr(op, "count_include_pad", false)) {
        return refuse("pads along the axis without counting the padding (count_include_pad = false)");
      }
    }
    std::fill(rule.spatial_in.begin(), rule.spatial_in.end(), true);
    return rule;
  }

  // Element-wise along the axis: every output NCHW with the same extent, and
  // every input of that extent linked to it by the registry.
  if (op.outputs.empty() || op.inputs.empty()) return refuse("has no tensor inputs or outputs");
  const int64_t extent = graph.tensor(op.outputs[0]).shape.size() == 4 ? graph.tensor(op.outputs[0]).shape[axis] : -1;
  for (TensorId t : op.outputs) {
    const Shape& s = graph.tensor(t).shape;
    if (s.size() != 4 || s[axis] != extent) return refuse("has an output that is not NCHW with the tile's axis");
  }
  const DimLinks links = ComputeDimLinks(graph, op);
  for (const ReducedDim& r : links.reduced) {
    if (rank4(r.input) && r.dim == axis) return refuse("reduces the axis");
  }
  for (size_t i = 0; i < op.inputs.size(); ++i) {
    const Shape& s = shape(i);
    // The axis as broadcasting aligns it (from the right).
    const int64_t a = static_cast<int64_t>(s.size()) - (4 - axis);
    if (a < 0) continue;  // shared by every tile
    bool linked = s.size() == 4 && s[a] == extent;
    for (size_t o = 0; o < op.outputs.size() && linked; ++o) {
      const DimLink want{static_cast<int>(o), axis, static_cast<int>(i), axis};
      linked = std::find(links.links.begin(), links.links.end(), want) != links.links.end();
    }
    if (linked) {
      rule.spatial_in[i] = true;
    } else if (s[a] != 1 || extent == 1) {
      return refuse("reads the axis without a link to its output (not element-wise along it)");
    }
  }
  // An output made along the axis out of no input along it (a pooling to a
  // fixed size, an expand) is no element-wise op.
  if (std::find(rule.spatial_in.begin(), rule.spatial_in.end(), true) == rule.spatial_in.end()) {
    return refuse("makes the axis out of no input along it");
  }
  return rule;
}

// ClassifyOp, and a result of one row along the axis (a squeeze-and-
// excitation gate [N, C, 1, 1]) is no tile: its readers broadcast it whole,
// so it stays out of the run.
TileRule Classify(const Graph& graph, const Op& op, int axis) {
  TileRule rule = ClassifyOp(graph, op, axis);
  if (rule.refusal) return rule;
  for (size_t o = 0; o < op.outputs.size(); ++o) {
    const Shape& s = graph.tensor(op.outputs[o]).shape;
    if (rule.spatial_out[o] && s.size() == 4 && s[axis] == 1) {
      rule.refusal = Refusal(op, "has one row along the axis (its readers broadcast it)");
    }
  }
  return rule;
}

// A tile of a tensor made inside S: its tensor and the rows it holds.
struct Tile {
  TensorId id;
  Range rows;
  bool strided = false;  // a view with gaps (a crop along H or W): copied before a kernel that needs it dense
};

class Tiler : public Rewriter {
 public:
  Tiler(const Graph& in, const SpatialSpec& spec, const RegionContext& region, std::vector<TileRule> rules)
      : Rewriter(in), spec_(spec), region_(region), rules_(std::move(rules)), axis_(spec.axis) {}

  int64_t Extent(TensorId t) const { return in_.tensor(t).shape.at(axis_); }

  // Works out, per tile, the rows every tensor made in S is computed on:
  // backwards through S, what its readers in S need plus, when it leaves S,
  // its owned rows.
  void PlanRows() {
    const int64_t n = spec_.parts;
    rows_.assign(n, std::vector<Range>(in_.num_tensors()));
    for (auto it = region_.s_ops.rbegin(); it != region_.s_ops.rend(); ++it) {
      const Op& op = in_.op(*it);
      const TileRule& rule = rules_[it->index()];
      for (int64_t k = 0; k < n; ++k) {
        std::vector<Range>& rows = rows_[k];
        auto require = [&](size_t input, Range r) {
          const TensorId t = op.inputs[input];
          if (in_.tensor(t).producer && region_.in_s[in_.tensor(t).producer->index()]) {
            rows[t.index()] = Hull(rows[t.index()], Clip(r, Extent(t)));
          }
        };
        Range out;  // the rows of the op's spatial outputs (all the same)
        for (size_t o = 0; o < op.outputs.size(); ++o) {
          if (!rule.spatial_out[o]) continue;
          const TensorId t = op.outputs[o];
          Range r = rows[t.index()];
          if (region_.used_outside[t.index()]) r = Hull(r, Owned(Extent(t), n, k));
          out = Hull(out, r);
        }
        for (size_t o = 0; o < op.outputs.size(); ++o) {
          if (rule.spatial_out[o]) rows[op.outputs[o].index()] = out;
        }
        const Window& w = rule.window;
        switch (rule.kind) {
          case Kind::kElementwise:
            for (size_t i = 0; i < op.inputs.size(); ++i) {
              if (rule.spatial_in[i] && !out.empty()) require(i, out);
            }
            break;
          case Kind::kConv:
          case Kind::kMaxPool:
          case Kind::kAvgPool:
            if (!out.empty()) require(0, w.Reads(out));
            break;
          case Kind::kAvgPoolBackward:  // the output-gradient rows whose windows reach `out`
          case Kind::kConvTransposed:   // the input rows that reach `out`
            if (!out.empty()) require(0, w.ReachedBy(out, Extent(op.inputs[0])));
            break;
          case Kind::kConvTransposedBackward: {
            const auto mask = OutputMask(op);
            if (mask[0] && !out.empty()) require(0, w.Reads(out));
            if (const Range owned = Owned(Extent(op.inputs[1]), n, k); mask[1] && !owned.empty()) {
              require(0, w.Reads(owned));
              require(1, owned);
            }
            if (const Range owned = Owned(Extent(op.inputs[0]), n, k); mask[2] && !owned.empty()) require(0, owned);
            break;
          }
          case Kind::kUpsample:
            if (!out.empty()) require(0, UpsampleReads(out, rule.factor, rule.halo, Extent(op.inputs[0])));
            break;
          case Kind::kShift:
            if (!out.empty()) require(0, {out.lo + rule.offset, out.hi + rule.offset});
            break;
          case Kind::kSliceView:
            if (!out.empty()) require(0, out);
            break;
          case Kind::kUpsampleBackward:
            if (!out.empty()) {
              const Range rows = Clip({out.lo - rule.halo, out.hi + rule.halo}, Extent(op.outputs[0]));
              require(0, {rows.lo * rule.factor, rows.hi * rule.factor});
            }
            break;
          case Kind::kMaxPoolBackward:
            if (!out.empty()) {
              const Range o = w.ReachedBy(out, Extent(op.inputs[0]));
              require(0, o);
              require(2, o);
              require(1, w.Reads(o));
            }
            break;
          case Kind::kConvBackward: {
            const auto mask = OutputMask(op);
            if (mask[0] && !out.empty()) {
              const Range o = w.ReachedBy(out, Extent(op.inputs[0]));
              require(0, o);
              require(1, w.Reads(o));
            }
            if (const Range owned = Owned(Extent(op.inputs[0]), n, k); (mask[1] || mask[2]) && !owned.empty()) {
              require(0, owned);
              require(1, w.Reads(owned));
            }
            break;
          }
        }
      }
    }
  }

  // Tile k of every op of S, tile after tile, then the outputs that leave S.
  void EmitTiles() {
    const int64_t n = spec_.parts;
    std::vector<std::vector<TensorId>> joined(in_.num_tensors());  // owned rows of each tile
    std::vector<std::optional<TensorId>> sums(in_.num_tensors());
    for (int64_t k = 0; k < n; ++k) {
      tiles_.assign(in_.num_tensors(), std::nullopt);
      for (OpId id : region_.s_ops) {
        const Op& op = in_.op(id);
        const std::vector<std::optional<TensorId>> outs = EmitOp(op, rules_[id.index()], k);
        for (size_t o = 0; o < op.outputs.size(); ++o) {
          const TensorId orig = op.outputs[o];
          if (!outs[o]) continue;
          if (rules_[id.index()].spatial_out[o]) {
            tiles_[orig.index()] = Tile{*outs[o], rows_[k][orig.index()], strided_.count(outs[o]->value) > 0};
            const Range owned = Owned(Extent(orig), n, k);
            // A tile that is a view of a larger one (a channel slice of a
            // concatenation's gradient) is copied out: waiting for the join,
            // the view would hold the whole of what it views.
            if (region_.used_outside[orig.index()] && !owned.empty()) {
              joined[orig.index()].push_back(Cut(orig, owned, 0.0, k, tiles_[orig.index()]->strided));
            }
          } else if (region_.used_outside[orig.index()]) {
            sums[orig.index()] = !sums[orig.index()] ? *outs[o] : AddUp(*sums[orig.index()], *outs[o], op, orig, k == n - 1);
          }
        }
      }
    }
    for (OpId id : region_.s_ops) {
      const Op& op = in_.op(id);
      for (size_t o = 0; o < op.outputs.size(); ++o) {
        const TensorId orig = op.outputs[o];
        if (!region_.used_outside[orig.index()]) continue;
        if (!rules_[id.index()].spatial_out[o]) {
          SetWhole(orig, *sums[orig.index()]);
          continue;
        }
        Join(orig, joined[orig.index()], axis_, fmt::format("{}.join{}", op.name, o), op.phase);
        ++record_.joined_outputs;
      }
    }
  }

  FissionRecord& record() { return record_; }

 private:
  // Tile k of `op`: its outputs (nullopt where the tile computes nothing).
  std::vector<std::optional<TensorId>> EmitOp(const Op& op, const TileRule& rule, int64_t k) {
    std::vector<std::optional<TensorId>> outs(op.outputs.size());
    const Window& w = rule.window;
    const std::string name = fmt::format("{}.tile{}", op.name, k);
    auto clone = [&](std::vector<TensorId> inputs, const std::vector<size_t>& which) {
      Op c = NewOp(name, op.type, op.overload, std::move(inputs), op.attrs, op.phase);
      SetAxisAttr(c, "padding", 0);
      std::vector<const Tensor*> like;
      for (size_t o : which) like.push_back(&in_.tensor(op.outputs[o]));
      return EmitTileOp(std::move(c), like, k);
    };
    const Range out = FirstSpatialRows(op, rule, k);
    switch (rule.kind) {
      case Kind::kElementwise: {
        if (out.empty()) return outs;
        std::vector<TensorId> inputs;
        // Element-wise kernels read strided views as they are: no copy.
        // Others (a softmax's backward along another axis) get them dense.
        const bool dense = !FindOpSchema(op.type)->pointwise;
        for (size_t i = 0; i < op.inputs.size(); ++i) {
          inputs.push_back(rule.spatial_in[i] ? Cut(op.inputs[i], out, 0.0, k, dense) : Whole(op.inputs[i]));
        }
        Op c = NewOp(name, op.type, op.overload, std::move(inputs), op.attrs, op.phase);
        // An attribute that spells out the output's shape (slice_backward's
        // input_sizes, cropping along the other axis) follows the tile.
        RescaleShapeAttrs(c, axis_, Extent(op.outputs[0]), out.size());
        std::vector<const Tensor*> like;
        for (TensorId t : op.outputs) like.push_back(&in_.tensor(t));
        const auto ids = EmitTileOp(std::move(c), like, k);
        for (TensorId id : ids) {
          if (out_.tensor(id).shape.at(axis_) != out.size()) {
            Fail("spatial fission: op {} ({}) does not keep its meaning on a tile: its shapes do not follow the tile",
                 Quote(op.name), op.qualified_type());
          }
        }
        for (size_t o = 0; o < ids.size(); ++o) outs[o] = ids[o];
        return outs;
      }
      case Kind::kConv: {
        if (out.empty()) return outs;
        std::vector<TensorId> inputs{Cut(op.inputs[0], w.Reads(out), 0.0, k, true)};
        for (size_t i = 1; i < op.inputs.size(); ++i) inputs.push_back(Whole(op.inputs[i]));
        outs[0] = clone(std::move(inputs), {0})[0];
        return outs;
      }
      case Kind::kAvgPool: {
        if (out.empty()) return outs;
        outs[0] = clone({Cut(op.inputs[0], w.Reads(out), 0.0, k, true)}, {0})[0];
        return outs;
      }
      case Kind::kConvTransposed: {
        if (out.empty()) return outs;
        const Range o = w.ReachedBy(out, Extent(op.inputs[0]));
        if (o.empty()) {  // rows no input row reaches (no bias: Classify)
          outs[0] = Zeros(op.outputs[0], out, op, k);
          return outs;
        }
        std::vector<TensorId> inputs{Cut(op.inputs[0], o, 0.0, k, true)};
        for (size_t i = 1; i < op.inputs.size(); ++i) inputs.push_back(Whole(op.inputs[i]));
        Op c = NewOp(name, op.type, op.overload, std::move(inputs), op.attrs, op.phase);
        SetAxisAttr(c, "padding", 0);
        SetAxisAttr(c, "output_padding", 0);
        // Input rows o make the (virtual) output rows their windows cover.
        const TensorId y = EmitTileOp(std::move(c), {&in_.tensor(op.outputs[0])}, k)[0];
        outs[0] = Fit(y, w.Reads(o), out, op, k);
        return outs;
      }
      case Kind::kConvTransposedBackward: {
        const auto mask = OutputMask(op);
        size_t next = 0;
        auto conv_backward = [&](std::string suffix, TensorId grad, TensorId input, std::vector<int64_t> mask_of,
                                 std::vector<const Tensor*> like) {
          Op c = NewOp(name + suffix, op.type, op.overload, {grad, input, Whole(op.inputs[2])}, op.attrs, op.phase);
          SetAxisAttr(c, "padding", 0);
          SetAxisAttr(c, "output_padding", 0);
          c.attrs["output_mask"] = std::move(mask_of);
          return EmitTileOp(std::move(c), like, k);
        };
        // The input gradient is the transposed convolution's convolution of
        // the output gradient: rows `out` read output-gradient rows
        // Reads(out) (zeros past the borders), the input only for its shape.
        if (mask[0]) {
          if (!out.empty()) {
            outs[0] = conv_backward("", Cut(op.inputs[0], w.Reads(out), 0.0, k, true),
                                    ShapeOnly(op.inputs[1], out, op, k), {1, 0, 0}, {&in_.tensor(op.outputs[0])})[0];
          }
          ++next;
        }
        // The weight gradient sums over input rows: this tile's own input
        // rows with the output-gradient rows their windows cover.
        if (const Range owned = Owned(Extent(op.inputs[1]), spec_.parts, k); mask[1]) {
          if (!owned.empty()) {
            outs[next] = conv_backward(".weights", Cut(op.inputs[0], w.Reads(owned), 0.0, k, true),
                                       Cut(op.inputs[1], owned, 0.0, k, true), {0, 1, 0},
                                       {&in_.tensor(op.outputs[next])})[0];
          }
          ++next;
        }
        // The bias gradient sums the output gradient: this tile's own rows.
        if (const Range owned = Owned(Extent(op.inputs[0]), spec_.parts, k); mask[2] && !owned.empty()) {
          Op sum = NewOp(fmt::format("{}.bias", name), "aten.sum", "dim_IntList",
                         {Cut(op.inputs[0], owned, 0.0, k, false)},
                         {{"dim", std::vector<int64_t>{0, 2, 3}}, {"keepdim", false}}, op.phase);
          outs[next] = EmitTileOp(std::move(sum), {&in_.tensor(op.outputs[next])}, k)[0];
        }
        return outs;
      }
      case Kind::kShift: {
        // The rows themselves (`fill` where the input has none: a crop's
        // backward, a padding's border rows).
        if (out.empty()) return outs;
        const TensorId rows = Cut(op.inputs[0], {out.lo + rule.offset, out.hi + rule.offset}, rule.fill, k, false);
        if (op.type != "aten.constant_pad_nd" || !PadsOtherAxes(op)) {
          outs[0] = rows;
          strided_.insert(outs[0]->value);
          return outs;
        }
        // A padding along the other axes too: the tile's rows padded there.
        Op c = NewOp(name, op.type, op.overload, {rows}, op.attrs, op.phase);
        NoPadAlongAxis(c);
        outs[0] = EmitTileOp(std::move(c), {&in_.tensor(op.outputs[0])}, k)[0];
        return outs;
      }
      case Kind::kSliceView: {
        if (out.empty()) return outs;
        Op c = NewOp(name, op.type, op.overload, {Cut(op.inputs[0], out, 0.0, k, false)}, op.attrs, op.phase);
        outs[0] = EmitTileOp(std::move(c), {&in_.tensor(op.outputs[0])}, k)[0];
        strided_.insert(outs[0]->value);
        return outs;
      }
      case Kind::kUpsample: {
        if (out.empty()) return outs;
        const Range reads = UpsampleReads(out, rule.factor, rule.halo, Extent(op.inputs[0]));
        Op c = NewOp(name, op.type, op.overload, {Cut(op.inputs[0], reads, 0.0, k, true)}, op.attrs, op.phase);
        SetEntry(c, "output_size", axis_ - 2, rule.factor * reads.size());
        const TensorId y = EmitTileOp(std::move(c), {&in_.tensor(op.outputs[0])}, k)[0];
        outs[0] = Fit(y, {rule.factor * reads.lo, rule.factor * reads.hi}, out, op, k);
        return outs;
      }
      case Kind::kUpsampleBackward: {
        // Input-gradient rows `rows` (with the halo) from the output-gradient
        // rows they make, cut to `out`.
        if (out.empty()) return outs;
        const Range rows = Clip({out.lo - rule.halo, out.hi + rule.halo}, Extent(op.outputs[0]));
        Op c = NewOp(name, op.type, op.overload,
                     {Cut(op.inputs[0], {rule.factor * rows.lo, rule.factor * rows.hi}, 0.0, k, true)}, op.attrs, op.phase);
        SetEntry(c, "output_size", axis_ - 2, rule.factor * rows.size());
        SetEntry(c, "input_size", axis_, rows.size());
        const TensorId grad = EmitTileOp(std::move(c), {&in_.tensor(op.outputs[0])}, k)[0];
        outs[0] = Fit(grad, rows, out, op, k);
        return outs;
      }
      case Kind::kMaxPool: {
        if (out.empty()) return outs;
        const Range reads = w.Reads(out);
        const auto ids = clone({Cut(op.inputs[0], reads, 0.0, k, true)}, {0, 1});
        outs[0] = ids[0];
        // Indices into the tile -> into the whole input.
        outs[1] = TileToWhole(ids[1], in_.tensor(op.inputs[0]).shape, reads, op, k, true);
        return outs;
      }
      case Kind::kMaxPoolBackward:
      case Kind::kAvgPoolBackward: {
        if (out.empty()) return outs;
        const Range o = w.ReachedBy(out, Extent(op.inputs[0]));
        if (o.empty()) {  // rows no window reaches (a stride longer than the kernel): zero
          outs[0] = Zeros(op.outputs[0], out, op, k);
          return outs;
        }
        const Range reads = w.Reads(o);
        std::vector<TensorId> inputs{Cut(op.inputs[0], o, 0.0, k, true)};
        if (rule.kind == Kind::kMaxPoolBackward) {
          inputs.push_back(Cut(op.inputs[1], reads, 0.0, k, true));
          inputs.push_back(
              TileToWhole(Cut(op.inputs[2], o, 0.0, k, true), in_.tensor(op.inputs[1]).shape, reads, op, k, false));
        } else {
          inputs.push_back(ShapeOnly(op.inputs[1], reads, op, k));  // average pooling reads only its shape
        }
        outs[0] = Fit(clone(std::move(inputs), {0})[0], reads, out, op, k);
        return outs;
      }
      case Kind::kConvBackward: {
        const auto mask = OutputMask(op);
        size_t next = 0;
        if (mask[0]) {
          if (!out.empty()) {
            const Range o = w.ReachedBy(out, Extent(op.inputs[0]));
            const Range reads = w.Reads(o);
            if (o.empty()) {  // rows no window reaches (a stride longer than the kernel): zero
              outs[0] = Zeros(op.outputs[0], out, op, k);
            } else {
              const TensorId grad = InputGradient(op, Cut(op.inputs[0], o, 0.0, k, true), reads, k);
              outs[0] = Fit(grad, reads, out, op, k);
            }
          }
          ++next;
        }
        // Weight and bias gradients from this tile's own output-gradient rows.
        if (const Range owned = Owned(Extent(op.inputs[0]), spec_.parts, k); (mask[1] || mask[2]) && !owned.empty()) {
          Op c = NewOp(fmt::format("{}.weights", name), op.type, op.overload,
                       {Cut(op.inputs[0], owned, 0.0, k, true), Cut(op.inputs[1], w.Reads(owned), 0.0, k, true),
                        Whole(op.inputs[2])},
                       op.attrs, op.phase);
          SetAxisAttr(c, "padding", 0);
          c.attrs["output_mask"] = std::vector<int64_t>{0, mask[1] ? 1 : 0, mask[2] ? 1 : 0};
          std::vector<const Tensor*> like;
          for (size_t o = next; o < op.outputs.size(); ++o) like.push_back(&in_.tensor(op.outputs[o]));
          const auto ids = EmitTileOp(std::move(c), like, k);
          for (size_t o = 0; o < ids.size(); ++o) outs[next + o] = ids[o];
        }
        return outs;
      }
    }
    return outs;
  }

  Range FirstSpatialRows(const Op& op, const TileRule& rule, int64_t k) const {
    for (size_t o = 0; o < op.outputs.size(); ++o) {
      if (rule.spatial_out[o]) return rows_[k][op.outputs[o].index()];
    }
    return {};
  }

  // Sets entry `axis - 2` of an int-list attribute (padding along the axis).
  void SetAxisAttr(Op& op, std::string_view name, int64_t value) const { SetEntry(op, name, axis_ - 2, value); }

  // constant_pad_nd's `pad` ([W before, W after, H before, H after]) with
  // no padding along the tile's axis, and whether it pads along another axis.
  void NoPadAlongAxis(Op& op) const {
    std::vector<int64_t> pad = IntsAttr(op, "pad");
    const size_t from_end = static_cast<size_t>(3 - axis_);
    pad.at(2 * from_end) = pad.at(2 * from_end + 1) = 0;
    op.attrs["pad"] = pad;
  }
  bool PadsOtherAxes(const Op& op) const {
    const std::vector<int64_t> pad = IntsAttr(op, "pad");
    for (size_t i = 0; i < pad.size(); ++i) {
      if (i / 2 != static_cast<size_t>(3 - axis_) && pad[i] != 0) return true;
    }
    return false;
  }

  // Sets entry `index` of an int-list attribute, where the op has it.
  static void SetEntry(Op& op, std::string_view name, int index, int64_t value) {
    auto it = op.attrs.find(name);
    if (it == op.attrs.end() || std::holds_alternative<std::monostate>(it->second)) return;
    std::vector<int64_t> v = SpatialAttr(op, name, {0});
    v.at(static_cast<size_t>(index)) = value;
    it->second = v;
  }

  // Rows `want` (virtual: outside [0, extent) is `pad`) of input-graph
  // tensor `t`, from its tile (made in S) or its whole (from before S). A
  // slice that is not contiguous is copied when `contiguous`.
  TensorId Cut(TensorId t, Range want, double pad, int64_t k, bool contiguous) {
    const Tensor& orig = in_.tensor(t);
    const bool made_in_s = orig.producer && region_.in_s[orig.producer->index()];
    TensorId src;
    Range held{0, Extent(t)};
    bool strided = !orig.strides.empty();
    if (made_in_s) {
      const std::optional<Tile>& tile = tiles_.at(t.index());
      if (!tile) Fail("spatial fission: internal: tile {} of {} read before it is made", k, Quote(orig.name));
      src = tile->id;
      held = tile->rows;
      strided = tile->strided;
    } else {
      src = Whole(t);
      ++record_.sliced_inputs;
    }
    const Range real = Clip(want, Extent(t));
    if (real.lo < held.lo || real.hi > held.hi || real.empty()) {
      Fail("spatial fission: internal: tile {} of {} holds rows [{}, {}), needs [{}, {})", k, Quote(orig.name), held.lo,
           held.hi, real.lo, real.hi);
    }
    Tensor like = orig;
    if (IsSourceRole(like.role) || like.role == TensorRole::kOutput) like.role = TensorRole::kActivation;
    like.strides.clear();
    const std::string suffix = fmt::format(".tile{}", k);
    const Phase phase = orig.producer ? in_.op(*orig.producer).phase : Phase::kForward;
    TensorId x = src;
    bool sliced = false;
    if (!(real == held)) {
      Op slice = NewOp(fmt::format("{}.rows{}", orig.name, k), "aten.slice", "Tensor", {src},
                       {{"dim", int64_t{axis_}}, {"start", real.lo - held.lo}, {"end", real.hi - held.lo}, {"step", int64_t{1}}},
                       phase);
      x = Emit(std::move(slice), {&like}, suffix)[0];
      sliced = true;
    }
    const int64_t top = real.lo - want.lo, bottom = want.hi - real.hi;
    if (top > 0 || bottom > 0) return Pad(x, top, bottom, pad, like, phase, k);
    if ((sliced || strided) && contiguous) {
      Op copy = NewOp(fmt::format("{}.contiguous{}", orig.name, k), "aten.clone", "", {x},
                      {{"memory_format", std::string("contiguous_format")}}, phase);
      return Emit(std::move(copy), {&like}, suffix + ".contiguous")[0];
    }
    return x;
  }

  // x with `top` rows before and `bottom` after along the axis (negative:
  // cut off) of value `value`.
  TensorId Pad(TensorId x, int64_t top, int64_t bottom, double value, const Tensor& like, Phase phase, int64_t k) {
    std::vector<int64_t> pad = axis_ == 3 ? std::vector<int64_t>{top, bottom} : std::vector<int64_t>{0, 0, top, bottom};
    Op op = NewOp(fmt::format("{}.pad{}", like.name, k), "aten.constant_pad_nd", "", {x},
                  {{"pad", pad}, {"value", value}}, phase);
    return Emit(std::move(op), {&like}, fmt::format(".tile{}.padded", k))[0];
  }

  // An input-gradient tile computed on rows `has` cut (or zero-padded) to
  // rows `want`.
  TensorId Fit(TensorId grad, Range has, Range want, const Op& op, int64_t k) {
    if (has == want) return grad;
    Tensor like = in_.tensor(op.outputs[0]);
    like.role = TensorRole::kActivation;
    like.strides.clear();
    if (has.lo <= want.lo && want.hi <= has.hi) {
      // Only cut: a view (the next element-wise op reads it as it is).
      Op slice = NewOp(fmt::format("{}.tile{}.rows", op.name, k), "aten.slice", "Tensor", {grad},
                       {{"dim", int64_t{axis_}}, {"start", want.lo - has.lo}, {"end", want.hi - has.lo}, {"step", int64_t{1}}},
                       op.phase);
      const TensorId view = Emit(std::move(slice), {&like}, fmt::format(".tile{}.rows", k))[0];
      strided_.insert(view.value);
      return view;
    }
    return Pad(grad, has.lo - want.lo, want.hi - has.hi, 0.0, like, op.phase, k);
  }

  // The input gradient of convolution backward `op` on input rows `reads`
  // (the rows output-gradient rows `grad` read, with padding 0 along the
  // axis): the transposed convolution of `grad` with the same weight and
  // groups, which is what the input gradient is. Unlike convolution_backward
  // it needs no stand-in for the input (an allocation of the input tile's
  // size), only its extent: output_padding makes up the rows and columns
  // that no window's last row reaches.
  TensorId InputGradient(const Op& op, TensorId grad, Range reads, int64_t k) {
    const Shape& in = in_.tensor(op.inputs[1]).shape;
    const Shape& weight = in_.tensor(op.inputs[2]).shape;
    const Shape& g = out_.tensor(grad).shape;
    const auto stride = SpatialAttr(op, "stride", {1});
    std::vector<int64_t> padding = SpatialAttr(op, "padding", {0});
    const auto dilation = SpatialAttr(op, "dilation", {1});
    padding[axis_ - 2] = 0;
    std::vector<int64_t> output_padding(2);
    for (size_t a = 0; a < 2; ++a) {
      const int64_t extent = a + 2 == static_cast<size_t>(axis_) ? reads.size() : in[a + 2];
      output_padding[a] = extent - ((g[a + 2] - 1) * stride[a] - 2 * padding[a] + dilation[a] * (weight[a + 2] - 1) + 1);
    }
    auto groups = op.attrs.find("groups");
    Op c = NewOp(fmt::format("{}.tile{}.input", op.name, k), "aten.convolution", "", {grad, Whole(op.inputs[2])},
                 {{"bias", std::monostate{}},
                  {"stride", stride},
                  {"padding", padding},
                  {"dilation", dilation},
                  {"transposed", true},
                  {"output_padding", output_padding},
                  {"groups", groups == op.attrs.end() ? AttrValue{int64_t{1}} : groups->second}},
                 op.phase);
    return EmitTileOp(std::move(c), {&in_.tensor(op.outputs[0])}, k)[0];
  }

  // Zeros shaped like rows `rows` of `t`.
  TensorId Zeros(TensorId t, Range rows, const Op& op, int64_t k) { return Made("aten.zeros", "", t, rows, op, k); }

  // An uninitialized tensor shaped like rows `rows` of `t` (for an
  // argument whose values are not read).
  TensorId ShapeOnly(TensorId t, Range rows, const Op& op, int64_t k) {
    return Made("aten.empty", "memory_format", t, rows, op, k);
  }

  // Factory `type` shaped like rows `rows` of `t`.
  TensorId Made(std::string type, std::string overload, TensorId t, Range rows, const Op& op, int64_t k) {
    Tensor like = in_.tensor(t);
    like.role = TensorRole::kActivation;
    like.strides.clear();
    like.alias_of.reset();
    Shape shape = like.shape;
    shape.at(axis_) = rows.size();
    const std::string suffix = fmt::format(".tile{}.{}", k, type.substr(type.find('.') + 1));
    Op made = NewOp(op.name + suffix, std::move(type), std::move(overload), {},
                    {{"size", shape}, {"dtype", std::string(ToString(like.dtype))}}, op.phase);
    return Emit(std::move(made), {&like}, suffix)[0];
  }

  // Max pooling's flat indices (h * W + w) into an input of shape `whole`
  // -> into its tile of rows `rows` along the axis (to_whole false), or
  // back. Along H a tile's indices are the whole's less rows.lo * W. Along
  // W, a tile of width Wt starting at column c: whole = tile + floor(tile /
  // Wt) * (W - Wt) + c, tile = whole - floor(whole / W) * (W - Wt) - c.
  TensorId TileToWhole(TensorId indices, const Shape& whole, Range rows, const Op& op, int64_t k, bool to_whole) {
    const int64_t width = whole[3];
    const int64_t sign = to_whole ? 1 : -1;
    if (axis_ == 2) return Shift(indices, sign * rows.lo * width, op, k);
    const int64_t from = to_whole ? rows.size() : width, to = to_whole ? width : rows.size();
    TensorId x = indices;
    if (from != to) {
      const TensorId row = IndexOp("aten.div", "Scalar_mode", {indices},
                                   {{"other", from}, {"rounding_mode", std::string("floor")}}, op, k, "row");
      const TensorId skip = IndexOp("aten.mul", "Scalar", {row}, {{"other", to - from}}, op, k, "skip");
      x = IndexOp("aten.add", "Tensor", {indices, skip}, {}, op, k, "columns");
    }
    return Shift(x, sign * rows.lo, op, k);
  }

  TensorId Shift(TensorId indices, int64_t by, const Op& op, int64_t k) {
    return by == 0 ? indices : IndexOp("aten.add", "Scalar", {indices}, {{"other", by}}, op, k, "shift");
  }

  // An element-wise op on max pooling's indices.
  TensorId IndexOp(std::string type, std::string overload, std::vector<TensorId> inputs, Attrs attrs, const Op& op,
                   int64_t k, std::string_view what) {
    Op index_op = NewOp(fmt::format("{}.tile{}.{}", op.name, k, what), std::move(type), std::move(overload),
                        std::move(inputs), std::move(attrs), op.phase);
    Tensor like = in_.tensor(op.outputs.size() > 1 ? op.outputs[1] : op.inputs[2]);
    like.role = TensorRole::kActivation;
    like.strides.clear();
    return Emit(std::move(index_op), {&like}, fmt::format(".tile{}.{}", k, what))[0];
  }

  std::vector<TensorId> EmitTileOp(Op op, const std::vector<const Tensor*>& like, int64_t k) {
    auto ids = Emit(std::move(op), like, fmt::format(".tile{}", k));
    for (TensorId id : ids) {
      Tensor& t = out_.mutable_tensor(id);
      if (t.role == TensorRole::kOutput) t.role = TensorRole::kActivation;
    }
    return ids;
  }

  // acc += part, in place into tile 0's result (named like the whole after the last tile).
  TensorId AddUp(TensorId acc, TensorId part, const Op& op, TensorId orig, bool last) {
    Op add = NewOp(fmt::format("{}.sum", op.name), "aten.add_", "Tensor", {acc, part}, {}, op.phase);
    if (last) ++record_.summed_outputs;
    return Emit(std::move(add), {&in_.tensor(orig)}, last ? "" : ".partial")[0];
  }

  const SpatialSpec& spec_;
  const RegionContext& region_;
  std::vector<TileRule> rules_;  // by op
  int axis_;
  std::vector<std::vector<Range>> rows_;   // [tile][tensor]: the rows the tile computes
  std::vector<std::optional<Tile>> tiles_;  // the current tile's tensors made in S
  std::unordered_set<uint32_t> strided_;      // output-graph tensors that are views with gaps
  FissionRecord record_;
};

std::string AxisName(int axis) { return axis == 2 ? "H" : axis == 3 ? "W" : fmt::format("axis {}", axis); }

}  // namespace

std::optional<std::string> WhyNotTileable(const Graph& graph, OpId op, int axis) {
  return Classify(graph, graph.op(op), axis).refusal;
}

FissionResult ApplySpatialFission(const Graph& graph, const SpatialSpec& spec) {
  if (spec.axis != 2 && spec.axis != 3) Fail("spatial fission: axis {} is neither 2 (H) nor 3 (W) of NCHW", spec.axis);
  const std::string what = fmt::format("spatial fission along {}", AxisName(spec.axis));
  if (spec.parts < 2) Fail("{}: {} tiles: need at least 2", what, spec.parts);
  // Every spatial tensor is cut into `parts` ranges; tiles of a tensor with
  // fewer rows than that own none of its rows (and compute what their
  // readers need, if anything).
  RegionContext region = AnalyzeRegion(graph, spec.ops, what);

  std::vector<TileRule> rules(graph.num_ops());
  int64_t length = 0;
  for (OpId id : region.s_ops) {
    const Op& op = graph.op(id);
    TileRule& rule = rules[id.index()] = Classify(graph, op, spec.axis);
    if (rule.refusal) Fail("{}: {}", what, *rule.refusal);
    auto check = [&](TensorId t) { length = std::max(length, graph.tensor(t).shape.at(spec.axis)); };
    for (size_t i = 0; i < op.inputs.size(); ++i) {
      if (rule.spatial_in[i]) check(op.inputs[i]);
    }
    for (size_t i = 0; i < op.inputs.size(); ++i) {
      const std::optional<OpId> producer = graph.tensor(op.inputs[i]).producer;
      if (rule.spatial_in[i] || !producer || !region.in_s[producer->index()]) continue;
      const Op& p = graph.op(*producer);
      const size_t o = std::find(p.outputs.begin(), p.outputs.end(), op.inputs[i]) - p.outputs.begin();
      if (rules[producer->index()].spatial_out.at(o)) {
        Fail("{}: op {} reads {} whole, which op {} would make in tiles", what, Quote(op.name),
             Quote(graph.tensor(op.inputs[i]).name), Quote(p.name));
      }
    }
    for (size_t o = 0; o < op.outputs.size(); ++o) {
      if (rule.spatial_out[o]) check(op.outputs[o]);
      // A weight gradient summed over the tiles may only leave S.
      if (rule.spatial_out[o]) continue;
      for (OpId c : region.consumers[op.outputs[o].index()]) {
        if (region.in_s[c.index()]) {
          Fail("{}: op {} reads a partial sum over the tiles (output {} of op {})", what, Quote(graph.op(c).name), o,
               Quote(op.name));
        }
      }
    }
  }

  // More tiles than the longest axis has rows: tiles that own no row of
  // any tensor (and a plan of rows per tile and tensor as large as asked).
  if (spec.parts > length) Fail("{}: {} tiles of {} rows: need 2 to {}", what, spec.parts, length, length);

  Tiler tiler(graph, spec, region, std::move(rules));
  tiler.PlanRows();
  RewriteAroundRegion(graph, region, what, tiler, [&] { tiler.EmitTiles(); });

  FissionRecord& record = tiler.record();
  record.dim_name = AxisName(spec.axis);
  record.dim_kind = "spatial";
  record.length = length;
  record.parts = spec.parts;
  record.num_ops = static_cast<int>(region.s_ops.size());
  record.first_op = graph.op(region.s_ops.front()).name;
  record.last_op = graph.op(region.s_ops.back()).name;
  const size_t index = RecordedFissions(graph).size();
  FissionResult result{tiler.Take(), record};
  result.graph.metadata[fmt::format("fission.{}", index)] = ToString(record);
  return result;
}

std::vector<std::vector<OpId>> SpatialRegions(const Graph& graph, int axis, size_t min_ops) {
  std::vector<TileRule> rules;
  rules.reserve(graph.num_ops());
  for (const Op& op : graph.ops()) rules.push_back(Classify(graph, op, axis));
  // Tensors an op that tiles reads whole (a convolution's weight): what
  // makes them stays whole too. A slice of a weight along its output
  // channels (transform/concat_convolution.h) would otherwise tile the
  // kernel's rows as if they were an image's.
  // And sums over the tiles (a weight gradient) are whole only after the
  // tiles: what reads them stays whole (the weight gradients' pieces that
  // the rewrite joins).
  std::vector<bool> read_whole(graph.num_tensors(), false), summed(graph.num_tensors(), false);
  for (const Op& op : graph.ops()) {
    const TileRule& rule = rules[op.id.index()];
    if (rule.refusal) continue;
    for (size_t i = 0; i < op.inputs.size(); ++i) {
      if (!rule.spatial_in[i]) read_whole[op.inputs[i].index()] = true;
    }
    for (size_t o = 0; o < op.outputs.size(); ++o) {
      if (!rule.spatial_out[o]) summed[op.outputs[o].index()] = true;
    }
  }
  auto tiles = [&](const Op& op) {
    const TileRule& rule = rules[op.id.index()];
    if (rule.refusal) return false;
    for (size_t o = 0; o < op.outputs.size(); ++o) {
      if (rule.spatial_out[o] && read_whole[op.outputs[o].index()]) return false;
    }
    return std::none_of(op.inputs.begin(), op.inputs.end(), [&](TensorId t) { return summed[t.index()]; });
  };
  RegionRuns runs(graph, min_ops);
  for (const Op& op : graph.ops()) {
    if (op.inputs.empty()) continue;  // factories stay whole before the tiles
    if (tiles(op)) {
      if (runs.ReadsAfterRun(op)) runs.Close();  // the run would leave S and come back
      runs.Add(op);
      continue;
    }
    // A write into what the run has read would come before the tiles read it.
    if (runs.OverwritesRead(op)) {
      runs.Close();
      continue;
    }
    // Stays whole: before the tiles when it needs nothing of the run, after
    // them when it does (then no op of the run may read it).
    if (runs.NeedsRun(op)) runs.MarkAfter(op.id);
  }
  // Each run's connected parts (by the tensors one op of it makes and
  // another reads), in program order: each is convex like the run, since
  // a path between two ops of a part through another op of the run would
  // connect them.
  std::vector<std::vector<OpId>> parts;
  for (std::vector<OpId>& run : runs.Finish()) {
    std::unordered_map<int64_t, size_t> root;  // op index -> union-find slot
    std::vector<size_t> parent(run.size());
    for (size_t i = 0; i < run.size(); ++i) root[run[i].index()] = parent[i] = i;
    auto find = [&](size_t i) {
      while (parent[i] != i) i = parent[i] = parent[parent[i]];
      return i;
    };
    for (size_t i = 0; i < run.size(); ++i) {
      for (TensorId t : graph.op(run[i]).inputs) {
        const auto& producer = graph.tensor(t).producer;
        if (!producer) continue;
        if (auto it = root.find(producer->index()); it != root.end()) parent[find(i)] = find(it->second);
      }
    }
    std::unordered_map<size_t, size_t> part_of;  // root slot -> index into `split`
    std::vector<std::vector<OpId>> split;
    for (size_t i = 0; i < run.size(); ++i) {
      auto [it, added] = part_of.try_emplace(find(i), split.size());
      if (added) split.emplace_back();
      split[it->second].push_back(run[i]);
    }
    for (auto& part : split) {
      if (part.size() >= min_ops) parts.push_back(std::move(part));
    }
  }
  std::stable_sort(parts.begin(), parts.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  return parts;
}

}  // namespace memfit
