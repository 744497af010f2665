// An operator call of the graph, named in PyTorch's ATen vocabulary.
//
// `type` is the ATen packet name ("aten.mm", "aten.convolution") and
// `overload` the overload name ("Tensor", "dim_IntList"; empty for
// "default"), so that torch.ops.aten.<packet>.<overload> runs it. Tensor
// arguments are `inputs`, in the order of the ATen schema; every other
// argument is an attribute keyed by its ATen schema name ("stride",
// "padding", "eps"); an absent optional tensor argument is an attribute with
// value None (std::monostate).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <variant>
#include <vector>

#include "ir/ids.h"

namespace memfit {

using AttrValue = std::variant<std::monostate, bool, int64_t, double, std::string,
                               std::vector<int64_t>, std::vector<double>>;
// Sorted by name, so iteration order is deterministic.
using Attrs = std::map<std::string, AttrValue, std::less<>>;

std::string ToString(const AttrValue& value);

// Which part of the training step an op belongs to.
enum class Phase : uint8_t { kForward, kBackward, kOptimizer };
std::string_view ToString(Phase phase);
std::optional<Phase> ParsePhase(std::string_view name);

struct Op {
  OpId id;
  std::string name;      // unique, human-readable: "layer3.attn.softmax"
  std::string type;      // ATen packet name: "aten._softmax"
  std::string overload;  // ATen overload name; empty means "default"
  std::vector<TensorId> inputs;
  std::vector<TensorId> outputs;
  Attrs attrs;
  Phase phase = Phase::kForward;

  // "aten.add.Tensor" or "aten.mm" (the full overload name, as FX prints it).
  std::string qualified_type() const;
};

// "op7 'layer0.fc1' aten.addmm(t3, t4, t5) -> (t6)".
std::string ToString(const Op& op);
std::ostream& operator<<(std::ostream& os, const Op& op);

}  // namespace memfit
