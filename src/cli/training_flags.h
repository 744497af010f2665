// The flags `memfit zoo` and `memfit import` share: --train, --optimizer,
// --momentum, --no-update, and writing the resulting graph with a summary.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "ir/graph.h"

namespace memfit::cli {

struct TrainingFlags {
  bool train = false;
  std::string optimizer = "sgd";
  double momentum = 0.0;
  bool no_update = false;
};

// Registers the flags on `cmd`; `train_help` describes --train.
void AddTrainingFlags(CLI::App& cmd, TrainingFlags& flags, const std::string& train_help);

// Throws Error for a bad --optimizer or --momentum.
void CheckTrainingFlags(const TrainingFlags& flags);

// The training step of `forward` when --train is set (validated), else
// `forward` unchanged. Checks the flags first (CheckTrainingFlags).
Graph ApplyTrainingFlags(Graph forward, const TrainingFlags& flags);

// Writes `graph` to `path` ('-' for stdout) and, for a file, prints a
// one-line summary on stderr.
void WriteGraphWithSummary(const Graph& graph, const std::string& path);

}  // namespace memfit::cli
