// memfit inplace GRAPH.json [-o OUT.json]
//
// Rewrites element-wise ops whose input dies at them into their in-place
// variants (transform/inplace.h) and prints how many and the program-order
// peak before and after.
#include <fmt/format.h>

#include "analysis/stats.h"
#include "cli/command.h"
#include "io/graph_json.h"
#include "transform/inplace.h"

namespace memfit::cli {
namespace {

struct InPlaceArgs {
  std::string path, output;
};

int RunInPlace(const InPlaceArgs& args) {
  const Graph graph = LoadGraph(args.path);
  const InPlaceResult r = ReuseDeadInputs(graph);
  fmt::print("in place:   {} ops, {} of results reuse their input's memory\n", r.rewritten,
             FormatBytes(r.bytes_reused));
  fmt::print("peak:       {} -> {} (program order)\n", FormatBytes(ComputeStats(graph).peak_bytes),
             FormatBytes(ComputeStats(r.graph).peak_bytes));
  if (!args.output.empty()) {
    SaveGraph(r.graph, args.output);
    fmt::print("wrote {}\n", args.output);
  }
  return 0;
}

const Registrar kInPlace =
    Subcommand<InPlaceArgs>("inplace", "Let element-wise ops write into inputs that die at them (relu -> relu_, ...)",
                            RunInPlace, [](CLI::App& cmd, InPlaceArgs& args) {
                              AddGraphFile(cmd, args.path);
                              cmd.add_option("-o,--output", args.output, "write the rewritten graph JSON");
                            });

}  // namespace
}  // namespace memfit::cli
