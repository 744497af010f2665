#include "transform/rewriter.h"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "ir/registry.h"
#include "util/error.h"

namespace memfit {
namespace {

std::string Unique(const std::string& base, std::unordered_set<std::string>& taken) {
  std::string name = base;
  for (int i = 1; !taken.insert(name).second; ++i) name = fmt::format("{}_{}", base, i);
  return name;
}

}  // namespace

Rewriter::Rewriter(const Graph& in) : in_(in), whole_(in.num_tensors()), relaid_(in.num_tensors(), false) {
  out_.name = in.name;
  out_.metadata = in.metadata;
  for (const Tensor& t : in.tensors()) {
    if (!t.producer) whole_[t.id.index()] = CopyTensor(t);
  }
  for (const Op& op : in.ops()) op_names_.insert(op.name);
  for (const Tensor& t : in.tensors()) tensor_names_.insert(t.name);
}

namespace {

// Row-major with no offset: what a new tensor of this shape is laid out as.
bool LaidOutContiguously(const Tensor& t) {
  if (t.storage_offset != 0) return false;
  if (t.strides.empty()) return true;
  int64_t expected = 1;
  for (size_t i = t.shape.size(); i-- > 0;) {
    if (t.shape[i] != 1 && t.strides.at(i) != expected) return false;
    expected *= t.shape[i];
  }
  return true;
}

// The order of `t`'s dimensions from outermost to innermost in memory
// where its strides lay it out densely in an order other than row-major (no
// gaps, no overlap); nullopt otherwise. Dimensions of extent 1 take no
// memory: where they go does not matter.
std::optional<std::vector<int64_t>> DenseOrder(const Tensor& t) {
  if (t.strides.empty() || t.strides.size() != t.shape.size()) return std::nullopt;
  std::vector<int64_t> order(t.shape.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return t.strides[a] > t.strides[b]; });
  int64_t expected = 1;
  for (size_t i = order.size(); i-- > 0;) {
    const int64_t d = order[i];
    if (t.shape[d] == 1) continue;
    if (t.strides[d] != expected) return std::nullopt;
    expected *= t.shape[d];
  }
  for (size_t i = 0; i < order.size(); ++i) {
    if (order[i] != static_cast<int64_t>(i) && t.shape[order[i]] != 1) return order;
  }
  return std::nullopt;
}

}  // namespace

void Rewriter::Join(TensorId t, const std::vector<TensorId>& parts, int64_t axis, const std::string& name,
                    Phase phase) {
  const Tensor& orig = in_.tensor(t);
  const std::optional<std::vector<int64_t>> order = DenseOrder(orig);
  if (!order) {
    SetWhole(t, EmitNamed(NewOp(name, "aten.cat", "", parts, {{"dim", axis}}, phase), orig));
    return;
  }
  Tensor like = orig;
  if (like.role == TensorRole::kOutput) like.role = TensorRole::kActivation;
  like.strides.clear();
  like.storage_offset = 0;
  std::vector<TensorId> in_order;
  for (size_t k = 0; k < parts.size(); ++k) {
    Op permute = NewOp(fmt::format("{}.in_memory_order{}", name, k), "aten.permute", "", {parts[k]},
                       {{"dims", *order}}, phase);
    in_order.push_back(Emit(std::move(permute), {&like}, fmt::format(".part{}.in_memory_order", k))[0]);
  }
  const int64_t memory_axis = std::find(order->begin(), order->end(), axis) - order->begin();
  Op cat = NewOp(name, "aten.cat", "", in_order, {{"dim", memory_axis}}, phase);
  const TensorId joined = Emit(std::move(cat), {&like}, ".in_memory_order")[0];
  std::vector<int64_t> back(order->size());
  for (size_t i = 0; i < order->size(); ++i) back[(*order)[i]] = static_cast<int64_t>(i);
  const TensorId id = EmitNamed(NewOp(name + ".layout", "aten.permute", "", {joined}, {{"dims", back}}, phase), orig);
  out_.mutable_tensor(id).strides = orig.strides;
  whole_.at(t.index()) = id;
  relaid_.at(t.index()) = orig.storage_offset != 0;
}

void Rewriter::SetWhole(TensorId t, TensorId id) {
  whole_.at(t.index()) = id;
  relaid_.at(t.index()) = !LaidOutContiguously(in_.tensor(t));
}

void Rewriter::CopyOp(const Op& op) { Copy(op, "", op.phase); }

void Rewriter::CopyAgain(const Op& op, std::string_view suffix, Phase phase) { Copy(op, suffix, phase); }

void Rewriter::Copy(const Op& op, std::string_view suffix, Phase phase) {
  Op copy = op;
  copy.phase = phase;
  if (!suffix.empty()) copy.name = Unique(op.name + std::string(suffix), op_names_);
  bool reads_relaid = false;
  for (TensorId& t : copy.inputs) {
    reads_relaid = reads_relaid || relaid_[t.index()];
    t = Whole(t);
  }
  const bool reshape_alias = reads_relaid && AsReshape(copy);
  if (!reshape_alias && reads_relaid && op.type == "aten.as_strided") {
    Fail("rewrite: op {} ({}) reads the memory layout of {}, which the split makes anew", Quote(op.name),
         op.qualified_type(), Quote(in_.tensor(op.inputs.at(0)).name));
  }
  copy.outputs.clear();
  for (TensorId t : op.outputs) {
    Tensor like = in_.tensor(t);
    if (reshape_alias) like.strides.clear(), like.storage_offset = 0;
    if (!suffix.empty()) {
      like.name = UniqueTensorName(like.name + std::string(suffix));
      if (like.role == TensorRole::kOutput) like.role = TensorRole::kActivation;
    }
    const TensorId id = CopyTensor(like);
    whole_[t.index()] = id;
    // A view of a tensor laid out otherwise is laid out otherwise too.
    relaid_[t.index()] = reads_relaid && !reshape_alias && like.alias_of.has_value();
    copy.outputs.push_back(id);
  }
  out_.AddOp(std::move(copy));
}

TensorId Rewriter::Whole(TensorId t) const {
  const std::optional<TensorId> id = whole_.at(t.index());
  if (!id) Fail("rewrite: tensor {} is used before the parts that make it", Quote(in_.tensor(t).name));
  return *id;
}

TensorId Rewriter::CopyTensor(const Tensor& t) {
  Tensor copy = t;
  copy.producer.reset();
  if (t.alias_of) copy.alias_of = Whole(*t.alias_of);
  return out_.AddTensor(std::move(copy));
}

std::string Rewriter::UniqueTensorName(const std::string& base) { return Unique(base, tensor_names_); }

Op Rewriter::NewOp(std::string name, std::string type, std::string overload, std::vector<TensorId> inputs,
                   Attrs attrs, Phase phase) {
  Op op;
  op.name = Unique(name, op_names_);
  op.type = std::move(type);
  op.overload = std::move(overload);
  op.inputs = std::move(inputs);
  op.attrs = std::move(attrs);
  op.phase = phase;
  return op;
}

std::vector<TensorId> Rewriter::Emit(Op op, const std::vector<const Tensor*>& like, const std::string& suffix) {
  const OpSchema* schema = FindOpSchema(op.type);
  const std::vector<TensorType> types = InferOutputTypes(*schema, out_, op);
  std::vector<TensorId> ids;
  for (size_t o = 0; o < types.size(); ++o) {
    Tensor t;
    t.name = suffix.empty() ? like.at(o)->name : UniqueTensorName(like.at(o)->name + suffix);
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

std::vector<std::string> NumberedRecords(const Graph& graph, std::string_view key) {
  std::vector<std::string> records;
  for (size_t i = 0;; ++i) {
    auto it = graph.metadata.find(fmt::format("{}.{}", key, i));
    if (it == graph.metadata.end()) return records;
    records.push_back(it->second);
  }
}

std::string Refusal(const Op& op, std::string_view why) {
  return fmt::format("op {} ({}) {}", Quote(op.name), op.qualified_type(), why);
}

bool IsResult(const Graph& graph, TensorId t) {
  return std::find(graph.outputs.begin(), graph.outputs.end(), t) != graph.outputs.end();
}

const int64_t* IntAttr(const Op& op, std::string_view name) {
  auto it = op.attrs.find(name);
  return it == op.attrs.end() ? nullptr : std::get_if<int64_t>(&it->second);
}

double DoubleAttr(const Op& op, std::string_view name, double fallback) {
  auto it = op.attrs.find(name);
  if (it == op.attrs.end()) return fallback;
  if (auto* d = std::get_if<double>(&it->second)) return *d;
  if (auto* i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
  return fallback;
}

std::vector<int64_t> IntsAttr(const Op& op, std::string_view name) {
  auto it = op.attrs.find(name);
  const auto* ints = it == op.attrs.end() ? nullptr : std::get_if<std::vector<int64_t>>(&it->second);
  return ints ? *ints : std::vector<int64_t>{};
}

bool BoolAttr(const Op& op, std::string_view name, bool fallback) {
  auto it = op.attrs.find(name);
  if (it == op.attrs.end()) return fallback;
  if (const bool* b = std::get_if<bool>(&it->second)) return *b;
  if (const int64_t* i = std::get_if<int64_t>(&it->second)) return *i != 0;
  return fallback;
}

std::vector<bool> OutputMask(const Op& op) {
  const std::vector<int64_t> mask = IntsAttr(op, "output_mask");
  if (mask.size() != 3) return {true, true, true};
  return {mask[0] != 0, mask[1] != 0, mask[2] != 0};
}

bool AsReshape(Op& op) {
  if (op.type != "aten.view" && op.type != "aten._unsafe_view" && op.type != "aten._reshape_alias") return false;
  auto size = op.attrs.find("size");
  if (size == op.attrs.end()) return false;
  AttrValue shape = size->second;
  op.type = "aten.reshape";
  op.overload.clear();
  op.attrs = {{"shape", std::move(shape)}};
  return true;
}

void RescaleShapeAttrs(Op& op, int axis, int64_t whole, int64_t part) {
  for (std::string_view name : {"size", "sizes", "input_size", "input_sizes", "shape"}) {
    auto it = op.attrs.find(name);
    if (it == op.attrs.end()) continue;
    auto* sizes = std::get_if<std::vector<int64_t>>(&it->second);
    if (sizes && axis >= 0 && static_cast<int>(sizes->size()) > axis && (*sizes)[axis] == whole) (*sizes)[axis] = part;
  }
  // A depthwise convolution's groups, one per channel.
  if (auto it = op.attrs.find("groups"); axis == 1 && it != op.attrs.end()) {
    if (auto* groups = std::get_if<int64_t>(&it->second); groups && *groups == whole && whole > 1) *groups = part;
  }
  // group norm's batch size (native_group_norm and its backward).
  if (auto it = op.attrs.find("N"); axis == 0 && it != op.attrs.end()) {
    if (auto* n = std::get_if<int64_t>(&it->second); n && *n == whole) *n = part;
  }
}

RegionRuns::RegionRuns(const Graph& graph, size_t min_ops)
    : graph_(graph),
      min_ops_(min_ops),
      in_run_(graph.num_ops(), -1),
      after_run_(graph.num_ops(), -1),
      read_by_run_(graph.num_tensors(), -1) {}

void RegionRuns::Add(const Op& op) {
  run_.push_back(op.id);
  in_run_[op.id.index()] = current_;
  for (TensorId t : op.inputs) read_by_run_[graph_.StorageRoot(t).index()] = current_;
}

void RegionRuns::Close() {
  if (run_.size() >= min_ops_) regions_.push_back(run_);
  run_.clear();
  ++current_;
}

std::vector<std::vector<OpId>> RegionRuns::Finish() {
  Close();
  std::stable_sort(regions_.begin(), regions_.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  return std::move(regions_);
}

bool RegionRuns::ReadsAfterRun(const Op& op) const {
  for (TensorId t : op.inputs) {
    if (auto p = graph_.tensor(t).producer; p && after_run_[p->index()] == current_) return true;
  }
  return false;
}

bool RegionRuns::NeedsRun(const Op& op) const {
  for (TensorId t : op.inputs) {
    if (auto p = graph_.tensor(t).producer; p && (InRun(*p) || after_run_[p->index()] == current_)) return true;
  }
  return false;
}

bool RegionRuns::OverwritesRead(const Op& op) const {
  auto read = [&](TensorId t) { return read_by_run_[graph_.StorageRoot(t).index()] == current_; };
  for (size_t i : MutatedInputs(graph_, op)) {
    if (read(op.inputs[i])) return true;
  }
  const OpSchema* schema = FindOpSchema(op.type);
  return schema && schema->inplace && !op.inputs.empty() && read(op.inputs[0]);
}

RegionContext AnalyzeRegion(const Graph& graph, const std::vector<OpId>& ops, std::string_view what) {
  if (ops.empty()) Fail("{}: the set of ops to split is empty", what);
  const size_t num_ops = graph.num_ops();
  RegionContext r;
  r.in_s.assign(num_ops, false);
  for (OpId id : ops) {
    if (!graph.contains(id)) Fail("{}: op {} does not exist", what, id.value);
    r.in_s[id.index()] = true;
  }
  for (const Op& op : graph.ops()) {
    if (r.in_s[op.id.index()]) r.s_ops.push_back(op.id);
  }
  r.consumers = ComputeConsumers(graph);

  // Descendants of S outside S (program order is topological). S is convex
  // when none of them feeds S.
  std::vector<bool> after_s(num_ops, false);
  for (const Op& op : graph.ops()) {
    if (!r.in_s[op.id.index()] && !after_s[op.id.index()]) continue;
    for (TensorId t : op.outputs) {
      for (OpId c : r.consumers[t.index()]) {
        if (r.in_s[c.index()] && after_s[op.id.index()]) {
          Fail("{}: the ops are not convex: op {} depends on the split ops and feeds op {}", what, Quote(op.name),
               Quote(graph.op(c).name));
        }
        if (!r.in_s[c.index()]) after_s[c.index()] = true;
      }
    }
  }

  r.used_outside.assign(graph.num_tensors(), false);
  for (TensorId t : graph.outputs) r.used_outside[t.index()] = true;
  for (OpId id : r.s_ops) {
    for (TensorId t : graph.op(id).outputs) {
      for (OpId c : r.consumers[t.index()]) r.used_outside[t.index()] = r.used_outside[t.index()] || !r.in_s[c.index()];
    }
  }
  return r;
}

void RewriteAroundRegion(const Graph& graph, const RegionContext& region, std::string_view what, Rewriter& b,
                         const std::function<void()>& emit_region) {
  const size_t num_ops = graph.num_ops();
  const std::vector<bool>& in_s = region.in_s;
  const std::vector<OpId>& s_ops = region.s_ops;

  // By storage root: the first and the last op of S that read it (num_ops: none).
  std::vector<size_t> first_read_by_s(graph.num_tensors(), num_ops), last_read_by_s(graph.num_tensors(), num_ops);
  for (OpId id : s_ops) {
    for (TensorId t : graph.op(id).inputs) {
      const size_t root = graph.StorageRoot(t).index();
      first_read_by_s[root] = std::min(first_read_by_s[root], id.index());
      last_read_by_s[root] = last_read_by_s[root] == num_ops ? id.index() : std::max(last_read_by_s[root], id.index());
    }
  }
  // Ancestors and descendants of S outside S.
  std::vector<bool> before_s(num_ops, false), after_s(num_ops, false);
  for (size_t i = num_ops; i-- > 0;) {
    if (!in_s[i] && !before_s[i]) continue;
    for (TensorId t : graph.ops()[i].inputs) {
      if (auto p = graph.tensor(t).producer; p && !in_s[p->index()]) before_s[p->index()] = true;
    }
  }
  for (const Op& op : graph.ops()) {
    if (!in_s[op.id.index()] && !after_s[op.id.index()]) continue;
    for (TensorId t : op.outputs) {
      for (OpId c : region.consumers[t.index()]) after_s[c.index()] = after_s[c.index()] || !in_s[c.index()];
    }
  }

  const size_t first = s_ops.front().index(), last = s_ops.back().index();
  std::vector<OpId> deferred;
  // Random draws keep their order: once one waits for the region, every later
  // one between S's ops waits too (the ops before the region run first). A
  // transformer's encoder dropouts waited while the decoder's, which S reads,
  // ran first: every mask was drawn from another place in the stream.
  bool deferred_random = false;
  // Made by a deferred op (by tensor), written by one or read by one (by
  // storage root): what reads them, or writes what one read, waits too.
  std::vector<bool> deferred_made(graph.num_tensors(), false), deferred_written(graph.num_tensors(), false),
      deferred_read(graph.num_tensors(), false);
  for (const Op& op : graph.ops()) {
    const size_t i = op.id.index();
    if (in_s[i]) {
      if (i == last) {
        emit_region();
        for (OpId id : deferred) b.CopyOp(graph.op(id));
        deferred.clear();
      }
      continue;
    }
    const OpSchema* schema = FindOpSchema(op.type);
    const bool writes = schema && (schema->inplace || !schema->mutated_args.empty());
    // Reads what a deferred op makes or writes (a draw into a buffer that
    // a later op reads: swin's stochastic depth), or writes what one reads.
    bool follows_deferred = false;
    if (i > first && i < last) {
      for (TensorId t : op.inputs) {
        follows_deferred |= deferred_made[t.index()] || deferred_written[graph.StorageRoot(t).index()];
      }
      if (writes && !op.inputs.empty()) follows_deferred |= deferred_read[graph.StorageRoot(op.inputs[0]).index()];
    }
    // A write between S's ops that S needs runs before the region, which is
    // right unless an op of S before it reads what it overwrites. S needs it
    // when an op of S reads its result, or reads the storage it writes after
    // it (through another view: `h[:, :4] *= 2` before a linear layer of S
    // that reads h, deferred past the region, was lost to the parts).
    const std::optional<TensorId> written =
        !writes                ? std::nullopt
        : !op.inputs.empty()   ? std::optional(graph.StorageRoot(op.inputs[0]))
        : !op.outputs.empty()  ? std::optional(graph.StorageRoot(op.outputs[0]))
                               : std::nullopt;
    const bool read_after = written && last_read_by_s[written->index()] != num_ops &&
                            last_read_by_s[written->index()] > i;
    bool feeds_s = false;
    if (i > first && i < last && written && (before_s[i] || read_after)) {
      const TensorId root = *written;
      if (first_read_by_s[root.index()] < i) {
        Fail("{}: op {} overwrites {} between the split ops, which read it before", what, Quote(op.name),
             Quote(graph.tensor(root).name));
      }
      feeds_s = true;
    }
    const bool random = IsRandomOp(op.type);
    if (i > first && i < last && random && deferred_random && (feeds_s || before_s[i])) {
      Fail("{}: random op {} feeds the split ops but draws after one that must wait for them", what, Quote(op.name));
    }
    // A write waits for the region only if S reads what it writes (before it:
    // the write must come after those reads); one S never reads (a dropout
    // mask drawn into a fresh buffer for ops outside S) runs in its place.
    const bool written_for_s = written && first_read_by_s[written->index()] != num_ops;
    if (i > first && i < last && !feeds_s &&
        (after_s[i] || written_for_s || follows_deferred || (random && deferred_random))) {
      deferred_random |= random;
      deferred.push_back(op.id);
      for (TensorId t : op.inputs) deferred_read[graph.StorageRoot(t).index()] = true;
      for (TensorId t : op.outputs) deferred_made[t.index()] = true;
      if (writes && !op.inputs.empty()) deferred_written[graph.StorageRoot(op.inputs[0]).index()] = true;
    } else if (follows_deferred) {
      Fail("{}: op {} feeds the split ops but must run after op(s) that wait for them", what, Quote(op.name));
    } else {
      b.CopyOp(op);
    }
  }
  b.MapOutputs();
}

}  // namespace memfit
