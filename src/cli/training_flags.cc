#include "cli/training_flags.h"

#include <fmt/format.h>

#include <cmath>

#include "analysis/stats.h"
#include "autodiff/training_graph.h"
#include "io/graph_json.h"
#include "ir/validate.h"
#include "util/error.h"

namespace memfit::cli {

void AddTrainingFlags(CLI::App& cmd, TrainingFlags& flags, const std::string& train_help) {
  cmd.add_flag("--train", flags.train, train_help);
  cmd.add_option("--optimizer", flags.optimizer, "sgd or adam (with --train)");
  cmd.add_option("--momentum", flags.momentum, "SGD momentum (with --train)");
  cmd.add_flag("--no-update", flags.no_update, "leave out the optimizer update (gradients are outputs)");
}

void CheckTrainingFlags(const TrainingFlags& flags) {
  if (!ParseOptimizerKind(flags.optimizer)) Fail("--optimizer: expected sgd or adam, got {}", Quote(flags.optimizer));
  if (!(std::isfinite(flags.momentum) && flags.momentum >= 0)) {
    Fail("--momentum must be a non-negative number (got {})", flags.momentum);
  }
}

Graph ApplyTrainingFlags(Graph forward, const TrainingFlags& flags) {
  CheckTrainingFlags(flags);
  if (!flags.train) return forward;
  TrainingOptions training;
  training.optimizer = *ParseOptimizerKind(flags.optimizer);
  training.momentum = flags.momentum;
  training.update_weights = !flags.no_update;
  Graph graph = BuildTrainingGraph(forward, training);
  Validate(graph);
  return graph;
}

void WriteGraphWithSummary(const Graph& graph, const std::string& path) {
  SaveGraph(graph, path);
  if (path == "-") return;
  const GraphStats stats = ComputeStats(graph);
  fmt::print(stderr, "wrote {}: {} ops, {} tensors, {:.2f}M parameters, peak {}\n", path, stats.ops, stats.tensors,
             static_cast<double>(stats.param_count) / 1e6, FormatBytes(stats.peak_bytes));
}

}  // namespace memfit::cli
