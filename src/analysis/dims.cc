#include "analysis/dims.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <utility>
#include <variant>

#include "ir/registry.h"

namespace memfit {
namespace {

// Union-find over every (tensor, axis), numbered tensor by tensor. Each root
// keeps the axes of its group as (tensor, axis) pairs sorted by tensor, so
// that a merge can refuse to put two axes of one tensor together.
class AxisSets {
 public:
  explicit AxisSets(const Graph& graph) : first_(graph.num_tensors() + 1, 0) {
    for (const Tensor& t : graph.tensors()) first_[t.id.index() + 1] = first_[t.id.index()] + t.shape.size();
    parent_.resize(first_.back());
    std::iota(parent_.begin(), parent_.end(), size_t{0});
    members_.resize(parent_.size());
    for (const Tensor& t : graph.tensors()) {
      for (size_t a = 0; a < t.shape.size(); ++a) members_[Index({t.id, static_cast<int>(a)})] = {{t.id, int(a)}};
    }
  }

  size_t Index(TensorAxis x) const { return first_[x.tensor.index()] + static_cast<size_t>(x.axis); }
  size_t Find(size_t i) {
    while (parent_[i] != i) i = parent_[i] = parent_[parent_[i]];
    return i;
  }
  size_t Find(TensorAxis x) { return Find(Index(x)); }

  // Merges the groups of a and b unless that would hold two axes of one
  // tensor; false when refused.
  bool Unite(TensorAxis a, TensorAxis b) {
    size_t ra = Find(a), rb = Find(b);
    if (ra == rb) return true;
    std::vector<TensorAxis>& ma = members_[ra];
    std::vector<TensorAxis>& mb = members_[rb];
    // Both lists are sorted by tensor: one merge pass finds a shared tensor.
    for (size_t i = 0, j = 0; i < ma.size() && j < mb.size();) {
      if (ma[i].tensor == mb[j].tensor) return false;
      ma[i].tensor < mb[j].tensor ? ++i : ++j;
    }
    if (ma.size() < mb.size()) std::swap(ra, rb);
    std::vector<TensorAxis> merged;
    merged.reserve(members_[ra].size() + members_[rb].size());
    std::merge(members_[ra].begin(), members_[ra].end(), members_[rb].begin(), members_[rb].end(),
               std::back_inserter(merged),
               [](const TensorAxis& x, const TensorAxis& y) { return x.tensor < y.tensor; });
    members_[ra] = std::move(merged);
    members_[rb].clear();
    members_[rb].shrink_to_fit();
    parent_[rb] = ra;
    return true;
  }

  const std::vector<TensorAxis>& Members(size_t root) const { return members_[root]; }
  size_t size() const { return parent_.size(); }

 private:
  std::vector<size_t> first_;  // by tensor id: the number of its first axis
  std::vector<size_t> parent_;
  std::vector<std::vector<TensorAxis>> members_;  // at roots only
};

// Layouts are guessed only where they are unambiguous: axis 0 of an input
// is its batch, axis 1 of 2-D integer input (token ids) its sequence, and
// the axes of an NCHW input that a convolution reads its channels, height
// and width.
std::string KindOf(const Graph& graph, const Tensor& t, int axis) {
  if (t.role != TensorRole::kInput || t.alias_of) return "";  // a view of an input is laid out otherwise
  if (axis == 0) return "batch";
  if (t.shape.size() == 2 && !IsFloatingPoint(t.dtype) && axis == 1) return "sequence";
  if (t.shape.size() == 4) {
    const bool convolved = std::any_of(graph.ops().begin(), graph.ops().end(), [&](const Op& op) {
      return op.type == "aten.convolution" && !op.inputs.empty() && op.inputs[0] == t.id;
    });
    if (convolved) return axis == 1 ? "channels" : axis == 2 ? "height" : "width";
  }
  return "";
}

// The member that names a group: an input's axis, else a parameter's, else
// the lowest tensor id (members are sorted by tensor id).
TensorAxis SourceOf(const Graph& graph, const std::vector<TensorAxis>& members) {
  for (const TensorRole role : {TensorRole::kInput, TensorRole::kParameter}) {
    for (const TensorAxis& m : members) {
      if (graph.tensor(m.tensor).role == role) return m;
    }
  }
  return members.front();
}

// A concatenation of batches along their batch axis is a batch too
// (SimCLR's two views, `torch.cat([x1, x2])`): the pieces' groups cannot
// hold it (its extent is their sum), so its group is named by the cat.
// Chains of concatenations pass the kind on, in program order.
void KindsOfConcatenations(const Graph& graph, DimensionGraph& dims) {
  for (const Op& op : graph.ops()) {
    if (op.type != "aten.cat" || op.outputs.size() != 1 || op.inputs.empty()) continue;
    const std::vector<int>& out_axes = dims.dim_of[op.outputs[0].index()];
    const auto attr = op.attrs.find("dim");
    const int64_t* given = attr == op.attrs.end() ? nullptr : std::get_if<int64_t>(&attr->second);
    const int64_t rank = static_cast<int64_t>(out_axes.size());
    const int64_t axis = given ? (*given < 0 ? *given + rank : *given) : 0;
    if (axis < 0 || axis >= rank || out_axes[axis] < 0 || !dims.dims[out_axes[axis]].kind.empty()) continue;
    const bool batches = std::all_of(op.inputs.begin(), op.inputs.end(), [&](TensorId in) {
      const std::vector<int>& axes = dims.dim_of[in.index()];
      if (axis >= static_cast<int64_t>(axes.size())) return false;
      // A piece's batch axis that no link carries further (an input read
      // only by the cat) is a dimension of one tensor.
      const std::string kind = axes[axis] >= 0 ? dims.dims[axes[axis]].kind
                                               : KindOf(graph, graph.tensor(in), static_cast<int>(axis));
      return kind == "batch";
    });
    if (batches) dims.dims[out_axes[axis]].kind = "batch";
  }
}

}  // namespace

std::optional<int> FindDimension(const DimensionGraph& dims, std::string_view name) {
  for (const Dimension& d : dims.dims) {
    if (d.name == name) return d.id;
  }
  return std::nullopt;
}

DimensionGraph ComputeDimensions(const Graph& graph) {
  AxisSets sets(graph);
  DimensionGraph result;
  std::vector<DimLinks> links(graph.num_ops());
  for (const Op& op : graph.ops()) {
    links[op.id.index()] = ComputeDimLinks(graph, op);
    const DimLinks& l = links[op.id.index()];
    if (l.links.empty() && l.reduced.empty() && !op.inputs.empty() && !op.outputs.empty()) {
      result.barriers.push_back(op.id);
    }
    for (const DimLink& link : l.links) {
      const TensorAxis out{op.outputs.at(link.output), link.output_dim};
      const TensorAxis in{op.inputs.at(link.input), link.input_dim};
      // Linked axes share their extent; a link that does not (none in the
      // registry today) is refused like one that would fold a tensor.
      const bool same_extent =
          graph.tensor(out.tensor).shape.at(out.axis) == graph.tensor(in.tensor).shape.at(in.axis);
      if (!same_extent || !sets.Unite(out, in)) result.refused.push_back({op.id, out, in});
    }
    // A scatter's rows and the indices that place them (kInto, paired) are
    // one axis: a part of one must meet the same part of the other, so the
    // indices are split with the rows (a GNN's destinations, which only its
    // index_add reads).
    for (const ReducedDim& r : l.reduced) {
      if (r.combine != PartialCombine::kInto || r.pair < 0) continue;
      for (const ReducedDim& other : l.reduced) {
        if (&other == &r || other.pair != r.pair || other.combine != PartialCombine::kInto) continue;
        const TensorAxis a{op.inputs.at(static_cast<size_t>(r.input)), r.dim};
        const TensorAxis b{op.inputs.at(static_cast<size_t>(other.input)), other.dim};
        if (graph.tensor(a.tensor).shape.at(a.axis) == graph.tensor(b.tensor).shape.at(b.axis)) sets.Unite(a, b);
      }
    }
  }

  // An input's axis that a reshape merges at once (a video model's
  // x.flatten(0, 1) of [B, T, C, H, W]) is alone in its group, yet fission
  // carries it through the merge (OuterLink): it is a dimension too.
  std::vector<bool> merged_input(sets.size(), false);
  for (const Op& op : graph.ops()) {
    for (const OuterLink& k : links[op.id.index()].outer) {
      for (const TensorAxis x : {TensorAxis{op.inputs.at(k.input), k.input_dim},
                                 TensorAxis{op.outputs.at(k.output), k.output_dim}}) {
        const Tensor& t = graph.tensor(x.tensor);
        if (t.role == TensorRole::kInput && t.shape.at(x.axis) > 1) merged_input[sets.Find(x)] = true;
      }
    }
  }
  // Groups of two or more axes become dimensions.
  std::vector<int> dim_of_root(sets.size(), -1);
  for (const Tensor& t : graph.tensors()) {
    for (size_t a = 0; a < t.shape.size(); ++a) {
      const size_t root = sets.Find(TensorAxis{t.id, static_cast<int>(a)});
      if ((sets.Members(root).size() < 2 && !merged_input[root]) || dim_of_root[root] >= 0) continue;
      dim_of_root[root] = static_cast<int>(result.dims.size());
      Dimension d;
      d.members = sets.Members(root);
      std::sort(d.members.begin(), d.members.end(), [](const TensorAxis& x, const TensorAxis& y) {
        return std::pair(x.tensor, x.axis) < std::pair(y.tensor, y.axis);
      });
      d.source = SourceOf(graph, d.members);
      const Tensor& source = graph.tensor(d.source.tensor);
      d.name = fmt::format("{}[{}]", source.name, d.source.axis);
      d.kind = KindOf(graph, source, d.source.axis);
      d.length = source.shape.at(d.source.axis);
      result.dims.push_back(std::move(d));
    }
  }
  auto dim_of = [&](TensorAxis x) { return dim_of_root[sets.Find(x)]; };

  // The ops each dimension passes through, and where it is reduced.
  for (const Op& op : graph.ops()) {
    const DimLinks& l = links[op.id.index()];
    std::vector<int> seen;
    for (const DimLink& link : l.links) {
      const int d = dim_of({op.outputs.at(link.output), link.output_dim});
      if (d >= 0 && std::find(seen.begin(), seen.end(), d) == seen.end()) seen.push_back(d);
    }
    for (int d : seen) result.dims[d].ops.push_back(op.id);
    for (const ReducedDim& r : l.reduced) {
      const TensorAxis in{op.inputs.at(r.input), r.dim};
      const int d = dim_of(in);
      if (d < 0) continue;
      result.dims[d].reduced.push_back({op.id, in});
      // The rows a scatter adds into others (a GNN's edges, `edge_index`'s
      // axis 1: read as a token sequence) split like a batch.
      if (r.combine == PartialCombine::kInto) result.dims[d].kind = "batch";
    }
  }

  // Longest reach first (the batch of a training step spans nearly
  // everything), ties by source tensor and axis.
  std::vector<int> order(result.dims.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    const Dimension &x = result.dims[a], &y = result.dims[b];
    if (x.members.size() != y.members.size()) return x.members.size() > y.members.size();
    return std::pair(x.source.tensor, x.source.axis) < std::pair(y.source.tensor, y.source.axis);
  });
  std::vector<Dimension> sorted;
  std::vector<int> new_index(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    new_index[order[i]] = static_cast<int>(i);
    sorted.push_back(std::move(result.dims[order[i]]));
    sorted.back().id = static_cast<int>(i);
  }
  result.dims = std::move(sorted);
  result.dim_of.resize(graph.num_tensors());
  for (const Tensor& t : graph.tensors()) {
    std::vector<int>& axes = result.dim_of[t.id.index()];
    axes.resize(t.shape.size());
    for (size_t a = 0; a < t.shape.size(); ++a) {
      const int d = dim_of({t.id, static_cast<int>(a)});
      axes[a] = d < 0 ? -1 : new_index[d];
    }
  }
  KindsOfConcatenations(graph, result);
  return result;
}

std::string FormatDimensions(const Graph& graph, const DimensionGraph& dims) {
  std::string out = fmt::format("{:>4}  {:<28} {:<9} {:>10} {:>8} {:>6} {:>8}\n", "dim", "name", "kind", "length",
                                "tensors", "ops", "reduced");
  for (const Dimension& d : dims.dims) {
    size_t tensors = 0;
    for (size_t i = 0; i < d.members.size(); ++i) tensors += i == 0 || d.members[i].tensor != d.members[i - 1].tensor;
    std::string reduced;
    if (!d.reduced.empty()) {
      const Op& first = graph.op(d.reduced.front().op);
      reduced = fmt::format("{} (first: {} '{}')", d.reduced.size(), first.type, first.name);
    }
    out += fmt::format("{:>4}  {:<28} {:<9} {:>10} {:>8} {:>6} {}\n", d.id, d.name, d.kind.empty() ? "-" : d.kind,
                       d.length, tensors, d.ops.size(), reduced.empty() ? std::string("       -") : "  " + reduced);
  }
  if (!dims.barriers.empty()) {
    const Op& first = graph.op(dims.barriers.front());
    out += fmt::format("barriers: {} ops without dimension links (first: {} '{}')\n", dims.barriers.size(), first.type,
                       first.name);
  }
  if (!dims.refused.empty()) {
    const RefusedLink& r = dims.refused.front();
    out += fmt::format("refused: {} links would have made two axes of one tensor one dimension (first: op '{}', "
                       "'{}'[{}] with '{}'[{}])\n",
                       dims.refused.size(), graph.op(r.op).name, graph.tensor(r.output.tensor).name, r.output.axis,
                       graph.tensor(r.input.tensor).name, r.input.axis);
  }
  return out;
}

}  // namespace memfit
