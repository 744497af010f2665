// Matrix products: aten.mm, aten.addmm, aten.addmm_, aten.bmm, aten.baddbmm.
#include <fmt/format.h>

#include "ir/ops_common.h"

namespace memfit::ops {
namespace {

void CheckInner(const OpCall& call, size_t a, size_t b, int64_t ka, int64_t kb) {
  if (ka != kb) {
    call.Fail(fmt::format("inner dimensions do not match: {} x {}", ShapeToString(call.input(a).shape),
                          ShapeToString(call.input(b).shape)));
  }
}

// The shape of input a [M, K] times input b [K, N]: [M, N]; fails unless both
// are matrices with equal inner dimensions.
Shape MatrixProduct(const OpCall& call, size_t a, size_t b) {
  ExpectRank(call, a, 2);
  ExpectRank(call, b, 2);
  const Shape& sa = call.input(a).shape;
  const Shape& sb = call.input(b).shape;
  CheckInner(call, a, b, sa[1], sb[0]);
  return {sa[0], sb[1]};
}

// [M, K] x [K, N] -> [M, N]: out dim 0 from a dim 0, out dim 1 from b dim 1,
// K reduced: parts of K add up, unless a bias is added to every part
// (addmm, baddbmm). `a` and `b` are the inputs' indices.
DimLinks MatmulLinks(int a, int b, int batch_dims, PartialCombine combine = PartialCombine::kSum) {
  DimLinks links;
  for (int d = 0; d < batch_dims; ++d) {
    links.links.push_back({0, d, a, d});
    links.links.push_back({0, d, b, d});
  }
  links.links.push_back({0, batch_dims, a, batch_dims});
  links.links.push_back({0, batch_dims + 1, b, batch_dims + 1});
  links.reduced.push_back({a, batch_dims + 1, combine, 0});  // one index: K
  links.reduced.push_back({b, batch_dims, combine, 0});
  return links;
}

// A bias added to a product's result `out` (addmm's [M, N], baddbmm's [B,
// M, N]) must broadcast to it.
void CheckBias(const OpCall& call, const Shape& out) {
  if (Broadcast(call.input(0).shape, out) != out) {
    call.Fail(fmt::format("bias {} does not broadcast to {}", ShapeToString(call.input(0).shape),
                          ShapeToString(out)));
  }
}

}  // namespace

void AddLinalgOps(Schemas& s) {
  OpSchema mm = Schema("aten.mm", {"self", "mat2"}, [](const OpCall& call) {
    return std::vector<TensorType>{{MatrixProduct(call, 0, 1), call.input(0).dtype}};
  });
  mm.flops = [](const OpCall& call, const std::vector<TensorType>&) {
    const Shape& a = call.input(0).shape;
    return 2.0 * a[0] * a[1] * call.input(1).shape[1];
  };
  mm.dim_links = [](const OpCall&, const std::vector<TensorType>&) { return MatmulLinks(0, 1, 0); };
  s.push_back(mm);

  OpSchema addmm = Schema("aten.addmm", {"self", "mat1", "mat2"}, [](const OpCall& call) {
    const Shape out = MatrixProduct(call, 1, 2);
    CheckBias(call, out);
    return std::vector<TensorType>{{out, call.input(1).dtype}};
  });
  addmm.flops = [](const OpCall& call, const std::vector<TensorType>& outs) {
    const Shape& a = call.input(1).shape;
    return 2.0 * a[0] * a[1] * call.input(2).shape[1] + static_cast<double>(Numel(outs[0].shape));
  };
  addmm.dim_links = [](const OpCall& call, const std::vector<TensorType>& outs) {
    DimLinks links = MatmulLinks(1, 2, 0, PartialCombine::kWhole);
    LinkBroadcast(links, 0, outs[0].shape, 0, call.input(0).shape);  // the bias's unbroadcast dims
    return links;
  };
  s.push_back(addmm);

  // self += mat1 @ mat2 in place (beta = alpha = 1): a running sum of
  // products in one GEMM, whose epilogue reads and writes the sum (fission
  // accumulates a weight gradient over the parts this way, transform/fission.cc).
  OpSchema addmm_ = Schema("aten.addmm_", {"self", "mat1", "mat2"}, [](const OpCall& call) {
    const Shape out = MatrixProduct(call, 1, 2);
    if (call.input(0).shape != out) {
      call.Fail(fmt::format("in-place result shape {} differs from self {}", ShapeToString(out),
                            ShapeToString(call.input(0).shape)));
    }
    return std::vector<TensorType>{{out, call.input(0).dtype}};
  });
  addmm_.flops = addmm.flops;
  addmm_.inplace = true;
  s.push_back(addmm_);

  for (const char* name : {"aten.bmm", "aten.baddbmm"}) {
    const bool has_bias = std::string_view(name) == "aten.baddbmm";
    const int a_index = has_bias ? 1 : 0;
    OpSchema bmm;
    bmm.type = name;
    bmm.tensor_args = has_bias ? std::vector<std::string_view>{"self", "batch1", "batch2"}
                               : std::vector<std::string_view>{"self", "mat2"};
    bmm.infer = [a_index](const OpCall& call) {
      ExpectRank(call, a_index, 3);
      ExpectRank(call, a_index + 1, 3);
      const Shape& a = call.input(a_index).shape;
      const Shape& b = call.input(a_index + 1).shape;
      if (a[0] != b[0]) {
        call.Fail(fmt::format("batch sizes differ: {} x {}", ShapeToString(a), ShapeToString(b)));
      }
      CheckInner(call, a_index, a_index + 1, a[2], b[1]);
      const Shape out{a[0], a[1], b[2]};
      if (a_index == 1) CheckBias(call, out);
      return std::vector<TensorType>{{out, call.input(a_index).dtype}};
    };
    bmm.flops = [a_index](const OpCall& call, const std::vector<TensorType>&) {
      const Shape& a = call.input(a_index).shape;
      return 2.0 * a[0] * a[1] * a[2] * call.input(a_index + 1).shape[2];
    };
    bmm.dim_links = [a_index](const OpCall& call, const std::vector<TensorType>& outs) {
      // baddbmm adds its bias to every part of the contraction; the bias's
      // dimensions that are not broadcast (an attention mask [B*heads, 1,
      // S] along the batch and the keys) are indexed like the output's.
      DimLinks links =
          MatmulLinks(a_index, a_index + 1, 1, a_index == 0 ? PartialCombine::kSum : PartialCombine::kWhole);
      if (a_index == 1) LinkBroadcast(links, 0, outs[0].shape, 0, call.input(0).shape);
      return links;
    };
    s.push_back(bmm);
  }
}

}  // namespace memfit::ops
