// Graph validation: the checks every graph passes before memfit trusts it.
//
// Validate() throws Error with one message naming the op and tensor at
// fault for: ids out of range or out of order, invalid or overflowing
// shapes, alias cycles, tensors produced twice or never, cycles and uses
// before definition in program order, outputs that disagree with the
// registry's shape inference, views whose storage is not their base's or
// that alias later tensors, and storages that add up to more than
// kMaxGraphBytes.
#pragma once

#include <string_view>

#include "ir/graph.h"

namespace memfit {

// The most all storages of a graph may hold together (4 EiB), so that sums of
// live bytes never overflow int64.
inline constexpr int64_t kMaxGraphBytes = int64_t{1} << 62;

struct ValidateOptions {
  // Re-run registry shape inference on every registered op and compare it
  // with the declared outputs.
  bool check_shapes = true;
};

void Validate(const Graph& graph, const ValidateOptions& options = {});

// Validate for a graph read from `source` (a file): the message starts with
// it ("model.onnx: tensor 'x' (t0) is too large: ...").
void ValidateFrom(const Graph& graph, std::string_view source, const ValidateOptions& options = {});

}  // namespace memfit
