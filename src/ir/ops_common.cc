#include "ir/ops_common.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

namespace memfit::ops {

int64_t Numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t Bytes(const TensorType& type) { return Numel(type.shape) * DTypeBytes(type.dtype); }

void ExpectRank(const OpCall& call, size_t i, size_t rank) {
  if (call.input(i).shape.size() != rank) {
    call.Fail(fmt::format("input {} must have rank {}, got shape {}", i, rank,
                          ShapeToString(call.input(i).shape)));
  }
}

void LinkBroadcast(DimLinks& links, int output, const Shape& out, int input, const Shape& in) {
  if (in.size() > out.size()) return;
  const size_t shift = out.size() - in.size();
  for (size_t d = 0; d < in.size(); ++d) {
    if (in[d] == out[d + shift]) {
      links.links.push_back({output, static_cast<int>(d + shift), input, static_cast<int>(d)});
    }
  }
}

DimLinks PointwiseLinks(const OpCall& call, const std::vector<TensorType>& outputs) {
  DimLinks links;
  for (size_t o = 0; o < outputs.size(); ++o) {
    for (size_t i = 0; i < call.num_inputs(); ++i) {
      LinkBroadcast(links, static_cast<int>(o), outputs[o].shape, static_cast<int>(i), call.input(i).shape);
    }
  }
  return links;
}

DimLinks IdentityLinks(const OpCall& call, const std::vector<TensorType>& outputs) {
  DimLinks links;
  if (outputs.empty() || call.num_inputs() == 0) return links;
  for (size_t d = 0; d < outputs[0].shape.size() && d < call.input(0).shape.size(); ++d) {
    links.links.push_back({0, static_cast<int>(d), 0, static_cast<int>(d)});
  }
  return links;
}

std::function<DimLinks(const OpCall&, const std::vector<TensorType>&)> PieceLinks(bool removes_dim,
                                                                              int64_t default_dim) {
  return [removes_dim, default_dim](const OpCall& call, const std::vector<TensorType>& outs) {
    DimLinks links;
    const size_t rank = call.input(0).shape.size();
    const int d = static_cast<int>(call.dim(call.int_attr("dim", default_dim), rank, "dim"));
    for (int o = 0; o < static_cast<int>(outs.size()); ++o) {
      for (int i = 0; i < static_cast<int>(rank); ++i) {
        if (i == d) continue;
        links.links.push_back({o, removes_dim && i > d ? i - 1 : i, 0, i});
      }
    }
    return links;
  };
}

DimLinks AllBut(const OpCall& call, const std::vector<TensorType>& outputs, int64_t skip) {
  DimLinks links;
  for (size_t d = 0; d < outputs[0].shape.size() && d < call.input(0).shape.size(); ++d) {
    if (static_cast<int64_t>(d) != skip) links.links.push_back({0, static_cast<int>(d), 0, static_cast<int>(d)});
  }
  return links;
}

DimLinks SameShapeLinks(const OpCall& call, const std::vector<TensorType>& outputs) {
  DimLinks links;
  for (size_t o = 0; o < outputs.size(); ++o) {
    for (size_t i = 0; i < call.num_inputs(); ++i) {
      if (call.input(i).shape != outputs[o].shape) continue;
      for (size_t d = 0; d < outputs[o].shape.size(); ++d) {
        links.links.push_back({static_cast<int>(o), static_cast<int>(d), static_cast<int>(i), static_cast<int>(d)});
      }
    }
  }
  return links;
}

DimLinks ElementwiseLossLinks(const OpCall& call, const std::vector<TensorType>& outputs) {
  const int64_t reduction = call.int_attr("reduction", 1);
  if (reduction == 0) return SameShapeLinks(call, outputs);
  DimLinks links;
  const auto combine = reduction == 2 ? PartialCombine::kSum : PartialCombine::kWhole;
  for (int i = 0; i < 2; ++i) {
    for (size_t d = 0; d < call.input(i).shape.size(); ++d) links.reduced.push_back({i, static_cast<int>(d), combine});
  }
  return links;
}

DimLinks ElementwiseLossBackwardLinks(const OpCall& call, const std::vector<TensorType>& outputs) {
  DimLinks links;
  const bool mean = call.int_attr("reduction", 1) == 1;
  for (int i = 0; i < 3; ++i) {
    if (call.input(i).shape != outputs[0].shape) continue;  // a reduced loss's gradient: one scalar
    for (size_t d = 0; d < outputs[0].shape.size(); ++d) {
      links.links.push_back({0, static_cast<int>(d), i, static_cast<int>(d)});
      if (mean) links.reduced.push_back({i, static_cast<int>(d), PartialCombine::kWhole});
    }
  }
  return links;
}

namespace {

int Category(DType d) { return d == DType::kBool ? 0 : IsFloatingPoint(d) ? 2 : 1; }

DType Wider(DType a, DType b) {
  if (a == b) return a;
  if (Category(a) != Category(b)) return Category(a) > Category(b) ? a : b;
  if (DTypeBytes(a) != DTypeBytes(b)) return DTypeBytes(a) > DTypeBytes(b) ? a : b;
  return Category(a) == 2 ? DType::kF32 : a;  // f16 with bf16 -> f32
}

}  // namespace

DType PromoteTypes(const OpCall& call) {
  // PyTorch's result_type: tensors with dimensions decide; 0-dim tensors
  // (wrapped scalars, scalar_tensor) only when of a higher category (bool <
  // integer < floating point), or when every operand is 0-dim.
  std::optional<DType> dimmed, zero_dim;
  for (size_t i = 0; i < call.num_inputs(); ++i) {
    const TensorType& in = call.input(i);
    std::optional<DType>& slot = in.shape.empty() ? zero_dim : dimmed;
    slot = slot ? Wider(*slot, in.dtype) : in.dtype;
  }
  if (!dimmed) return zero_dim.value_or(DType::kF32);
  if (zero_dim && Category(*zero_dim) > Category(*dimmed)) return *zero_dim;
  return *dimmed;
}

OpSchema Schema(std::string type, std::vector<std::string_view> tensor_args,
                std::function<std::vector<TensorType>(const OpCall&)> infer) {
  OpSchema schema;
  schema.type = std::move(type);
  schema.tensor_args = std::move(tensor_args);
  schema.infer = std::move(infer);
  return schema;
}

OpSchema Pointwise(std::string type, std::vector<std::string_view> tensor_args, double flops_per_element) {
  OpSchema schema;
  schema.type = std::move(type);
  schema.tensor_args = std::move(tensor_args);
  schema.infer = [](const OpCall& call) {
    Shape shape = call.input(0).shape;
    for (size_t i = 1; i < call.num_inputs(); ++i) {
      auto b = Broadcast(shape, call.input(i).shape);
      if (!b) {
        call.Fail(fmt::format("shapes {} and {} do not broadcast", ShapeToString(shape),
                              ShapeToString(call.input(i).shape)));
      }
      shape = *b;
    }
    DType dtype = PromoteTypes(call);
    if (auto d = call.dtype_attr("dtype")) dtype = *d;
    return std::vector<TensorType>{{shape, dtype}};
  };
  schema.flops = [flops_per_element](const OpCall&, const std::vector<TensorType>& outs) {
    return flops_per_element * static_cast<double>(Numel(outs[0].shape));
  };
  schema.dim_links = PointwiseLinks;
  schema.pointwise = true;
  return schema;
}

void CheckPieceCount(const OpCall& call, int64_t pieces) {
  constexpr int64_t kMostPieces = int64_t{1} << 16;
  const size_t declared = call.declared_outputs().size();
  if (declared > 0 && static_cast<int64_t>(declared) != pieces) {
    call.Fail(fmt::format("makes {} pieces but the graph declares {} outputs", pieces, declared));
  }
  if (pieces > kMostPieces) call.Fail(fmt::format("makes {} pieces; at most {} are supported", pieces, kMostPieces));
}

std::vector<TensorType> SplitPieces(const OpCall& call) {
  const TensorType& in = call.input(0);
  const int64_t d = call.axis(call.int_attr("dim", 0), in.shape.size(), "dim");
  const int64_t size = call.int_attr("split_size");
  if (size <= 0) call.Fail(fmt::format("'split_size' = {} must be positive", size));
  CheckPieceCount(call, (in.shape[d] + size - 1) / size);
  std::vector<TensorType> outs;
  for (int64_t start = 0; start < in.shape[d]; start += size) {
    TensorType piece = in;
    piece.shape[d] = std::min(size, in.shape[d] - start);
    outs.push_back(piece);
  }
  return outs;
}

DType StatisticsDType(const OpCall& call, int output, DType otherwise) {
  const DType input = call.input(0).dtype;
  if (input == DType::kF64) return DType::kF64;
  const auto& declared = call.declared_outputs();
  if (declared.size() > static_cast<size_t>(output)) {
    const DType d = declared[static_cast<size_t>(output)].dtype;
    if (d == input || d == DType::kF32) return d;
  }
  return otherwise;
}

}  // namespace memfit::ops
