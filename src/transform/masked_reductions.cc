#include "transform/masked_reductions.h"

#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ir/dtype.h"
#include "transform/fission.h"
#include "transform/rewriter.h"

namespace memfit {
namespace {

// A sum or mean over every element of its one input, into a 0-d result.
bool IsFullReduction(const Op& op) {
  if ((op.type != "aten.sum" && op.type != "aten.mean") || op.inputs.size() != 1) return false;
  return IntsAttr(op, "dim").empty() && !BoolAttr(op, "keepdim", false);
}

// masked_select(x, m), or x[m] (aten.index with one mask, which the capture
// records with no "indices" list): the elements of x where m is set.
bool IsSelection(const Op& op) {
  if (op.inputs.size() != 2 || op.outputs.size() != 1) return false;
  return op.type == "aten.masked_select" || (op.type == "aten.index" && !op.attrs.contains("indices"));
}

// A result read only by full sums and means.
bool OnlyReduced(const Graph& graph, const std::vector<std::vector<OpId>>& consumers, TensorId t) {
  const auto& readers = consumers.at(t.index());
  if (readers.empty() || IsResult(graph, t)) return false;
  return std::all_of(readers.begin(), readers.end(), [&](OpId c) { return IsFullReduction(graph.op(c)); });
}

// gather(w, 0, index) of a 1-d w (class weights at the targets), read only
// by full sums and means.
bool IsReducedLookup(const Graph& graph, const std::vector<std::vector<OpId>>& consumers, const Op& op,
                     TensorId index) {
  if (op.type != "aten.gather" || op.inputs.size() != 2 || op.inputs[1] != index || op.inputs[0] == index) {
    return false;
  }
  const int64_t* dim = IntAttr(op, "dim");
  return dim && *dim == 0 && graph.tensor(op.inputs[0]).shape.size() == 1 &&
         OnlyReduced(graph, consumers, op.outputs[0]);
}

// masked_select(x, m) of an x of m's shape: floating-point and read only by
// full sums and means, or integer (targets) and read only by such lookups
// (weighted label smoothing's total weight, sum(w[y[~ignored]])).
bool IsDenseSelection(const Graph& graph, const std::vector<std::vector<OpId>>& consumers, const Op& op) {
  if (!IsSelection(op)) return false;
  const Tensor &x = graph.tensor(op.inputs[0]), &m = graph.tensor(op.inputs[1]);
  if (x.shape != m.shape || m.dtype != DType::kBool || x.dtype == DType::kBool) return false;
  const TensorId o = op.outputs[0];
  if (IsFloatingPoint(x.dtype)) return OnlyReduced(graph, consumers, o);
  const auto& readers = consumers.at(o.index());
  if (readers.empty() || IsResult(graph, o) || x.shape.size() != 1) return false;
  return std::all_of(readers.begin(), readers.end(),
                     [&](OpId c) { return IsReducedLookup(graph, consumers, graph.op(c), o); });
}

// The ops that make `source` of a masked_scatter from one value: scalar
// arithmetic and copies back to an expand of a one-element tensor (the
// mean's gradient, (g / n).expand(n)). The expand's input, then the ops
// after it in order; nullopt when the source is not so made.
struct Uniform {
  TensorId value;
  std::vector<OpId> after;
};
std::optional<Uniform> UniformSource(const Graph& graph, TensorId source) {
  static const std::set<std::string_view> kScalarOps = {"aten.div",   "aten.mul",   "aten.neg",    "aten._to_copy",
                                                         "aten.clone", "aten.alias", "aten.detach"};
  std::vector<OpId> chain;
  for (TensorId t = source;;) {
    const auto producer = graph.tensor(t).producer;
    if (!producer) return std::nullopt;
    const Op& op = graph.op(*producer);
    if (op.inputs.size() != 1 || op.outputs.size() != 1) return std::nullopt;
    if (op.type == "aten.expand") {
      if (graph.tensor(op.inputs[0]).numel() != 1) return std::nullopt;
      std::reverse(chain.begin(), chain.end());
      return Uniform{op.inputs[0], chain};
    }
    if (!kScalarOps.contains(op.type)) return std::nullopt;
    chain.push_back(*producer);
    t = op.inputs[0];
  }
}

bool IsZeros(const Graph& graph, TensorId t) {
  const auto producer = graph.tensor(t).producer;
  if (!producer || graph.tensor(t).alias_of) return false;
  const Op& op = graph.op(*producer);
  if (op.type == "aten.zeros_like" || op.type == "aten.new_zeros" || op.type == "aten.zeros") return true;
  return op.type == "aten.full" && DoubleAttr(op, "fill_value", 1.0) == 0.0;
}

// masked_scatter(z, m, s), or index_put(z, [m], s) (x[m]'s backward, with
// or without accumulate): z zeros of m's shape, s one value expanded.
std::optional<Uniform> DenseScatter(const Graph& graph, const Op& op) {
  const bool scatter = op.type == "aten.masked_scatter" ||
                       (op.type == "aten.index_put" && !op.attrs.contains("indices"));
  if (!scatter || op.inputs.size() != 3 || op.outputs.size() != 1) return std::nullopt;
  const Tensor &z = graph.tensor(op.inputs[0]), &m = graph.tensor(op.inputs[1]);
  if (z.shape != m.shape || m.dtype != DType::kBool || !IsZeros(graph, op.inputs[0])) return std::nullopt;
  return UniformSource(graph, op.inputs[2]);
}

class DenseRewriter : public Rewriter {
 public:
  using Rewriter::Rewriter;

  // masked_fill(x, ~m, 0), which the selection's sums and means read.
  void EmitSelection(const Op& select) {
    const Tensor& mask = in_.tensor(select.inputs[1]);
    Tensor flipped = mask;
    flipped.role = TensorRole::kActivation;
    const TensorId unselected = Emit(NewOp(fmt::format("{}.unselected", select.name), "aten.bitwise_not", "",
                                           {Whole(select.inputs[1])}, {}, select.phase),
                                     {&flipped}, ".unselected")[0];
    Tensor like = in_.tensor(select.inputs[0]);
    like.role = TensorRole::kActivation;
    // Targets: the unselected ones at index 0, which every lookup can read.
    const AttrValue zero = IsFloatingPoint(like.dtype) ? AttrValue{0.0} : AttrValue{int64_t{0}};
    unselected_[select.outputs[0].value] = unselected;
    filled_[select.outputs[0].value] =
        Emit(NewOp(fmt::format("{}.dense", select.name), "aten.masked_fill", "Scalar",
                   {Whole(select.inputs[0]), unselected}, {{"value", zero}}, select.phase),
             {&like}, ".dense")[0];
  }

  // A lookup at the selected targets: at every target, the unselected ones'
  // then set to 0, which the lookup's sums and means read.
  void EmitLookup(const Op& gather, TensorId selection) {
    const TensorId index = filled_.at(selection.value), unselected = unselected_.at(selection.value);
    Tensor like = in_.tensor(gather.outputs[0]);
    like.role = TensorRole::kActivation;
    const TensorId all = Emit(NewOp(fmt::format("{}.dense", gather.name), "aten.gather", gather.overload,
                                    {Whole(gather.inputs[0]), index}, gather.attrs, gather.phase),
                              {&like}, ".all")[0];
    filled_[gather.outputs[0].value] =
        Emit(NewOp(fmt::format("{}.dense", gather.name), "aten.masked_fill", "Scalar", {all, unselected},
                   {{"value", 0.0}}, gather.phase),
             {&like}, ".dense")[0];
  }

  // A sum of the selection: of the filled tensor. A mean: that sum over the
  // count the graph recorded.
  void EmitReduction(const Op& op, TensorId filled) {
    const Tensor& result = in_.tensor(op.outputs[0]);
    Attrs attrs;
    if (auto it = op.attrs.find("dtype"); it != op.attrs.end()) attrs.emplace("dtype", it->second);
    if (op.type == "aten.sum") {
      SetWhole(op.outputs[0], EmitNamed(Keeping(op, NewOp(op.name, "aten.sum", "", {filled}, attrs, op.phase)), result));
      return;
    }
    const double count = static_cast<double>(in_.tensor(op.inputs[0]).numel());
    const TensorId sum = Emit(NewOp(fmt::format("{}.sum", op.name), "aten.sum", "", {filled}, attrs, op.phase),
                              {&result}, ".sum")[0];
    SetWhole(op.outputs[0],
             EmitNamed(Keeping(op, NewOp(op.name, "aten.div", "Scalar", {sum}, {{"other", count}}, op.phase)), result));
  }

  // masked_fill(z, m, v): v made again from the one value, then a 0-d view.
  void EmitScatter(const Op& op, const Uniform& u) {
    TensorId value = Whole(u.value);
    for (OpId id : u.after) {
      const Op& step = in_.op(id);
      Tensor like = in_.tensor(step.outputs[0]);
      like.role = TensorRole::kActivation;
      value = Emit(NewOp(fmt::format("{}.value", step.name), step.type, step.overload, {value}, step.attrs,
                         op.phase),
                   {&like}, ".value")[0];
    }
    if (!out_.tensor(value).shape.empty()) {
      Tensor like = in_.tensor(u.value);
      like.role = TensorRole::kActivation;
      value = Emit(NewOp(fmt::format("{}.value", op.name), "aten.reshape", "", {value}, {{"shape", Shape{}}},
                         op.phase),
                   {&like}, ".value")[0];
    }
    SetWhole(op.outputs[0], EmitNamed(Keeping(op, NewOp(op.name, "aten.masked_fill", "Tensor",
                                                        {Whole(op.inputs[0]), Whole(op.inputs[1]), value}, {},
                                                        op.phase)),
                                      in_.tensor(op.outputs[0])));
  }

  // `rewritten` under `original`'s name, which only it has now (the
  // original is not copied).
  static Op Keeping(const Op& original, Op rewritten) {
    rewritten.name = original.name;
    return rewritten;
  }

  std::optional<TensorId> Filled(TensorId selection) const {
    auto it = filled_.find(selection.value);
    if (it == filled_.end()) return std::nullopt;
    return it->second;
  }

 private:
  std::unordered_map<uint32_t, TensorId> filled_;  // by selection (or lookup) result: its masked_fill
  std::unordered_map<uint32_t, TensorId> unselected_;  // by selection result: ~mask
};

}  // namespace

Graph WriteMaskedReductionsDensely(const Graph& graph) {
  const std::vector<std::vector<OpId>> consumers = ComputeConsumers(graph);
  std::vector<bool> selection(graph.num_ops(), false);
  std::vector<std::optional<Uniform>> scatter(graph.num_ops());
  int rewritten = 0;
  for (const Op& op : graph.ops()) {
    selection[op.id.index()] = IsDenseSelection(graph, consumers, op);
    scatter[op.id.index()] = DenseScatter(graph, op);
    rewritten += selection[op.id.index()] || scatter[op.id.index()].has_value();
  }
  if (rewritten == 0) return graph;
  DenseRewriter b(graph);
  for (const Op& op : graph.ops()) {
    if (selection[op.id.index()]) {
      b.EmitSelection(op);
    } else if (scatter[op.id.index()]) {
      b.EmitScatter(op, *scatter[op.id.index()]);
    } else if (op.type == "aten.gather" && op.inputs.size() == 2 && b.Filled(op.inputs[1])) {
      b.EmitLookup(op, op.inputs[1]);  // a selection's readers are all rewritten (IsDenseSelection)
    } else if (const auto filled = op.inputs.size() == 1 ? b.Filled(op.inputs[0]) : std::nullopt) {
      b.EmitReduction(op, *filled);
    } else {
      b.CopyOp(op);
    }
  }
  b.MapOutputs();
  Graph out = b.Take();
  out.metadata[fmt::format("fission.{}", RecordedFissions(graph).size())] =
      fmt::format("{}{}", kMaskedRecordPrefix, rewritten);
  return out;
}

}  // namespace memfit
