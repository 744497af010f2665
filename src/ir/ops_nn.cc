// Neural-network ops and their ATen backward ops: convolution, batch and
// layer norm, softmax, losses, embedding, pooling, upsampling.
#include <fmt/format.h>

#include <cmath>
#include <variant>

#include "ir/ops_common.h"

namespace memfit::ops {
namespace {

using Types = std::vector<TensorType>;

// A spatial hyper-parameter list of length `n`, broadcasting one value.
std::vector<int64_t> Spatial(const OpCall& call, std::string_view name, size_t n, std::vector<int64_t> fallback) {
  std::vector<int64_t> v = call.ints_attr(name, fallback);
  if (v.empty()) v = fallback;
  if (v.size() == 1 && n > 1) v.assign(n, v[0]);
  if (v.size() != n) call.Fail(fmt::format("'{}' must have {} entries, got {}", name, n, v.size()));
  return v;
}

int64_t PooledSize(const OpCall& call, int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation,
                   bool ceil_mode) {
  if (stride <= 0 || kernel <= 0 || dilation <= 0 || pad < 0) {
    call.Fail("kernel, stride and dilation must be positive and padding non-negative");
  }
  const int64_t span = in + 2 * pad - dilation * (kernel - 1) - 1;
  if (span < 0) call.Fail(fmt::format("input extent {} is smaller than the kernel {}", in, kernel));
  int64_t out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  // PyTorch: the last window must start inside the input or left padding.
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

// Links for ops whose output 0 has input 0's shape, batch dim 0 and channel
// dim 1 (normalizations).
DimLinks BatchLinks(const OpCall&, const Types& outs) {
  DimLinks links;
  for (size_t d = 0; d < outs[0].shape.size(); ++d) links.links.push_back({0, static_cast<int>(d), 0, static_cast<int>(d)});
  return links;
}

Shape ConvOutput(const OpCall& call, const Shape& in, const Shape& w) {
  const size_t spatial = in.size() - 2;
  const auto stride = Spatial(call, "stride", spatial, {1});
  const auto padding = Spatial(call, "padding", spatial, {0});
  const auto dilation = Spatial(call, "dilation", spatial, {1});
  const int64_t groups = call.int_attr("groups", 1);
  const bool transposed = call.bool_attr("transposed", false);
  if (groups <= 0) call.Fail(fmt::format("groups = {} must be positive", groups));
  Shape out = {in[0], 0};
  if (!transposed) {
    if (in[1] != w[1] * groups) {
      call.Fail(fmt::format("input channels {} do not match weight {} with groups = {}", in[1],
                            ShapeToString(w), groups));
    }
    out[1] = w[0];
    for (size_t i = 0; i < spatial; ++i) {
      out.push_back(PooledSize(call, in[i + 2], w[i + 2], stride[i], padding[i], dilation[i], false));
    }
  } else {
    const auto output_padding = Spatial(call, "output_padding", spatial, {0});
    if (in[1] != w[0]) {
      call.Fail(fmt::format("input channels {} do not match transposed weight {}", in[1], ShapeToString(w)));
    }
    out[1] = w[1] * groups;
    for (size_t i = 0; i < spatial; ++i) {
      out.push_back((in[i + 2] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (w[i + 2] - 1) +
                    output_padding[i] + 1);
    }
  }
  return out;
}

void CheckConvRanks(const OpCall& call, const Shape& in, const Shape& w) {
  if (in.size() < 3 || in.size() > 5 || w.size() != in.size()) {
    call.Fail(fmt::format("expects input and weight of rank 3 to 5, got {} and {}", ShapeToString(in),
                          ShapeToString(w)));
  }
  // ATen's channel rule: input channels = weight.size(1) * groups (the
  // weight's first dim, transposed), output channels a multiple of groups.
  const int64_t groups = call.int_attr("groups", 1);
  const bool transposed = call.bool_attr("transposed", false);
  if (groups < 1 || in[1] != (transposed ? w[0] : w[1] * groups) || (!transposed && w[0] % groups != 0)) {
    call.Fail(fmt::format("groups = {} does not match input {} and weight {}", groups, ShapeToString(in),
                          ShapeToString(w)));
  }
}

// 2 * (multiply-adds of the forward convolution).
double ConvFlops(const Shape& in, const Shape& w, const Shape& out, bool transposed) {
  double per_output = 1;
  for (size_t i = 1; i < w.size(); ++i) per_output *= static_cast<double>(w[i]);
  if (transposed) return 2.0 * static_cast<double>(Numel(in)) * static_cast<double>(Numel(w)) / static_cast<double>(w[0]);
  return 2.0 * static_cast<double>(Numel(out)) * per_output;
}

// The im2col column buffer a non-1x1 convolution needs for one sample.
// The column buffer of ATen's im2col convolutions, one image at a time:
// [w[1] * kernel, spatial] where spatial is the output's H*W for a
// convolution and the input's for a transposed one (slow_conv_transpose2d
// multiplies the weight into columns over the input's pixels and scatters
// them with col2im: a 16x16 stride-8 upsampling of fcn8's 52x76 map holds
// 19*256 x 52*76 floats, 77 MB, not 19*256 x 416*608).
int64_t ConvWorkspace(const OpCall& call, const Shape& in, const Shape& w, const Shape& out, DType dtype) {
  int64_t kernel = 1;
  for (size_t i = 2; i < w.size(); ++i) kernel *= w[i];
  if (kernel == 1) return 0;
  const Shape& columns_over = call.bool_attr("transposed", false) ? in : out;
  int64_t spatial = 1;
  for (size_t i = 2; i < columns_over.size(); ++i) spatial *= columns_over[i];
  return w[1] * kernel * spatial * DTypeBytes(dtype);
}

// A convolution's batch runs through it; its output channels are the
// weight's dim 0 (dim 1 of a transposed convolution's [Cin, Cout/groups, ...]
// weight, which holds all of them only with one group); the input channels
// are summed away.
DimLinks ConvLinks(const OpCall& call, int input, int weight, int out_index) {
  const bool transposed = call.bool_attr("transposed", false);
  DimLinks links;
  links.links.push_back({out_index, 0, input, 0});
  if (const int64_t groups = call.int_attr("groups", 1); groups != 1) {
    // Output channel c of a grouped convolution reads the input channels of
    // its group: a part of the channels with the same `groups` would pair
    // other rows with other groups. A depthwise convolution (one filter per
    // channel) maps channel c to channel c, and on a part its groups follow
    // the part (RescaleShapeAttrs); other grouped ones are not split along
    // channels.
    const Shape& in = call.input(input).shape;
    const Shape& w = call.input(weight).shape;
    if (!transposed && w.size() >= 2 && w[1] == 1 && w[0] == groups && in.size() >= 2 && in[1] == groups) {
      links.links.push_back({out_index, 1, input, 1});
      links.links.push_back({out_index, 1, weight, 0});
      if (auto bias = call.arg_index("bias")) links.links.push_back({out_index, 1, static_cast<int>(*bias), 0});
    }
    return links;
  }
  links.links.push_back({out_index, 1, weight, transposed ? 1 : 0});
  // Parts of the input channels add up unless the bias is added to each.
  const PartialCombine combine = call.is_none("bias") ? PartialCombine::kSum : PartialCombine::kWhole;
  links.reduced.push_back({input, 1, combine});
  links.reduced.push_back({weight, transposed ? 0 : 1, combine});
  return links;
}

std::vector<bool> OutputMask(const OpCall& call) {
  auto mask = call.bools_attr("output_mask", {true, true, true});
  if (mask.size() != 3) call.Fail("'output_mask' must have 3 entries");
  return mask;
}

// A normalization backward's outputs, those output_mask asks for:
// grad_input (like `input`), grad_weight and grad_bias (of shape `param`).
Types NormGrads(const OpCall& call, const TensorType& input, const Shape& param) {
  const auto mask = OutputMask(call);
  Types outs;
  if (mask[0]) outs.push_back(input);
  if (mask[1]) outs.push_back({param, input.dtype});
  if (mask[2]) outs.push_back({param, input.dtype});
  return outs;
}

// Links of a normalization backward: grad_input (output 0, when the mask
// asks for it) is indexed like grad_out and input; `reduced` input dims of
// grad_out are summed into the parameter gradients.
// `combine` says whether grad_input may be computed on parts of them (a
// layer norm's batch) or needs all of them (batch norm's statistics).
DimLinks NormBackwardLinks(const OpCall& call, const Types& outs, size_t reduced, PartialCombine combine) {
  DimLinks links;
  if (OutputMask(call)[0]) {
    for (size_t d = 0; d < outs[0].shape.size(); ++d) {
      links.links.push_back({0, static_cast<int>(d), 0, static_cast<int>(d)});
      links.links.push_back({0, static_cast<int>(d), 1, static_cast<int>(d)});
    }
  }
  for (size_t d = 0; d < reduced; ++d) links.reduced.push_back({0, static_cast<int>(d), combine, static_cast<int>(d)});
  return links;
}

// normalized_shape must match the trailing dims of `shape`.
size_t LayerNormAxis(const OpCall& call, const Shape& shape) {
  const auto normalized = call.ints_attr("normalized_shape");
  if (normalized.size() > shape.size() ||
      !std::equal(normalized.begin(), normalized.end(), shape.end() - static_cast<long>(normalized.size()))) {
    call.Fail(fmt::format("normalized_shape [{}] does not match the trailing dims of {}",
                          fmt::join(normalized, ", "), ShapeToString(shape)));
  }
  return shape.size() - normalized.size();
}

void AddConvolution(Schemas& s) {
  OpSchema conv = Schema("aten.convolution", {"input", "weight", "bias?"}, [](const OpCall& call) {
    const Shape& in = call.input(0).shape;
    const Shape& w = call.input(1).shape;
    CheckConvRanks(call, in, w);
    Shape out = ConvOutput(call, in, w);
    if (auto bias = call.arg("bias"); bias && (bias->shape.size() != 1 || bias->shape[0] != out[1])) {
      call.Fail(fmt::format("bias {} does not match {} output channels", ShapeToString(bias->shape), out[1]));
    }
    return Types{{out, call.input(0).dtype}};
  });
  conv.flops = [](const OpCall& call, const Types& outs) {
    return ConvFlops(call.input(0).shape, call.input(1).shape, outs[0].shape, call.bool_attr("transposed", false));
  };
  conv.workspace_bytes = [](const OpCall& call, const Types& outs) {
    return ConvWorkspace(call, call.input(0).shape, call.input(1).shape, outs[0].shape, outs[0].dtype);
  };
  conv.dim_links = [](const OpCall& call, const Types&) { return ConvLinks(call, 0, 1, 0); };
  s.push_back(conv);

  // convolution_backward(grad_output, input, weight, bias_sizes, ...,
  // output_mask) -> (grad_input, grad_weight, grad_bias): only the outputs
  // whose output_mask entry is true are present, in that order.
  OpSchema back = Schema("aten.convolution_backward", {"grad_output", "input", "weight"}, [](const OpCall& call) {
    const Shape& in = call.input(1).shape;
    const Shape& w = call.input(2).shape;
    CheckConvRanks(call, in, w);
    if (ConvOutput(call, in, w) != call.input(0).shape) {
      call.Fail(fmt::format("grad_output {} does not match the convolution output {}",
                            ShapeToString(call.input(0).shape), ShapeToString(ConvOutput(call, in, w))));
    }
    const auto mask = OutputMask(call);
    Types outs;
    if (mask[0]) outs.push_back({in, call.input(1).dtype});
    if (mask[1]) outs.push_back({w, call.input(2).dtype});
    if (mask[2]) {
      const auto bias_sizes = call.ints_attr("bias_sizes", {call.input(0).shape[1]});
      outs.push_back({bias_sizes, call.input(0).dtype});
    }
    return outs;
  });
  back.flops = [](const OpCall& call, const Types&) {
    const auto mask = OutputMask(call);
    const double fwd = ConvFlops(call.input(1).shape, call.input(2).shape, call.input(0).shape,
                                 call.bool_attr("transposed", false));
    return fwd * (mask[0] + mask[1]) + (mask[2] ? static_cast<double>(Numel(call.input(0).shape)) : 0.0);
  };
  back.workspace_bytes = [](const OpCall& call, const Types&) {
    return ConvWorkspace(call, call.input(1).shape, call.input(2).shape, call.input(0).shape, call.input(0).dtype);
  };
  back.dim_links = [](const OpCall& call, const Types&) {
    DimLinks links;
    const auto mask = OutputMask(call);
    if (mask[0]) {
      links.links.push_back({0, 0, 1, 0});  // grad_input batch <- input batch
      links.links.push_back({0, 0, 0, 0});  // ... and grad_output's
    }
    // grad_weight and grad_bias sum over the batch of grad_output (and of
    // input, for grad_weight).
    if (mask[1] || mask[2]) links.reduced.push_back({0, 0, PartialCombine::kSum, 0});
    if (mask[1]) links.reduced.push_back({1, 0, PartialCombine::kSum, 0});
    return links;
  };
  s.push_back(back);
}

// The extent of native_batch_norm's saved statistics. Training: one per
// channel. Evaluation (training = false) uses the running statistics and
// saves none: PyTorch's CPU kernel returns them empty, its CUDA kernel per
// channel (unwritten), so the graph's declared extent, 0 or the channels,
// is taken; without one, 0.
int64_t BatchNormStatistics(const OpCall& call, int64_t channels) {
  if (call.bool_attr("training", true)) return channels;
  const auto& declared = call.declared_outputs();
  return declared.size() == 3 && declared[1].shape == Shape{channels} && declared[2].shape == Shape{channels}
             ? channels
             : 0;
}

void AddNormalizations(Schemas& s) {
  // native_batch_norm(input, weight?, bias?, running_mean?, running_var?,
  // training, momentum, eps) -> (out, save_mean, save_invstd). Running
  // statistics are updated in place in training, only read in evaluation.
  OpSchema bn;
  bn.type = "aten.native_batch_norm";
  bn.tensor_args = {"input", "weight?", "bias?", "running_mean?", "running_var?"};
  bn.infer = [](const OpCall& call) {
    const TensorType& in = call.input(0);
    if (in.shape.size() < 2) call.Fail(fmt::format("input {} needs a channel dim", ShapeToString(in.shape)));
    const int64_t channels = in.shape[1];
    for (std::string_view name : {"weight", "bias", "running_mean", "running_var"}) {
      if (auto t = call.arg(name); t && t->shape != Shape{channels}) {
        call.Fail(fmt::format("'{}' has shape {}, expected [{}]", name, ShapeToString(t->shape), channels));
      }
    }
    const int64_t stats = BatchNormStatistics(call, channels);
    return Types{in, {{stats}, StatisticsDType(call, 1, DType::kF32)},
                 {{stats}, StatisticsDType(call, 2, DType::kF32)}};
  };
  bn.flops = [](const OpCall& call, const Types&) { return 8.0 * static_cast<double>(Numel(call.input(0).shape)); };
  bn.dim_links = [](const OpCall& call, const Types& outs) {
    DimLinks links = BatchLinks(call, outs);
    if (!outs[1].shape.empty() && outs[1].shape[0] > 0) {
      links.links.push_back({1, 0, 0, 1});
      links.links.push_back({2, 0, 0, 1});
    }
    // The affine weight and bias and the running statistics are per channel.
    for (std::string_view name : {"weight", "bias", "running_mean", "running_var"}) {
      if (auto i = call.arg_index(name)) links.links.push_back({0, 1, static_cast<int>(*i), 0});
    }
    // Training: statistics over the batch and every position (all dims but
    // the channels). Evaluation: the running statistics, element-wise.
    if (call.bool_attr("training", true)) {
      for (size_t d = 0; d < outs[0].shape.size(); ++d) {
        if (d != 1) links.reduced.push_back({0, static_cast<int>(d)});
      }
    }
    return links;
  };
  bn.mutated_args = {"running_mean", "running_var"};
  bn.mutates_when = [](const OpCall& call) { return call.bool_attr("training", true); };
  s.push_back(bn);

  // batch_norm_update_stats(input, running_mean?, running_var?, momentum)
  // -> (mean, var): a BatchNorm's batch statistics alone (the variance
  // biased, as normalization uses it), the running statistics updated in
  // place as native_batch_norm updates them. The first pass of a BatchNorm
  // forward in two passes (transform/batchnorm_two_pass.h).
  OpSchema stats;
  stats.type = "aten.batch_norm_update_stats";
  stats.tensor_args = {"input", "running_mean?", "running_var?"};
  stats.infer = [](const OpCall& call) {
    const TensorType& in = call.input(0);
    if (in.shape.size() < 2) call.Fail(fmt::format("input {} needs a channel dim", ShapeToString(in.shape)));
    const int64_t channels = in.shape[1];
    for (std::string_view name : {"running_mean", "running_var"}) {
      if (auto t = call.arg(name); t && t->shape != Shape{channels}) {
        call.Fail(fmt::format("'{}' has shape {}, expected [{}]", name, ShapeToString(t->shape), channels));
      }
    }
    return Types{TensorType{{channels}, StatisticsDType(call, 0, DType::kF32)},
                 TensorType{{channels}, StatisticsDType(call, 1, DType::kF32)}};
  };
  stats.flops = [](const OpCall& call, const Types&) { return 3.0 * static_cast<double>(Numel(call.input(0).shape)); };
  stats.dim_links = [](const OpCall& call, const Types&) {
    DimLinks links;
    for (int out : {0, 1}) links.links.push_back({out, 0, 0, 1});
    for (std::string_view name : {"running_mean", "running_var"}) {
      if (auto i = call.arg_index(name)) {
        for (int out : {0, 1}) links.links.push_back({out, 0, static_cast<int>(*i), 0});
      }
    }
    for (size_t d = 0; d < call.input(0).shape.size(); ++d) {
      if (d != 1) links.reduced.push_back({0, static_cast<int>(d)});
    }
    return links;
  };
  stats.mutated_args = {"running_mean", "running_var"};
  s.push_back(stats);

  OpSchema bn_back;
  bn_back.type = "aten.native_batch_norm_backward";
  bn_back.tensor_args = {"grad_out", "input", "weight?", "running_mean?", "running_var?", "save_mean?", "save_invstd?"};
  bn_back.infer = [](const OpCall& call) {
    const TensorType& in = call.input(1);
    if (call.input(0).shape != in.shape) call.Fail("grad_out and input shapes differ");
    return NormGrads(call, in, {in.shape.size() > 1 ? in.shape[1] : 1});
  };
  bn_back.flops = [](const OpCall& call, const Types&) { return 12.0 * static_cast<double>(Numel(call.input(0).shape)); };
  // grad_input is indexed like grad_out and input, per channel like the
  // per-channel inputs; with batch statistics (train) it reads sums of
  // grad_out over the batch and every position: those dims need the whole.
  // grad_weight and grad_bias (per channel) sum over them.
  bn_back.dim_links = [](const OpCall& call, const Types&) {
    DimLinks links;
    const auto mask = OutputMask(call);
    const size_t rank = call.input(1).shape.size();
    const bool batch_statistics = call.bool_attr("train", true);
    const int grad_weight = mask[0] ? 1 : 0, grad_bias = grad_weight + (mask[1] ? 1 : 0);
    for (size_t d = 0; d < rank; ++d) {
      const int dim = static_cast<int>(d);
      for (int input : {0, 1}) {
        if (mask[0]) links.links.push_back({0, dim, input, dim});
        if (d == 1) {
          if (mask[1]) links.links.push_back({grad_weight, 0, input, 1});
          if (mask[2]) links.links.push_back({grad_bias, 0, input, 1});
        } else if (mask[0] && batch_statistics) {
          links.reduced.push_back({input, dim, PartialCombine::kWhole});
        } else if (mask[1] || mask[2]) {
          links.reduced.push_back({input, dim, PartialCombine::kSum});
        }
      }
    }
    for (size_t i = 2; i < call.num_inputs() && rank > 1; ++i) {
      if (call.input(i).shape.size() != 1 || call.input(i).shape[0] != call.input(1).shape[1]) continue;
      if (mask[0]) links.links.push_back({0, 1, static_cast<int>(i), 0});
      if (mask[1]) links.links.push_back({grad_weight, 0, static_cast<int>(i), 0});
      if (mask[2]) links.links.push_back({grad_bias, 0, static_cast<int>(i), 0});
    }
    return links;
  };
  s.push_back(bn_back);

  // native_layer_norm(input, normalized_shape, weight?, bias?, eps) ->
  // (out, mean, rstd); mean and rstd keep the leading dims, 1 elsewhere.
  OpSchema ln = Schema("aten.native_layer_norm", {"input", "weight?", "bias?"}, [](const OpCall& call) {
    const TensorType& in = call.input(0);
    const size_t axis = LayerNormAxis(call, in.shape);
    const Shape normalized(in.shape.begin() + static_cast<long>(axis), in.shape.end());
    for (std::string_view name : {"weight", "bias"}) {
      if (auto t = call.arg(name); t && t->shape != normalized) {
        call.Fail(fmt::format("'{}' has shape {}, expected {}", name, ShapeToString(t->shape), ShapeToString(normalized)));
      }
    }
    Shape stats(in.shape.begin(), in.shape.begin() + static_cast<long>(axis));
    stats.resize(in.shape.size(), 1);
    return Types{in, {stats, StatisticsDType(call, 1, DType::kF32)}, {stats, StatisticsDType(call, 2, DType::kF32)}};
  });
  ln.flops = [](const OpCall& call, const Types&) { return 8.0 * static_cast<double>(Numel(call.input(0).shape)); };
  ln.dim_links = [](const OpCall& call, const Types& outs) {
    DimLinks links = BatchLinks(call, outs);
    const size_t axis = LayerNormAxis(call, call.input(0).shape);
    for (size_t d = 0; d < axis; ++d) {
      links.links.push_back({1, static_cast<int>(d), 0, static_cast<int>(d)});
      links.links.push_back({2, static_cast<int>(d), 0, static_cast<int>(d)});
    }
    return links;
  };
  s.push_back(ln);

  OpSchema ln_back;
  ln_back.type = "aten.native_layer_norm_backward";
  ln_back.tensor_args = {"grad_out", "input", "mean", "rstd", "weight?", "bias?"};
  ln_back.infer = [](const OpCall& call) {
    const TensorType& in = call.input(1);
    if (call.input(0).shape != in.shape) call.Fail("grad_out and input shapes differ");
    const size_t axis = LayerNormAxis(call, in.shape);
    const Shape normalized(in.shape.begin() + static_cast<long>(axis), in.shape.end());
    return NormGrads(call, in, normalized);
  };
  ln_back.flops = [](const OpCall& call, const Types&) { return 12.0 * static_cast<double>(Numel(call.input(0).shape)); };
  ln_back.dim_links = [](const OpCall& call, const Types& outs) {
    const size_t axis = LayerNormAxis(call, call.input(1).shape);
    DimLinks links = NormBackwardLinks(call, outs, axis, PartialCombine::kSum);
    // The per-row mean and rstd ([..., 1]) are indexed like the rows of
    // grad_input, and summed with input into the parameter gradients.
    const auto mask = OutputMask(call);
    for (int d = 0; d < static_cast<int>(axis); ++d) {
      for (int input : {2, 3}) {
        if (mask[0]) links.links.push_back({0, d, input, d});
        if (mask[1] || mask[2]) links.reduced.push_back({input, d, PartialCombine::kSum, d});
      }
      if (mask[1] || mask[2]) links.reduced.push_back({1, d, PartialCombine::kSum, d});
    }
    return links;
  };
  s.push_back(ln_back);
}

void AddSoftmaxAndLosses(Schemas& s) {
  // Softmax along `dim`: every other dim is independent (linked); `dim`
  // itself is not splittable.
  auto softmax_links = [](size_t input) {
    return [input](const OpCall& call, const Types& outs) {
      DimLinks links;
      const int64_t dim = call.dim(call.int_attr("dim"), outs[0].shape.size(), "dim");
      for (size_t i = input; i < call.num_inputs(); ++i) {
        for (size_t d = 0; d < outs[0].shape.size(); ++d) {
          if (static_cast<int64_t>(d) != dim) links.links.push_back({0, static_cast<int>(d), static_cast<int>(i), static_cast<int>(d)});
        }
      }
      return links;
    };
  };
  for (const char* name : {"aten._softmax", "aten._log_softmax"}) {
    OpSchema sm = Schema(name, {"self"}, [](const OpCall& call) {
      call.dim(call.int_attr("dim"), call.input(0).shape.size(), "dim");
      TensorType out = call.input(0);
      if (call.bool_attr("half_to_float", false)) out.dtype = DType::kF32;
      return Types{out};
    });
    sm.flops = [](const OpCall& call, const Types&) { return 5.0 * static_cast<double>(Numel(call.input(0).shape)); };
    sm.dim_links = softmax_links(0);
    s.push_back(sm);
  }
  for (const char* name : {"aten._softmax_backward_data", "aten._log_softmax_backward_data"}) {
    OpSchema back = Schema(name, {"grad_output", "output"}, [](const OpCall& call) {
      if (call.input(0).shape != call.input(1).shape) call.Fail("grad_output and output shapes differ");
      call.dim(call.int_attr("dim"), call.input(0).shape.size(), "dim");
      TensorType out = call.input(0);
      if (auto d = call.dtype_attr("input_dtype")) out.dtype = *d;
      return Types{out};
    });
    back.flops = [](const OpCall& call, const Types&) { return 4.0 * static_cast<double>(Numel(call.input(0).shape)); };
    back.dim_links = softmax_links(0);
    s.push_back(back);
  }

  // nll_loss_forward(self [N, C], target [N], weight?, reduction,
  // ignore_index) -> (output, total_weight). reduction: 0 none, 1 mean, 2 sum.
  OpSchema nll = Schema("aten.nll_loss_forward", {"self", "target", "weight?"}, [](const OpCall& call) {
    const Shape& in = call.input(0).shape;
    const Shape& target = call.input(1).shape;
    if (in.empty() || in.size() > 2) call.Fail(fmt::format("self must be [C] or [N, C], got {}", ShapeToString(in)));
    const Shape batch = in.size() == 2 ? Shape{in[0]} : Shape{};
    if (target != batch) {
      call.Fail(fmt::format("target {} does not match input {}", ShapeToString(target), ShapeToString(in)));
    }
    const int64_t reduction = call.int_attr("reduction", 1);
    if (reduction < 0 || reduction > 2) call.Fail(fmt::format("reduction = {} must be 0, 1 or 2", reduction));
    return Types{{reduction == 0 ? batch : Shape{}, call.input(0).dtype}, {{}, call.input(0).dtype}};
  });
  nll.dim_links = [](const OpCall& call, const Types&) {
    DimLinks links;
    if (call.input(0).shape.size() != 2) return links;
    const int64_t reduction = call.int_attr("reduction", 1);
    if (reduction == 0) {  // one loss per row
      links.links = {{0, 0, 0, 0}, {0, 0, 1, 0}};
      return links;
    }
    // A sum over the batch adds up over parts of it; a mean needs the whole.
    const auto combine = reduction == 2 ? PartialCombine::kSum : PartialCombine::kWhole;
    links.reduced = {{0, 0, combine, 0}, {1, 0, combine, 0}};  // a row's scores and its target
    return links;
  };
  s.push_back(nll);

  OpSchema nll_back;
  nll_back.type = "aten.nll_loss_backward";
  nll_back.tensor_args = {"grad_output", "self", "target", "weight?", "total_weight"};
  nll_back.infer = [](const OpCall& call) { return Types{call.input(1)}; };
  // Row i of grad_input [N, C] is indexed like self's and target's row i
  // (and grad_output's, with reduction "none"). Its class dim is not
  // linked: the targets index it, so a part of the classes would need
  // targets shifted into the part and the others dropped.
  nll_back.dim_links = [](const OpCall& call, const Types& outs) {
    DimLinks links;
    if (outs[0].shape.size() != 2) return links;
    links.links = {{0, 0, 1, 0}, {0, 0, 2, 0}};
    if (call.input(0).shape.size() == 1) links.links.push_back({0, 0, 0, 0});
    return links;
  };
  s.push_back(nll_back);

  // nll_loss2d_forward(self [N, C, H, W], target [N, H, W], weight?,
  // reduction, ignore_index) -> (output, total_weight).
  OpSchema nll2d = Schema("aten.nll_loss2d_forward", {"self", "target", "weight?"}, [](const OpCall& call) {
    const Shape& in = call.input(0).shape;
    const Shape& target = call.input(1).shape;
    if (in.size() != 4) call.Fail(fmt::format("self must be [N, C, H, W], got {}", ShapeToString(in)));
    const Shape pixels = {in[0], in[2], in[3]};
    if (target != pixels) {
      call.Fail(fmt::format("target {} does not match input {}", ShapeToString(target), ShapeToString(in)));
    }
    const int64_t reduction = call.int_attr("reduction", 1);
    if (reduction < 0 || reduction > 2) call.Fail(fmt::format("reduction = {} must be 0, 1 or 2", reduction));
    return Types{{reduction == 0 ? pixels : Shape{}, call.input(0).dtype}, {{}, call.input(0).dtype}};
  });
  nll2d.dim_links = [](const OpCall&, const Types& outs) {
    DimLinks links;
    if (outs[0].shape.size() == 3) {
      links.links = {{0, 0, 0, 0}, {0, 1, 0, 2}, {0, 2, 0, 3}, {0, 0, 1, 0}, {0, 1, 1, 1}, {0, 2, 1, 2}};
    } else {
      links.reduced = {{0, 0}, {0, 2}, {0, 3}};
    }
    links.reduced.push_back({0, 1});  // the class dim is gathered away
    return links;
  };
  s.push_back(nll2d);

  OpSchema nll2d_back =
      Schema("aten.nll_loss2d_backward", {"grad_output", "self", "target", "weight?", "total_weight"},
             [](const OpCall& call) {
               ExpectRank(call, 1, 4);
               const Shape& in = call.input(1).shape;
               const Shape pixels = {in[0], in[2], in[3]};
               if (call.input(2).shape != pixels) {
                 call.Fail(fmt::format("target {} does not match input {}", ShapeToString(call.input(2).shape),
                                       ShapeToString(in)));
               }
               const Shape& grad = call.input(0).shape;
               if (!grad.empty() && grad != pixels) {
                 call.Fail(fmt::format("grad_output {} does not match input {}", ShapeToString(grad), ShapeToString(in)));
               }
               return Types{call.input(1)};
             });
  // grad_input [N, C, H, W]'s pixels are indexed like self's, the target's
  // [N, H, W] (and grad_output's, with reduction "none"); its class dim, as
  // nll_loss_backward's, is not linked.
  nll2d_back.dim_links = [](const OpCall& call, const Types&) {
    DimLinks links;
    for (int d : {0, 2, 3}) links.links.push_back({0, d, 1, d});
    for (const auto& [out_dim, pixel] : {std::pair{0, 0}, std::pair{2, 1}, std::pair{3, 2}}) {
      links.links.push_back({0, out_dim, 2, pixel});
      if (call.input(0).shape.size() == 3) links.links.push_back({0, out_dim, 0, pixel});
    }
    return links;
  };
  s.push_back(nll2d_back);

  // embedding(weight [V, D], indices [...]) -> [..., D].
  OpSchema emb = Schema("aten.embedding", {"weight", "indices"}, [](const OpCall& call) {
    ExpectRank(call, 0, 2);
    if (IsFloatingPoint(call.input(1).dtype)) call.Fail("indices must have an integer dtype");
    Shape out = call.input(1).shape;
    out.push_back(call.input(0).shape[1]);
    return Types{{out, call.input(0).dtype}};
  });
  emb.flops = [](const OpCall&, const Types&) { return 0.0; };
  // Gathers one row per index: the rows it reads, not the whole table.
  emb.bytes_read = [](const OpCall& call, const Types& outs) { return Bytes(outs[0]) + Bytes(call.input(1)); };
  emb.dim_links = [](const OpCall& call, const Types& outs) {
    DimLinks links;
    const size_t rank = call.input(1).shape.size();
    for (size_t d = 0; d < rank; ++d) links.links.push_back({0, static_cast<int>(d), 1, static_cast<int>(d)});
    links.links.push_back({0, static_cast<int>(rank), 0, 1});
    return links;
  };
  s.push_back(emb);

  OpSchema emb_back = Schema("aten.embedding_dense_backward", {"grad_output", "indices"}, [](const OpCall& call) {
    const Shape& grad = call.input(0).shape;
    if (grad.empty()) call.Fail("grad_output must have an embedding dim");
    const int64_t num_weights = call.int_attr("num_weights");
    if (num_weights <= 0) call.Fail(fmt::format("num_weights = {} must be positive", num_weights));
    return Types{{{num_weights, grad.back()}, call.input(0).dtype}};
  });
  // The rows' gradients sum over the lookups; with scale_grad_by_freq each
  // is divided by its index's count over all of them, which a part does
  // not know (split, the gradients were off by the counts).
  emb_back.dim_links = [](const OpCall& call, const Types&) {
    DimLinks links;
    const int rank = static_cast<int>(call.input(0).shape.size());
    const PartialCombine combine =
        call.bool_attr("scale_grad_by_freq", false) ? PartialCombine::kWhole : PartialCombine::kSum;
    links.links.push_back({0, 1, 0, rank - 1});
    for (int d = 0; d + 1 < rank; ++d) {
      links.reduced.push_back({0, d, combine, d});
      links.reduced.push_back({1, d, combine, d});  // the indices that pick the rows
    }
    return links;
  };
  s.push_back(emb_back);
}

void AddPooling(Schemas& s) {
  // The pooled shape of `in` over its last `n` dims (2 or 3).
  auto pool_output = [](const OpCall& call, const Shape& in, bool with_dilation, size_t n = 2) {
    if (in.size() != n + 1 && in.size() != n + 2) {
      call.Fail(fmt::format("expects a {}-d or {}-d input, got {}", n + 1, n + 2, ShapeToString(in)));
    }
    const auto kernel = Spatial(call, "kernel_size", n, {});
    auto stride = call.ints_attr("stride", {});
    if (stride.empty()) stride = kernel;
    if (stride.size() == 1) stride.assign(n, stride[0]);
    if (stride.size() != n) call.Fail(fmt::format("'stride' must have {} entries, got {}", n, stride.size()));
    const auto padding = Spatial(call, "padding", n, {0});
    const auto dilation = with_dilation ? Spatial(call, "dilation", n, {1}) : std::vector<int64_t>(n, 1);
    const bool ceil_mode = call.bool_attr("ceil_mode", false);
    Shape out(in.begin(), in.end() - static_cast<std::ptrdiff_t>(n));
    for (size_t i = 0; i < n; ++i) {
      out.push_back(PooledSize(call, in[in.size() - n + i], kernel[i], stride[i], padding[i], dilation[i], ceil_mode));
    }
    return out;
  };
  // Batch and channels (every dim but the two spatial ones) of each output
  // are indexed like those of the inputs `inputs` (a backward's grad_output,
  // self and indices alike).
  auto leading_links = [](std::vector<int> inputs, size_t spatial = 2) {
    return [inputs, spatial](const OpCall& call, const Types& outs) {
      DimLinks links;
      for (size_t o = 0; o < outs.size(); ++o) {
        for (size_t d = 0; d + spatial < outs[o].shape.size(); ++d) {
          for (int input : inputs) {
            if (static_cast<size_t>(input) < call.num_inputs() && call.input(input).shape.size() == outs[o].shape.size()) {
              links.links.push_back({static_cast<int>(o), static_cast<int>(d), input, static_cast<int>(d)});
            }
          }
        }
      }
      return links;
    };
  };

  OpSchema maxpool = Schema("aten.max_pool2d_with_indices", {"self"}, [pool_output](const OpCall& call) {
    const Shape out = pool_output(call, call.input(0).shape, true);
    return Types{{out, call.input(0).dtype}, {out, DType::kI64}};
  });
  maxpool.flops = [](const OpCall& call, const Types& outs) {
    const auto kernel = Spatial(call, "kernel_size", 2, {});
    return static_cast<double>(Numel(outs[0].shape) * kernel[0] * kernel[1]);
  };
  maxpool.dim_links = leading_links({0});
  s.push_back(maxpool);

  OpSchema maxpool_back;
  maxpool_back.type = "aten.max_pool2d_with_indices_backward";
  maxpool_back.tensor_args = {"grad_output", "self", "indices"};
  maxpool_back.infer = [pool_output](const OpCall& call) {
    if (pool_output(call, call.input(1).shape, true) != call.input(0).shape) {
      call.Fail("grad_output does not match the pooled shape of self");
    }
    return Types{call.input(1)};
  };
  maxpool_back.dim_links = leading_links({0, 1, 2});
  s.push_back(maxpool_back);

  // max_pool3d_with_indices(self [N, C, D, H, W] or [C, D, H, W], kernel_size,
  // stride, padding, dilation, ceil_mode) -> (out, indices) and its backward.
  OpSchema maxpool3d = Schema("aten.max_pool3d_with_indices", {"self"}, [pool_output](const OpCall& call) {
    const Shape out = pool_output(call, call.input(0).shape, true, 3);
    return Types{{out, call.input(0).dtype}, {out, DType::kI64}};
  });
  maxpool3d.flops = [](const OpCall& call, const Types& outs) {
    const auto kernel = Spatial(call, "kernel_size", 3, {});
    return static_cast<double>(Numel(outs[0].shape) * kernel[0] * kernel[1] * kernel[2]);
  };
  maxpool3d.dim_links = leading_links({0}, 3);
  s.push_back(maxpool3d);

  OpSchema maxpool3d_back;
  maxpool3d_back.type = "aten.max_pool3d_with_indices_backward";
  maxpool3d_back.tensor_args = {"grad_output", "self", "indices"};
  maxpool3d_back.infer = [pool_output](const OpCall& call) {
    if (pool_output(call, call.input(1).shape, true, 3) != call.input(0).shape) {
      call.Fail("grad_output does not match the pooled shape of self");
    }
    return Types{call.input(1)};
  };
  maxpool3d_back.dim_links = leading_links({0, 1, 2}, 3);
  s.push_back(maxpool3d_back);

  OpSchema avgpool = Schema("aten.avg_pool2d", {"self"}, [pool_output](const OpCall& call) {
    return Types{{pool_output(call, call.input(0).shape, false), call.input(0).dtype}};
  });
  avgpool.dim_links = leading_links({0});
  s.push_back(avgpool);

  OpSchema avgpool_back;
  avgpool_back.type = "aten.avg_pool2d_backward";
  avgpool_back.tensor_args = {"grad_output", "self"};
  avgpool_back.infer = [pool_output](const OpCall& call) {
    if (pool_output(call, call.input(1).shape, false) != call.input(0).shape) {
      call.Fail("grad_output does not match the pooled shape of self");
    }
    return Types{call.input(1)};
  };
  avgpool_back.dim_links = leading_links({0, 1});
  s.push_back(avgpool_back);

  // avg_pool3d(self [N, C, D, H, W] or [C, D, H, W], kernel_size, stride,
  // padding, ceil_mode, count_include_pad, divisor_override) and its backward.
  OpSchema avgpool3d = Schema("aten.avg_pool3d", {"self"}, [pool_output](const OpCall& call) {
    return Types{{pool_output(call, call.input(0).shape, false, 3), call.input(0).dtype}};
  });
  avgpool3d.dim_links = leading_links({0}, 3);
  s.push_back(avgpool3d);

  OpSchema avgpool3d_back;
  avgpool3d_back.type = "aten.avg_pool3d_backward";
  avgpool3d_back.tensor_args = {"grad_output", "self"};
  avgpool3d_back.infer = [pool_output](const OpCall& call) {
    if (pool_output(call, call.input(1).shape, false, 3) != call.input(0).shape) {
      call.Fail("grad_output does not match the pooled shape of self");
    }
    return Types{call.input(1)};
  };
  avgpool3d_back.dim_links = leading_links({0, 1}, 3);
  s.push_back(avgpool3d_back);

  OpSchema adaptive = Schema("aten._adaptive_avg_pool2d", {"self"}, [](const OpCall& call) {
    const Shape& in = call.input(0).shape;
    if (in.size() != 3 && in.size() != 4) call.Fail(fmt::format("expects a 3-d or 4-d input, got {}", ShapeToString(in)));
    const auto size = Spatial(call, "output_size", 2, {});
    Shape out(in.begin(), in.end() - 2);
    out.insert(out.end(), size.begin(), size.end());
    return Types{{out, call.input(0).dtype}};
  });
  adaptive.flops = [](const OpCall& call, const Types&) { return static_cast<double>(Numel(call.input(0).shape)); };
  adaptive.dim_links = leading_links({0});
  s.push_back(adaptive);

  // adaptive_max_pool2d(self, output_size) -> (out, indices) and its backward
  // (grad_output, self, indices): an output cell's window depends on its
  // index and both extents, so H and W are not linked (as the average's).
  OpSchema adaptive_max = adaptive;
  adaptive_max.type = "aten.adaptive_max_pool2d";
  adaptive_max.infer = [infer = adaptive.infer](const OpCall& call) {
    Types outs = infer(call);
    outs.push_back({outs[0].shape, DType::kI64});
    return outs;
  };
  s.push_back(adaptive_max);
  OpSchema adaptive_max_back;
  adaptive_max_back.type = "aten.adaptive_max_pool2d_backward";
  adaptive_max_back.tensor_args = {"grad_output", "self", "indices"};
  adaptive_max_back.infer = [](const OpCall& call) {
    if (call.input(0).shape != call.input(2).shape) call.Fail("grad_output and indices shapes differ");
    return Types{call.input(1)};
  };
  adaptive_max_back.dim_links = leading_links({0, 1, 2});
  s.push_back(adaptive_max_back);
  // max_unpool2d(self, indices, output_size): each value written where its
  // index (into the output's H x W plane) says; SegNet's decoder.
  OpSchema unpool = Schema("aten.max_unpool2d", {"self", "indices"}, [](const OpCall& call) {
    const Shape& in = call.input(0).shape;
    if (in.size() != 3 && in.size() != 4) {
      call.Fail(fmt::format("expects a 3-d or 4-d input, got {}", ShapeToString(in)));
    }
    if (call.input(1).shape != in) call.Fail("self and indices shapes differ");
    const auto size = Spatial(call, "output_size", 2, {});
    Shape out(in.begin(), in.end() - 2);
    out.insert(out.end(), size.begin(), size.end());
    return Types{{out, call.input(0).dtype}};
  });
  unpool.flops = [](const OpCall& call, const Types&) { return static_cast<double>(Numel(call.input(0).shape)); };
  unpool.dim_links = leading_links({0, 1});
  s.push_back(unpool);

  OpSchema adaptive_back;
  adaptive_back.type = "aten._adaptive_avg_pool2d_backward";
  adaptive_back.tensor_args = {"grad_output", "self"};
  adaptive_back.infer = [](const OpCall& call) { return Types{call.input(1)}; };
  adaptive_back.dim_links = leading_links({0, 1});
  s.push_back(adaptive_back);

  // upsample_{nearest,linear,bilinear,bicubic,trilinear}{1,2,3}d(self,
  // output_size, ...) and their .vec overloads (input, output_size?, ...,
  // scale_factors?): the last n dims become output_size, or
  // floor(extent * scale) when only scale factors are given.
  struct Upsampling {
    const char* name;
    size_t spatial;
    double flops;  // per output element
  };
  for (const Upsampling u : {Upsampling{"aten.upsample_nearest1d", 1, 1}, Upsampling{"aten.upsample_linear1d", 1, 4},
                             Upsampling{"aten.upsample_nearest2d", 2, 1}, Upsampling{"aten.upsample_bilinear2d", 2, 8},
                             Upsampling{"aten.upsample_bicubic2d", 2, 32}, Upsampling{"aten.upsample_nearest3d", 3, 1},
                             Upsampling{"aten.upsample_trilinear3d", 3, 16}}) {
    const size_t n = u.spatial;
    OpSchema upsample = Schema(u.name, {"self"}, [n](const OpCall& call) {
      ExpectRank(call, 0, n + 2);
      const Shape& in = call.input(0).shape;
      std::vector<int64_t> size = call.ints_attr("output_size", {});
      if (size.empty()) {
        const AttrValue* scales = nullptr;
        auto it = call.op().attrs.find("scale_factors");
        if (it != call.op().attrs.end()) scales = &it->second;
        std::vector<double> factors;
        if (scales) {
          if (auto* d = std::get_if<std::vector<double>>(scales)) factors = *d;
          if (auto* i = std::get_if<std::vector<int64_t>>(scales)) factors.assign(i->begin(), i->end());
        }
        if (factors.size() == 1) factors.assign(n, factors[0]);
        if (factors.size() != n) call.Fail(fmt::format("needs 'output_size' or 'scale_factors' ({} entries)", n));
        for (size_t i = 0; i < n; ++i) {
          if (!(factors[i] > 0)) call.Fail(fmt::format("scale factor {} must be positive", factors[i]));
          size.push_back(static_cast<int64_t>(std::floor(static_cast<double>(in[2 + i]) * factors[i])));
        }
      }
      if (size.size() != n) call.Fail(fmt::format("'output_size' must have {} entries, got {}", n, size.size()));
      if (std::any_of(size.begin(), size.end(), [](int64_t e) { return e <= 0; })) call.Fail("output size must be positive");
      Shape out = {in[0], in[1]};
      out.insert(out.end(), size.begin(), size.end());
      return Types{{out, call.input(0).dtype}};
    });
    upsample.flops = [f = u.flops](const OpCall&, const Types& outs) {
      return f * static_cast<double>(Numel(outs[0].shape));
    };
    upsample.dim_links = leading_links({0}, n);
    s.push_back(upsample);

    OpSchema upsample_back;
    upsample_back.type = std::string(u.name) + "_backward";
    upsample_back.tensor_args = {"grad_output"};
    upsample_back.infer = [n](const OpCall& call) {
      ExpectRank(call, 0, n + 2);
      const auto input_size = call.ints_attr("input_size");
      if (input_size.size() != n + 2) call.Fail(fmt::format("'input_size' must have {} entries", n + 2));
      if (input_size[0] != call.input(0).shape[0] || input_size[1] != call.input(0).shape[1]) {
        call.Fail(fmt::format("'input_size' {} does not match grad_output {} in batch and channels",
                              ShapeToString(input_size), ShapeToString(call.input(0).shape)));
      }
      return Types{{input_size, call.input(0).dtype}};
    };
    upsample_back.dim_links = leading_links({0}, n);
    s.push_back(upsample_back);
  }
}

}  // namespace

void AddNnOps(Schemas& s) {
  AddConvolution(s);
  AddNormalizations(s);
  AddSoftmaxAndLosses(s);
  AddPooling(s);
}

}  // namespace memfit::ops
