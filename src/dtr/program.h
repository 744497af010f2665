// A DTR trace lowered to a replayable program of operator calls and
// reference-count steps, with the meaning simrd (the DTR paper's simulator,
// simrd/parse/parse.py) gives to each log instruction:
//
//   CONSTANT x; MEMORY x m   -> op "constant" (no args, 0 ns, m bytes); Compute, Pin(x)
//   CALL f(args) -> results  -> op f; each result is followed by MEMORY and ALIAS
//                               lines; an alias result (ALIAS k >= 0) is a view of
//                               argument k and owns no bytes; Compute
//   MUTATE f(args) [i...]    -> op f whose outputs are fresh copies of args[i]
//                               (copy-on-write, full storage size); Compute, then the
//                               names args[i] point to the copies: Release(old) each
//   COPY dst <- src          -> dst names src's tensor; Get(src)
//   COPY_FROM dst <- src     -> Release(old dst), dst names src's tensor; Get(src)
//   RELEASE x                -> Release(x)
//   ANNOTATE START           -> replay starts after the first START (if any)
// At the end, every tensor still referenced is an output: Pin(t) in order of
// first definition of its name (it must be resident when the step ends).
//
// Lowering checks the sequence and throws memfit::Error "<path>:<line>: ..."
// for an undefined name, a redefinition, a missing MEMORY/ALIAS line, an alias
// or MUTATE index out of range, a COPY of a released tensor, or a RELEASE of a
// tensor with no references left.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dtr/ids.h"
#include "dtr/trace.h"

namespace memfit::dtr {

struct ProgramOp {
  uint32_t name = 0;          // index into Program::op_names ("constant" for constants)
  int64_t compute_ns = 0;
  bool constant = false;
  uint32_t line = 0;          // line of the defining instruction
  ListRef args;               // TensorIds, in Program::lists
  ListRef outputs;            // TensorIds, in Program::lists
  int64_t total_bytes = 0;    // bytes of the outputs that own their storage
};

struct ProgramTensor {
  OpId op;
  uint32_t index = 0;                   // which output of `op`
  StorageId storage;                    // own storage, or the viewed argument's
  int64_t size_bytes = 0;               // bytes it allocates (0 for a view)
  std::optional<uint32_t> alias_of_arg; // view of argument k of `op`
  NameId name;
};

enum class StepKind : uint8_t {
  kCompute,  // run op `id` for the first time
  kGet,      // one more reference to tensor `id`
  kPin,      // tensor `id` must be resident from now on (constants, outputs)
  kRelease,  // one reference to tensor `id` dropped
};

struct Step {
  StepKind kind;
  uint32_t id;  // OpId for kCompute, TensorId otherwise
};

struct Program {
  std::string path;
  std::vector<std::string> names;     // NameId -> tensor name (from the trace)
  std::vector<std::string> op_names;  // ProgramOp::name -> operator name
  std::vector<ProgramOp> ops;
  std::vector<ProgramTensor> tensors;
  std::vector<int64_t> storage_bytes;  // StorageId -> bytes
  // StorageId -> 1 when the heuristic must never evict the storage, because
  // recomputing it would not give its value back (ProgramFromGraph: a storage
  // written in place, or one whose producer reads a storage written after it
  // ran, such as an activation read after the optimizer updated the weights
  // it was computed from). It is still freed on its last release, and once
  // released it is evictable like any other. Empty: every storage may be
  // evicted (a DTR log).
  std::vector<uint8_t> storage_kept;
  std::vector<Step> steps;
  std::vector<uint32_t> lists;
  int64_t total_compute_ns = 0;  // sum of all ops' time: the unconstrained compute

  const uint32_t* List(ListRef ref) const { return lists.data() + ref.begin; }
  // Builders (used by LowerTrace and ProgramFromGraph).
  StorageId AddStorage(int64_t bytes);
  OpId AddOp(uint32_t name, int64_t compute_ns, bool constant, uint32_t line);  // counts compute_ns
  ListRef AddList(const std::vector<uint32_t>& values);
  const ProgramOp& op(OpId id) const { return ops[id.index()]; }
  const ProgramTensor& tensor(TensorId id) const { return tensors[id.index()]; }
  const std::string& Name(TensorId id) const { return names[tensor(id).name.index()]; }
};

struct LowerOptions {
  // Replay only what follows the first ANNOTATE START (the measured step);
  // a trace without START is replayed from its first line.
  bool skip_to_start = true;
  // RELEASE of a name never defined is ignored (simrd's default) instead of
  // being an error.
  bool ignore_undefined_release = false;
};

Program LowerTrace(const Trace& trace, const LowerOptions& options = {});

// ReadTrace + LowerTrace.
Program LoadProgram(const std::string& path, const LowerOptions& options = {});

}  // namespace memfit::dtr
