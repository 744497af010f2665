// The graph of one training step (or of a forward pass): tensors and ops.
//
// `ops` is in program order: the order in which an eager framework would run
// them, and the default schedule. Tensor and op ids are dense indices into
// `tensors` and `ops`. A Graph is plain data; use Validate() (validate.h)
// before trusting one read from a file, and GraphBuilder (builder.h) to
// construct one with shape inference.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "ir/op.h"
#include "ir/tensor.h"

namespace memfit {

class Graph {
 public:
  std::string name;
  // Free-form description of where the graph came from ("model": "bert-base",
  // "batch": "32", ...). Sorted, so output is deterministic.
  std::map<std::string, std::string> metadata;
  // Tensors that must be alive at the end of the step (loss, gradients when
  // there is no optimizer update, updated parameters).
  std::vector<TensorId> outputs;

  const std::vector<Tensor>& tensors() const { return tensors_; }
  const std::vector<Op>& ops() const { return ops_; }
  size_t num_tensors() const { return tensors_.size(); }
  size_t num_ops() const { return ops_.size(); }

  const Tensor& tensor(TensorId id) const { return tensors_.at(id.index()); }
  Tensor& mutable_tensor(TensorId id) { return tensors_.at(id.index()); }
  const Op& op(OpId id) const { return ops_.at(id.index()); }
  Op& mutable_op(OpId id) { return ops_.at(id.index()); }
  bool contains(TensorId id) const { return id.index() < tensors_.size(); }
  bool contains(OpId id) const { return id.index() < ops_.size(); }

  // Appends a tensor and returns its id (the tensor's `id` field is set).
  TensorId AddTensor(Tensor tensor);
  // Appends an op at the end of program order, sets its id and the
  // `producer` of its outputs. Does not check shapes (see Validate).
  OpId AddOp(Op op);

  // The tensor owning the storage that `id` lives in (follows alias_of).
  TensorId StorageRoot(TensorId id) const;

 private:
  std::vector<Tensor> tensors_;
  std::vector<Op> ops_;
};

// Consumers of every tensor, in program order (an op using a tensor twice
// appears once).
std::vector<std::vector<OpId>> ComputeConsumers(const Graph& graph);

}  // namespace memfit
