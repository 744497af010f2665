// DTR operator logs: the JSON-lines format written by the DTR prototype
// (uwsampl/dtr-prototype) and read by its simulator, simrd.
//
// One JSON object per line, field "INSTRUCTION" selects the kind:
//   CONSTANT  {NAME}                          a tensor that exists before the step
//   MEMORY    {NAME, MEMORY}                  byte size of the storage behind NAME
//   ALIAS     {NAME, ALIAS}                   -1: own storage; k: view of the k-th arg
//   CALL      {NAME, ARGS[], RESULT[], TIME}  an operator call, TIME in ns
//   MUTATE    {NAME, ARGS[], MUTATE[], TIME}  an in-place call on ARGS[MUTATE[i]]
//   COPY      {DST, SRC}                      a new reference DST to tensor SRC
//   COPY_FROM {DST, SRC}                      DST now refers to SRC's tensor
//   RELEASE   {NAME}                          a reference dropped
//   ANNOTATE  {ANNOTATION: START | BACKWARD}  markers
// Numbers (MEMORY, TIME, ALIAS, MUTATE entries) may be JSON numbers or decimal
// strings, as the prototype writes them.
//
// ParseTrace only checks that each line is well formed; the meaning of the
// sequence (defined names, MEMORY/ALIAS after CALL, ...) is checked when the
// trace is lowered to a Program (dtr/program.h). Names are interned to dense
// NameIds in order of first appearance.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dtr/ids.h"

namespace memfit::dtr {

enum class InstrKind : uint8_t {
  kConstant,
  kMemory,
  kAlias,
  kCall,
  kMutate,
  kCopy,
  kCopyFrom,
  kRelease,
  kAnnotate,
};
std::string_view ToString(InstrKind kind);

enum class Annotation : uint8_t { kStart, kBackward };

// A contiguous run of entries in Trace::lists.
struct ListRef {
  uint32_t begin = 0;
  uint32_t size = 0;
};

// One parsed line. Which fields are meaningful depends on `kind`:
//   CONSTANT, RELEASE: name.   MEMORY: name, value (bytes).
//   ALIAS: name, value (-1 or argument index).
//   CALL: op_name, args (NameIds), results (NameIds), value (ns).
//   MUTATE: op_name, args (NameIds), results (argument indices), value (ns).
//   COPY, COPY_FROM: name (DST), src (SRC).   ANNOTATE: annotation.
struct Instr {
  InstrKind kind = InstrKind::kAnnotate;
  Annotation annotation = Annotation::kStart;
  uint32_t line = 0;  // 1-based line in the file
  NameId name;
  NameId src;
  uint32_t op_name = 0;  // index into Trace::op_names (CALL, MUTATE)
  int64_t value = 0;
  ListRef args;
  ListRef results;
};

struct Trace {
  std::string path;                    // for messages
  std::vector<std::string> names;      // NameId -> tensor name
  std::vector<std::string> op_names;   // operator names (CALL/MUTATE NAME)
  std::vector<Instr> instrs;
  std::vector<uint32_t> lists;         // storage behind Instr::args/results

  const std::string& Name(NameId id) const { return names[id.index()]; }
  const uint32_t* List(ListRef ref) const { return lists.data() + ref.begin; }
};

// Parses the text of a log. `path` is used in error messages only. Throws
// memfit::Error "<path>:<line>: ..." on bad JSON, an unknown instruction, a
// missing or mistyped field, or a negative MEMORY / TIME.
Trace ParseTrace(std::string_view text, const std::string& path);

// Reads and parses the file at `path`.
Trace ReadTrace(const std::string& path);

}  // namespace memfit::dtr
