#include "ir/builder.h"

#include <fmt/format.h>

#include "util/error.h"

namespace memfit {

std::pair<std::string, std::string> SplitQualifiedType(std::string_view qualified_type) {
  const size_t first = qualified_type.find('.');
  const size_t last = qualified_type.rfind('.');
  if (first == std::string_view::npos || first == last) return {std::string(qualified_type), ""};
  return {std::string(qualified_type.substr(0, last)), std::string(qualified_type.substr(last + 1))};
}

GraphBuilder::GraphBuilder(std::string name, DType dtype) : dtype_(dtype) { graph_.name = std::move(name); }

GraphBuilder::GraphBuilder(Graph graph, DType dtype) : graph_(std::move(graph)), dtype_(dtype) {
  for (const Op& op : graph_.ops()) op_names_[op.name] = 1;
  for (const Tensor& t : graph_.tensors()) tensor_names_[t.name] = 1;
}

void GraphBuilder::PushScope(std::string_view scope) { scopes_.emplace_back(scope); }
void GraphBuilder::PopScope() {
  if (!scopes_.empty()) scopes_.pop_back();
}

std::string GraphBuilder::Scoped(std::string_view name) const {
  std::string out;
  for (const std::string& s : scopes_) {
    out += s;
    out += '.';
  }
  out += name;
  return out;
}

std::string GraphBuilder::UniqueName(std::string base, std::unordered_map<std::string, int>& taken) {
  auto [it, inserted] = taken.emplace(base, 1);
  if (inserted) return base;
  for (;;) {
    std::string candidate = fmt::format("{}_{}", base, it->second++);
    if (taken.emplace(candidate, 1).second) return candidate;
  }
}

TensorId GraphBuilder::Source(std::string_view name, Shape shape, DType dtype, TensorRole role) {
  if (!CheckedNumel(shape)) Fail("tensor '{}': invalid shape {}", Scoped(name), ShapeToString(shape));
  Tensor t;
  t.name = UniqueName(Scoped(name), tensor_names_);
  t.shape = std::move(shape);
  t.dtype = dtype;
  t.role = role;
  return graph_.AddTensor(std::move(t));
}

std::vector<TensorId> GraphBuilder::Append(Op op, const std::vector<TensorType>& outputs, const OpSchema* schema) {
  op.name = UniqueName(op.name, op_names_);
  op.phase = phase_;
  const TensorRole fresh_role = phase_ == Phase::kBackward ? TensorRole::kGradient : TensorRole::kActivation;
  std::vector<TensorId> ids;
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (!CheckedNumel(outputs[i].shape)) {
      Fail("op '{}': output {} has invalid shape {}", op.name, i, ShapeToString(outputs[i].shape));
    }
    Tensor t;
    t.name = UniqueName(outputs.size() == 1 ? op.name : fmt::format("{}.{}", op.name, i), tensor_names_);
    t.shape = outputs[i].shape;
    t.dtype = outputs[i].dtype;
    t.role = fresh_role;
    if (schema) {
      if (auto in = AliasedInput(*schema, i); in && *in < op.inputs.size()) {
        t.alias_of = op.inputs[*in];
        t.role = graph_.tensor(op.inputs[*in]).role;
      }
    }
    ids.push_back(graph_.AddTensor(std::move(t)));
  }
  op.outputs = ids;
  graph_.AddOp(std::move(op));
  return ids;
}

std::vector<TensorId> GraphBuilder::CallMulti(std::string_view qualified_type, std::vector<TensorId> inputs,
                                              Attrs attrs, std::string_view name) {
  auto [type, overload] = SplitQualifiedType(qualified_type);
  const OpSchema* schema = FindOpSchema(type);
  if (!schema) Fail("op type '{}' is not registered; use CallOpaque with declared shapes", qualified_type);
  Op op;
  op.type = std::move(type);
  op.overload = std::move(overload);
  op.inputs = std::move(inputs);
  op.attrs = std::move(attrs);
  const std::string_view packet = std::string_view(op.type).substr(op.type.find('.') + 1);
  op.name = Scoped(name.empty() ? packet : name);
  for (TensorId in : op.inputs) {
    if (!graph_.contains(in)) Fail("op '{}': input t{} does not exist", op.name, in.value);
  }
  const std::vector<TensorType> outputs = InferOutputTypes(*schema, graph_, op);
  return Append(std::move(op), outputs, schema);
}

TensorId GraphBuilder::Call(std::string_view qualified_type, std::vector<TensorId> inputs, Attrs attrs,
                            std::string_view name) {
  auto outs = CallMulti(qualified_type, std::move(inputs), std::move(attrs), name);
  if (outs.empty()) Fail("op '{}' has no outputs", qualified_type);
  return outs[0];
}

std::vector<TensorId> GraphBuilder::CallOpaque(std::string_view qualified_type, std::vector<TensorId> inputs,
                                               std::vector<TensorType> outputs, Attrs attrs, std::string_view name) {
  auto [type, overload] = SplitQualifiedType(qualified_type);
  Op op;
  op.type = std::move(type);
  op.overload = std::move(overload);
  op.inputs = std::move(inputs);
  op.attrs = std::move(attrs);
  op.name = Scoped(name.empty() ? std::string_view(op.type) : name);
  return Append(std::move(op), outputs, nullptr);
}

void GraphBuilder::MarkOutput(TensorId id) { graph_.outputs.push_back(id); }

}  // namespace memfit
