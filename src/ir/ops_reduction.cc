// Reductions: aten.sum, aten.mean, aten.amax, aten.var, aten.all, ... (over
// "dim", or all dims when "dim" is absent or empty).
#include <fmt/format.h>

#include "ir/ops_common.h"

namespace memfit::ops {
namespace {

using Types = std::vector<TensorType>;

std::vector<bool> ReducedMask(const OpCall& call, size_t rank) {
  // prod.dim_int / logsumexp take one dim or a list; absent or empty: all dims.
  const auto dims = call.ints_attr("dim", {});
  if (dims.empty()) return std::vector<bool>(rank, true);
  return call.dim_mask(dims, rank, "dim");
}

}  // namespace

void AddReductionOps(Schemas& s) {
  // norm(self, p, dim?, keepdim) and linalg_vector_norm(self, ord, dim?,
  // keepdim, dtype) reduce like sum.
  for (const char* name : {"aten.sum", "aten.mean", "aten.amax", "aten.amin", "aten.var", "aten.norm",
                           "aten.linalg_vector_norm", "aten.std", "aten.prod", "aten.logsumexp", "aten.all",
                           "aten.any", "aten.var_mean", "aten.std_mean"}) {
    // Sums over parts of a dimension add up; means, extrema, variances,
    // norms and products need the whole of it.
    const PartialCombine combine = std::string_view(name) == "aten.sum" ? PartialCombine::kSum : PartialCombine::kWhole;
    OpSchema r = Schema(name, {"self"}, [](const OpCall& call) {
      const TensorType& in = call.input(0);
      const auto mask = ReducedMask(call, in.shape.size());
      const bool keepdim = call.bool_attr("keepdim", false);
      Shape out;
      for (size_t d = 0; d < in.shape.size(); ++d) {
        if (!mask[d]) out.push_back(in.shape[d]);
        else if (keepdim) out.push_back(1);
      }
      // sum / prod of bool or integer tensors accumulate in int64.
      DType dtype = in.dtype;
      const std::string& type = call.op().type;
      if ((type == "aten.sum" || type == "aten.prod") && !IsFloatingPoint(in.dtype)) dtype = DType::kI64;
      if (type == "aten.all" || type == "aten.any") dtype = in.dtype == DType::kU8 ? DType::kU8 : DType::kBool;
      const TensorType result{out, call.dtype_attr("dtype").value_or(dtype)};
      // var_mean / std_mean -> (the variance or deviation, the mean)
      if (type == "aten.var_mean" || type == "aten.std_mean") return Types{result, result};
      return Types{result};
    });
    r.flops = [](const OpCall& call, const Types&) { return static_cast<double>(Numel(call.input(0).shape)); };
    r.dim_links = [combine](const OpCall& call, const Types& outs) {
      DimLinks links;
      const size_t rank = call.input(0).shape.size();
      const auto mask = ReducedMask(call, rank);
      const bool keepdim = call.bool_attr("keepdim", false);
      int out_dim = 0;
      for (size_t d = 0; d < rank; ++d) {
        if (!mask[d]) {
          for (int o = 0; o < static_cast<int>(outs.size()); ++o) {
            links.links.push_back({o, out_dim, 0, static_cast<int>(d)});
          }
          ++out_dim;
        } else {
          links.reduced.push_back({0, static_cast<int>(d), combine});
          out_dim += keepdim;
        }
      }
      return links;
    };
    s.push_back(r);
  }
}

}  // namespace memfit::ops
