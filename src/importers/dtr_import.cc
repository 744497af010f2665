#include "importers/dtr_import.h"

#include <algorithm>
#include <filesystem>
#include <optional>

#include "importers/names.h"
#include "ir/validate.h"
#include "util/error.h"

namespace memfit {
namespace {

// "dtr.<operator>"; a dot inside the operator's name would read as an ATen
// overload separator (ir/builder.h SplitQualifiedType), so it becomes '_'.
std::string OpType(std::string name) {
  std::replace(name.begin(), name.end(), '.', '_');
  return "dtr." + name;
}

// The first line of the part of the trace that LowerTrace replays.
uint32_t FirstReplayedLine(const dtr::Trace& trace, const dtr::LowerOptions& options) {
  if (!options.skip_to_start) return 0;
  for (const dtr::Instr& in : trace.instrs) {
    if (in.kind == dtr::InstrKind::kAnnotate && in.annotation == dtr::Annotation::kStart) return in.line + 1;
  }
  return 0;
}

// The line of the first BACKWARD marker in the replayed part, if any.
std::optional<uint32_t> BackwardLine(const dtr::Trace& trace, uint32_t first_line) {
  for (const dtr::Instr& in : trace.instrs) {
    if (in.line >= first_line && in.kind == dtr::InstrKind::kAnnotate && in.annotation == dtr::Annotation::kBackward) {
      return in.line;
    }
  }
  return std::nullopt;
}

// The instruction at `line` (instrs are in line order).
const dtr::Instr& InstrAt(const dtr::Trace& trace, uint32_t line) {
  const auto it = std::lower_bound(trace.instrs.begin(), trace.instrs.end(), line,
                                   [](const dtr::Instr& in, uint32_t l) { return in.line < l; });
  if (it == trace.instrs.end() || it->line != line) {
    Fail("{}:{}: internal: no instruction at this line", trace.path, line);
  }
  return *it;
}

// Which tensors are still referenced once the program has run: each result
// starts with one reference (its defining name); Get adds one, Release drops one.
std::vector<bool> StillReferenced(const dtr::Program& program) {
  std::vector<int64_t> refs(program.tensors.size(), 0);
  for (const dtr::Step& step : program.steps) {
    switch (step.kind) {
      case dtr::StepKind::kCompute: {
        const dtr::ProgramOp& op = program.ops[step.id];
        for (uint32_t i = 0; i < op.outputs.size; ++i) refs[program.List(op.outputs)[i]] = 1;
        break;
      }
      case dtr::StepKind::kGet: ++refs[step.id]; break;
      case dtr::StepKind::kRelease: --refs[step.id]; break;
      case dtr::StepKind::kPin: break;
    }
  }
  std::vector<bool> live(refs.size());
  for (size_t t = 0; t < refs.size(); ++t) live[t] = refs[t] > 0;
  return live;
}

}  // namespace

Graph ImportDtrTrace(const dtr::Trace& trace, const dtr::LowerOptions& options) {
  const dtr::Program program = dtr::LowerTrace(trace, options);
  const uint32_t first_line = FirstReplayedLine(trace, options);
  const std::optional<uint32_t> backward_line = BackwardLine(trace, first_line);

  Graph graph;
  graph.name = std::filesystem::path(trace.path).stem().string();
  graph.metadata["importer"] = "dtr";
  graph.metadata["importer.file"] = trace.path;
  graph.metadata["importer.time_us"] = "measured TIME of each CALL / MUTATE (ns) / 1000";

  importers_internal::UniqueNames op_names, tensor_names;
  // dtr TensorId -> graph tensor.
  std::vector<TensorId> mapped(program.tensors.size());
  auto new_tensor = [&](const dtr::TensorId t, Shape shape, TensorRole role, std::optional<TensorId> alias_of) {
    Tensor tensor;
    tensor.name = tensor_names.Take(program.Name(t));
    tensor.shape = std::move(shape);
    tensor.dtype = DType::kU8;
    tensor.role = role;
    tensor.alias_of = alias_of;
    mapped[t.index()] = graph.AddTensor(std::move(tensor));
    return mapped[t.index()];
  };

  for (const dtr::ProgramOp& pop : program.ops) {
    const uint32_t* args = program.List(pop.args);
    const uint32_t* outs = program.List(pop.outputs);
    if (pop.constant) {
      const dtr::TensorId t(outs[0]);
      new_tensor(t, {program.tensor(t).size_bytes}, TensorRole::kParameter, std::nullopt);
      continue;
    }
    const bool backward = backward_line && pop.line > *backward_line;
    const TensorRole fresh_role = backward ? TensorRole::kGradient : TensorRole::kActivation;
    const dtr::Instr& instr = InstrAt(trace, pop.line);
    Op op;
    op.name = op_names.Take(program.op_names[pop.name]);
    op.type = OpType(program.op_names[pop.name]);
    op.phase = backward ? Phase::kBackward : Phase::kForward;
    for (uint32_t i = 0; i < pop.args.size; ++i) op.inputs.push_back(mapped[args[i]]);
    for (uint32_t i = 0; i < pop.outputs.size; ++i) {
      const dtr::TensorId t(outs[i]);
      const dtr::ProgramTensor& pt = program.tensor(t);
      // The storage's full size (what the log's MEMORY record says for views
      // too); only an owner's size counts towards memory.
      const Shape shape = {program.storage_bytes[pt.storage.index()]};
      std::optional<TensorId> base;
      if (instr.kind == dtr::InstrKind::kMutate) {
        // DTR's copy-on-write, as the lowering does it: the mutated value is
        // a fresh storage as large as the argument's, and the old value goes
        // once nothing reads it. Modelled as an in-place write instead, the
        // producer of every mutated activation (a convolution before its
        // bias add_, a batch norm before relu_) could never be recomputed,
        // and the static plans would answer a harder problem than DTR's.
      } else if (pt.alias_of_arg) {
        base = op.inputs[*pt.alias_of_arg];
      }
      const TensorRole role = base ? graph.tensor(*base).role : fresh_role;
      op.outputs.push_back(new_tensor(t, shape, role, base));
    }
    // A CALL whose results alias its arguments made views (DTR's ALIAS), not
    // writes: say so, or the optimizer must assume an in-place write
    // (remat/graph_problem.h).
    if (instr.kind == dtr::InstrKind::kMutate) {
      op.attrs["copy_on_write"] = true;
    } else {
      bool aliases = false;
      for (TensorId out : op.outputs) aliases = aliases || graph.tensor(out).alias_of.has_value();
      if (aliases) op.attrs["view"] = true;
    }
    op.attrs["time_us"] = static_cast<double>(pop.compute_ns) / 1000.0;  // sim/cost_model.h kTimeUsAttr
    op.attrs["line"] = static_cast<int64_t>(pop.line);
    graph.AddOp(std::move(op));
  }

  const std::vector<bool> referenced = StillReferenced(program);
  for (size_t t = 0; t < program.tensors.size(); ++t) {
    if (referenced[t] && !program.op(program.tensors[t].op).constant) graph.outputs.push_back(mapped[t]);
  }
  ValidateFrom(graph, trace.path);
  return graph;
}

Graph ImportDtrLog(const std::string& path, const dtr::LowerOptions& options) {
  return ImportDtrTrace(dtr::ReadTrace(path), options);
}

}  // namespace memfit
