#include "ir/validate.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <unordered_set>

#include "ir/registry.h"
#include "util/error.h"

namespace memfit {
namespace {

std::string Describe(const Graph& g, TensorId id) {
  return g.contains(id) ? fmt::format("tensor {} (t{})", Quote(g.tensor(id).name), id.value) : fmt::format("t{}", id.value);
}

// "op 'fc1.mm' (aten.mm)".
std::string Describe(const Op& op) { return fmt::format("op {} ({})", Quote(op.name), op.qualified_type()); }

// "op 'fc1.mm'".
std::string Name(const Op& op) { return fmt::format("op {}", Quote(op.name));
}

void CheckTensors(const Graph& g) {
  std::unordered_set<std::string_view> names;
  for (size_t i = 0; i < g.num_tensors(); ++i) {
    const Tensor& t = g.tensors()[i];
    if (t.id.index() != i) Fail("tensor {} has id {} at position {}", Quote(t.name), t.id.value, i);
    if (t.name.empty()) Fail("tensor t{} has an empty name", i);
    if (!names.insert(t.name).second) Fail("tensor name {} is used twice", Quote(t.name));
    for (int64_t d : t.shape) {
      if (d < 0) Fail("{} has a negative dimension in shape {}", Describe(g, t.id), ShapeToString(t.shape));
    }
    const auto numel = CheckedNumel(t.shape);
    if (!numel || *numel > kMaxTensorBytes / DTypeBytes(t.dtype)) {
      Fail("{} is too large: shape {} of {} exceeds {} bytes", Describe(g, t.id), ShapeToString(t.shape),
           ToString(t.dtype), kMaxTensorBytes);
    }
    if (!t.strides.empty() && t.strides.size() != t.shape.size()) {
      Fail("{} has {} strides for rank {}", Describe(g, t.id), t.strides.size(), t.shape.size());
    }
    if (t.storage_offset < 0) Fail("{} has a negative storage_offset", Describe(g, t.id));
    if (!t.values.empty()) {
      if (IsFloatingPoint(t.dtype) || t.alias_of || t.producer) {
        Fail("{} has values: only an integer or bool source that is not a view may", Describe(g, t.id));
      }
      if (static_cast<int64_t>(t.values.size()) != *numel) {
        Fail("{} has {} values for {} elements", Describe(g, t.id), t.values.size(), *numel);
      }
      const auto [low, high] = t.dtype == DType::kBool  ? std::pair<int64_t, int64_t>{0, 1}
                               : t.dtype == DType::kU8  ? std::pair<int64_t, int64_t>{0, 255}
                               : t.dtype == DType::kI8  ? std::pair<int64_t, int64_t>{-128, 127}
                               : t.dtype == DType::kI16 ? std::pair<int64_t, int64_t>{-32768, 32767}
                               : t.dtype == DType::kI32 ? std::pair<int64_t, int64_t>{INT32_MIN, INT32_MAX}
                                                        : std::pair<int64_t, int64_t>{INT64_MIN, INT64_MAX};
      for (int64_t v : t.values) {
        if (v < low || v > high) Fail("{} has the value {}, out of range for {}", Describe(g, t.id), v, ToString(t.dtype));
      }
    }
    if (t.alias_of) {
      if (!g.contains(*t.alias_of)) Fail("{} aliases t{}, which does not exist", Describe(g, t.id), t.alias_of->value);
      if (*t.alias_of == t.id) Fail("{} aliases itself", Describe(g, t.id));
    }
  }
  // Alias chains must end at an owner: walk each chain with a step bound.
  for (const Tensor& t : g.tensors()) {
    TensorId cur = t.id;
    for (size_t hops = 0; g.tensor(cur).alias_of; ++hops) {
      if (hops > g.num_tensors()) Fail("{} is on an alias cycle", Describe(g, t.id));
      cur = *g.tensor(cur).alias_of;
    }
  }
  // Storages total at most kMaxGraphBytes, so that no sum of live bytes
  // (liveness, planners, simulators) overflows.
  int64_t total_bytes = 0;
  for (const Tensor& t : g.tensors()) {
    if (t.alias_of) continue;
    if (t.size_bytes() > kMaxGraphBytes - total_bytes) {
      Fail("the tensors' storages add up to more than {} bytes (at {})", kMaxGraphBytes, Describe(g, t.id));
    }
    total_bytes += t.size_bytes();
  }
  // A view names an earlier tensor as its base (as builders and importers
  // add them), so that every pass can resolve storages in one sweep.
  for (const Tensor& t : g.tensors()) {
    if (t.alias_of && *t.alias_of > t.id) {
      Fail("{} aliases {}, which comes after it (a view's base must be an earlier tensor)", Describe(g, t.id),
           Describe(g, *t.alias_of));
    }
  }
}

// Storage sharing agrees with who produces what: a produced tensor that
// aliases (a view, an in-place result) shares the storage of one of its op's
// inputs, and a tensor that exists before the step shares only storage that
// also exists before it.
void CheckAliases(const Graph& g, const std::vector<std::optional<OpId>>& producer) {
  for (const Tensor& t : g.tensors()) {
    if (!t.alias_of) continue;
    const TensorId root = g.StorageRoot(t.id);
    if (!producer[t.id.index()]) {
      if (producer[root.index()]) {
        Fail("{} exists before the step (no op produces it) but aliases {}, whose storage op {} produces",
             Describe(g, t.id), Describe(g, *t.alias_of), Quote(g.op(*producer[root.index()]).name));
      }
      continue;
    }
    const Op& op = g.op(*producer[t.id.index()]);
    const bool shared = std::any_of(op.inputs.begin(), op.inputs.end(),
                                    [&](TensorId in) { return g.StorageRoot(in) == root; });
    if (!shared) {
      Fail("{}: output {} aliases {}, whose storage none of the op's inputs has", Describe(op), Describe(g, t.id),
           Describe(g, *t.alias_of));
    }
  }
}

// Reports a cycle through `start` if one exists among ops, else nullopt.
std::optional<std::string> FindCycle(const Graph& g, const std::vector<std::optional<OpId>>& producer, OpId start) {
  // Iterative DFS over "op depends on producer of its input".
  std::vector<int> state(g.num_ops(), 0);  // 0 new, 1 on stack, 2 done
  std::vector<std::pair<OpId, size_t>> stack = {{start, 0}};
  state[start.index()] = 1;
  while (!stack.empty()) {
    auto& [op, next] = stack.back();
    const Op& o = g.op(op);
    if (next == o.inputs.size()) {
      state[op.index()] = 2;
      stack.pop_back();
      continue;
    }
    const TensorId in = o.inputs[next++];
    if (!g.contains(in) || !producer[in.index()]) continue;
    const OpId dep = *producer[in.index()];
    if (state[dep.index()] == 1) {
      std::string path;
      bool on = false;
      for (auto& [id, unused] : stack) {
        on = on || id == dep;
        if (on) path += Quote(g.op(id).name) + " -> ";
      }
      return path + Quote(g.op(dep).name);
    }
    if (state[dep.index()] == 0) {
      state[dep.index()] = 1;
      stack.push_back({dep, 0});
    }
  }
  return std::nullopt;
}

void CheckOps(const Graph& g, const ValidateOptions& options) {
  std::vector<std::optional<OpId>> producer(g.num_tensors());
  std::unordered_set<std::string_view> names;
  for (size_t i = 0; i < g.num_ops(); ++i) {
    const Op& op = g.ops()[i];
    if (op.id.index() != i) Fail("{} has id {} at position {}", Name(op), op.id.value, i);
    if (op.name.empty()) Fail("op {} has an empty name", i);
    if (!names.insert(op.name).second) Fail("op name {} is used twice", Quote(op.name));
    if (op.type.empty()) Fail("{} has an empty type", Name(op));
    for (TensorId in : op.inputs) {
      if (!g.contains(in)) Fail("{} reads t{}, which does not exist", Describe(op), in.value);
    }
    for (TensorId out : op.outputs) {
      if (!g.contains(out)) Fail("{} writes t{}, which does not exist", Describe(op), out.value);
      if (producer[out.index()]) {
        Fail("{} is produced twice, by {} and {}", Describe(g, out), Quote(g.op(*producer[out.index()]).name), Quote(op.name));
      }
      if (IsSourceRole(g.tensor(out).role) && !g.tensor(out).alias_of) {
        Fail("{} produces {}, whose role {} means it exists before the step", Describe(op),
             Describe(g, out), ToString(g.tensor(out).role));
      }
      producer[out.index()] = op.id;
    }
  }
  for (const Tensor& t : g.tensors()) {
    if (t.producer != producer[t.id.index()]) {
      Fail("{} records producer {} but is produced by {}", Describe(g, t.id),
           t.producer ? g.op(*t.producer).name : "none",
           producer[t.id.index()] ? g.op(*producer[t.id.index()]).name : "no op");
    }
    if (!producer[t.id.index()] && !IsSourceRole(t.role)) {
      Fail("{} has role {} but no op produces it", Describe(g, t.id), ToString(t.role));
    }
  }
  CheckAliases(g, producer);
  // Program order must be a topological order.
  for (const Op& op : g.ops()) {
    for (TensorId in : op.inputs) {
      const auto& p = producer[in.index()];
      if (p && *p >= op.id) {
        if (auto cycle = FindCycle(g, producer, op.id)) Fail("the graph has a cycle: {}", *cycle);
        Fail("{} reads {} before its producer {} runs (ops must be listed in program order)", Name(op),
             Describe(g, in), Quote(g.op(*p).name));
      }
    }
  }
  for (const Op& op : g.ops()) {
    const OpSchema* schema = FindOpSchema(op.type);
    if (!schema) continue;  // opaque: declared shapes are trusted
    if (options.check_shapes) {
      const std::vector<TensorType> inferred = InferOutputTypes(*schema, g, op);
      if (inferred.size() != op.outputs.size()) {
        Fail("{} declares {} outputs, the registry infers {}", Describe(op),
             op.outputs.size(), inferred.size());
      }
      for (size_t i = 0; i < inferred.size(); ++i) {
        const Tensor& t = g.tensor(op.outputs[i]);
        if (t.shape != inferred[i].shape || t.dtype != inferred[i].dtype) {
          Fail("{}: output {} {} is declared {}{}, the registry infers {}{}", Describe(op), i,
               Describe(g, t.id), ToString(t.dtype), ShapeToString(t.shape), ToString(inferred[i].dtype),
               ShapeToString(inferred[i].shape));
        }
      }
    }
    for (size_t i = 0; i < op.outputs.size(); ++i) {
      auto in = AliasedInput(*schema, i);
      if (!in) {
        if (g.tensor(op.outputs[i]).alias_of) {
          Fail("{}: output {} has alias_of, but {} gives it storage of its own", Describe(op), Describe(g, op.outputs[i]),
               op.qualified_type());
        }
        continue;
      }
      if (*in >= op.inputs.size()) continue;
      if (g.StorageRoot(op.outputs[i]) != g.StorageRoot(op.inputs[*in])) {
        Fail("{}: output {} must share the storage of input {} ({}), but alias_of says otherwise", Describe(op),
             Describe(g, op.outputs[i]), *in, Describe(g, op.inputs[*in]));
      }
    }
  }
}

}  // namespace

void Validate(const Graph& graph, const ValidateOptions& options) {
  CheckTensors(graph);
  CheckOps(graph, options);
  for (TensorId out : graph.outputs) {
    if (!graph.contains(out)) Fail("graph output t{} does not exist", out.value);
  }
}

void ValidateFrom(const Graph& graph, std::string_view source, const ValidateOptions& options) {
  try {
    Validate(graph, options);
  } catch (const Error& e) {
    Fail("{}: {}", source, e.what());
  }
}

}  // namespace memfit
