// memfit fission GRAPH.json --dim NAME|ID|KIND --parts N [--region K | --at OP] [--band] [--recompute
//     [--and-forward]] [--two-pass-batchnorm] [--two-pass-batchnorm-forward] [--heavy-runs] [--why] -o OUT.json
// memfit fission GRAPH.json --each-batch --parts N -o OUT.json
// memfit fission GRAPH.json --spatial H|W --parts N [--region K | --at OP] [--why] -o OUT.json
// memfit fission GRAPH.json --split-concats [--dim ... | --spatial ...] -o OUT.json
//
// Applies one fission (transform/fission.h) by hand: the K-th longest run of
// ops that can run on parts of the dimension (0: the longest), split into N
// parts (--at OP: the run that holds op OP); with --spatial, on tiles of the images along H or W
// (transform/spatial_fission.h). Prints what it did, or why an op cannot be split (--why lists the
// refusal of every op that touches the dimension). --recompute first copies
// the forward ops that make what the run reads right before it
// (transform/recompute_forward.h), and splits the copies with the run.
// --two-pass-batchnorm first writes every BatchNorm backward as its two
// passes (transform/batchnorm_two_pass.h), so that runs reach through it;
// --two-pass-batchnorm-forward does the same for the forwards (the
// normalization element-wise: --recompute copies it). --heavy-runs splits
// every backward run where the memory sits (HeavyBackwardRuns) at once;
// with --recompute, after copying the forward of each before it
// (RecomputeBeforeEach). --split-concats first writes every convolution of
// a concatenation per piece (transform/concat_convolution.h); alone (no
// --dim or --spatial) it is the whole transform, as are the two-pass
// BatchNorm rewrites alone.
#include <algorithm>

#include <fmt/format.h>

#include "analysis/dims.h"
#include "analysis/stats.h"
#include "cli/command.h"
#include "io/graph_json.h"
#include "transform/batchnorm_two_pass.h"
#include "transform/concat_convolution.h"
#include "transform/masked_reductions.h"
#include "transform/fission.h"
#include "transform/recompute_forward.h"
#include "transform/spatial_fission.h"
#include "util/error.h"

namespace memfit::cli {
namespace {

struct FissionArgs {
  std::string path, dim, spatial, output, at;
  int parts = 2;
  int64_t region = 0;
  bool why = false;
  bool whole_heavy_sums = false;
  bool band = false;
  bool recompute = false;
  bool two_pass_batchnorm = false;
  bool two_pass_forward = false;
  bool heavy_runs = false;
  bool each_batch = false;
  bool and_forward = false;
  bool split_concats = false;
};

int FindDim(const DimensionGraph& dims, const std::string& key) {
  for (const Dimension& d : dims.dims) {
    if (d.name == key || std::to_string(d.id) == key) return d.id;
  }
  for (const Dimension& d : dims.dims) {
    if (d.kind == key) return d.id;  // "batch": the longest-reaching batch
  }
  Fail("--dim {}: no such dimension (see memfit dims)", Quote(key));
}

// The run --region or --at names.
const std::vector<OpId>& ChooseRun(const Graph& graph, const std::vector<std::vector<OpId>>& runs,
                                   const FissionArgs& args, std::string_view what) {
  if (args.at.empty()) {
    if (args.region < 0 || static_cast<size_t>(args.region) >= runs.size()) {
      Fail("--region {}: {} has {} run(s) of two or more ops", args.region, what, runs.size());
    }
    return runs[static_cast<size_t>(args.region)];
  }
  const auto op = std::find_if(graph.ops().begin(), graph.ops().end(), [&](const Op& o) { return o.name == args.at; });
  if (op == graph.ops().end()) Fail("--at {}: no op of that name in {}", Quote(args.at), Quote(graph.name));
  for (const auto& run : runs) {
    if (std::find(run.begin(), run.end(), op->id) != run.end()) return run;
  }
  Fail("--at {}: the op is in no run of two or more ops of {} (--why says why)", Quote(args.at), what);
}

FissionResult ApplyDimFission(const Graph& graph, const FissionArgs& args);
int Report(const Graph& graph, const FissionResult& r, const FissionArgs& args);

int RunFission(const FissionArgs& args) {
  const Graph original = LoadGraph(args.path);
  if (!args.dim.empty() && !args.spatial.empty()) Fail("fission: give one of --dim and --spatial, not both");
  const bool rewrites_only = args.split_concats || args.two_pass_batchnorm || args.two_pass_forward;
  if (args.each_batch && (!args.dim.empty() || !args.spatial.empty() || args.heavy_runs || args.recompute ||
                          args.band || args.region != 0 || !args.at.empty())) {
    Fail("fission: --each-batch chooses its dimensions and runs; drop --dim, --spatial, --heavy-runs, --recompute, "
         "--band, --region and --at");
  }
  if (args.and_forward && !args.recompute) Fail("fission: --and-forward goes with --recompute");
  if (args.dim.empty() && args.spatial.empty() && !args.each_batch &&
      (!rewrites_only || args.heavy_runs || args.recompute)) {
    Fail("fission: give one of --dim and --spatial (or only rewrites: --split-concats, --two-pass-batchnorm, "
         "--two-pass-batchnorm-forward)");
  }
  if (args.heavy_runs && (args.region != 0 || !args.at.empty() || args.band)) {
    Fail("fission: --heavy-runs chooses its runs; drop --region, --at and --band");
  }
  Graph graph = original;
  // Prints the rewrite's record, or that it found nothing to rewrite.
  auto rewrite = [&graph](Graph (*how)(const Graph&, const std::vector<OpId>&), std::string_view none) {
    const size_t before = RecordedFissions(graph).size();
    graph = how(graph, {});
    const auto records = RecordedFissions(graph);
    fmt::print("{}\n", records.size() > before ? records.back() : std::string(none));
  };
  if (args.split_concats) {
    rewrite([](const Graph& g, const std::vector<OpId>&) { return SplitConcatenatedConvolutions(g); },
            "no convolution of a concatenation to split");
  }
  if (args.two_pass_batchnorm) rewrite(TwoPassBatchNormBackward, "no BatchNorm backward to write in two passes");
  if (args.two_pass_forward) rewrite(TwoPassBatchNormForward, "no BatchNorm forward to write in two passes");
  FissionResult r;
  if (args.each_batch) {
    const DimensionGraph dims = ComputeDimensions(graph);
    std::vector<std::string> names;
    for (int d : BatchesWithRunsOfTheirOwn(graph, dims)) names.push_back(dims.dims[d].name);
    if (names.empty()) {
      Fail("fission: --each-batch: the graph has no batch dimension with a run to split (see memfit dims)");
    }
    fmt::print("batches:    {}\n", fmt::join(names, ", "));
    r = SplitEachBatch(graph, dims, names, args.parts);
    for (const std::string& record : RecordedFissions(r.graph)) fmt::print("  {}\n", record);
  } else if (args.dim.empty() && args.spatial.empty()) {
    r.graph = std::move(graph);  // the rewrites alone
  } else if (!args.spatial.empty()) {
    if (args.spatial != "H" && args.spatial != "W") Fail("--spatial {}: must be H or W", Quote(args.spatial));
    const int axis = args.spatial == "H" ? 2 : 3;
    if (args.why) {
      for (const Op& op : graph.ops()) {
        if (auto why = WhyNotTileable(graph, op.id, axis)) fmt::print("{}\n", *why);
      }
    }
    const auto regions = SpatialRegions(graph, axis);
    r = ApplySpatialFission(graph, {ChooseRun(graph, regions, args, fmt::format("tiling along {}", args.spatial)), axis,
                                    args.parts});
  } else {
    // Masked selections that feed a sum or a mean, written densely first, as
    // the search does (transform/masked_reductions.h).
    const size_t before = RecordedFissions(graph).size();
    graph = WriteMaskedReductionsDensely(graph);
    if (RecordedFissions(graph).size() > before) fmt::print("{}\n", RecordedFissions(graph).back());
    r = ApplyDimFission(graph, args);
  }
  return Report(original, r, args);
}

// What --and-forward splits besides the copies' runs.
void PrintForwardRuns(const Graph& graph, const std::vector<std::vector<OpId>>& forward) {
  for (const auto& run : forward) {
    fmt::print("and the forward: {} ops ({} .. {})\n", run.size(), Quote(graph.op(run.front()).name),
               Quote(graph.op(run.back()).name));
  }
}

FissionResult ApplyDimFission(const Graph& graph, const FissionArgs& args) {
  const DimensionGraph dims = ComputeDimensions(graph);
  const int dim = FindDim(dims, args.dim);
  if (args.why) {
    for (const auto& why : Refusals(graph, dims, dim)) {
      if (why) fmt::print("{}\n", *why);
    }
  }
  const auto regions = FissionRegions(graph, dims, dim);
  if (args.heavy_runs) {
    const std::vector<std::vector<OpId>> heavy = HeavyBackwardRuns(graph, dims, dim);
    fmt::print("heavy backward runs: {} of {}\n", heavy.size(), regions.size());
    if (!args.recompute) return ApplyFissions(graph, dims, dim, heavy, args.parts);
    const RecomputedRuns r = RecomputeBeforeEach(graph, dims, dim, heavy);
    fmt::print("{}{} forward ops again before {} of the runs\n", kRecomputeRecordPrefix, r.copies, r.copied);
    if (!args.and_forward) return ApplyFissions(r.graph, r.dims, r.dim, r.runs, args.parts);
    std::vector<std::vector<OpId>> runs = r.runs;
    const std::vector<std::vector<OpId>> forward = ForwardRunsOfCopies(r);
    PrintForwardRuns(r.graph, forward);
    runs.insert(runs.end(), forward.begin(), forward.end());
    return ApplyFissions(r.graph, r.dims, r.dim, runs, args.parts);
  }
  std::vector<OpId> run = ChooseRun(graph, regions, args, fmt::format("splitting {}", dims.dims[dim].name));
  if (args.band) {
    std::vector<OpId> band = PeakBand(graph, dims, dim, run);
    if (band.empty()) {
      fmt::print("band: the whole run (its heaviest ops span it)\n");
    } else {
      fmt::print("band: {} of the run's {} ops ({} .. {})\n", band.size(), run.size(), Quote(graph.op(band.front()).name),
                 Quote(graph.op(band.back()).name));
      run = std::move(band);
    }
  }
  if (args.recompute) {
    std::optional<RecomputedRun> r = RecomputeBefore(graph, dims, dim, run);
    if (!r) Fail("--recompute: the run reads nothing that forward ops can make again from the step's sources");
    fmt::print("{}{}\n", kRecomputeRecordPrefix, ToString(r->copies.record));
    if (!args.and_forward) return r->Split(args.parts);
    const std::vector<std::vector<OpId>> forward = ForwardRunsBefore(*r);
    if (forward.empty()) {
      Fail("--and-forward: no run of {} in the forward holds an op the copies copy", Quote(dims.dims[dim].name));
    }
    PrintForwardRuns(r->copies.graph, forward);
    return SplitWithForward(*r, forward, args.parts);
  }
  if (!args.whole_heavy_sums) return ApplyFission(graph, dims, {run, dim, args.parts});
  const std::vector<OpId> kept = WithoutHeavySums(graph, dims, dim, run);
  fmt::print("left whole: {} op(s) whose sums over {} outweigh what they read (run once after the parts)\n",
             run.size() - kept.size(), dims.dims[dim].name);
  return ApplyFission(graph, dims, {kept, dim, args.parts});
}

int Report(const Graph& graph, const FissionResult& r, const FissionArgs& args) {
  if (r.record.num_ops > 0) {
    fmt::print("fission:    {}\n", ToString(r.record));
    fmt::print("inputs:     {} sliced, outputs: {} joined, {} summed\n", r.record.sliced_inputs,
               r.record.joined_outputs, r.record.summed_outputs);
  }
  fmt::print("peak:       {} -> {} (program order)\n", FormatBytes(ComputeStats(graph).peak_bytes),
             FormatBytes(ComputeStats(r.graph).peak_bytes));
  if (!args.output.empty()) {
    SaveGraph(r.graph, args.output);
    fmt::print("wrote {}: {} ops\n", args.output, r.graph.num_ops());
  }
  return 0;
}

const Registrar kFission = Subcommand<FissionArgs>(
    "fission", "Split a run of ops along one dimension into parts (a fission by hand)", RunFission,
    [](CLI::App& cmd, FissionArgs& args) {
      AddGraphFile(cmd, args.path);
      cmd.add_option("--dim", args.dim, "dimension: name, id or kind (batch, sequence, ...; see memfit dims)");
      cmd.add_option("--spatial", args.spatial, "tile the images along H or W instead (NCHW convolutional runs)");
      cmd.add_option("--parts", args.parts, "number of parts (default 2)");
      cmd.add_option("--region", args.region, "which run of splittable ops, longest first (default 0)");
      cmd.add_option("--at", args.at, "the run that holds the op of this name instead of --region");
      cmd.add_flag("--why", args.why, "print why each op that is not split is refused");
      cmd.add_flag("--band", args.band,
                   "split only the run's band around its heaviest ops (those with a quarter or more of the largest "
                   "working set, and the ops between them); optimize tries it too");
      cmd.add_flag("--recompute", args.recompute,
                   "first copy the forward ops that make what the run reads (from the step's sources, no random "
                   "draws or BatchNorm) right before it, and split them with it; leaves heavy sums whole");
      cmd.add_flag("--two-pass-batchnorm", args.two_pass_batchnorm,
                   "first write every BatchNorm backward (batch statistics) as its two passes, the sums over the "
                   "batch then grad_input element-wise, so that runs reach through it");
      cmd.add_flag("--two-pass-batchnorm-forward", args.two_pass_forward,
                   "first write every BatchNorm forward (batch statistics) as its two passes, the statistics then "
                   "the normalization element-wise, so that --recompute copies what reads its output in parts");
      cmd.add_flag("--split-concats", args.split_concats,
                   "first write every convolution of a concatenation along the channels (a U-Net's decoder) as one "
                   "convolution per piece, summed, so that the concatenation is never made; alone, only that");
      cmd.add_flag("--heavy-runs", args.heavy_runs,
                   "split every backward run whose heaviest op holds half or more of what the heaviest op of any "
                   "backward run holds (the runs between BatchNorms where the memory floor is set), each in --parts; "
                   "leaves heavy sums whole");
      cmd.add_flag("--and-forward", args.and_forward,
                   "with --recompute (and --heavy-runs): split the forward runs that hold ops copied too (their "
                   "maps die in them once the copies replace them); optimize tries it");
      cmd.add_flag("--each-batch", args.each_batch,
                   "split each batch dimension in turn (two towers, or an encoder on each view of a contrastive "
                   "loss): a backward run as --recompute --and-forward does, else its longest run; optimize tries "
                   "it where there are two or more");
      cmd.add_flag("--whole-heavy-sums", args.whole_heavy_sums,
                   "leave out of the region the ops whose sums over the dimension outweigh what they read (a "
                   "classifier's weight gradient); optimize does");
      cmd.add_option("-o,--output", args.output, "write the transformed graph JSON");
    });

}  // namespace
}  // namespace memfit::cli
