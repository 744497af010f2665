// Pointwise ops: unary and binary math, activations and their backward
// ops, dtype casts, in-place updates used by optimizers, random ops.
#include <fmt/format.h>

#include <cmath>

#include "ir/ops_common.h"

namespace memfit::ops {
namespace {

OpSchema WithDType(OpSchema schema, DType dtype) {
  auto infer = schema.infer;
  schema.infer = [infer, dtype](const OpCall& call) {
    auto outs = infer(call);
    outs[0].dtype = dtype;
    return outs;
  };
  return schema;
}

// An in-place variant: output 0 is input 0 updated; its shape must not
// change under broadcasting.
OpSchema InPlace(std::string type, std::vector<std::string_view> tensor_args, double flops_per_element = 1) {
  OpSchema schema = Pointwise(std::move(type), std::move(tensor_args), flops_per_element);
  auto infer = schema.infer;
  schema.infer = [infer](const OpCall& call) {
    auto outs = infer(call);
    if (outs[0].shape != call.input(0).shape) {
      call.Fail(fmt::format("in-place result shape {} differs from self {}", ShapeToString(outs[0].shape),
                            ShapeToString(call.input(0).shape)));
    }
    outs[0].dtype = call.input(0).dtype;
    return outs;
  };
  schema.inplace = true;
  return schema;
}

// Creation ops that take their shape from an attribute ("size").
OpSchema Factory(std::string type) {
  OpSchema schema;
  schema.type = std::move(type);
  schema.infer = [](const OpCall& call) {
    Shape shape = call.ints_attr("size");
    for (int64_t d : shape) {
      if (d < 0) call.Fail(fmt::format("negative size {} in {}", d, ShapeToString(shape)));
    }
    return std::vector<TensorType>{{shape, call.dtype_attr("dtype").value_or(DType::kF32)}};
  };
  return schema;
}

}  // namespace

void AddPointwiseOps(Schemas& s) {
  // Binary arithmetic; with one tensor input the other operand is the
  // scalar attribute "other" (the .Scalar overloads).
  for (const char* name : {"aten.add", "aten.sub", "aten.mul", "aten.div", "aten.pow", "aten.maximum",
                           "aten.minimum", "aten.rsub", "aten.eq", "aten.ne", "aten.lt", "aten.gt",
                           "aten.le", "aten.ge"}) {
    s.push_back(Pointwise(name, {"self", "other?"}));
  }
  for (const char* name : {"aten.eq", "aten.ne", "aten.lt", "aten.gt", "aten.le", "aten.ge"}) {
    for (OpSchema& schema : s) {
      if (schema.type == name) schema = WithDType(schema, DType::kBool);
    }
  }
  // addcmul(self, tensor1, tensor2, value): self + value * tensor1 * tensor2,
  // broadcast (BatchNorm's backward in two passes, transform/batchnorm_two_pass.h).
  s.push_back(Pointwise("aten.addcmul", {"self", "tensor1", "tensor2"}, 3));
  s.push_back(Pointwise("aten.where", {"condition", "self", "other"}));
  s.back().infer = [infer = s.back().infer](const OpCall& call) {
    auto outs = infer(call);
    outs[0].dtype = call.input(1).dtype;
    return outs;
  };
  // masked_fill.Scalar(self, mask, value) / .Tensor(self, mask, value: 0-dim tensor).
  s.push_back(Pointwise("aten.masked_fill", {"self", "mask", "value?"}));
  s.back().infer = [infer = s.back().infer](const OpCall& call) {
    auto outs = infer(call);
    outs[0].dtype = call.input(0).dtype;
    return outs;
  };
  // clamp(self, min?, max?): scalars as attributes, or tensors (.Tensor).
  s.push_back(Pointwise("aten.clamp", {"self", "min?", "max?"}));
  s.push_back(Pointwise("aten.clamp_min", {"self", "min?"}));
  s.push_back(Pointwise("aten.clamp_max", {"self", "max?"}));

  // Unary math and activations.
  for (const char* name : {"aten.neg", "aten.abs", "aten.relu", "aten.sqrt", "aten.rsqrt", "aten.reciprocal",
                           "aten.clone", "aten.hardtanh", "aten.leaky_relu", "aten.ones_like",
                           "aten.zeros_like", "aten.full_like", "aten.sign", "aten.fill"}) {
    s.push_back(Pointwise(name, {"self"}));
  }
  for (const char* name : {"aten.exp", "aten.log", "aten.tanh", "aten.sigmoid", "aten.erf"}) {
    s.push_back(Pointwise(name, {"self"}, 4));
  }
  s.push_back(Pointwise("aten.gelu", {"self"}, 8));
  s.push_back(Pointwise("aten.silu", {"self"}, 5));
  s.push_back(Pointwise("aten.hardswish", {"self"}, 4));
  s.push_back(Pointwise("aten.hardsigmoid", {"self"}, 3));
  // roll(self, shifts, dims): same shape; the rolled dims are not linked
  // (with no dims the tensor is rolled flattened: no links at all).
  s.push_back(Pointwise("aten.roll", {"self"}));
  s.back().pointwise = false;  // index arithmetic over the whole tensor
  s.back().flops = [](const OpCall&, const std::vector<TensorType>&) { return 0.0; };
  s.back().dim_links = [](const OpCall& call, const std::vector<TensorType>& outs) {
    DimLinks links;
    const size_t rank = call.input(0).shape.size();
    const auto dims = call.ints_attr("dims", {});
    if (dims.empty()) return links;
    const std::vector<bool> rolled = call.dim_mask(dims, rank, "dims");
    for (size_t d = 0; d < rank && d < outs[0].shape.size(); ++d) {
      if (!rolled[d]) links.links.push_back({0, static_cast<int>(d), 0, static_cast<int>(d)});
    }
    return links;
  };
  s.push_back(Pointwise("aten._to_copy", {"self"}));

  // Backward of activations: the result has the shape of grad_output.
  s.push_back(Pointwise("aten.threshold_backward", {"grad_output", "self"}));
  s.push_back(Pointwise("aten.gelu_backward", {"grad_output", "self"}, 12));
  s.push_back(Pointwise("aten.tanh_backward", {"grad_output", "output"}, 3));
  s.push_back(Pointwise("aten.sigmoid_backward", {"grad_output", "output"}, 3));
  s.push_back(Pointwise("aten.silu_backward", {"grad_output", "self"}, 8));
  s.push_back(Pointwise("aten.hardtanh_backward", {"grad_output", "self"}, 2));
  s.push_back(Pointwise("aten.hardswish_backward", {"grad_output", "self"}, 4));
  s.push_back(Pointwise("aten.hardsigmoid_backward", {"grad_output", "self"}, 3));
  s.push_back(Pointwise("aten.leaky_relu_backward", {"grad_output", "self"}, 2));
  s.push_back(Pointwise("aten.native_dropout_backward", {"grad_output", "mask"}, 2));

  // Random ops: the same call gives different values each time, so they are
  // never recomputed unless their RNG state is replayed.
  OpSchema dropout;
  dropout.type = "aten.native_dropout";
  dropout.tensor_args = {"input"};
  dropout.random = true;
  dropout.infer = [](const OpCall& call) {
    const TensorType& in = call.input(0);
    const double p = call.double_attr("p", 0.5);
    if (p < 0 || p > 1) call.Fail(fmt::format("dropout probability p = {} is outside [0, 1]", p));
    return std::vector<TensorType>{in, {in.shape, DType::kBool}};
  };
  dropout.flops = [](const OpCall&, const std::vector<TensorType>& outs) {
    return 3.0 * static_cast<double>(Numel(outs[0].shape));
  };
  dropout.dim_links = SameShapeLinks;
  s.push_back(dropout);
  for (const char* name : {"aten.rand_like", "aten.randn_like", "aten.randint_like", "aten.poisson",
                           "aten._standard_gamma", "aten.uniform", "aten.exponential", "aten.log_normal",
                           "aten.cauchy", "aten.geometric", "aten.random", "aten.normal_functional",
                           "aten._sample_dirichlet", "aten.rrelu"}) {
    s.push_back(Pointwise(name, {"self"}, 2));
    s.back().random = true;
  }
  // bernoulli(self) / bernoulli.p(self, p: float) / bernoulli.Tensor(self, p: Tensor).
  s.push_back(Pointwise("aten.bernoulli", {"self", "p?"}, 2));
  s.back().random = true;
  // self gives only the shape and dtype: the bytes read are p's, if a tensor.
  s.back().bytes_read = [](const OpCall& call, const std::vector<TensorType>&) {
    return call.num_inputs() > 1 ? Bytes(call.input(1)) : int64_t{0};
  };
  s.push_back(Pointwise("aten.binomial", {"count", "prob"}, 2));
  s.back().random = true;
  // dropout(input, p, train) and its variants: input's shape (random only when
  // training, flagged random always).
  for (const char* name : {"aten.dropout", "aten.feature_dropout", "aten.alpha_dropout",
                           "aten.feature_alpha_dropout"}) {
    s.push_back(Pointwise(name, {"input"}, 3));
    s.back().random = true;
  }
  // _fused_dropout(self, p) -> (output, uint8 mask).
  s.push_back(Pointwise("aten._fused_dropout", {"self"}, 3));
  s.back().random = true;
  s.back().infer = [](const OpCall& call) {
    const TensorType& in = call.input(0);
    return std::vector<TensorType>{in, {in.shape, DType::kU8}};
  };
  // rrelu_with_noise(self, noise, lower, upper, training): writes the slopes it
  // draws into `noise`.
  s.push_back(Pointwise("aten.rrelu_with_noise", {"self", "noise"}, 3));
  s.back().random = true;
  s.back().mutated_args = {"noise"};
  // normal.Tensor_float(mean, std) / .float_Tensor / .Tensor_Tensor: the
  // tensors' broadcast shape; normal.float_float(mean, std, size): `size`.
  s.push_back(Pointwise("aten.normal", {"mean?", "std?"}, 2));
  s.back().random = true;
  s.back().infer = [pointwise = s.back().infer](const OpCall& call) {
    if (call.num_inputs() > 0) return pointwise(call);
    Shape shape = call.ints_attr("size");
    for (int64_t d : shape) {
      if (d < 0) call.Fail(fmt::format("negative size {} in {}", d, ShapeToString(shape)));
    }
    return std::vector<TensorType>{{shape, call.dtype_attr("dtype").value_or(DType::kF32)}};
  };
  // multinomial(self, num_samples, replacement): self's leading dims, then num_samples; int64.
  s.push_back(Pointwise("aten.multinomial", {"self"}, 2));
  s.back().random = true;
  s.back().infer = [](const OpCall& call) {
    Shape shape = call.input(0).shape;
    if (shape.empty() || shape.size() > 2) call.Fail("self must have rank 1 or 2");
    const int64_t samples = call.int_attr("num_samples");
    if (samples <= 0) call.Fail(fmt::format("num_samples = {} must be positive", samples));
    shape.back() = samples;
    return std::vector<TensorType>{{shape, DType::kI64}};
  };
  s.back().dim_links = nullptr;

  // In-place updates (optimizers, accumulation).
  s.push_back(InPlace("aten.add_", {"self", "other?"}));
  s.push_back(InPlace("aten.sub_", {"self", "other?"}));
  s.push_back(InPlace("aten.mul_", {"self", "other?"}));
  s.push_back(InPlace("aten.div_", {"self", "other?"}));
  s.push_back(InPlace("aten.addcmul_", {"self", "tensor1", "tensor2"}, 3));
  s.push_back(InPlace("aten.addcdiv_", {"self", "tensor1", "tensor2"}, 3));
  s.push_back(InPlace("aten.lerp_", {"self", "end", "weight?"}, 3));
  s.push_back(InPlace("aten.sqrt_", {"self"}));
  s.push_back(InPlace("aten.pow_", {"self", "other?"}));
  s.push_back(InPlace("aten.ceil_", {"self"}));
  s.push_back(InPlace("aten.zero_", {"self"}));
  s.push_back(InPlace("aten.copy_", {"self", "src"}));
  s.push_back(InPlace("aten.relu_", {"self"}));
  for (const char* name : {"aten.silu_", "aten.hardswish_", "aten.hardsigmoid_", "aten.hardtanh_", "aten.sigmoid_",
                           "aten.tanh_", "aten.leaky_relu_", "aten.neg_", "aten.exp_", "aten.gelu_"}) {
    s.push_back(InPlace(name, {"self"}));
  }
  // fill_.Scalar(self, value) / fill_.Tensor(self, value: 0-dim tensor).
  s.push_back(InPlace("aten.fill_", {"self", "value?"}));
  s.push_back(InPlace("aten.clamp_", {"self", "min?", "max?"}));
  s.push_back(InPlace("aten.clamp_min_", {"self", "min?"}));
  s.push_back(InPlace("aten.clamp_max_", {"self", "max?"}));
  s.push_back(InPlace("aten.masked_fill_", {"self", "mask", "value?"}));
  for (const char* name : {"aten.uniform_", "aten.normal_", "aten.exponential_", "aten.random_", "aten.cauchy_",
                           "aten.log_normal_", "aten.geometric_", "aten.rrelu_"}) {
    s.push_back(InPlace(name, {"self"}, 2));
    s.back().random = true;
  }
  for (const char* name : {"aten.dropout_", "aten.feature_dropout_", "aten.alpha_dropout_",
                           "aten.feature_alpha_dropout_"}) {
    s.push_back(InPlace(name, {"input"}, 3));
    s.back().random = true;
  }
  s.push_back(InPlace("aten.rrelu_with_noise_", {"self", "noise"}, 3));
  s.back().random = true;
  s.back().mutated_args = {"noise"};
  // bernoulli_.float(self, p: float) / bernoulli_.Tensor(self, p: Tensor).
  s.push_back(InPlace("aten.bernoulli_", {"self", "p?"}, 2));
  s.back().random = true;

  // Factories.
  s.push_back(Factory("aten.zeros"));
  s.push_back(Factory("aten.ones"));
  s.push_back(Factory("aten.empty"));
  s.back().uninitialized = true;
  s.push_back(Factory("aten.full"));
  for (const char* name : {"aten.rand", "aten.randn"}) {
    s.push_back(Factory(name));
    s.back().random = true;
  }
  // randint(high, size) / randint.low(low, high, size): int64 unless "dtype" says otherwise.
  // eye(n, m?): the n x m identity (n x n without m).
  s.push_back(Factory("aten.eye"));
  s.back().infer = [](const OpCall& call) {
    const int64_t n = call.int_attr("n");
    const int64_t m = call.is_none("m") ? n : call.int_attr("m");
    if (n < 0 || m < 0) call.Fail(fmt::format("negative size {} x {}", n, m));
    return std::vector<TensorType>{{{n, m}, call.dtype_attr("dtype").value_or(DType::kF32)}};
  };
  // randperm(n): [n], int64 unless "dtype" says otherwise.
  s.push_back(Factory("aten.randperm"));
  s.back().random = true;
  s.back().infer = [](const OpCall& call) {
    const int64_t n = call.int_attr("n");
    if (n < 0) call.Fail(fmt::format("negative n = {}", n));
    return std::vector<TensorType>{{{n}, call.dtype_attr("dtype").value_or(DType::kI64)}};
  };
  s.push_back(Factory("aten.randint"));
  s.back().random = true;
  s.back().infer = [](const OpCall& call) {
    Shape shape = call.ints_attr("size");
    for (int64_t d : shape) {
      if (d < 0) call.Fail(fmt::format("negative size {} in {}", d, ShapeToString(shape)));
    }
    return std::vector<TensorType>{{shape, call.dtype_attr("dtype").value_or(DType::kI64)}};
  };
  // new_zeros / new_ones / new_empty / new_full: the size attribute, self's
  // dtype unless "dtype" says otherwise.
  for (const char* name : {"aten.new_zeros", "aten.new_ones", "aten.new_empty", "aten.new_full",
                           "aten.new_empty_strided"}) {
    OpSchema fresh = Factory(name);
    fresh.tensor_args = {"self"};
    fresh.infer = [](const OpCall& call) {
      Shape shape = call.ints_attr("size");
      for (int64_t d : shape) {
        if (d < 0) call.Fail(fmt::format("negative size {} in {}", d, ShapeToString(shape)));
      }
      return std::vector<TensorType>{{shape, call.dtype_attr("dtype").value_or(call.input(0).dtype)}};
    };
    fresh.uninitialized = std::string_view(name).starts_with("aten.new_empty");
    // Of self's own shape (autograd's buffer for the gradient of a write into
    // a slice: new_empty_strided(grad, grad.shape)) it is made like self, as
    // zeros_like is: linked axis by axis. Of another shape it is a barrier: a
    // buffer sized by hand (counts per class) is no part of self's axes.
    fresh.dim_links = [](const OpCall& call, const std::vector<TensorType>& outs) {
      return outs.at(0).shape == call.input(0).shape ? IdentityLinks(call, outs) : DimLinks{};
    };
    s.push_back(fresh);
  }
  s.push_back(Pointwise("aten.empty_like", {"self"}));
  s.back().uninitialized = true;
  s.push_back(Pointwise("aten.lift_fresh_copy", {"self"}));

  // arange(start, end, step) -> ceil((end - start) / step) elements.
  OpSchema arange;
  arange.type = "aten.arange";
  arange.infer = [](const OpCall& call) {
    const double start = call.double_attr("start", 0.0);
    const double end = call.double_attr("end", 0.0);
    const double step = call.double_attr("step", 1.0);
    if (step == 0 || (end - start) / step < 0) {
      call.Fail(fmt::format("empty or infinite range start={} end={} step={}", start, end, step));
    }
    const auto n = static_cast<int64_t>(std::ceil((end - start) / step));
    return std::vector<TensorType>{{{n}, call.dtype_attr("dtype").value_or(DType::kI64)}};
  };
  s.push_back(arange);

  // Mean-squared error and its backward.
  OpSchema mse = Schema("aten.mse_loss", {"self", "target"}, [](const OpCall& call) {
    if (call.input(0).shape != call.input(1).shape) call.Fail("self and target shapes differ");
    const int64_t reduction = call.int_attr("reduction", 1);
    return std::vector<TensorType>{{reduction == 0 ? call.input(0).shape : Shape{}, call.input(0).dtype}};
  });
  mse.flops = [](const OpCall& call, const std::vector<TensorType>&) {
    return 3.0 * static_cast<double>(Numel(call.input(0).shape));
  };
  mse.dim_links = ElementwiseLossLinks;
  s.push_back(mse);
  OpSchema mse_back;
  mse_back.type = "aten.mse_loss_backward";
  mse_back.tensor_args = {"grad_output", "self", "target"};
  mse_back.infer = [](const OpCall& call) { return std::vector<TensorType>{call.input(1)}; };
  mse_back.dim_links = ElementwiseLossBackwardLinks;
  s.push_back(mse_back);

  OpSchema scalar;
  scalar.type = "aten.scalar_tensor";
  scalar.infer = [](const OpCall& call) {
    return std::vector<TensorType>{{{}, call.dtype_attr("dtype").value_or(DType::kF32)}};
  };
  s.push_back(scalar);
}

}  // namespace memfit::ops
