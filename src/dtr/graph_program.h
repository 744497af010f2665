// A memfit graph as a DTR program: what the DTR prototype would log if it ran
// the graph eagerly, one op after another in `order`, each op taking its time
// from `op_time_us` (indexed by op id: a device profile's roofline or a
// measured cost table, sim::Simulator::op_latencies()).
//
//   source (parameter, buffer, state, input)  -> constant, pinned
//   op                                        -> a call; an output that is a
//       view of an input is an alias of that argument (no bytes)
//   op writing an input in place (aten.add_,  -> copy-on-write, as DTR's MUTATE:
//   an opaque op aliasing without `view`)        a fresh storage as large as
//       the written one, the old value released after its last reader; a write
//       into a pinned source (an optimizer update) is an alias of it instead,
//       since a pinned storage is never evicted and so never recomputed
//   last reader of a tensor                   -> release (graph outputs are
//       pinned at the end instead)
//
// Inputs that an op writes without an output of its own (BatchNorm's running
// statistics, MutatedInputs) are read: their bytes are pinned sources anyway.
//
// Only storages whose recomputation gives their value back may be evicted
// (Program::storage_kept marks the others): the live runtime's rule
// (python/memfit/dtr, docs/dtr-live.md) — no graph output, nothing written in
// place or produced by an op that writes in place, nothing whose producer reads
// a storage written after it ran (the activations of a training step once the
// optimizer has updated the weights). Without it the simulator recomputed
// values a real run could not (an update from a gradient recomputed after the
// weights changed), and disagreed with memfit.dtr_run
// (python/tests/test_dtr_cpp_vs_python.py).
// Workspace memory is not modelled (DTR has none), so the unconstrained peak
// can sit below the simulator's by an op's scratch bytes.
#pragma once

#include <span>
#include <vector>

#include "dtr/program.h"
#include "ir/graph.h"

namespace memfit::dtr {

Program ProgramFromGraph(const Graph& graph, std::span<const OpId> order, std::span<const double> op_time_us);

}  // namespace memfit::dtr
