#include "dtr/graph_program.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "analysis/storage_table.h"
#include "ir/registry.h"
#include "util/error.h"

namespace memfit::dtr {
namespace {

// How output `k` of `op` relates to storage it did not create.
enum class OutputKind : uint8_t { kFresh, kView, kWrite };

OutputKind Classify(const Graph& graph, const Op& op, size_t k) {
  if (!graph.tensor(op.outputs[k]).alias_of) return OutputKind::kFresh;
  if (const OpSchema* schema = FindOpSchema(op.type)) {
    return schema->inplace ? OutputKind::kWrite : OutputKind::kView;
  }
  return DeclaresView(op) ? OutputKind::kView : OutputKind::kWrite;
}

// The graph storages (by root tensor index) that may be evicted and
// recomputed: those whose recomputation gives their value back. The rule of
// the live runtime (python/memfit/dtr/analysis.py, docs/dtr-live.md), so that
// the simulator and the runtime make the same decisions: sources and graph
// outputs are never evicted; nor is a storage written in place (an op flag
// `inplace` result, or an input it `mutates`), nor one produced by an op that
// writes in place. Otherwise, in order, each storage gets a deadline: the last
// position before which no input storage of its producer (side-effect inputs
// aside) has been written since the producer ran, and every input storage is
// pinned, itself recomputable (its deadline applies) or not yet past its last
// use. A storage is recomputable when its last use is within its deadline.
// Indexed by storage (StorageTable::index_of).
std::vector<uint8_t> RecomputableStorages(const Graph& graph, const StorageTable& table, std::span<const OpId> order,
                                          const std::vector<size_t>& position) {
  constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
  const size_t n = table.num_storages();
  auto root = [&](TensorId t) -> size_t { return table.index_of(t); };
  std::vector<uint8_t> pinned(n, 0);
  for (size_t z = 0; z < n; ++z) pinned[z] = table.storage(z).source || table.storage(z).output;
  std::vector<int64_t> last_use(n, -1);
  for (const Tensor& t : graph.tensors()) {
    if (t.producer) last_use[root(t.id)] = static_cast<int64_t>(position[t.producer->index()]);
  }
  std::vector<std::vector<int64_t>> written_at(n);  // positions writing each root, increasing
  std::vector<uint8_t> writes(graph.num_ops(), 0);
  std::vector<std::vector<size_t>> side(graph.num_ops());
  for (size_t pos = 0; pos < order.size(); ++pos) {
    const Op& op = graph.op(order[pos]);
    for (TensorId in : op.inputs) last_use[root(in)] = std::max<int64_t>(last_use[root(in)], pos);
    const OpFlags flags = ComputeOpFlags(graph, op);
    std::vector<size_t> written;  // roots
    if (flags.inplace) {
      for (TensorId out : op.outputs) {
        if (graph.tensor(out).alias_of) written.push_back(root(out));
      }
    }
    for (size_t k : flags.mutated_inputs) {
      const size_t z = root(op.inputs[k]);
      if (std::find(written.begin(), written.end(), z) == written.end()) side[op.id.index()].push_back(k);
    }
    writes[op.id.index()] = !written.empty();
    for (size_t k : side[op.id.index()]) written.push_back(root(op.inputs[k]));
    std::sort(written.begin(), written.end());
    written.erase(std::unique(written.begin(), written.end()), written.end());
    for (size_t z : written) written_at[z].push_back(static_cast<int64_t>(pos));
  }
  auto first_write_after = [&](size_t z, int64_t pos) {
    auto it = std::upper_bound(written_at[z].begin(), written_at[z].end(), pos);
    return it == written_at[z].end() ? kNever : *it;
  };
  std::vector<uint8_t> recomputable(n, 0);
  std::vector<int64_t> deadline(n, kNever);
  for (OpId id : order) {
    const Op& op = graph.op(id);
    const auto p = static_cast<int64_t>(position[id.index()]);
    for (TensorId out : op.outputs) {
      const size_t r = root(out);
      if (table.root(out) != out || pinned[r] || writes[id.index()] || !written_at[r].empty()) continue;
      int64_t d = kNever;
      for (size_t k = 0; k < op.inputs.size(); ++k) {
        const size_t z = root(op.inputs[k]);
        const auto& skip = side[id.index()];
        if (z == r || std::find(skip.begin(), skip.end(), k) != skip.end()) continue;
        d = std::min(d, first_write_after(z, p));
        if (pinned[z]) continue;
        d = std::min(d, recomputable[z] ? deadline[z] : last_use[z]);
      }
      if (last_use[r] <= d) {
        recomputable[r] = 1;
        deadline[r] = d;
      }
    }
  }
  return recomputable;
}

class Builder {
 public:
  explicit Builder(const Graph& graph) : graph_(graph), current_(graph.num_tensors(), kNone) {
    program_.path = graph.name;
  }

  Program Build(std::span<const OpId> order, std::span<const double> op_time_us) {
    if (order.size() != graph_.num_ops()) {
      Fail("graph '{}': the order has {} ops but the graph has {}", graph_.name, order.size(), graph_.num_ops());
    }
    if (op_time_us.size() != graph_.num_ops()) {
      Fail("graph '{}': {} op times for {} ops", graph_.name, op_time_us.size(), graph_.num_ops());
    }
    // Each op's position in the order, and each tensor's last reader.
    std::vector<size_t> position(graph_.num_ops(), kNone);
    std::vector<size_t> last_read(graph_.num_tensors(), kNone);
    for (size_t pos = 0; pos < order.size(); ++pos) {
      if (!graph_.contains(order[pos]) || position[order[pos].index()] != kNone) {
        Fail("graph '{}': the order lists op {} twice or wrongly", graph_.name, order[pos].index());
      }
      position[order[pos].index()] = pos;
      for (TensorId in : graph_.op(order[pos]).inputs) last_read[in.index()] = pos;
    }
    std::vector<uint8_t> is_output(graph_.num_tensors(), 0);
    for (TensorId out : graph_.outputs) is_output[out.index()] = 1;
    recomputable_ = RecomputableStorages(graph_, table_, order, position);

    constant_name_ = OpName("constant");
    for (const Tensor& t : graph_.tensors()) {
      if (!t.producer && !t.alias_of) AddConstant(t);
    }
    for (const Tensor& t : graph_.tensors()) {
      // A source that is a view of another source shares its storage.
      if (!t.producer && t.alias_of) current_[t.id.index()] = current_[table_.root(t.id).index()];
    }

    std::vector<std::vector<TensorId>> release_after(order.size());
    for (const Tensor& t : graph_.tensors()) {
      if (!t.producer || is_output[t.id.index()]) continue;
      release_after[last_read[t.id.index()] != kNone ? last_read[t.id.index()] : position[t.producer->index()]]
          .push_back(t.id);
    }

    for (size_t pos = 0; pos < order.size(); ++pos) {
      const Op& op = graph_.op(order[pos]);
      const double us = op_time_us[op.id.index()];
      if (!(us >= 0) || !std::isfinite(us)) Fail("op '{}': time {} us is not a non-negative number", op.name, us);
      AddCall(op, static_cast<int64_t>(std::llround(us * 1000.0)), static_cast<uint32_t>(pos + 1));
      for (TensorId t : release_after[pos]) {
        program_.steps.push_back({StepKind::kRelease, static_cast<uint32_t>(current_[t.index()])});
      }
    }
    for (TensorId out : graph_.outputs) {
      const auto t = static_cast<uint32_t>(current_[out.index()]);
      if (!program_.op(program_.tensor(TensorId(t)).op).constant) program_.steps.push_back({StepKind::kPin, t});
    }
    return std::move(program_);
  }

 private:
  static constexpr size_t kNone = static_cast<size_t>(-1);

  uint32_t OpName(const std::string& name) {
    program_.op_names.push_back(name);
    return static_cast<uint32_t>(program_.op_names.size() - 1);
  }

  StorageId NewStorage(int64_t bytes) { return program_.AddStorage(bytes); }

  uint32_t NewTensor(OpId op, uint32_t index, StorageId storage, int64_t bytes, std::optional<uint32_t> alias,
                     const std::string& name) {
    program_.names.push_back(name);
    const NameId name_id(static_cast<uint32_t>(program_.names.size() - 1));
    program_.tensors.push_back({op, index, storage, bytes, alias, name_id});
    return static_cast<uint32_t>(program_.tensors.size() - 1);
  }

  ListRef PushList(const std::vector<uint32_t>& values) { return program_.AddList(values); }

  OpId NewOp(uint32_t name, int64_t compute_ns, bool constant, uint32_t line) {
    return program_.AddOp(name, compute_ns, constant, line);
  }

  void AddConstant(const Tensor& t) {
    const OpId op = NewOp(constant_name_, 0, /*constant=*/true, 0);
    const int64_t bytes = t.size_bytes();
    const uint32_t id = NewTensor(op, 0, NewStorage(bytes), bytes, std::nullopt, t.name);
    program_.ops.back().outputs = PushList({id});
    program_.ops.back().total_bytes = bytes;
    current_[t.id.index()] = id;
    program_.steps.push_back({StepKind::kCompute, op.value});
    program_.steps.push_back({StepKind::kPin, id});
  }

  void AddCall(const Op& op, int64_t compute_ns, uint32_t line) {
    std::vector<uint32_t> args;
    for (TensorId in : op.inputs) {
      if (current_[in.index()] == kNone) Fail("op '{}': input '{}' is not defined before it", op.name, graph_.tensor(in).name);
      args.push_back(static_cast<uint32_t>(current_[in.index()]));
    }
    const OpId id = NewOp(OpName(op.name), compute_ns, /*constant=*/false, line);
    std::vector<uint32_t> outputs;
    int64_t total = 0;
    for (size_t k = 0; k < op.outputs.size(); ++k) {
      const Tensor& out = graph_.tensor(op.outputs[k]);
      OutputKind kind = Classify(graph_, op, k);
      std::optional<uint32_t> arg;
      if (kind != OutputKind::kFresh) {
        // The argument whose storage the output shares.
        const TensorId root = table_.root(out.id);
        for (size_t i = 0; i < op.inputs.size() && !arg; ++i) {
          if (table_.root(op.inputs[i]) == root) arg = static_cast<uint32_t>(i);
        }
        if (!arg) Fail("op '{}': output '{}' aliases storage none of its inputs has", op.name, out.name);
        // A write into a pinned source: an alias (see the header).
        const ProgramTensor& base = program_.tensor(TensorId(args[*arg]));
        if (kind == OutputKind::kWrite && program_.op(base.op).constant) kind = OutputKind::kView;
      }
      StorageId storage;
      int64_t bytes = 0;
      if (kind == OutputKind::kView) {
        storage = program_.tensor(TensorId(args[*arg])).storage;
      } else {
        bytes = kind == OutputKind::kWrite
                    ? program_.storage_bytes[program_.tensor(TensorId(args[*arg])).storage.index()]
                    : out.size_bytes();
        storage = NewStorage(bytes);
        // A write's new storage holds a value written in place: never recomputable.
        program_.storage_kept.resize(program_.storage_bytes.size(), 0);
        program_.storage_kept[storage.index()] =
            kind == OutputKind::kWrite || !recomputable_[table_.index_of(out.id)];
      }
      total += bytes;
      const uint32_t t = NewTensor(id, static_cast<uint32_t>(k), storage, bytes,
                                   kind == OutputKind::kView ? arg : std::nullopt, out.name);
      outputs.push_back(t);
      current_[out.id.index()] = t;
    }
    ProgramOp& pop = program_.ops[id.index()];
    pop.args = PushList(args);
    pop.outputs = PushList(outputs);
    pop.total_bytes = total;
    program_.steps.push_back({StepKind::kCompute, id.value});
  }

  const Graph& graph_;
  const StorageTable table_{graph_};
  Program program_;
  uint32_t constant_name_ = 0;
  std::vector<size_t> current_;  // graph tensor -> program tensor holding its value
  std::vector<uint8_t> recomputable_;  // by storage (table_.index_of): RecomputableStorages
};

}  // namespace

Program ProgramFromGraph(const Graph& graph, std::span<const OpId> order, std::span<const double> op_time_us) {
  return Builder(graph).Build(order, op_time_us);
}

}  // namespace memfit::dtr
