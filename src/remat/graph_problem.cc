#include "remat/graph_problem.h"

#include <algorithm>

#include "analysis/liveness.h"
#include "analysis/storage_table.h"
#include "ir/registry.h"
#include "util/error.h"

namespace memfit::remat {
namespace {

// How an op touches storage it did not create.
struct OpAccess {
  bool is_view = false;         // every aliasing output is a view of an input
  bool writes_through = false;  // an output is an input updated in place
  bool random = false;
};

OpAccess Classify(const Graph& graph, const Op& op) {
  OpAccess access;
  const OpSchema* schema = FindOpSchema(op.type);
  bool aliases = false;
  for (TensorId out : op.outputs) aliases = aliases || graph.tensor(out).alias_of.has_value();
  if (schema) {
    access.random = schema->random;
    access.writes_through = schema->inplace;
    access.is_view = aliases && schema->is_view() && !schema->inplace && schema->mutated_args.empty();
  } else {
    // An opaque op whose output shares an input's storage: assume it writes
    // it (the safe reading) unless it says it is a view.
    const bool says_view = DeclaresView(op);
    access.is_view = aliases && says_view;
    access.writes_through = aliases && !says_view;
  }
  return access;
}

}  // namespace

GraphProblem BuildGraphProblem(const Graph& graph, const std::vector<OpId>& order,
                               const std::vector<double>& op_latency_us, const GraphProblemOptions& options) {
  if (order.size() != graph.num_ops()) Fail("the order has {} ops but the graph has {}", order.size(), graph.num_ops());
  if (op_latency_us.size() != graph.num_ops()) Fail("{} op latencies for {} ops", op_latency_us.size(), graph.num_ops());
  const size_t num_tensors = graph.num_tensors();
  const StorageTable table(graph);
  std::vector<uint32_t> root(num_tensors);
  for (const Tensor& t : graph.tensors()) root[t.id.index()] = table.root(t.id).value;

  std::vector<OpAccess> access(graph.num_ops());
  // Storages written in place by an op other than their creator: through an
  // in-place result, or as a mutated argument (a BatchNorm's running
  // statistics: an InstanceNorm's are repeated per sample, a fresh storage).
  std::vector<uint8_t> written(num_tensors, 0);
  for (const Op& op : graph.ops()) {
    access[op.id.index()] = Classify(graph, op);
    if (access[op.id.index()].writes_through) {
      for (TensorId out : op.outputs) {
        if (graph.tensor(out).alias_of) written[root[out.index()]] = 1;
      }
    }
    for (size_t i : MutatedInputs(graph, op)) written[root[op.inputs[i].index()]] = 1;
  }

  GraphProblem gp;
  Problem& problem = gp.problem;
  problem.name = graph.name;
  gp.node_of_op.assign(graph.num_ops(), kNone);
  gp.owner_of_storage.assign(num_tensors, kNone);

  auto new_node = [&](std::string name) {
    problem.nodes.emplace_back().name = std::move(name);
    gp.node_ops.emplace_back();
    gp.node_storages.emplace_back();
    gp.node_reads.emplace_back();
    return static_cast<uint32_t>(problem.nodes.size() - 1);
  };

  // Sources: persistent ones are fixed bytes; the other storages resident at
  // start (data inputs some op reads or writes) are nodes.
  for (const StorageInfo& s : table.storages()) {
    if (!s.resident_at_start()) continue;
    if (s.persistent) {
      problem.fixed_bytes += s.size_bytes;
    } else {
      const uint32_t v = new_node(graph.tensor(s.root).name);
      problem.nodes[v].bytes = s.size_bytes;
      problem.nodes[v].recomputable = false;
      gp.node_storages[v].push_back(s.root);
      gp.owner_of_storage[s.root.index()] = v;
    }
  }

  // Ops in order; views of a node's own outputs join it.
  for (OpId id : order) {
    if (!graph.contains(id) || gp.node_of_op[id.index()] != kNone) Fail("the order lists op {} twice or wrongly", id.index());
    const Op& op = graph.op(id);
    const OpAccess& a = access[id.index()];
    uint32_t v = kNone;
    if (a.is_view && !op.inputs.empty()) {
      const Tensor& base = graph.tensor(op.inputs[0]);
      const uint32_t owner = gp.owner_of_storage[root[base.id.index()]];
      if (base.producer && owner != kNone && gp.node_of_op[base.producer->index()] == owner &&
          !written[root[base.id.index()]]) {
        v = owner;
      }
    }
    const bool new_one = v == kNone;
    if (new_one) {
      v = new_node(op.name);
      problem.nodes[v].backward = op.phase != Phase::kForward;
    }
    gp.node_of_op[id.index()] = v;
    gp.node_ops[v].push_back(id);
    Node& node = problem.nodes[v];
    node.cost_us += op_latency_us[id.index()];
    node.workspace_bytes = std::max(node.workspace_bytes, OpWorkspaceBytes(graph, op, options.workspace_bytes));
    if (a.writes_through || (a.random && !options.recompute_random)) node.recomputable = false;
    if (new_one && a.is_view) node.recomputable = false;  // a view of storage it does not own
    for (TensorId out : op.outputs) {
      const Tensor& t = graph.tensor(out);
      if (t.alias_of) continue;
      gp.node_storages[v].push_back(out);
      gp.owner_of_storage[out.index()] = v;
      node.bytes += t.size_bytes();
      if (written[out.index()]) node.recomputable = false;
    }
  }

  // Edges: the owners of the storages a node reads, and the producers of the
  // tensors it reads (a view or an in-place result made by another node).
  const size_t n = problem.nodes.size();
  std::vector<uint32_t> mark(n, kNone);
  std::vector<uint32_t> seen_storage(num_tensors, kNone);
  for (uint32_t v = 0; v < n; ++v) {
    Node& node = problem.nodes[v];
    mark[v] = v;
    auto add_input = [&](uint32_t u) {
      if (u == kNone || mark[u] == v) return;
      if (u > v) Fail("op order: node '{}' reads '{}', which comes later", node.name, problem.nodes[u].name);
      mark[u] = v;
      node.inputs.push_back(u);
    };
    for (OpId id : gp.node_ops[v]) {
      for (TensorId in : graph.op(id).inputs) {
        const uint32_t r = root[in.index()];
        const uint32_t owner = gp.owner_of_storage[r];
        if (owner != v && seen_storage[r] != v) {
          seen_storage[r] = v;
          gp.node_reads[v].push_back(TensorId(r));
        }
        add_input(owner);
        if (const auto& producer = graph.tensor(in).producer) add_input(gp.node_of_op[producer->index()]);
      }
    }
    std::sort(node.inputs.begin(), node.inputs.end());
  }

  // Parts: one per owned storage; each reader's mask of the parts it reads.
  std::vector<uint32_t> part_of(num_tensors, kNone);
  for (uint32_t v = 0; v < n; ++v) {
    Node& node = problem.nodes[v];
    for (size_t k = 0; k < gp.node_storages[v].size(); ++k) {
      const TensorId s = gp.node_storages[v][k];
      node.parts.push_back({graph.tensor(s).size_bytes(), table.of(s).output});
      part_of[s.index()] = static_cast<uint32_t>(k);
    }
  }
  for (uint32_t v = 0; v < n; ++v) {
    Node& node = problem.nodes[v];
    node.input_parts.assign(node.inputs.size(), 0);
    for (TensorId r : gp.node_reads[v]) {
      const uint32_t owner = gp.owner_of_storage[r.index()];
      if (owner == kNone) continue;
      const auto at = std::lower_bound(node.inputs.begin(), node.inputs.end(), owner);
      const uint32_t k = part_of[r.index()];
      node.input_parts[at - node.inputs.begin()] |= k < 64 ? uint64_t{1} << k : ~uint64_t{0};
    }
  }

  // A storage written in place at stage w: a node reading it before w may
  // only be recomputed up to stage w (before the write runs).
  std::vector<std::vector<uint32_t>> write_stages(num_tensors);
  for (uint32_t v = 0; v < n; ++v) {
    for (OpId id : gp.node_ops[v]) {
      const Op& op = graph.op(id);
      if (access[id.index()].writes_through) {
        for (TensorId out : op.outputs) {
          if (graph.tensor(out).alias_of) write_stages[root[out.index()]].push_back(v);
        }
      }
      for (size_t i : MutatedInputs(graph, op)) write_stages[root[op.inputs[i].index()]].push_back(v);
    }
  }
  for (uint32_t v = 0; v < n; ++v) {
    for (TensorId r : gp.node_reads[v]) {
      for (uint32_t w : write_stages[r.index()]) {
        if (w > v) problem.nodes[v].recompute_until = std::min(problem.nodes[v].recompute_until, w);
      }
    }
  }
  for (const StorageInfo& s : table.storages()) {
    const uint32_t owner = gp.owner_of_storage[s.root.index()];
    if (s.output && owner != kNone) problem.nodes[owner].keep_to_end = true;
  }
  return gp;
}

}  // namespace memfit::remat
