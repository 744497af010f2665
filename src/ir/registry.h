// The op registry: what memfit knows about each ATen operator.
//
// For every registered op type ("aten.mm") a schema gives
//   - its tensor arguments by ATen schema name, in order ("weight?" optional,
//     "tensors[]" a list),
//   - shape and dtype inference from the input types and attributes,
//   - cost: FLOPs, bytes moved, scratch workspace bytes,
//   - aliasing: which outputs are views of which inputs, whether output 0 is
//     input 0 written in place, which inputs are mutated without an output,
//   - whether it draws random numbers (it cannot be recomputed blindly),
//   - dimension links: which output dimension derives from which input
//     dimension, and which input dimensions are reduced away (fission uses
//     them to split a sub-graph along batch / sequence / heads).
// Ops that are not registered are opaque: accepted with their declared
// shapes, a default cost, no aliasing, no dimension links.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ir/graph.h"

namespace memfit {

struct TensorType {
  Shape shape;
  DType dtype = DType::kF32;
  bool operator==(const TensorType&) const = default;
};

// One call site of an op, as its rules see it: attributes and input types,
// with accessors that fail with a message naming the op and the field.
class OpCall {
 public:
  OpCall(const Op& op, std::vector<TensorType> inputs, const std::vector<std::string_view>* tensor_args);

  const Op& op() const { return op_; }
  size_t num_inputs() const { return inputs_.size(); }
  const TensorType& input(size_t i) const;
  // The tensor argument called `name` in the ATen schema; nullopt when it is
  // an optional argument passed as None.
  std::optional<TensorType> arg(std::string_view name) const;
  // Index into inputs() of argument `name`, if present.
  std::optional<size_t> arg_index(std::string_view name) const;

  bool has_attr(std::string_view name) const;
  bool is_none(std::string_view name) const;  // absent or None
  int64_t int_attr(std::string_view name) const;
  int64_t int_attr(std::string_view name, int64_t fallback) const;
  double double_attr(std::string_view name, double fallback) const;
  bool bool_attr(std::string_view name, bool fallback) const;
  std::vector<int64_t> ints_attr(std::string_view name) const;
  std::vector<int64_t> ints_attr(std::string_view name, std::vector<int64_t> fallback) const;
  std::vector<bool> bools_attr(std::string_view name, std::vector<bool> fallback) const;
  std::optional<DType> dtype_attr(std::string_view name) const;
  std::string string_attr(std::string_view name, std::string fallback) const;

  // Entries of the `Tensor?[]` argument `name` whose inputs start at input
  // `first` and number `count`: true for a tensor, false for None. The
  // attribute `name` (a 0/1 list, one per entry) says which are present when
  // some are None (x[:, idx] traces as index(x, [None, idx])); without it
  // every entry is a tensor.
  std::vector<bool> list_entries(std::string_view name, size_t count) const;

  // The output types the graph declares for this op (empty while an op is
  // being built). Rules of ops whose output extent depends on tensor values
  // (a boolean mask index) take that extent from here.
  const std::vector<TensorType>& declared_outputs() const { return declared_; }
  void set_declared_outputs(std::vector<TensorType> declared) { declared_ = std::move(declared); }
  // Whether input i holds 0, 1, ..., n-1 (made by aten.arange from 0 by 1,
  // as the graph says): an index by it pairs each row with itself
  // (`h[torch.arange(B), last]`, a sequence classifier's last token).
  // Known where the call has its graph (ComputeDimLinks).
  bool iota(size_t i) const;
  void set_graph(const Graph* graph) { graph_ = graph; }

  // Normalizes a possibly negative dimension index against `rank`. A 0-d
  // tensor accepts 0 and -1, as in PyTorch, and the result (0) then names no
  // entry of a per-dimension table: index those through dim_mask.
  int64_t dim(int64_t d, size_t rank, std::string_view field) const;
  // As dim(), for ops that need the dimension to exist (it indexes the
  // shape): a 0-d tensor is refused.
  int64_t axis(int64_t d, size_t rank, std::string_view field) const;
  // One flag per dimension of a rank-`rank` tensor: true for those `dims`
  // names (each checked as dim() does). For a 0-d tensor: empty.
  std::vector<bool> dim_mask(const std::vector<int64_t>& dims, size_t rank, std::string_view field) const;

  // Throws Error "op 'name' (aten.x): <message>".
  [[noreturn]] void Fail(const std::string& message) const;

 private:
  const AttrValue* find(std::string_view name) const;
  const Op& op_;
  std::vector<TensorType> inputs_;
  const std::vector<std::string_view>* tensor_args_;
  std::vector<TensorType> declared_;
  const Graph* graph_ = nullptr;
};

// Output dimension `output_dim` of output `output` has the extent of, and
// is indexed like, dimension `input_dim` of input `input`.
struct DimLink {
  int output = 0;
  int output_dim = 0;
  int input = 0;
  int input_dim = 0;
  bool operator==(const DimLink&) const = default;
};
// How the results of an op run on parts of a reduced dimension make the
// result of the whole: what a fission (transform/fission.h) may do with it.
enum class PartialCombine : uint8_t {
  kWhole,  // the whole dimension is needed at once (a mean, batch statistics,
           // a max, a contraction plus a bias): a fission must not split it
  kSum,    // the parts' results add up to the whole (a contraction, a weight
           // gradient summed over the batch, aten.sum)
  kInto,   // each part adds its rows into the result of the part before, the
           // first part into self: a scatter that accumulates (index_add,
           // index_put with accumulate), in the order the whole adds them
};

// Dimension `dim` of input `input` is summed (or otherwise reduced) away.
// Entries with the same `pair` (>= 0) are one index summed over several
// inputs (an embedding gradient's grad_output axis d and its indices' axis
// d): a part of one must meet the same part of the others, so a fission
// splits them together or not at all. With no output axis to link them,
// nothing else keeps a split from taking one input's axis 0 and another's
// axis 1 for the same dimension.
struct ReducedDim {
  int input = 0;
  int dim = 0;
  PartialCombine combine = PartialCombine::kWhole;
  int pair = -1;
  bool operator==(const ReducedDim&) const = default;
};
// A reshape that merges axes ([B, S, H] -> [B*S, H]) or splits one
// ([B*S, H] -> [B, S, H]): the outer factor of the merged axis is indexed
// like the other axis. With `merge`, output dimension `output_dim` is input
// dimension `input_dim` times `inner` (index i * inner + j); without it,
// input dimension `input_dim` is output dimension `output_dim` times `inner`.
// A part of the outer axis is a contiguous part of the merged one, which is
// what lets a fission follow the batch through BERT's reshapes.
struct OuterLink {
  int output = 0;
  int output_dim = 0;
  int input = 0;
  int input_dim = 0;
  int64_t inner = 1;
  bool merge = true;
  bool operator==(const OuterLink&) const = default;
};
struct DimLinks {
  std::vector<DimLink> links;
  std::vector<ReducedDim> reduced;
  std::vector<OuterLink> outer;
  bool row_major_reshape = false;
};

struct OpCost {
  double flops = 0;
  int64_t bytes_read = 0;
  int64_t bytes_written = 0;
  int64_t workspace_bytes = 0;  // scratch memory live while the op runs
};

struct OpSchema {
  std::string type;  // "aten.convolution"
  // Tensor arguments in ATen order; "name?" optional, "name[]" a list
  // (then the only argument).
  std::vector<std::string_view> tensor_args;
  std::function<std::vector<TensorType>(const OpCall&)> infer;
  // FLOPs; defaults to one per output element.
  std::function<double(const OpCall&, const std::vector<TensorType>&)> flops;
  // Bytes read; defaults to the size of every input (an embedding reads only
  // the rows it gathers).
  std::function<int64_t(const OpCall&, const std::vector<TensorType>&)> bytes_read;
  // Scratch bytes; defaults to none.
  std::function<int64_t(const OpCall&, const std::vector<TensorType>&)> workspace_bytes;
  // Dimension links; defaults to none (a fission barrier).
  std::function<DimLinks(const OpCall&, const std::vector<TensorType>&)> dim_links;
  // {output, input}: the output is a view sharing the input's storage;
  // output -1 means every output.
  std::vector<std::pair<int, int>> views;
  // Output 0 is input 0 updated in place (same storage, new value).
  bool inplace = false;
  // Tensor arguments (by ATen name) written in place that have no output of
  // their own (BatchNorm's running statistics).
  std::vector<std::string_view> mutated_args;
  // When set, mutated_args are written only where it holds (BatchNorm in
  // training; in evaluation it only reads its running statistics).
  std::function<bool(const OpCall&)> mutates_when;
  // Draws random numbers (dropout, bernoulli).
  bool random = false;
  // Returns uninitialized memory (empty, empty_like): allocates, reads and
  // writes no bytes and does no arithmetic, so it costs only its launch.
  bool uninitialized = false;
  // An element-wise kernel (ATen's TensorIterator): reads strided views as
  // they are. Other kernels may not (PyTorch 1.13's _softmax_backward_data
  // reads a strided `output` with its grad's strides, a wrong result), so a
  // transform that hands them a view makes it contiguous first.
  bool pointwise = false;

  bool is_view() const { return !views.empty(); }
  size_t min_inputs() const;
  std::optional<size_t> max_inputs() const;  // nullopt: any number
};

// The input whose storage output `output` shares: a view's base, or input 0
// for the result of an in-place op. nullopt when it owns new storage.
std::optional<size_t> AliasedInput(const OpSchema& schema, size_t output);

// For each of `tensor_args`, its index among an op's `num_inputs` inputs,
// or nullopt when absent: an optional argument is absent when its attribute
// is None, or when the inputs left are only enough for the required
// arguments after it. A list argument takes every input left but those the
// required arguments after it need (index_put(self, indices[], values)); its
// index is that of its first input.
std::vector<std::optional<size_t>> ResolveTensorArgs(const std::vector<std::string_view>& tensor_args, const Op& op,
                                                     size_t num_inputs);

// The schema of `type` ("aten.mm"); nullptr for opaque ops.
const OpSchema* FindOpSchema(std::string_view type);
// Every registered type, sorted.
std::vector<std::string> RegisteredOpTypes();

// Infers the output types of `op` from its inputs in `graph`; throws Error
// naming the op on bad arity, attributes or shapes. Requires a schema.
std::vector<TensorType> InferOutputTypes(const OpSchema& schema, const Graph& graph, const Op& op);

// Cost of one op of `graph`; opaque ops get the default (one FLOP per output
// element, bytes of all inputs and outputs).
OpCost ComputeOpCost(const Graph& graph, const Op& op);
// Dimension links of one op (empty for opaque ops).
DimLinks ComputeDimLinks(const Graph& graph, const Op& op);
// Whether `t` is aten.arange's result from 0 by 1 (1-d: 0, 1, ..., n-1).
bool IsIota(const Graph& graph, TensorId t);
// Indices into op.inputs of the inputs the op writes in place without an
// output of their own.
std::vector<size_t> MutatedInputs(const Graph& graph, const Op& op);
// True when the op draws random numbers.
bool IsRandomOp(std::string_view type);
// True when an op the registry does not know says, with the attribute
// `view: true`, that its outputs aliasing an input are views of it (not
// in-place writes, the safe reading otherwise).
bool DeclaresView(const Op& op);

// What an op does besides computing fresh outputs, as every C++ analysis reads
// it from the registry. The graph JSON (version 2) writes these per op, so that
// a reader without the registry (the Python side on a machine without memfit's
// C++ libraries) knows them; the registry stays their only source.
struct OpFlags {
  bool random = false;   // draws random numbers (IsRandomOp): a rerun must replay the RNG
  bool inplace = false;  // an output aliasing an input is that input written in place (an opaque op
                         // without `view: true` that aliases is read this way too)
  bool view = false;     // outputs aliasing an input are views of it (a view schema, or `view: true`)
  std::vector<size_t> mutated_inputs;  // MutatedInputs: inputs written without an output of their own
  bool empty() const { return !random && !inplace && !view && mutated_inputs.empty(); }
  bool operator==(const OpFlags&) const = default;
};
OpFlags ComputeOpFlags(const Graph& graph, const Op& op);

}  // namespace memfit
