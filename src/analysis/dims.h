// Graph-level dimensions: the first step of fission.
//
// Every op's registry dimension links (ir/registry.h: output dimension d of
// output o is indexed like dimension d' of input i) tie one tensor's axis to
// another's. Following the links through the whole graph groups the axes of
// all tensors into graph-level dimensions: the batch that runs from the
// images through every activation to the loss, the sequence of a
// transformer, the channels of a convolution's output. A fission splits one
// such dimension into parts, so it is the unit fission works on.
//
// The grouping is a union-find over (tensor, axis) pairs with one rule: a
// group never holds two axes of one tensor (mm(x, x^T) links its output's
// rows and columns to x's rows: merging them would make the two axes of the
// output one dimension, which no split can honour). Such a link is refused
// and recorded as a conflict; the axes stay in separate groups.
//
// Where a dimension is reduced (the registry's ReducedDim: mm's contraction,
// a weight gradient's sum over the batch, a loss's mean) is recorded per
// group: splitting a group across a reduction means accumulating partial
// results there. Ops without links (opaque ops, and ops whose links the
// registry does not know) are barriers: no group passes through them.
//
// What the registry links today: element-wise ops (with broadcasting), views
// and reshapes where an axis maps to one axis, matmuls (rows and columns),
// convolution and pooling along batch and channels (not yet H/W: a tile
// needs a halo), normalization and softmax along every axis but the
// normalized ones, losses along the batch (reduced), embeddings. A reshape
// that merges two axes (BERT's [B, H, S, D] -> [B*H, S, D] before bmm) ends
// both groups there.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace memfit {

// One axis of one tensor.
struct TensorAxis {
  TensorId tensor;
  int axis = 0;
  bool operator==(const TensorAxis&) const = default;
};

struct ReductionSite {
  OpId op;
  TensorAxis input;  // the reduced axis of one of the op's inputs
};

// A graph-level dimension: the axes that links tie together.
struct Dimension {
  int id = 0;
  // The axis that names the dimension: of a graph input (role input) when
  // the group holds one, else of a parameter, else the lowest tensor id.
  TensorAxis source;
  std::string name;  // "images[0]": the source tensor's name and axis
  // A guess from the source: "batch" (axis 0 of an input, or a concatenation
  // of batches along it), "sequence" (axis
  // 1 of a 2-D integer input: token ids), "channels" / "height" / "width"
  // (axes 1-3 of a 4-D input a convolution reads); empty otherwise.
  std::string kind;
  int64_t length = 0;                 // the extent every member shares
  std::vector<TensorAxis> members;    // by tensor id, then axis
  std::vector<OpId> ops;              // ops with a link inside the group, in id order
  std::vector<ReductionSite> reduced; // where the dimension is summed away
};

struct RefusedLink {
  OpId op;
  TensorAxis output, input;  // the link that would have merged two axes of one tensor
};

struct DimensionGraph {
  std::vector<Dimension> dims;  // groups of two or more axes, longest reach first
  // By tensor id, by axis: the index into `dims`, or -1 for an axis no link
  // reaches beyond its own tensor (a dimension of one tensor).
  std::vector<std::vector<int>> dim_of;
  std::vector<OpId> barriers;       // ops with inputs and outputs but no links or reductions
  std::vector<RefusedLink> refused;
};

DimensionGraph ComputeDimensions(const Graph& graph);

// The id of the dimension named `name` (names survive a transform of the
// graph: a dimension is found again by its name after a split).
std::optional<int> FindDimension(const DimensionGraph& dims, std::string_view name);

// One line per dimension, then the barriers and refused links.
std::string FormatDimensions(const Graph& graph, const DimensionGraph& dims);

}  // namespace memfit
