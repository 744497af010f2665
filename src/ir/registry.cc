#include "ir/registry.h"

#include <algorithm>
#include <unordered_map>
#include <variant>

#include "ir/ops_common.h"
#include "util/error.h"

namespace memfit {
namespace {

struct Registry {
  std::vector<OpSchema> schemas;
  std::unordered_map<std::string_view, const OpSchema*> by_type;

  Registry() {
    ops::AddPointwiseOps(schemas);
    ops::AddLinalgOps(schemas);
    ops::AddNnOps(schemas);
    ops::AddShapeOps(schemas);
    ops::AddReductionOps(schemas);
    ops::AddCapturedOps(schemas);
    for (const OpSchema& schema : schemas) {
      const bool inserted = by_type.emplace(schema.type, &schema).second;
      if (!inserted) throw std::logic_error("op registered twice: " + schema.type);
    }
  }
};

const Registry& TheRegistry() {
  static const Registry registry;
  return registry;
}

std::string_view BaseName(std::string_view arg) {
  while (!arg.empty() && (arg.back() == '?' || arg.back() == ']' || arg.back() == '[')) {
    arg.remove_suffix(1);
  }
  return arg;
}

bool IsOptional(std::string_view arg) { return !arg.empty() && arg.back() == '?'; }
bool IsList(std::string_view arg) { return arg.size() > 2 && arg.substr(arg.size() - 2) == "[]"; }

bool ExplicitNone(const Op& op, std::string_view name) {
  auto it = op.attrs.find(name);
  return it != op.attrs.end() && std::holds_alternative<std::monostate>(it->second);
}

}  // namespace

std::vector<std::optional<size_t>> ResolveTensorArgs(const std::vector<std::string_view>& tensor_args, const Op& op,
                                                     size_t num_inputs) {
  // Required arguments after position k, to know whether an optional
  // argument that is not explicitly None was passed.
  std::vector<size_t> required_after(tensor_args.size() + 1, 0);
  for (size_t k = tensor_args.size(); k-- > 0;) {
    required_after[k] = required_after[k + 1] + (!IsOptional(tensor_args[k]) && !IsList(tensor_args[k]));
  }
  std::vector<std::optional<size_t>> positions(tensor_args.size());
  size_t next = 0;
  for (size_t k = 0; k < tensor_args.size(); ++k) {
    const std::string_view arg = tensor_args[k];
    if (IsList(arg)) {
      const size_t left = num_inputs - std::min(next, num_inputs);
      const size_t take = left > required_after[k + 1] ? left - required_after[k + 1] : 0;
      if (take > 0) positions[k] = next;
      next += take;
      continue;
    }
    if (IsOptional(arg)) {
      if (ExplicitNone(op, BaseName(arg))) continue;
      if (num_inputs - std::min(next, num_inputs) <= required_after[k + 1]) continue;
    }
    if (next < num_inputs) positions[k] = next++;
  }
  return positions;
}

namespace {

std::vector<TensorType> InputTypes(const Graph& graph, const Op& op) {
  std::vector<TensorType> types;
  types.reserve(op.inputs.size());
  for (TensorId in : op.inputs) {
    const Tensor& t = graph.tensor(in);
    types.push_back({t.shape, t.dtype});
  }
  return types;
}

}  // namespace

// --- OpCall ---------------------------------------------------------------

OpCall::OpCall(const Op& op, std::vector<TensorType> inputs,
               const std::vector<std::string_view>* tensor_args)
    : op_(op), inputs_(std::move(inputs)), tensor_args_(tensor_args) {}

void OpCall::Fail(const std::string& message) const {
  memfit::Fail("op '{}' ({}): {}", op_.name, op_.qualified_type(), message);
}

const TensorType& OpCall::input(size_t i) const {
  if (i >= inputs_.size()) Fail(fmt::format("expects at least {} tensor inputs, got {}", i + 1, inputs_.size()));
  return inputs_[i];
}

std::optional<size_t> OpCall::arg_index(std::string_view name) const {
  if (!tensor_args_) return std::nullopt;
  const std::vector<std::optional<size_t>> positions = ResolveTensorArgs(*tensor_args_, op_, inputs_.size());
  for (size_t k = 0; k < tensor_args_->size(); ++k) {
    if (BaseName((*tensor_args_)[k]) == name) return positions[k];
  }
  return std::nullopt;
}

std::optional<TensorType> OpCall::arg(std::string_view name) const {
  if (auto index = arg_index(name)) return inputs_[*index];
  return std::nullopt;
}

const AttrValue* OpCall::find(std::string_view name) const {
  auto it = op_.attrs.find(name);
  return it == op_.attrs.end() ? nullptr : &it->second;
}

bool OpCall::has_attr(std::string_view name) const { return find(name) != nullptr; }

bool OpCall::is_none(std::string_view name) const {
  const AttrValue* v = find(name);
  return v == nullptr || std::holds_alternative<std::monostate>(*v);
}

int64_t OpCall::int_attr(std::string_view name) const {
  const AttrValue* v = find(name);
  if (!v) Fail(fmt::format("missing attribute '{}'", name));
  if (auto* i = std::get_if<int64_t>(v)) return *i;
  if (auto* b = std::get_if<bool>(v)) return *b;
  Fail(fmt::format("attribute '{}' must be an integer, got {}", name, ToString(*v)));
}

int64_t OpCall::int_attr(std::string_view name, int64_t fallback) const {
  return is_none(name) ? fallback : int_attr(name);
}

double OpCall::double_attr(std::string_view name, double fallback) const {
  const AttrValue* v = find(name);
  if (!v || std::holds_alternative<std::monostate>(*v)) return fallback;
  if (auto* d = std::get_if<double>(v)) return *d;
  if (auto* i = std::get_if<int64_t>(v)) return static_cast<double>(*i);
  Fail(fmt::format("attribute '{}' must be a number, got {}", name, ToString(*v)));
}

bool OpCall::bool_attr(std::string_view name, bool fallback) const {
  const AttrValue* v = find(name);
  if (!v || std::holds_alternative<std::monostate>(*v)) return fallback;
  if (auto* b = std::get_if<bool>(v)) return *b;
  if (auto* i = std::get_if<int64_t>(v)) return *i != 0;
  Fail(fmt::format("attribute '{}' must be a boolean, got {}", name, ToString(*v)));
}

std::vector<int64_t> OpCall::ints_attr(std::string_view name) const {
  const AttrValue* v = find(name);
  if (!v) Fail(fmt::format("missing attribute '{}'", name));
  if (auto* list = std::get_if<std::vector<int64_t>>(v)) return *list;
  if (auto* i = std::get_if<int64_t>(v)) return {*i};
  // An empty JSON list may load as either list type.
  if (auto* d = std::get_if<std::vector<double>>(v); d && d->empty()) return {};
  Fail(fmt::format("attribute '{}' must be a list of integers, got {}", name, ToString(*v)));
}

std::vector<int64_t> OpCall::ints_attr(std::string_view name, std::vector<int64_t> fallback) const {
  return is_none(name) ? fallback : ints_attr(name);
}

std::vector<bool> OpCall::bools_attr(std::string_view name, std::vector<bool> fallback) const {
  if (is_none(name)) return fallback;
  std::vector<bool> out;
  for (int64_t i : ints_attr(name)) out.push_back(i != 0);
  return out;
}

std::optional<DType> OpCall::dtype_attr(std::string_view name) const {
  const AttrValue* v = find(name);
  if (!v || std::holds_alternative<std::monostate>(*v)) return std::nullopt;
  if (auto* s = std::get_if<std::string>(v)) {
    if (auto d = ParseDType(*s)) return d;
  }
  Fail(fmt::format("attribute '{}' must be a dtype name (f32, bf16, ...), got {}", name, ToString(*v)));
}

std::string OpCall::string_attr(std::string_view name, std::string fallback) const {
  const AttrValue* v = find(name);
  if (!v || std::holds_alternative<std::monostate>(*v)) return fallback;
  if (auto* s = std::get_if<std::string>(v)) return *s;
  Fail(fmt::format("attribute '{}' must be a string, got {}", name, ToString(*v)));
}

bool OpCall::iota(size_t i) const { return graph_ && i < op_.inputs.size() && IsIota(*graph_, op_.inputs[i]); }

std::vector<bool> OpCall::list_entries(std::string_view name, size_t count) const {
  const AttrValue* v = find(name);
  if (!v || std::holds_alternative<std::monostate>(*v)) return std::vector<bool>(count, true);
  std::vector<bool> entries;
  for (int64_t e : ints_attr(name)) {
    if (e != 0 && e != 1) Fail(fmt::format("attribute '{}' must be a 0/1 list (tensor or None per entry)", name));
    entries.push_back(e != 0);
  }
  const auto present = static_cast<size_t>(std::count(entries.begin(), entries.end(), true));
  if (present != count) {
    Fail(fmt::format("attribute '{}' marks {} tensor entries but the op has {} tensors for it", name, present, count));
  }
  return entries;
}

int64_t OpCall::dim(int64_t d, size_t rank, std::string_view field) const {
  const int64_t r = static_cast<int64_t>(rank);
  const int64_t normalized = d < 0 ? d + std::max<int64_t>(r, 1) : d;
  if (normalized < 0 || normalized >= std::max<int64_t>(r, 1)) {
    Fail(fmt::format("'{}' = {} is out of range for a tensor of rank {}", field, d, rank));
  }
  return normalized;
}

int64_t OpCall::axis(int64_t d, size_t rank, std::string_view field) const {
  if (rank == 0) Fail(fmt::format("'{}' = {} names no dimension of a 0-d tensor", field, d));
  return dim(d, rank, field);
}

std::vector<bool> OpCall::dim_mask(const std::vector<int64_t>& dims, size_t rank, std::string_view field) const {
  std::vector<bool> mask(rank, false);
  for (int64_t d : dims) {
    const int64_t normalized = dim(d, rank, field);
    if (rank > 0) mask[normalized] = true;
  }
  return mask;
}

// --- OpSchema ---------------------------------------------------------------

size_t OpSchema::min_inputs() const {
  size_t n = 0;
  for (std::string_view arg : tensor_args) n += !IsOptional(arg) && !IsList(arg);
  return n;
}

std::optional<size_t> OpSchema::max_inputs() const {
  for (std::string_view arg : tensor_args) {
    if (IsList(arg)) return std::nullopt;
  }
  return tensor_args.size();
}

std::optional<size_t> AliasedInput(const OpSchema& schema, size_t output) {
  for (auto [out, in] : schema.views) {
    if (out == -1 || static_cast<size_t>(out) == output) return static_cast<size_t>(in);
  }
  if (schema.inplace && output == 0) return 0;
  return std::nullopt;
}

// --- Lookup -----------------------------------------------------------------

const OpSchema* FindOpSchema(std::string_view type) {
  const auto& by_type = TheRegistry().by_type;
  auto it = by_type.find(type);
  return it == by_type.end() ? nullptr : it->second;
}

std::vector<std::string> RegisteredOpTypes() {
  std::vector<std::string> types;
  for (const OpSchema& schema : TheRegistry().schemas) types.push_back(schema.type);
  std::sort(types.begin(), types.end());
  return types;
}

bool DeclaresView(const Op& op) {
  const auto it = op.attrs.find("view");
  return it != op.attrs.end() && std::holds_alternative<bool>(it->second) && std::get<bool>(it->second);
}

std::vector<size_t> MutatedInputs(const Graph& graph, const Op& op) {
  const OpSchema* schema = FindOpSchema(op.type);
  if (!schema || schema->mutated_args.empty()) return {};
  OpCall call(op, InputTypes(graph, op), &schema->tensor_args);
  if (schema->mutates_when && !schema->mutates_when(call)) return {};
  std::vector<size_t> indices;
  for (std::string_view name : schema->mutated_args) {
    if (auto index = call.arg_index(name)) indices.push_back(*index);
  }
  return indices;
}

bool IsRandomOp(std::string_view type) {
  const OpSchema* schema = FindOpSchema(type);
  return schema && schema->random;
}

OpFlags ComputeOpFlags(const Graph& graph, const Op& op) {
  OpFlags flags;
  const OpSchema* schema = FindOpSchema(op.type);
  if (schema) {
    flags.random = schema->random;
    flags.inplace = schema->inplace;
    flags.view = schema->is_view();
  } else {
    flags.view = DeclaresView(op);
    flags.inplace = !flags.view && std::any_of(op.outputs.begin(), op.outputs.end(), [&](TensorId t) {
      return graph.contains(t) && graph.tensor(t).alias_of.has_value();
    });
  }
  flags.mutated_inputs = MutatedInputs(graph, op);
  return flags;
}

std::vector<TensorType> InferOutputTypes(const OpSchema& schema, const Graph& graph, const Op& op) {
  OpCall call(op, InputTypes(graph, op), &schema.tensor_args);
  std::vector<TensorType> declared;
  for (TensorId out : op.outputs) {
    if (!graph.contains(out)) break;
    declared.push_back({graph.tensor(out).shape, graph.tensor(out).dtype});
  }
  if (declared.size() == op.outputs.size()) call.set_declared_outputs(std::move(declared));
  size_t required = 0, allowed = 0;
  bool list = false;
  for (std::string_view arg : schema.tensor_args) {
    list = list || IsList(arg);
    required += !IsOptional(arg) && !IsList(arg);
    allowed += !(IsOptional(arg) && ExplicitNone(op, BaseName(arg)));
  }
  if (list) {
    if (op.inputs.size() < std::max<size_t>(required, 1)) {
      call.Fail(fmt::format("expects at least {} tensor inputs, got {}", std::max<size_t>(required, 1), op.inputs.size()));
    }
  } else if (op.inputs.size() < required || op.inputs.size() > allowed) {
    call.Fail(required == allowed
                  ? fmt::format("expects {} tensor inputs, got {}", required, op.inputs.size())
                  : fmt::format("expects {} to {} tensor inputs, got {}", required, allowed, op.inputs.size()));
  }
  return schema.infer(call);
}

OpCost ComputeOpCost(const Graph& graph, const Op& op) {
  OpCost cost;
  std::vector<TensorType> outputs;
  for (TensorId out : op.outputs) {
    const Tensor& t = graph.tensor(out);
    outputs.push_back({t.shape, t.dtype});
    cost.bytes_written += t.size_bytes();
  }
  for (TensorId in : op.inputs) cost.bytes_read += graph.tensor(in).size_bytes();
  const OpSchema* schema = FindOpSchema(op.type);
  if (schema && schema->is_view()) {
    cost.bytes_read = cost.bytes_written = 0;  // metadata only
    return cost;
  }
  if (!schema) {
    for (const TensorType& out : outputs) cost.flops += static_cast<double>(ops::Numel(out.shape));
    return cost;
  }
  if (schema->uninitialized) {
    cost.bytes_read = cost.bytes_written = 0;  // memory handed out as it is
    return cost;
  }
  OpCall call(op, InputTypes(graph, op), &schema->tensor_args);
  call.set_declared_outputs(outputs);
  if (schema->flops) {
    cost.flops = schema->flops(call, outputs);
  } else {
    for (const TensorType& out : outputs) cost.flops += static_cast<double>(ops::Numel(out.shape));
  }
  if (schema->bytes_read) cost.bytes_read = schema->bytes_read(call, outputs);
  if (schema->workspace_bytes) cost.workspace_bytes = schema->workspace_bytes(call, outputs);
  return cost;
}

DimLinks ComputeDimLinks(const Graph& graph, const Op& op) {
  const OpSchema* schema = FindOpSchema(op.type);
  if (!schema || !schema->dim_links) return {};
  std::vector<TensorType> outputs;
  for (TensorId out : op.outputs) outputs.push_back({graph.tensor(out).shape, graph.tensor(out).dtype});
  OpCall call(op, InputTypes(graph, op), &schema->tensor_args);
  call.set_declared_outputs(outputs);  // what a rule cannot infer (a boolean mask's count) is the graph's
  call.set_graph(&graph);
  return schema->dim_links(call, outputs);
}

bool IsIota(const Graph& graph, TensorId t) {
  const Tensor& tensor = graph.tensor(t);
  if (!tensor.producer || tensor.shape.size() != 1 || IsFloatingPoint(tensor.dtype)) return false;
  const Op& op = graph.op(*tensor.producer);
  if (op.type != "aten.arange" || op.outputs.size() != 1) return false;
  auto is = [&](std::string_view name, int64_t value) {
    const auto it = op.attrs.find(std::string(name));
    if (it == op.attrs.end() || std::holds_alternative<std::monostate>(it->second)) return true;
    const int64_t* i = std::get_if<int64_t>(&it->second);
    const double* d = std::get_if<double>(&it->second);
    return (i && *i == value) || (d && *d == static_cast<double>(value));
  };
  return is("start", 0) && is("step", 1);
}

}  // namespace memfit
