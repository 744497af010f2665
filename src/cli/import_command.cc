// memfit import MODEL.onnx -o GRAPH.json [--batch N] [--train] [--optimizer sgd|adam]
//                          [--momentum M] [--no-update]
#include <fmt/format.h>

#include "cli/command.h"
#include "cli/training_flags.h"
#include "ir/validate.h"
#include "onnx/onnx_import.h"
#include "util/error.h"

namespace memfit::cli {
namespace {

struct ImportArgs {
  std::string model;
  int64_t batch = 0;
  TrainingFlags training;
  std::string output;
};

int RunImport(const ImportArgs& args) {
  if (args.output.empty()) Fail("import: -o GRAPH.json is required (use '-' for standard output)");
  OnnxImportOptions options;
  options.batch = args.batch;
  options.append_loss = args.training.train;
  Graph graph = ImportOnnxFile(args.model, options);
  Validate(graph);
  WriteGraphWithSummary(ApplyTrainingFlags(std::move(graph), args.training), args.output);
  return 0;
}

const Registrar kImport(
    "import", "Import an ONNX model as a forward graph (or, with --train, a training step)", [](CLI::App& cmd) {
      auto args = std::make_shared<ImportArgs>();
      cmd.add_option("model", args->model, "the ONNX model file")->required();
      cmd.add_option("--batch", args->batch, "size of the first symbolic dim of every input (the batch)")
          ->check(CLI::PositiveNumber);
      AddTrainingFlags(cmd, args->training,
                       "append a loss (cross entropy on a 2-d output, MSE otherwise) and build the training step");
      cmd.add_option("-o,--output", args->output, "output graph JSON ('-' for stdout)");
      return [args] { return RunImport(*args); };
    });

}  // namespace
}  // namespace memfit::cli
