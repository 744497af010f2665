// Steps: the plan's central type, the ordered list of what runs.
//
// The plan vocabulary (src/plan/):
//   Steps      (steps.h)      what runs, in order: computes, recomputes,
//                             swaps and frees. Schedulers, the remat
//                             lowering and the optimizer emit them; the
//                             simulator (sim/simulator.h) replays them and is
//                             the single source of truth for their memory
//                             and time.
//   Placement  (placement.h)  where every storage instance lives: a byte
//                             offset in one arena per stay on the device.
//   Plan       (plan_json.h)  the whole plan, PLAN.json: graph, Steps,
//                             Placement and the simulated figures.
//
// A step runs an op on the compute stream (kCompute, or kRecompute to
// re-create the outputs of an op computed before), moves a storage between
// device and host on the copy stream (kSwapOut, kSwapIn), or frees a
// storage's device memory (kFree). A storage is named by any of its tensors;
// the simulator uses its root (Graph::StorageRoot). Steps are plain data.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "ir/graph.h"

namespace memfit {

enum class StepKind : uint8_t {
  kCompute,    // run op on the compute stream; allocates its new storages
  kRecompute,  // run op again (rematerialization); re-creates its outputs
  kSwapOut,    // copy storage to host; its device memory is freed when the copy ends
  kSwapIn,     // copy storage back; its device memory is allocated when the copy starts
  kFree,       // release storage's device memory (or drop its host copy)
};
// "compute", "recompute", "swap_out", "swap_in", "free".
std::string_view ToString(StepKind kind);
std::optional<StepKind> ParseStepKind(std::string_view name);
inline std::ostream& operator<<(std::ostream& os, StepKind k) { return os << ToString(k); }

// True for the kinds that name an op (compute, recompute); the others name
// a storage.
constexpr bool IsOpStep(StepKind kind) { return kind == StepKind::kCompute || kind == StepKind::kRecompute; }

struct Step {
  StepKind kind = StepKind::kCompute;
  std::optional<OpId> op;           // set for compute and recompute
  std::optional<TensorId> storage;  // set for swap_out, swap_in and free

  static Step Compute(OpId op) { return {StepKind::kCompute, op, std::nullopt}; }
  static Step Recompute(OpId op) { return {StepKind::kRecompute, op, std::nullopt}; }
  static Step SwapOut(TensorId storage) { return {StepKind::kSwapOut, std::nullopt, storage}; }
  static Step SwapIn(TensorId storage) { return {StepKind::kSwapIn, std::nullopt, storage}; }
  static Step Free(TensorId storage) { return {StepKind::kFree, std::nullopt, storage}; }
  bool operator==(const Step&) const = default;
};

// "compute op7", "swap_out t12".
std::string ToString(const Step& step);
// With names: "compute op7 'layer0.fc1'", "swap_out t12 'layer0.fc1.out'".
std::string ToString(const Step& step, const Graph& graph);
std::ostream& operator<<(std::ostream& os, const Step& step);

// The ordered step list.
struct Steps {
  std::vector<Step> steps;
  bool operator==(const Steps&) const = default;
};

// One step per line, numbered: "   0  compute op0 'embed'".
std::string ToString(const Steps& plan, const Graph& graph);
std::ostream& operator<<(std::ostream& os, const Steps& plan);

// `order` (every op once), each storage freed right after its last use, as
// ComputeLiveness (analysis/liveness.h) counts it: parameters, buffers,
// optimizer state and the storages of graph outputs are never freed; a
// storage nobody reads is freed right after its producer. Frees after one
// op are sorted by storage id.
Steps StepsFromOrder(const Graph& graph, const std::vector<OpId>& order);
// StepsFromOrder in program order.
Steps ProgramOrderSteps(const Graph& graph);

}  // namespace memfit
