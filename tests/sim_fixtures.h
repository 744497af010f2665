// Fixtures the simulator's, the plan's and the report's tests share: a device
// with round numbers, roofline latencies without discounts, and a small
// graph: a chain of relus whose first result is
// read again at the end (a skip connection), so that a swap or a
// recomputation of it has a gap to cover:
//
//   x -> a = relu(x) -> b = relu(a) -> c = relu(b) -> e = relu(c) -> d = add(a, e)
//
// x is an input, the others activations; d is the output. Ops in program
// order: op0 a, op1 b, op2 c, op3 e, op4 d.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/builder.h"
#include "ir/graph.h"
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

}  // namespace memfit::testing
