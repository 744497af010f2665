#include "transform/fission.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "ir/registry.h"
#include "util/error.h"

namespace memfit {
namespace {

// Attributes that spell out shapes (view's "size", expand's "size",
// slice_backward's "input_sizes"): rescaled along d for each part.
constexpr std::string_view kShapeAttrs[] = {"size", "sizes", "input_sizes", "shape"};

// The axis of `t` that belongs to dimension `dim`, or -1.
int AxisOf(const DimensionGraph& dims, TensorId t, int dim) {
  const auto& axes = dims.dim_of.at(t.index());
  for (size_t a = 0; a < axes.size(); ++a) {
    if (axes[a] == dim) return static_cast<int>(a);
  }
  return -1;
}

// How one output of a split op comes out of the parts.
enum class OutputKind : uint8_t { kSplit, kPartialSum };

struct OpRule {
  std::optional<std::string> refusal;
  std::vector<OutputKind> outputs;
};

OpRule Classify(const Graph& graph, const DimensionGraph& dims, const Op& op, int dim) {
  OpRule rule;
  auto refuse = [&](std::string why) {
    rule.refusal = fmt::format("op {} ({}) {}", Quote(op.name), op.qualified_type(), why);
    return rule;
  };
  const OpSchema* schema = FindOpSchema(op.type);
  if (!schema) return refuse("is unknown to the registry");
  if (schema->random) return refuse("draws random numbers: its parts would not draw what the whole draws");
  if (!MutatedInputs(graph, op).empty()) return refuse("writes state that every part shares");
  const DimLinks links = ComputeDimLinks(graph, op);

  bool reads_dim = false, sums_dim = false;
  for (size_t i = 0; i < op.inputs.size(); ++i) {
    const int axis = AxisOf(dims, op.inputs[i], dim);
    if (axis < 0) continue;
    reads_dim = true;
    bool linked = false, summed = false, whole = false;
    for (const DimLink& l : links.links) {
      if (l.input == static_cast<int>(i) && l.input_dim == axis &&
          AxisOf(dims, op.outputs.at(l.output), dim) == l.output_dim) {
        linked = true;
      }
    }
    for (const ReducedDim& r : links.reduced) {
      if (r.input != static_cast<int>(i) || r.dim != axis) continue;
      (r.combine == PartialCombine::kSum ? summed : whole) = true;
    }
    if (whole) return refuse(fmt::format("needs the whole of {} (input {} is reduced over it)", dims.dims[dim].name, i));
    if (!linked && !summed) {
      return refuse(fmt::format("reads input {} along {} without computing each part from its own part",
                                i, dims.dims[dim].name));
    }
    sums_dim |= summed;
  }
  if (schema->inplace && (op.inputs.empty() || AxisOf(dims, op.inputs[0], dim) < 0)) {
    return refuse("writes in place into a tensor that does not carry the dimension");
  }
  for (size_t o = 0; o < op.outputs.size(); ++o) {
    const int axis = AxisOf(dims, op.outputs[o], dim);
    if (axis >= 0) {
      // Carried from an input, or made from scratch (a creator whose size
      // attribute is rescaled; checked by inference on every part).
      rule.outputs.push_back(OutputKind::kSplit);
    } else if (sums_dim) {
      rule.outputs.push_back(OutputKind::kPartialSum);
    } else if (!reads_dim) {
      return refuse(fmt::format("does not touch {}", dims.dims[dim].name));
    } else {
      return refuse(fmt::format("output {} depends on all of {} but is not a sum over it", o, dims.dims[dim].name));
    }
  }
  if (!reads_dim && std::find(rule.outputs.begin(), rule.outputs.end(), OutputKind::kSplit) == rule.outputs.end()) {
    return refuse(fmt::format("does not touch {}", dims.dims[dim].name));
  }
  return rule;
}

// Builds the transformed graph: copies of the ops outside S, S's parts, the
// joins. Tensor ids of the input graph map to ids of the output graph per
// part (index 0..n-1) and for the whole (outside S).
class Builder {
 public:
  Builder(const Graph& in, const DimensionGraph& dims, const FissionSpec& spec, std::vector<OpRule> rules)
      : in_(in), dims_(dims), spec_(spec), rules_(std::move(rules)), whole_(in.num_tensors()) {
    out_.name = in.name;
    out_.metadata = in.metadata;
    for (const Tensor& t : in.tensors()) {
      if (!t.producer) whole_[t.id.index()] = CopyTensor(t);
    }
    for (const Op& op : in.ops()) op_names_.insert(op.name);
    for (const Tensor& t : in.tensors()) tensor_names_.insert(t.name);
  }

  void CopyOp(const Op& op) {
    Op copy = op;
    for (TensorId& t : copy.inputs) t = Whole(t);
    copy.outputs.clear();
    for (TensorId t : op.outputs) {
      const TensorId id = CopyTensor(in_.tensor(t));
      whole_[t.index()] = id;
      copy.outputs.push_back(id);
    }
    out_.AddOp(std::move(copy));
  }

  // Runs every op of S (in program order) once per part, then joins.
  void EmitParts(const std::vector<OpId>& s_ops, const std::vector<bool>& used_outside) {
    const Dimension& d = dims_.dims[spec_.dim];
    const int64_t n = spec_.parts, length = d.length;
    std::vector<std::vector<TensorId>> parts_of(in_.num_tensors());  // S outputs: one per part
    std::vector<TensorId> sums(in_.num_tensors());                    // running partial sums
    for (int64_t k = 0; k < n; ++k) {
      const int64_t lo = k * (length / n) + std::min(k, length % n);
      const int64_t hi = lo + length / n + (k < length % n ? 1 : 0);
      std::unordered_map<uint32_t, TensorId> part;  // input-graph tensor -> this part's tensor
      for (OpId id : s_ops) {
        const Op& op = in_.op(id);
        Op clone;
        clone.name = UniqueOp(fmt::format("{}.part{}", op.name, k));
        clone.type = op.type;
        clone.overload = op.overload;
        clone.attrs = op.attrs;
        clone.phase = op.phase;
        for (TensorId t : op.inputs) {
          if (auto it = part.find(t.value); it != part.end()) {
            clone.inputs.push_back(it->second);
          } else if (const int axis = AxisOf(dims_, t, spec_.dim); axis >= 0) {
            clone.inputs.push_back(Slice(t, axis, lo, hi, k));
            part[t.value] = clone.inputs.back();
          } else {
            clone.inputs.push_back(Whole(t));
          }
        }
        const std::vector<TensorId> outs = EmitClone(op, std::move(clone), hi - lo, k);
        const OpRule& rule = rules_[id.index()];
        for (size_t o = 0; o < outs.size(); ++o) {
          const TensorId orig = op.outputs[o];
          part[orig.value] = outs[o];
          if (!used_outside[orig.index()]) continue;
          if (rule.outputs[o] == OutputKind::kSplit) {
            parts_of[orig.index()].push_back(outs[o]);
          } else {
            sums[orig.index()] = k == 0 ? outs[o] : Add(sums[orig.index()], outs[o], op, orig, k == n - 1);
          }
        }
      }
    }
    // Outputs that carry d: the parts side by side.
    for (OpId id : s_ops) {
      const Op& op = in_.op(id);
      for (size_t o = 0; o < op.outputs.size(); ++o) {
        const TensorId orig = op.outputs[o];
        if (!used_outside[orig.index()]) continue;
        if (rules_[id.index()].outputs[o] == OutputKind::kPartialSum) {
          whole_[orig.index()] = sums[orig.index()];
          continue;
        }
        Op cat;
        cat.name = UniqueOp(fmt::format("{}.join{}", op.name, o));
        cat.type = "aten.cat";
        cat.inputs = parts_of[orig.index()];
        cat.attrs["dim"] = int64_t{AxisOf(dims_, orig, spec_.dim)};
        cat.phase = op.phase;
        whole_[orig.index()] = EmitNamed(std::move(cat), in_.tensor(orig))[0];
        ++record_.joined_outputs;
      }
    }
  }

  Graph Take() { return std::move(out_); }
  FissionRecord& record() { return record_; }
  TensorId Whole(TensorId t) const {
    const std::optional<TensorId> id = whole_.at(t.index());
    if (!id) Fail("fission: tensor {} is used before the parts that make it", Quote(in_.tensor(t).name));
    return *id;
  }
  void MapOutput(size_t i, TensorId t) { out_.outputs[i] = Whole(t); }
  Graph& out() { return out_; }

 private:
  TensorId CopyTensor(const Tensor& t) {
    Tensor copy = t;
    copy.producer.reset();
    if (t.alias_of) copy.alias_of = Whole(*t.alias_of);
    return out_.AddTensor(std::move(copy));
  }

  static std::string Unique(std::string base, std::unordered_set<std::string>& taken) {
    std::string name = base;
    for (int i = 1; !taken.insert(name).second; ++i) name = fmt::format("{}_{}", base, i);
    return name;
  }
  std::string UniqueOp(std::string base) { return Unique(std::move(base), op_names_); }

  // Appends `op` with outputs inferred by the registry, named like the
  // original tensors `like` (roles, aliasing as a builder would set them).
  std::vector<TensorId> Emit(Op op, const std::vector<const Tensor*>& like, const std::string& suffix) {
    const OpSchema* schema = FindOpSchema(op.type);
    const std::vector<TensorType> types = InferOutputTypes(*schema, out_, op);
    std::vector<TensorId> ids;
    for (size_t o = 0; o < types.size(); ++o) {
      Tensor t;
      t.name = Unique(like.at(o)->name + suffix, tensor_names_);
      t.shape = types[o].shape;
      t.dtype = types[o].dtype;
      t.role = like[o]->role;
      if (auto in = AliasedInput(*schema, o); in && *in < op.inputs.size()) t.alias_of = op.inputs[*in];
      ids.push_back(out_.AddTensor(std::move(t)));
    }
    op.outputs = ids;
    out_.AddOp(std::move(op));
    return ids;
  }

  std::vector<TensorId> EmitNamed(Op op, const Tensor& like) { return Emit(std::move(op), {&like}, ""); }

  // A part of an op of S: inferred again, with shape attributes rescaled
  // when the first inference disagrees with the part's expected types.
  std::vector<TensorId> EmitClone(const Op& op, Op clone, int64_t part_length, int64_t k) {
    const OpSchema* schema = FindOpSchema(op.type);
    std::vector<TensorType> expected;
    int scaled_axis = -1;
    for (TensorId t : op.outputs) {
      const Tensor& orig = in_.tensor(t);
      TensorType type{orig.shape, orig.dtype};
      if (const int axis = AxisOf(dims_, t, spec_.dim); axis >= 0) {
        type.shape[axis] = part_length;
        if (scaled_axis < 0) scaled_axis = axis;
      }
      expected.push_back(type);
    }
    auto infer = [&]() -> std::optional<std::vector<TensorType>> {
      try {
        return InferOutputTypes(*schema, out_, clone);
      } catch (const Error& e) {
        if (getenv("FISSION_DEBUG")) fmt::print(stderr, "{}\n", e.what());
        return std::nullopt;
      }
    };
    auto types = infer();
    if ((!types || *types != expected) && scaled_axis >= 0) {
      const int64_t length = dims_.dims[spec_.dim].length;
      for (std::string_view name : kShapeAttrs) {
        auto it = clone.attrs.find(name);
        if (it == clone.attrs.end()) continue;
        auto* sizes = std::get_if<std::vector<int64_t>>(&it->second);
        if (sizes && static_cast<int>(sizes->size()) > scaled_axis && (*sizes)[scaled_axis] == length) {
          (*sizes)[scaled_axis] = part_length;
        }
      }
      types = infer();
    }
    if (!types || *types != expected) {
      if (getenv("FISSION_DEBUG") && types) for (auto& t : *types) fmt::print(stderr, "{} {}\n", ShapeToString(t.shape), ToString(t.dtype));
      Fail("fission: op {} ({}) does not keep its meaning on a part of {}: its shapes do not follow the part",
           Quote(op.name), op.qualified_type(), dims_.dims[spec_.dim].name);
    }
    std::vector<const Tensor*> like;
    for (TensorId t : op.outputs) like.push_back(&in_.tensor(t));
    auto ids = Emit(std::move(clone), like, fmt::format(".part{}", k));
    // Parts are intermediates even where the whole is a result of the step.
    for (TensorId id : ids) {
      Tensor& t = out_.mutable_tensor(id);
      if (t.role == TensorRole::kOutput) t.role = TensorRole::kActivation;
    }
    return ids;
  }

  // This part of input `t` (of the input graph) along `axis`: a view when
  // the part is contiguous in memory (the leading axis, or only extent-1
  // axes before it), else a contiguous copy of it.
  TensorId Slice(TensorId t, int axis, int64_t lo, int64_t hi, int64_t k) {
    const Tensor& orig = in_.tensor(t);
    Op slice;
    slice.name = UniqueOp(fmt::format("{}.slice{}", orig.name, k));
    slice.type = "aten.slice";
    slice.overload = "Tensor";
    slice.inputs = {Whole(t)};
    slice.attrs = {{"dim", int64_t{axis}}, {"start", lo}, {"end", hi}, {"step", int64_t{1}}};
    slice.phase = orig.producer ? in_.op(*orig.producer).phase : Phase::kForward;
    Tensor like = orig;
    like.role = orig.role == TensorRole::kOutput ? TensorRole::kActivation : orig.role;
    TensorId view = Emit(slice, {&like}, fmt::format(".part{}", k))[0];
    ++record_.sliced_inputs;
    bool contiguous = orig.strides.empty();
    for (int a = 0; a < axis && contiguous; ++a) contiguous = orig.shape[a] == 1;
    if (contiguous) return view;
    Op clone;
    clone.name = UniqueOp(fmt::format("{}.contiguous{}", orig.name, k));
    clone.type = "aten.clone";
    clone.inputs = {view};
    clone.attrs = {{"memory_format", std::string("contiguous_format")}};
    clone.phase = slice.phase;
    like.role = IsSourceRole(like.role) ? TensorRole::kActivation : like.role;
    return Emit(clone, {&like}, fmt::format(".part{}.contiguous", k))[0];
  }

  // acc + part: the running sum of a partial result (named like the whole
  // once the last part is in).
  TensorId Add(TensorId acc, TensorId part, const Op& op, TensorId orig, bool last) {
    Op add;
    add.name = UniqueOp(fmt::format("{}.sum", op.name));
    add.type = "aten.add";
    add.overload = "Tensor";
    add.inputs = {acc, part};
    add.phase = op.phase;
    if (last) ++record_.summed_outputs;
    return Emit(add, {&in_.tensor(orig)}, last ? "" : ".partial")[0];
  }

  const Graph& in_;
  const DimensionGraph& dims_;
  const FissionSpec& spec_;
  std::vector<OpRule> rules_;
  std::vector<std::optional<TensorId>> whole_;  // input-graph tensor -> its whole in the output graph
  std::unordered_set<std::string> op_names_, tensor_names_;
  Graph out_;
  FissionRecord record_;
};

}  // namespace

std::string ToString(const FissionRecord& r) {
  std::string dim = r.dim_kind.empty() ? r.dim_name : fmt::format("{} ({})", r.dim_name, r.dim_kind);
  return fmt::format("{} x{} over {} ops ({} .. {})", dim, r.parts, r.num_ops, r.first_op, r.last_op);
}

std::optional<std::string> WhyNotSplittable(const Graph& graph, const DimensionGraph& dims, OpId op, int dim) {
  return Classify(graph, dims, graph.op(op), dim).refusal;
}

FissionResult ApplyFission(const Graph& graph, const DimensionGraph& dims, const FissionSpec& spec) {
  if (spec.dim < 0 || spec.dim >= static_cast<int>(dims.dims.size())) {
    Fail("fission: dimension {} does not exist (the graph has {})", spec.dim, dims.dims.size());
  }
  const Dimension& d = dims.dims[spec.dim];
  if (spec.parts < 2 || spec.parts > d.length) {
    Fail("fission: {} parts of {} (length {}): need 2 to {}", spec.parts, d.name, d.length, d.length);
  }
  if (spec.ops.empty()) Fail("fission: the set of ops to split is empty");

  const size_t num_ops = graph.num_ops();
  std::vector<bool> in_s(num_ops, false);
  for (OpId id : spec.ops) {
    if (!graph.contains(id)) Fail("fission: op {} does not exist", id.value);
    in_s[id.index()] = true;
  }
  std::vector<OpId> s_ops;
  for (const Op& op : graph.ops()) {
    if (in_s[op.id.index()]) s_ops.push_back(op.id);
  }

  std::vector<OpRule> rules(num_ops);
  for (OpId id : s_ops) {
    rules[id.index()] = Classify(graph, dims, graph.op(id), spec.dim);
    if (rules[id.index()].refusal) Fail("fission along {}: {}", d.name, *rules[id.index()].refusal);
  }

  // Descendants of S outside S (program order is topological). S is convex
  // when none of them feeds S.
  const auto consumers = ComputeConsumers(graph);
  std::vector<bool> after_s(num_ops, false);
  for (const Op& op : graph.ops()) {
    const bool from_s = in_s[op.id.index()] || after_s[op.id.index()];
    if (!from_s) continue;
    for (TensorId t : op.outputs) {
      for (OpId c : consumers[t.index()]) {
        if (in_s[c.index()] && after_s[op.id.index()]) {
          Fail("fission along {}: the ops are not convex: op {} depends on the split ops and feeds op {}", d.name,
               Quote(op.name), Quote(graph.op(c).name));
        }
        if (!in_s[c.index()]) after_s[c.index()] = true;
      }
    }
  }

  // Which outputs of S leave it (to ops outside or as results of the step),
  // and the rules of those that do.
  std::vector<bool> used_outside(graph.num_tensors(), false);
  for (TensorId t : graph.outputs) used_outside[t.index()] = true;
  for (OpId id : s_ops) {
    const Op& op = graph.op(id);
    for (size_t o = 0; o < op.outputs.size(); ++o) {
      const TensorId t = op.outputs[o];
      for (OpId c : consumers[t.index()]) {
        if (!in_s[c.index()]) {
          used_outside[t.index()] = true;
        } else if (rules[id.index()].outputs[o] == OutputKind::kPartialSum) {
          Fail("fission along {}: op {} reads a partial sum over the parts (output {} of op {})", d.name,
               Quote(graph.op(c).name), o, Quote(op.name));
        }
      }
      if (used_outside[t.index()] && graph.tensor(t).alias_of) {
        Fail("fission along {}: op {} output {} is a view or an in-place result used after the split ops", d.name,
             Quote(op.name), o);
      }
    }
  }

  // Ancestors of S outside S.
  std::vector<bool> before_s(num_ops, false);
  for (size_t i = num_ops; i-- > 0;) {
    const Op& op = graph.ops()[i];
    if (!in_s[i] && !before_s[i]) continue;
    for (TensorId t : op.inputs) {
      if (auto p = graph.tensor(t).producer; p && !in_s[p->index()]) before_s[p->index()] = true;
    }
  }

  // Program order, with S's parts at S's last op; ops outside S between
  // S's first and last op that depend on S, or write in place, move after.
  Builder b(graph, dims, spec, std::move(rules));
  const size_t first = s_ops.front().index(), last = s_ops.back().index();
  std::vector<OpId> deferred;
  for (const Op& op : graph.ops()) {
    const size_t i = op.id.index();
    if (in_s[i]) {
      if (i == last) {
        b.EmitParts(s_ops, used_outside);
        for (OpId id : deferred) b.CopyOp(graph.op(id));
        deferred.clear();
      }
      continue;
    }
    const OpSchema* schema = FindOpSchema(op.type);
    const bool writes = schema && (schema->inplace || !schema->mutated_args.empty());
    if (i > first && i < last && writes && before_s[i]) {
      Fail("fission along {}: op {} writes in place between the split ops and feeds them", d.name, Quote(op.name));
    }
    if (i > first && i < last && (after_s[i] || writes)) {
      deferred.push_back(op.id);
    } else {
      b.CopyOp(op);
    }
  }
  Graph& out = b.out();
  out.outputs.resize(graph.outputs.size());
  for (size_t i = 0; i < graph.outputs.size(); ++i) b.MapOutput(i, graph.outputs[i]);

  FissionRecord& record = b.record();
  record.dim_name = d.name;
  record.dim_kind = d.kind;
  record.length = d.length;
  record.parts = spec.parts;
  record.num_ops = static_cast<int>(s_ops.size());
  record.first_op = graph.op(s_ops.front()).name;
  record.last_op = graph.op(s_ops.back()).name;
  const size_t index = RecordedFissions(graph).size();
  FissionResult result{b.Take(), record};
  result.graph.metadata[fmt::format("fission.{}", index)] = ToString(record);
  return result;
}

std::vector<std::string> RecordedFissions(const Graph& graph) {
  std::vector<std::string> records;
  for (size_t i = 0;; ++i) {
    auto it = graph.metadata.find(fmt::format("fission.{}", i));
    if (it == graph.metadata.end()) return records;
    records.push_back(it->second);
  }
}

}  // namespace memfit
