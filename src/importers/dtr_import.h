// Import of a DTR operator log (dtr/trace.h) as a static memfit graph that
// keeps each operator's measured time.
//
// The log is parsed and lowered with the DTR module's own parser and lowering
// (dtr/program.h), which check the instruction sequence; the graph is then
// read off the lowered program:
//   CONSTANT x          -> parameter tensor u8[MEMORY] (no op)
//   CALL f(args) -> rs  -> opaque op "dtr.f" with attribute time_us = TIME/1000;
//                          a result owning storage is u8[MEMORY]; a result with
//                          ALIAS k is a view: alias_of argument k (no new memory)
//   MUTATE f(args) [i]  -> opaque op "dtr.f" whose output i is args[i] written in
//                          place: alias_of args[i] (as aten.add_'s output aliases
//                          its input 0), so it allocates nothing
//   COPY, COPY_FROM     -> no op: one more name for the same tensor
//   RELEASE             -> no op: liveness frees a storage after its last use
//   ANNOTATE BACKWARD   -> later ops are in the backward phase
// Tensors still referenced at the end of the log (never released) are the
// graph outputs. Fresh results are activations before BACKWARD and gradients
// after it; views and in-place results take the role of what they alias.
//
// Differences from the DTR simulator's replay (dtr/simulator.h): it frees a
// storage when its last reference is released, the graph when it is last
// used; and it replays MUTATE as a copy into fresh storage, the graph as an
// in-place write. Both can only lower the graph's program-order peak. One
// difference raises it: the graph counts a parameter over the whole step, the
// replay a constant from its CONSTANT line on; DTR's logs define the weights
// first and only scalars later (248 bytes in all). On the shared traces the
// graph's peak is within 0.1% below the replay's (docs/importers.md).
#pragma once

#include <string>

#include "dtr/program.h"
#include "dtr/trace.h"
#include "ir/graph.h"

namespace memfit {

// The graph of a parsed trace. Throws memfit::Error "<path>:<line>: ..." for
// a trace that does not lower (dtr/program.h). The result passes Validate.
Graph ImportDtrTrace(const dtr::Trace& trace, const dtr::LowerOptions& options = {});

// Reads, parses and imports the log at `path`.
Graph ImportDtrLog(const std::string& path, const dtr::LowerOptions& options = {});

}  // namespace memfit
