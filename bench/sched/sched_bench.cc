// bench_sched: operator schedules of zoo training graphs.
//
// For each case (a zoo model's training step with an SGD update): the op
// count, the peak of ComputeLiveness under program order, under the greedy
// scheduler and under the partitioned scheduler, their ratios to program
// order, and the scheduling seconds. Every order passes CheckSchedule.
//
//   build/bin/bench_sched [--time-limit S] [--optimizer sgd|adam]
#include <fmt/format.h>

#include <cstring>
#include <string>
#include <vector>

#include "autodiff/training_graph.h"
#include "models/zoo.h"
#include "sched/schedule_check.h"
#include "sched/scheduler.h"

using namespace memfit;

namespace {

struct Case {
  std::string model;
  ZooOptions options;
  std::string shape;  // how the case differs from the model's defaults
};

double MiB(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

}  // namespace

int main(int argc, char** argv) {
  double time_limit = 10.0;
  OptimizerKind optimizer = OptimizerKind::kSgd;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--time-limit") == 0 && i + 1 < argc) {
      time_limit = std::stod(argv[++i]);
    } else if (std::strcmp(argv[i], "--optimizer") == 0 && i + 1 < argc) {
      const auto kind = ParseOptimizerKind(argv[++i]);
      if (!kind) {
        fmt::print(stderr, "bench_sched: unknown optimizer '{}'\n", argv[i]);
        return 2;
      }
      optimizer = *kind;
    } else {
      fmt::print(stderr, "usage: bench_sched [--time-limit S] [--optimizer sgd|adam]\n");
      return 2;
    }
  }
  const std::vector<Case> cases = {
      {"mlp", {}, "default"},
      {"bert-tiny", {}, "default"},
      {"bert-base", {.batch = 8, .seq = 128}, "bs8 seq128"},
      {"bert-large", {.batch = 8, .seq = 128}, "bs8 seq128"},
      {"gpt2-small", {}, "default"},
      {"vit-tiny", {}, "default"},
      {"resnet-18", {.batch = 32, .image = 224}, "bs32 img224"},
      {"resnet-50", {.batch = 32, .image = 224}, "bs32 img224"},
      {"vgg16", {}, "default"},
      {"unet", {}, "default"},
  };
  fmt::print("{:<11}{:<12}{:>6}{:>11}{:>11}{:>7}{:>8}{:>11}{:>7}{:>8}{:>10}  {}\n", "model", "shape", "ops",
             "program", "greedy", "ratio", "s", "partition", "ratio", "s", "pieces", "greedy rule / proven");
  for (const Case& c : cases) {
    TrainingOptions training;
    training.optimizer = optimizer;
    const Graph g = BuildTrainingGraph(BuildZooModel(c.model, c.options), training);
    sched::ScheduleOptions options;
    options.time_limit_seconds = time_limit;
    options.scheduler = sched::SchedulerKind::kProgramOrder;
    const sched::ScheduleResult program = sched::Schedule(g, options);
    options.scheduler = sched::SchedulerKind::kGreedy;
    const sched::ScheduleResult greedy = sched::Schedule(g, options);
    options.scheduler = sched::SchedulerKind::kPartitioned;
    const sched::ScheduleResult partitioned = sched::Schedule(g, options);
    for (const sched::ScheduleResult* r : {&greedy, &partitioned}) {
      if (!sched::CheckSchedule(g, r->order).empty()) {
        fmt::print("{}: {} order fails the checker\n", c.model, r->scheduler);
        return 1;
      }
    }
    // "12 pieces (largest 300 ops), ..." -> "12/300".
    int pieces = 0, largest = 0;
    std::sscanf(partitioned.note.c_str(), "%d pieces (largest %d ops)", &pieces, &largest);
    const double base = static_cast<double>(program.peak_bytes);
    fmt::print("{:<11}{:<12}{:>6}{:>11.1f}{:>11.1f}{:>7.3f}{:>8.3f}{:>11.1f}{:>7.3f}{:>8.3f}{:>10}  {} / {}\n",
               c.model, c.shape, g.num_ops(), MiB(program.peak_bytes), MiB(greedy.peak_bytes),
               static_cast<double>(greedy.peak_bytes) / base, greedy.seconds, MiB(partitioned.peak_bytes),
               static_cast<double>(partitioned.peak_bytes) / base, partitioned.seconds,
               fmt::format("{}/{}", pieces, largest), greedy.scheduler, partitioned.proven_optimal ? "yes" : "no");
  }
  fmt::print("\npeaks in MiB (ComputeLiveness, workspace included); ratio = peak / program-order peak;\n"
             "pieces = cut-point pieces / ops of the largest; time limit {} s\n",
             time_limit);
  return 0;
}
