// memfit import FILE -o GRAPH.json [--batch N] [--train] [--optimizer sgd|adam]
//                    [--momentum M] [--no-update]
//
// FILE is an ONNX model, a Checkmate / Moccasin graph (networkx JSON) or a
// DTR operator log; the format is recognised from the file (importers/detect.h).
// The training flags and --batch apply to ONNX models only: the other formats
// already describe a whole training step with fixed sizes.
#include <fmt/format.h>

#include "cli/command.h"
#include "cli/training_flags.h"
#include "importers/checkmate_import.h"
#include "importers/detect.h"
#include "importers/dtr_import.h"
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

Graph ImportOnnx(const ImportArgs& args) {
  CheckTrainingFlags(args.training);
  OnnxImportOptions options;
  options.batch = args.batch;
  options.append_loss = args.training.train;
  Graph graph = ImportOnnxFile(args.model, options);  // validated; errors name the file
  // Building the training step can fail on what the model holds (an op
  // without a backward rule): say which file.
  try {
    return ApplyTrainingFlags(std::move(graph), args.training);
  } catch (const Error& e) {
    Fail("{}: --train: {}", args.model, e.what());
  }
}

int RunImport(const ImportArgs& args) {
  if (args.output.empty()) Fail("import: -o GRAPH.json is required (use '-' for standard output)");
  const ImportFormat format = DetectImportFormat(args.model);
  if (format != ImportFormat::kOnnx) {
    const char* flag = args.batch ? "--batch" : args.training.train ? "--train" : nullptr;
    if (flag) Fail("import: {} applies to ONNX models only; '{}' is a {} file", flag, args.model, ToString(format));
  }
  switch (format) {
    case ImportFormat::kOnnx: WriteGraphWithSummary(ImportOnnx(args), args.output); break;
    case ImportFormat::kCheckmate: WriteGraphWithSummary(ImportCheckmateFile(args.model), args.output); break;
    case ImportFormat::kDtrLog: WriteGraphWithSummary(ImportDtrLog(args.model), args.output); break;
  }
  return 0;
}

const Registrar kImport = Subcommand<ImportArgs>(
    "import",
    "Import a graph: an ONNX model (a forward graph or, with --train, a training step), a Checkmate / Moccasin "
    "graph (JSON) or a DTR operator log",
    RunImport, [](CLI::App& cmd, ImportArgs& args) {
      cmd.add_option("model", args.model, "the file: .onnx, Checkmate/Moccasin .json, or DTR .log")->required();
      cmd.add_option("--batch", args.batch, "ONNX: size of the first symbolic dim of every input (the batch)")
          ->check(CLI::PositiveNumber);
      AddTrainingFlags(cmd, args.training,
                       "ONNX: append a loss (cross entropy on a 2-d output, MSE otherwise) and build the training "
                       "step");
      cmd.add_option("-o,--output", args.output, "output graph JSON ('-' for stdout)");
    });

}  // namespace
}  // namespace memfit::cli
