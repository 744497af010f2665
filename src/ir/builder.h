// GraphBuilder: constructs graphs op by op with shape inference from the
// registry. The model zoo and autodiff build through it.
//
//   GraphBuilder b("mlp");
//   TensorId x = b.Input("x", {32, 784});
//   TensorId w = b.Parameter("fc1.weight", {256, 784});
//   TensorId wt = b.Call("aten.t", {w});
//   TensorId y = b.Call("aten.mm", {x, wt});
//   TensorId r = b.Call("aten.relu", {y});
//
// Op and tensor names derive from the current scope ("layer0.attn") and the
// op's packet name, made unique with a suffix. Outputs of views and in-place
// ops alias their input's storage and inherit its role; other outputs are
// activations in the forward phase and gradients in the backward phase.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ir/graph.h"
#include "ir/registry.h"

namespace memfit {

class GraphBuilder {
 public:
  explicit GraphBuilder(std::string name, DType dtype = DType::kF32);
  // Continues building on an existing graph (autodiff appends to a forward
  // graph). Names already in `graph` stay taken.
  explicit GraphBuilder(Graph graph, DType dtype = DType::kF32);

  // The default floating dtype for parameters and inputs.
  DType dtype() const { return dtype_; }

  TensorId Parameter(std::string_view name, Shape shape) { return Source(name, std::move(shape), dtype_, TensorRole::kParameter); }
  TensorId Buffer(std::string_view name, Shape shape) { return Source(name, std::move(shape), DType::kF32, TensorRole::kBuffer); }
  TensorId Input(std::string_view name, Shape shape, std::optional<DType> dtype = std::nullopt) {
    return Source(name, std::move(shape), dtype.value_or(dtype_), TensorRole::kInput);
  }
  // A tensor that exists before the step; `name` is scoped.
  TensorId Source(std::string_view name, Shape shape, DType dtype, TensorRole role);

  // Appends a call of `qualified_type` ("aten.mm", "aten.add.Tensor") and
  // returns its outputs. Throws Error (naming the op) when the registry
  // rejects the inputs or attributes. Unregistered ops need CallOpaque.
  std::vector<TensorId> CallMulti(std::string_view qualified_type, std::vector<TensorId> inputs, Attrs attrs = {},
                                  std::string_view name = {});
  // As CallMulti, for ops with (at least) one output; returns output 0.
  TensorId Call(std::string_view qualified_type, std::vector<TensorId> inputs, Attrs attrs = {},
                std::string_view name = {});
  // Appends an op the registry does not know, with declared output types.
  std::vector<TensorId> CallOpaque(std::string_view qualified_type, std::vector<TensorId> inputs,
                                   std::vector<TensorType> outputs, Attrs attrs = {}, std::string_view name = {});

  void set_phase(Phase phase) { phase_ = phase; }
  Phase phase() const { return phase_; }

  // Scopes nest with '.': PushScope("layer0"); PushScope("attn") -> "layer0.attn".
  void PushScope(std::string_view scope);
  void PopScope();
  std::string Scoped(std::string_view name) const;

  // Marks `id` as a result that must be alive at the end of the step.
  void MarkOutput(TensorId id);

  const Graph& graph() const { return graph_; }
  Graph& mutable_graph() { return graph_; }
  const Tensor& tensor(TensorId id) const { return graph_.tensor(id); }
  // By value: the tensors move as Call adds more, and a reference held
  // across a Call dangles (autodiff's ReduceTo read a freed shape as []).
  Shape shape(TensorId id) const { return graph_.tensor(id).shape; }

  // Returns the graph; the builder must not be used afterwards.
  Graph Finish() { return std::move(graph_); }

 private:
  std::string UniqueName(std::string base, std::unordered_map<std::string, int>& taken);
  std::vector<TensorId> Append(Op op, const std::vector<TensorType>& outputs, const OpSchema* schema);

  Graph graph_;
  DType dtype_;
  Phase phase_ = Phase::kForward;
  std::vector<std::string> scopes_;
  std::unordered_map<std::string, int> op_names_;
  std::unordered_map<std::string, int> tensor_names_;
};

// Splits "aten.add.Tensor" into {"aten.add", "Tensor"}; "aten.mm" has no
// overload. A name with two dots or more keeps the last part as overload.
std::pair<std::string, std::string> SplitQualifiedType(std::string_view qualified_type);

}  // namespace memfit
