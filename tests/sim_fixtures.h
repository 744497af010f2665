// Fixtures the simulator's, the plan's and the report's tests share: a device
// with round numbers, roofline latencies without discounts, and a small
// graph: a chain of relus whose first result is
// read again at the end (a skip connection), so that a swap or a
// recomputation of it has a gap to cover:
//
//   x -> a = relu(x) -> b = relu(a) -> c = relu(b) -> e = relu(c) -> d = add(a, e)
//
// x is an input, the others activations; d is the output. Ops in program
// order: op0 a, op1 b, op2 c, op3 e, op4 d. SwapRoundTrip is a plan of it
// that swaps a out and back, its times worked out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/builder.h"
#include "ir/graph.h"
#include "plan/steps.h"
#include "sim/cost_model.h"
#include "sim/device.h"

namespace memfit::testing {

// Roofline terms at their datasheet peaks (no efficiency discount).
inline sim::LatencyOptions Peak() {
  sim::LatencyOptions o;
  o.compute_efficiency = 1.0;
  o.memory_efficiency = 1.0;
  o.host_link_efficiency = 1.0;
  return o;
}

// A device with round numbers: 1000 bytes/us of memory bandwidth, 500 bytes/us
// to the host, no launch overhead, and so much compute that FLOPs never
// matter. On it a relu of 1000 bytes moves 2000 B (2 us), an add 3000 B
// (3 us), and a host copy of 1000 B takes 2 us.
inline sim::DeviceProfile RoundDevice() {
  sim::DeviceProfile d;
  d.name = "round";
  d.peak_f32_flops_per_s = d.peak_f16_flops_per_s = d.peak_bf16_flops_per_s = d.peak_f64_flops_per_s = 1e30;
  d.memory_bandwidth_bytes_per_s = 1e9;
  d.host_bandwidth_bytes_per_s = 0.5e9;
  d.launch_overhead_us = 0;
  d.memory_bytes = int64_t{1} << 30;
  return d;
}

struct SkipChain {
  Graph graph;
  TensorId x, a, b, c, e, d;
};

// Every tensor has `shape` (f32); `add` names the final op.
inline SkipChain MakeSkipChain(const std::string& name, const std::vector<int64_t>& shape,
                               const std::string& add = "aten.add.Tensor") {
  GraphBuilder g(name);
  SkipChain ch;
  ch.x = g.Input("x", shape);
  ch.a = g.Call("aten.relu", {ch.x});
  ch.b = g.Call("aten.relu", {ch.a});
  ch.c = g.Call("aten.relu", {ch.b});
  ch.e = g.Call("aten.relu", {ch.c});
  ch.d = g.Call(add, {ch.a, ch.e});
  g.MarkOutput(ch.d);
  ch.graph = g.Finish();
  return ch;
}

// On a chain of f32[250] (1000 bytes each), on RoundDevice: swap a out
// after its first reader and back before the add:
//   step plan          stream   start end   memory events
//   0 compute op0 a    compute   0     2    +a at 0          (x, a: 2000)
//   1 free x           -         2     2    -x at 2
//   2 compute op1 b    compute   2     4    +b at 2          (a, b: 2000)
//   3 swap_out a       copy      2     4    -a at 4 (after op1, its last reader, ends)
//   4 compute op2 c    compute   4     6    +c at 4          (b, c: 2000)
//   5 free b           -         6     6    -b at 6
//   6 swap_in a        copy      6     8    +a at 6 (after op2, the compute before it, ends)
//   7 compute op3 e    compute   6     8    +e at 6          (c, a, e: 3000)
//   8 free c           -         8     8    -c at 8
//   9 compute op4 d    compute   8    11    +d at 8          (e, a, d: 3000)
// The copies hide behind op1 and op3: latency stays 11 us.
inline Steps SwapRoundTrip(const SkipChain& ch) {
  Steps plan;
  plan.steps = {Step::Compute(OpId(0)), Step::Free(ch.x),       Step::Compute(OpId(1)), Step::SwapOut(ch.a),
                Step::Compute(OpId(2)), Step::Free(ch.b),       Step::SwapIn(ch.a),     Step::Compute(OpId(3)),
                Step::Free(ch.c),       Step::Compute(OpId(4))};
  return plan;
}

}  // namespace memfit::testing
