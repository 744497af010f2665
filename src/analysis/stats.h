// Summary statistics of a graph: sizes by role, FLOPs, and the peak memory
// of program order (analysis/liveness.h).
#pragma once

#include <cstdint>
#include <string>

#include "ir/graph.h"

namespace memfit {

struct GraphStats {
  int64_t ops = 0;
  int64_t tensors = 0;
  int64_t storages = 0;
  int64_t param_count = 0;  // elements of parameters
  int64_t param_bytes = 0;
  int64_t buffer_bytes = 0;
  int64_t input_bytes = 0;
  int64_t activation_bytes = 0;  // storages owned by activations
  int64_t gradient_bytes = 0;
  int64_t optimizer_state_bytes = 0;
  int64_t output_bytes = 0;
  double flops = 0;
  int64_t peak_bytes = 0;  // program order, simple liveness
  int64_t peak_step = 0;
  std::string peak_op;  // name of the op running at the peak
  int64_t random_ops = 0;
  int64_t opaque_ops = 0;  // ops the registry does not know
};

GraphStats ComputeStats(const Graph& graph);

// A human-readable multi-line summary.
std::string FormatStats(const Graph& graph, const GraphStats& stats);

// One JSON object (indented by 1): the graph's name and the stats but
// output_bytes, as `memfit stats --json` prints them and Python's
// _memfit.stats reads them. Text that is not UTF-8 (an op's name) is
// replaced, not an error.
std::string StatsToJson(const Graph& graph, const GraphStats& stats);

// "1.23 GiB", "512 B".
std::string FormatBytes(int64_t bytes);

// A relative change as a signed percentage, "+4.67%", "-5.54%"; one that
// rounds to zero is "+0.00%" (a schedule's float sums may differ from
// program order's by 1e-12, which printed "-0.00%").
std::string FormatChange(double ratio);

// A fraction of the peak to print beside another ("0.50" of the limit):
// two decimals, or as many more (up to four) as it takes not to print the
// same as `beside` when they differ ("the smallest memory ... is 0.504"
// under a limit of 0.50, not "0.50").
std::string FormatRatioBeside(double ratio, double beside);

}  // namespace memfit
