// memfit zoo list
// memfit zoo NAME [--batch N] [--seq N] [--image N] [--dtype f32|bf16|f16]
//                 [--width N] [--train] [--optimizer sgd|adam] [--no-update] -o FILE.json
#include <fmt/format.h>

#include <iostream>

#include "cli/command.h"
#include "cli/training_flags.h"
#include "models/zoo.h"
#include "util/error.h"

namespace memfit::cli {
namespace {

struct ZooArgs {
  std::string name;
  int64_t batch = 0;
  int64_t seq = 0;
  int64_t image = 0;
  int64_t width = 0;
  std::string dtype = "f32";
  TrainingFlags training;
  std::string output;
};

std::string ImageColumn(const ZooModel& m) {
  if (m.default_width) return fmt::format("{}x{}", m.default_image, m.default_width);
  return m.default_image ? std::to_string(m.default_image) : "-";
}

int ListModels() {
  fmt::print("{:<16}{:<12}{:>8}{:>6}{:>8}{:>16}  {}\n", "name", "family", "batch", "seq", "image", "published", "description");
  for (const ZooModel& m : ZooModels()) {
    fmt::print("{:<16}{:<12}{:>8}{:>6}{:>8}{:>16}  {}\n", m.name, m.family, m.default_batch,
               m.default_seq ? std::to_string(m.default_seq) : "-", ImageColumn(m),
               m.published_params ? fmt::format("{:.1f}M", static_cast<double>(m.published_params) / 1e6) : "-",
               m.description);
  }
  return 0;
}

int RunZoo(const ZooArgs& args) {
  if (args.name == "list") return ListModels();
  if (args.output.empty()) Fail("zoo: -o FILE.json is required (use '-' for standard output)");
  ZooOptions options;
  options.batch = args.batch;
  options.seq = args.seq;
  options.image = args.image;
  options.width = args.width;
  auto dtype = ParseDType(args.dtype);
  if (!dtype || !IsFloatingPoint(*dtype)) Fail("--dtype: expected f32, bf16, f16 or f64, got '{}'", args.dtype);
  options.dtype = *dtype;
  WriteGraphWithSummary(ApplyTrainingFlags(BuildZooModel(args.name, options), args.training), args.output);
  return 0;
}

// CLI::PositiveNumber's message prints the largest double (300 digits).
const CLI::Range kPositiveExtent(int64_t{1}, int64_t{1} << 40);

const Registrar kZoo = Subcommand<ZooArgs>(
    "zoo", "List the model zoo or build a zoo model's graph (forward or training step)", RunZoo,
    [](CLI::App& cmd, ZooArgs& args) {
      cmd.add_option("name", args.name, "model name, or 'list'")->required();
      cmd.add_option("--batch", args.batch, "batch size (default: the model's)")->check(kPositiveExtent);
      cmd.add_option("--seq", args.seq, "sequence length for text models")->check(kPositiveExtent);
      cmd.add_option("--image", args.image, "image side for vision models")->check(kPositiveExtent);
      cmd.add_option("--width", args.width,
                     "image width for models that take non-square images (default: --image, or the model's)")
          ->check(kPositiveExtent);
      cmd.add_option("--dtype", args.dtype, "f32, bf16 or f16");
      AddTrainingFlags(cmd, args.training, "build the training step: forward, backward, optimizer update");
      cmd.add_option("-o,--output", args.output, "output graph JSON ('-' for stdout)");
    });

}  // namespace
}  // namespace memfit::cli
