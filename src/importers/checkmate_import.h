// Import of the rematerialization literature's graphs (Checkmate, Moccasin)
// as memfit graphs.
//
// Both are networkx node-link JSON: {"graph": {...}, "nodes": [...],
// "links": [...]}. Each node is one operator whose single result has a
// memory cost; each link says that the target reads the source's result.
//   Checkmate: nodes {id, name, backward, cost_cpu, cost_ram},
//              links {source, target}; node ids are a topological order.
//   Moccasin:  nodes {name (the node's id), out_cost, duration, param_cost},
//              links {"0": source, "1": target}; graph.order is the order.
// The flavour is recognised from the first node ("out_cost": Moccasin).
//
// Mapping (docs/importers.md): node -> one opaque op of type
// "checkmate.node" (phase backward when `backward` is true) with one output
// u8[memory bytes] (u8[0] for a node with no memory); its inputs are the
// outputs of its predecessors (in link order), then, for a Moccasin node
// with param_cost > 0, a parameter tensor u8[param_cost]. The compute cost
// (cost_cpu / duration) becomes the op attribute "time_us", which the
// simulator takes as the op's measured latency (sim/cost_model.h); the raw
// number is kept even where the file's unit is not microseconds. Ops follow
// the given order; nodes without successors produce the graph outputs.
//
// Errors (memfit::Error) name the file and the JSON path of the node or link
// at fault: malformed JSON, missing or mistyped fields, negative or
// fractional sizes, duplicate ids, links to unknown nodes, an order that is
// not a permutation of the nodes, links that go backwards in the order, and
// cycles.
#pragma once

#include <string>
#include <string_view>

#include "ir/graph.h"

namespace memfit {

// Parses Checkmate or Moccasin JSON text; `source` names it in errors and in
// the graph's metadata. The result passes Validate (ir/validate.h).
Graph ImportCheckmateJson(std::string_view text, const std::string& source = "<string>");

// Reads and imports the file at `path`.
Graph ImportCheckmateFile(const std::string& path);

}  // namespace memfit
