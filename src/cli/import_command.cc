// memfit import MODEL.onnx -o GRAPH.json [--batch N] [--train] [--optimizer sgd|adam]
//                          [--momentum M] [--no-update]
#include <fmt/format.h>

#include "analysis/stats.h"
#include "autodiff/training_graph.h"
#include "cli/command.h"
#include "io/graph_json.h"
#include "ir/validate.h"
#include "onnx/onnx_import.h"
#include "util/error.h"

namespace memfit::cli {
namespace {

struct ImportArgs {
  std::string model;
  int64_t batch = 0;
  bool train = false;
  std::string optimizer = "sgd";
  double momentum = 0.0;
  bool no_update = false;
  std::string output;
};

int RunImport(const ImportArgs& args) {
  if (args.output.empty()) Fail("import: -o GRAPH.json is required (use '-' for standard output)");
  std::optional<OptimizerKind> optimizer = ParseOptimizerKind(args.optimizer);
  if (!optimizer) Fail("--optimizer: expected sgd or adam, got '{}'", args.optimizer);
  OnnxImportOptions options;
  options.batch = args.batch;
  options.append_loss = args.train;
  Graph graph = ImportOnnxFile(args.model, options);
  Validate(graph);
  if (args.train) {
    TrainingOptions training;
    training.optimizer = *optimizer;
    training.momentum = args.momentum;
    training.update_weights = !args.no_update;
    graph = BuildTrainingGraph(graph, training);
    Validate(graph);
  }
  SaveGraph(graph, args.output);
  if (args.output != "-") {
    const GraphStats stats = ComputeStats(graph);
    fmt::print(stderr, "wrote {}: {} ops, {} tensors, {:.2f}M parameters, peak {}\n", args.output, stats.ops,
               stats.tensors, static_cast<double>(stats.param_count) / 1e6, FormatBytes(stats.peak_bytes));
  }
  return 0;
}

const Registrar kImport(
    "import", "Import an ONNX model as a forward graph (or, with --train, a training step)", [](CLI::App& cmd) {
      auto args = std::make_shared<ImportArgs>();
      cmd.add_option("model", args->model, "the ONNX model file")->required();
      cmd.add_option("--batch", args->batch, "size of the first symbolic dim of every input (the batch)")
          ->check(CLI::PositiveNumber);
      cmd.add_flag("--train", args->train,
                   "append a loss (cross entropy on a 2-d output, MSE otherwise) and build the training step");
      cmd.add_option("--optimizer", args->optimizer, "sgd or adam (with --train)");
      cmd.add_option("--momentum", args->momentum, "SGD momentum (with --train)");
      cmd.add_flag("--no-update", args->no_update, "leave out the optimizer update (gradients are outputs)");
      cmd.add_option("-o,--output", args->output, "output graph JSON ('-' for stdout)");
      return [args] { return RunImport(*args); };
    });

}  // namespace
}  // namespace memfit::cli
