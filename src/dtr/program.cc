#include "dtr/program.h"

#include "util/error.h"

namespace memfit::dtr {
namespace {

class Lowerer {
 public:
  Lowerer(const Trace& trace, const LowerOptions& options)
      : trace_(trace),
        options_(options),
        binding_(trace.names.size()),
        ever_bound_(trace.names.size(), false) {
    program_.path = trace.path;
    program_.names = trace.names;
    program_.op_names = trace.op_names;
    constant_name_ = static_cast<uint32_t>(program_.op_names.size());
    program_.op_names.push_back("constant");
  }

  Program Run() {
    const std::vector<Instr>& instrs = trace_.instrs;
    size_t pc = 0;
    if (options_.skip_to_start) {
      for (size_t i = 0; i < instrs.size(); ++i) {
        if (instrs[i].kind == InstrKind::kAnnotate && instrs[i].annotation == Annotation::kStart) {
          pc = i + 1;
          break;
        }
      }
    }
    while (pc < instrs.size()) pc = Lower(pc);

    // Outputs: tensors still referenced at the end, in order of first binding.
    for (NameId name : binding_order_) {
      TensorId t = *binding_[name.index()];
      if (refs_[t.index()] > 0) program_.steps.push_back({StepKind::kPin, t.value});
    }
    return std::move(program_);
  }

 private:
  template <typename... Args>
  [[noreturn]] void Error(const Instr& at, fmt::format_string<Args...> format, Args&&... args) {
    Fail("{}:{}: {}: {}", trace_.path, at.line, ToString(at.kind),
         fmt::format(format, std::forward<Args>(args)...));
  }

  // The tensors bound to the arguments of a CALL or MUTATE.
  std::vector<uint32_t> LookupArgs(const Instr& in) {
    const uint32_t* arg_names = trace_.List(in.args);
    std::vector<uint32_t> args;
    for (uint32_t i = 0; i < in.args.size; ++i) args.push_back(Lookup(in, NameId(arg_names[i]), "argument").value);
    return args;
  }

  TensorId Lookup(const Instr& at, NameId name, const char* role) {
    const std::optional<TensorId>& t = binding_[name.index()];
    if (!t) Error(at, "{} '{}' is not a defined tensor", role, trace_.Name(name));
    return *t;
  }

  void Bind(NameId name, TensorId t) {
    if (!ever_bound_[name.index()]) {
      ever_bound_[name.index()] = true;
      binding_order_.push_back(name);
    }
    binding_[name.index()] = t;
  }

  void CheckUnbound(const Instr& at, NameId name, const char* role) {
    if (binding_[name.index()]) Error(at, "{} '{}' is already defined", role, trace_.Name(name));
  }

  const Instr& Expect(size_t pc, const Instr& call, InstrKind kind, NameId name) {
    if (pc >= trace_.instrs.size()) {
      Error(call, "expected {} for '{}' after line {}, found end of file", ToString(kind),
            trace_.Name(name), call.line);
    }
    const Instr& next = trace_.instrs[pc];
    if (next.kind != kind || next.name != name) {
      Fail("{}:{}: expected {} for '{}' (result of line {}), found {}", trace_.path, next.line,
           ToString(kind), trace_.Name(name), call.line, ToString(next.kind));
    }
    return next;
  }

  StorageId NewStorage(int64_t bytes) { return program_.AddStorage(bytes); }

  TensorId NewTensor(OpId op, uint32_t index, StorageId storage, int64_t bytes,
                     std::optional<uint32_t> alias, NameId name) {
    program_.tensors.push_back({op, index, storage, bytes, alias, name});
    refs_.push_back(1);
    return TensorId(static_cast<uint32_t>(program_.tensors.size() - 1));
  }

  ListRef PushList(const std::vector<uint32_t>& values) { return program_.AddList(values); }

  OpId NewOp(uint32_t name, int64_t compute_ns, bool constant, uint32_t line) {
    return program_.AddOp(name, compute_ns, constant, line);
  }

  void Release(const Instr& at, TensorId t) {
    if (refs_[t.index()] <= 0) {
      Error(at, "tensor '{}' has no references left", trace_.Name(program_.tensor(t).name));
    }
    --refs_[t.index()];
    program_.steps.push_back({StepKind::kRelease, t.value});
  }

  void Get(const Instr& at, TensorId t, NameId via) {
    if (refs_[t.index()] <= 0) {
      Error(at, "'{}' refers to a released tensor", trace_.Name(via));
    }
    ++refs_[t.index()];
    program_.steps.push_back({StepKind::kGet, t.value});
  }

  // Lowers the instruction at `pc` (and the lines that belong to it); returns
  // the index of the next instruction.
  size_t Lower(size_t pc) {
    const Instr& in = trace_.instrs[pc];
    switch (in.kind) {
      case InstrKind::kConstant: {
        CheckUnbound(in, in.name, "constant");
        const Instr& mem = Expect(pc + 1, in, InstrKind::kMemory, in.name);
        OpId op = NewOp(constant_name_, 0, /*constant=*/true, in.line);
        TensorId t = NewTensor(op, 0, NewStorage(mem.value), mem.value, std::nullopt, in.name);
        program_.ops.back().outputs = PushList({t.value});
        program_.ops.back().total_bytes = mem.value;
        Bind(in.name, t);
        program_.steps.push_back({StepKind::kCompute, op.value});
        program_.steps.push_back({StepKind::kPin, t.value});
        return pc + 2;
      }
      case InstrKind::kCall: {
        const uint32_t* result_names = trace_.List(in.results);
        const std::vector<uint32_t> args = LookupArgs(in);
        OpId op = NewOp(in.op_name, in.value, /*constant=*/false, in.line);
        std::vector<uint32_t> outputs;
        int64_t total = 0;
        size_t next = pc + 1;
        for (uint32_t i = 0; i < in.results.size; ++i) {
          NameId name(result_names[i]);
          CheckUnbound(in, name, "result");
          for (uint32_t k = 0; k < i; ++k) {
            if (result_names[k] == name.value) Error(in, "result '{}' appears twice", trace_.Name(name));
          }
          const Instr& mem = Expect(next++, in, InstrKind::kMemory, name);
          const Instr& alias = Expect(next++, in, InstrKind::kAlias, name);
          std::optional<uint32_t> alias_of;
          StorageId storage;
          int64_t bytes = 0;
          if (alias.value >= 0) {
            if (alias.value >= static_cast<int64_t>(args.size())) {
              Fail("{}:{}: ALIAS: '{}' aliases argument {} but the call at line {} has {} argument(s)",
                   trace_.path, alias.line, trace_.Name(name), alias.value, in.line, args.size());
            }
            alias_of = static_cast<uint32_t>(alias.value);
            storage = program_.tensor(TensorId(args[*alias_of])).storage;
          } else {
            bytes = mem.value;
            storage = NewStorage(bytes);
          }
          total += bytes;
          outputs.push_back(NewTensor(op, i, storage, bytes, alias_of, name).value);
        }
        ProgramOp& pop = program_.ops[op.index()];
        pop.args = PushList(args);
        pop.outputs = PushList(outputs);
        pop.total_bytes = total;
        for (uint32_t i = 0; i < in.results.size; ++i) Bind(NameId(result_names[i]), TensorId(outputs[i]));
        program_.steps.push_back({StepKind::kCompute, op.value});
        return next;
      }
      case InstrKind::kMutate: {
        const uint32_t* arg_names = trace_.List(in.args);
        const uint32_t* mutated = trace_.List(in.results);
        const std::vector<uint32_t> args = LookupArgs(in);
        OpId op = NewOp(in.op_name, in.value, /*constant=*/false, in.line);
        std::vector<uint32_t> outputs;
        int64_t total = 0;
        for (uint32_t i = 0; i < in.results.size; ++i) {
          if (mutated[i] >= args.size()) {
            Error(in, "MUTATE index {} is out of range ({} argument(s))", mutated[i], args.size());
          }
          // The mutated value is a fresh storage as large as the whole storage
          // behind the argument (a view's mutation copies its base).
          const ProgramTensor& base = program_.tensor(TensorId(args[mutated[i]]));
          int64_t bytes = program_.storage_bytes[base.storage.index()];
          total += bytes;
          outputs.push_back(NewTensor(op, i, NewStorage(bytes), bytes, std::nullopt,
                                      NameId(arg_names[mutated[i]])).value);
        }
        ProgramOp& pop = program_.ops[op.index()];
        pop.args = PushList(args);
        pop.outputs = PushList(outputs);
        pop.total_bytes = total;
        program_.steps.push_back({StepKind::kCompute, op.value});
        for (uint32_t i = 0; i < in.results.size; ++i) {
          NameId name(arg_names[mutated[i]]);
          TensorId old = *binding_[name.index()];
          Bind(name, TensorId(outputs[i]));
          Release(in, old);
        }
        return pc + 1;
      }
      case InstrKind::kCopy: {
        TensorId src = Lookup(in, in.src, "SRC");
        CheckUnbound(in, in.name, "DST");
        Bind(in.name, src);
        Get(in, src, in.src);
        return pc + 1;
      }
      case InstrKind::kCopyFrom: {
        TensorId old = Lookup(in, in.name, "DST");
        TensorId src = Lookup(in, in.src, "SRC");
        Bind(in.name, src);
        Release(in, old);
        Get(in, src, in.src);
        return pc + 1;
      }
      case InstrKind::kRelease: {
        const std::optional<TensorId>& t = binding_[in.name.index()];
        if (!t) {
          if (options_.ignore_undefined_release) return pc + 1;
          Error(in, "'{}' is not a defined tensor", trace_.Name(in.name));
        }
        Release(in, *t);
        return pc + 1;
      }
      case InstrKind::kAnnotate:
        return pc + 1;
      case InstrKind::kMemory:
      case InstrKind::kAlias:
        Error(in, "'{}' does not follow a CONSTANT or CALL that defines it", trace_.Name(in.name));
    }
    return pc + 1;
  }

  const Trace& trace_;
  const LowerOptions& options_;
  Program program_;
  uint32_t constant_name_ = 0;
  std::vector<std::optional<TensorId>> binding_;  // NameId -> tensor it names now
  std::vector<bool> ever_bound_;
  std::vector<NameId> binding_order_;             // names in order of first binding
  std::vector<int32_t> refs_;                     // TensorId -> live references
};

}  // namespace

StorageId Program::AddStorage(int64_t bytes) {
  storage_bytes.push_back(bytes);
  return StorageId(static_cast<uint32_t>(storage_bytes.size() - 1));
}

OpId Program::AddOp(uint32_t name, int64_t compute_ns, bool constant, uint32_t line) {
  ProgramOp op;
  op.name = name;
  op.compute_ns = compute_ns;
  op.constant = constant;
  op.line = line;
  ops.push_back(op);
  total_compute_ns += compute_ns;
  return OpId(static_cast<uint32_t>(ops.size() - 1));
}

ListRef Program::AddList(const std::vector<uint32_t>& values) {
  ListRef ref{static_cast<uint32_t>(lists.size()), static_cast<uint32_t>(values.size())};
  lists.insert(lists.end(), values.begin(), values.end());
  return ref;
}

Program LowerTrace(const Trace& trace, const LowerOptions& options) {
  return Lowerer(trace, options).Run();
}

Program LoadProgram(const std::string& path, const LowerOptions& options) {
  return LowerTrace(ReadTrace(path), options);
}

}  // namespace memfit::dtr
