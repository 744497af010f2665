// The memfit graph JSON format (docs/graph-format.md, docs/graph.schema.json).
//
// Versioned ("format": "memfit.graph", "version": 2) and strict: unknown
// fields, wrong types, out-of-range ids and malformed JSON are errors that
// name the file and the JSON path ("ops[12].inputs[1]"). Saving then
// loading gives back the same graph, field for field.
//
// Version 2 adds, per op, the registry's flags ("flags": {"random": true,
// "inplace": true, "view": true, "mutates": [input indices]}, each only when
// set, the whole field only when one is): ComputeOpFlags, written so that
// readers without the registry (python/memfit on a machine without the C++
// libraries) know them. On reading they are checked for form and otherwise
// ignored: memfit recomputes them from the registry, which stays their only
// source (a file written by an older memfit may list fewer). Version 1 files
// (no flags) still load.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ir/graph.h"
#include "util/json.h"

namespace memfit {

inline constexpr int kGraphFormatVersion = 2;
inline constexpr int kOldestGraphFormatVersion = 1;  // still read

// Serializes `graph` (pretty-printed with `indent` spaces, or compact if < 0).
std::string GraphToJson(const Graph& graph, int indent = 1);
// The same as a JSON value, for files that hold a graph (PLAN.json): built
// in place, not dumped and parsed back (a bert-base step micro-batched x8,
// 15,000 ops, took 0.4 s that way).
nlohmann::ordered_json GraphToJsonValue(const Graph& graph);

// Parses a graph; `source` names the file in error messages. The result is
// validated (ir/validate.h) unless `validate` is false.
Graph GraphFromJson(std::string_view text, std::string_view source = "<string>", bool validate = true);
// Reads a graph from a parsed JSON value (a file's root, or the "graph" field
// of a PLAN.json); errors name the node's source and path.
Graph GraphFromJson(const JsonNode& node, bool validate = true);

Graph LoadGraph(const std::string& path, bool validate = true);
// Writes atomically (a temporary file, then rename).
void SaveGraph(const Graph& graph, const std::string& path);

}  // namespace memfit
