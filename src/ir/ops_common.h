// Helpers shared by the files that define op schemas (ops_*.cc). Internal
// to the registry.
#pragma once

#include <functional>
#include <vector>

#include "ir/registry.h"

namespace memfit::ops {

using Schemas = std::vector<OpSchema>;

void AddPointwiseOps(Schemas& schemas);
void AddLinalgOps(Schemas& schemas);
void AddNnOps(Schemas& schemas);
void AddShapeOps(Schemas& schemas);
void AddReductionOps(Schemas& schemas);
void AddCapturedOps(Schemas& schemas);

int64_t Numel(const Shape& shape);
int64_t Bytes(const TensorType& type);
// Checks that input `i` has rank `rank`.
void ExpectRank(const OpCall& call, size_t i, size_t rank);

// split(self, split_size, dim) and its copying twin: consecutive pieces of
// `split_size` along `dim`, the last one shorter.
std::vector<TensorType> SplitPieces(const OpCall& call);
// Refuses an op that would return `pieces` outputs where the graph declares
// another count, or more than any real program has (a huge extent split into
// ones would otherwise build millions of output types).
void CheckPieceCount(const OpCall& call, int64_t pieces);
// Dimension links of an op returning consecutive pieces of input 0 along its
// `dim` (split, split_with_sizes, unbind, unsafe_split): every other axis
// runs through to each piece (a piece of unbind loses `dim`), so a batch
// split along the hidden size stays a batch. Ops that sort, pick from or
// reduce along `dim` (sort, topk, max.dim) link the same way; `default_dim`
// is the dim when the attribute is absent (-1 for them).
std::function<DimLinks(const OpCall&, const std::vector<TensorType>&)> PieceLinks(bool removes_dim,
                                                                              int64_t default_dim = 0);
// Links dims of output `output` (shape `out`) to the dims of input `input`
// (shape `in`) that line up from the right and are not broadcast (size 1
// against a larger extent).
void LinkBroadcast(DimLinks& links, int output, const Shape& out, int input, const Shape& in);
// Output i dims linked to every input as LinkBroadcast does.
DimLinks PointwiseLinks(const OpCall& call, const std::vector<TensorType>& outputs);
// Links every dim of output 0 but `skip` to the same dim of input 0 (the
// dims both have).
DimLinks AllBut(const OpCall& call, const std::vector<TensorType>& outputs, int64_t skip);
// Links output 0's dims to input 0's dims one-to-one (same shape).
DimLinks IdentityLinks(const OpCall& call, const std::vector<TensorType>& outputs);
// Links every output with the same shape as input 0 one-to-one to input 0
// and all other inputs of that shape too.
DimLinks SameShapeLinks(const OpCall& call, const std::vector<TensorType>& outputs);
// A loss computed element by element from self and target (inputs 0 and 1:
// mse_loss, smooth_l1_loss, huber_loss, binary_cross_entropy(_with_logits)),
// then reduced by attribute "reduction": 0 none (element-wise), 2 sum (every
// dim summed), 1 mean (the sum over the element count, which needs the whole;
// transform/fission.cc rewrites it).
DimLinks ElementwiseLossLinks(const OpCall& call, const std::vector<TensorType>& outputs);
// Its backward (grad_output, self, target, ...): element-wise in self and
// target (and grad_output, with reduction none); the mean's gradient divides
// by the whole's element count inside the kernel, so with reduction mean the
// linked dims are also marked as needing the whole.
DimLinks ElementwiseLossBackwardLinks(const OpCall& call, const std::vector<TensorType>& outputs);

// The dtype PyTorch's type promotion gives the op's inputs.
DType PromoteTypes(const OpCall& call);

// The dtype of a normalization's saved statistics (mean, inverse std) at
// output `output`: double for f64 inputs; for others float (ATen's acc_type,
// on CUDA) or the input's own dtype (torch 1.13's CPU kernels for bf16, and
// group norm's), whichever the graph declares; without a declaration,
// `otherwise`. A graph captured for real on the CPU and one traced with fake
// tensors (the meta kernels say float) both load.
DType StatisticsDType(const OpCall& call, int output, DType otherwise);

// A schema with its name, tensor arguments and shape rule; the other fields
// keep their defaults for the caller to set.
OpSchema Schema(std::string type, std::vector<std::string_view> tensor_args,
                std::function<std::vector<TensorType>(const OpCall&)> infer);

// A pointwise schema: output has the broadcast shape of the inputs (or of
// input 0 only with `unary`), the dtype of input 0.
OpSchema Pointwise(std::string type, std::vector<std::string_view> tensor_args, double flops_per_element = 1);

}  // namespace memfit::ops
