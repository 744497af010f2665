#include "optimize/fission_search.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "analysis/dims.h"
#include "analysis/stats.h"
#include "sim/simulator.h"
#include "transform/batchnorm_two_pass.h"
#include "transform/concat_convolution.h"
#include "transform/masked_reductions.h"
#include "transform/fission.h"
#include "transform/recompute_forward.h"
#include "transform/spatial_fission.h"
#include "util/error.h"

namespace memfit {
namespace {

using Clock = std::chrono::steady_clock;

// A plan within this overhead of the unoptimized step is not worth splitting.
constexpr double kNoGain = 0.001;
// A rewrite of the graph as given that needs less memory in program order
// (convolutions of concatenations per piece) may add this share of its time
// under a memory limit it does not meet in program order; under a latency
// limit, kCheapBand of the limit's slack.
constexpr double kCheapRewrite = 0.02;
// Variants are prepared only until this share of the time budget is spent.
constexpr double kPrepareShare = 0.8;
// Under a latency limit, a peak band searched before the graph as given
// adds at most this share of the limit's slack in program order.
constexpr double kCheapBand = 0.1;
// ... with this share of the budget (time or work); the graph as given
// gets the rest.
constexpr double kBandShare = 0.5;
// Under a latency limit, the graph as given shares the budget with the
// variants (FissionSearchOptions::latency_base_share) when one of them needs
// at most this share of the peak in program order.
constexpr double kPromisingPeak = 0.5;
// ... and searches first the variants that leave remat and swapping at
// least this share of the limit's slack.
constexpr double kCrampedSlack = 0.25;
// ... and, among those whose program order needs at most this much more
// than the least, the least added time first.
constexpr double kSamePeak = 0.02;

// Floor variants searched (FissionCandidate::floor): those in the most parts.
constexpr size_t kFloorVariants = 2;

// A fissioned graph, simulated in program order.
struct Variant {
  std::string label;  // "images[0] x4"
  Graph graph;
  sim::SimResult program_order;
  bool band = false;   // of a peak band (FissionCandidate::band)
  bool floor = false;  // FissionCandidate::floor
};

// Dimensions to try: batch kinds first, then by reach (dims are sorted by
// reach already).
std::vector<int> DimsToTry(const DimensionGraph& dims) {
  std::vector<int> order;
  for (size_t d = 0; d < dims.dims.size(); ++d) {
    if (dims.dims[d].kind == "batch") order.push_back(static_cast<int>(d));
  }
  for (size_t d = 0; d < dims.dims.size(); ++d) {
    if (dims.dims[d].kind != "batch") order.push_back(static_cast<int>(d));
  }
  return order;
}

// The run of `runs` that holds the op named `name`.
std::optional<std::vector<OpId>> RunAt(const Graph& graph, const std::vector<std::vector<OpId>>& runs,
                                       const std::string& name) {
  for (const auto& run : runs) {
    for (OpId id : run) {
      if (graph.op(id).name == name) return run;
    }
  }
  return std::nullopt;
}

// `split`, then the run along H that holds its program-order peak in
// `tiles` tiles. When the peak is in part k of a split (PartName), the run
// that holds the same op in every part: a split inside each part (nesting;
// SpatialRegions keeps the parts' runs apart).
FissionResult TileAtPeak(FissionResult split, int tiles) {
  const std::string peak = ComputeStats(split.graph).peak_op;
  std::vector<std::string> names{peak};
  if (auto part = SplitPartName(peak); part && split.record.parts > 1) {
    names.clear();
    for (int k = 0; k < split.record.parts; ++k) names.push_back(PartName(part->first, k));
  }
  bool tiled = false;
  for (const std::string& name : names) {
    if (auto run = RunAt(split.graph, SpatialRegions(split.graph, 2), name)) {
      split = ApplySpatialFission(split.graph, {*run, 2, tiles});
      tiled = true;
    }
  }
  if (!tiled) Fail("spatial fission: no run of ops that tile along H holds the peak ({})", Quote(peak));
  return split;
}

}  // namespace

std::vector<FissionCandidate> FissionCandidates(const Graph& graph, const DimensionGraph& dims,
                                               const FissionSearchOptions& options) {
  std::vector<FissionCandidate> regions;
  std::set<std::vector<OpId>> seen;
  size_t dims_tried = 0;
  auto add = [&](std::string name, int d, const std::vector<OpId>& run, bool band) {
    regions.push_back({std::move(name), dims.dims[d].length,
                       [&graph, &dims, d, ops = WithoutHeavySums(graph, dims, d, run)](int n) {
                         return ApplyFission(graph, dims, {ops, d, n});
                       },
                       band});
  };
  for (int d : DimsToTry(dims)) {
    if (dims_tried == options.max_dims) break;
    auto found = FissionRegions(graph, dims, d);
    if (found.empty() || !seen.insert(found.front()).second) continue;
    ++dims_tried;
    add(dims.dims[d].name, d, found.front(), false);
    if (options.peak_bands) {
      const std::vector<OpId> band = PeakBand(graph, dims, d, found.front());
      // A band of most of the run would micro-batch the step again.
      if (band.size() >= 2 && 2 * band.size() <= found.front().size() && seen.insert(band).second) {
        add(fmt::format("{} band ({} .. {})", dims.dims[d].name, graph.op(band.front()).name, graph.op(band.back()).name),
            d, band, true);
      }
    }
  }
  // Each batch dimension in turn, where there are two or more of them
  // (two towers, or one encoder on each view of a contrastive loss).
  if (std::count_if(dims.dims.begin(), dims.dims.end(), [](const Dimension& d) { return d.kind == "batch"; }) >= 2) {
    if (const std::vector<int> batches = BatchesWithRunsOfTheirOwn(graph, dims); batches.size() >= 2) {
      std::vector<std::string> names;
      int64_t fewest = std::numeric_limits<int64_t>::max();
      for (int d : batches) {
        names.push_back(dims.dims[d].name);
        fewest = std::min(fewest, dims.dims[d].length);
      }
      regions.push_back({fmt::format("each batch ({})", fmt::join(names, ", ")), fewest,
                         [&graph, &dims, names](int n) { return SplitEachBatch(graph, dims, names, n); }});
    }
  }
  // A backward run with the forward that makes what it reads copied before
  // it (transform/recompute_forward.h): the saved activations are split
  // with it instead of held whole. The longest such run of each batch
  // dimension that has one (a GNN's nodes and its edges, whose messages
  // are the step's largest maps).
  if (options.recompute) {
    std::set<std::vector<OpId>> copied;
    for (int d : DimsToTry(dims)) {
      if (dims.dims[d].kind != "batch") break;  // batch kinds come first
      std::optional<RecomputeResult> copies;
      for (const auto& run : FissionRegions(graph, dims, d)) {
        if (graph.op(run.front()).phase != Phase::kBackward) continue;
        if (copied.count(run)) break;  // an earlier dimension's run (the batch seen from the labels)
        if ((copies = RecomputeForwardOf(graph, run, &dims, d))) {
          copied.insert(run);
          break;
        }
      }
      if (!copies) continue;
      const std::string name = fmt::format("{} with {}", dims.dims[d].name, ToString(copies->record));
      try {
        // Copied and found once; each variant only splits it.
        auto shared = std::make_shared<const RecomputedRun>(RunWithCopies(std::move(*copies), dims, d));
        regions.push_back({name, dims.dims[d].length, [shared](int n) { return shared->Split(n); }});
        // ... and the forward that made what the copies replace, split too:
        // its maps die in it now (a contrastive loss, `z @ z.t()`, ends the
        // forward's run before the backward's: whole, the forward alone
        // holds the step's peak).
        if (std::vector<std::vector<OpId>> forward = ForwardRunsBefore(*shared); !forward.empty()) {
          regions.push_back({fmt::format("{} and its forward", name), dims.dims[d].length,
                             [shared, forward = std::move(forward)](int n) {
                               return SplitWithForward(*shared, forward, n);
                             }});
        }
      } catch (const Error& e) {
        // The copies do not join the run: each variant is refused with why.
        regions.push_back({name, dims.dims[d].length, [why = std::string(e.what())](int) -> FissionResult {
                             throw Error(why);
                           }});
      }
    }
  }
  // BatchNorm in two passes (forward and backward), then the heavy backward
  // runs of the first batch dimension at once, each with the forward that
  // makes what it reads copied before it: a BatchNorm's grad_input made in
  // parts with the convolution's backward that reads it, and the maps they
  // read made again in parts from the images and the kept statistics
  // (segnet bs32 at 416x608: its floor, 0.43 of the peak, is three 1.93 GiB
  // maps at one op).
  if (options.two_pass_batchnorm &&
      std::any_of(graph.ops().begin(), graph.ops().end(), [&](const Op& op) { return HasTwoPassBackward(graph, op); })) {
    for (int d : DimsToTry(dims)) {
      if (dims.dims[d].kind != "batch") break;
      // Made on first use: only a limit nothing else meets needs it. Two
      // candidates: the backward in two passes alone (fewer ops: the faster
      // plan where it fits), and with the forwards again (the lower floor).
      struct TwoPass {
        bool made = false;
        RecomputedRuns plain, again;  // no runs: nothing to split (or copy)
      };
      auto two = std::make_shared<TwoPass>();
      auto make = [two, &graph, name = dims.dims[d].name, again_too = options.recompute]() {
        if (two->made) return;
        two->made = true;
        // `rewritten` with its heavy backward runs (none where the batch
        // dimension is gone).
        auto heavy_runs = [&name](Graph rewritten) {
          RecomputedRuns r;
          r.graph = std::move(rewritten);
          r.dims = ComputeDimensions(r.graph);
          if (const std::optional<int> dim = FindDimension(r.dims, name)) {
            r.dim = *dim;
            r.runs = HeavyBackwardRuns(r.graph, r.dims, r.dim);
          }
          return r;
        };
        Graph backward = TwoPassBatchNormBackward(graph);
        if (const RecomputedRuns both = again_too ? heavy_runs(TwoPassBatchNormForward(backward)) : RecomputedRuns{};
            !both.runs.empty()) {
          if (RecomputedRuns r = RecomputeBeforeEach(both.graph, both.dims, both.dim, both.runs); r.copied > 0) {
            two->again = std::move(r);
          }
        }
        two->plain = heavy_runs(std::move(backward));
      };
      const std::string& name = dims.dims[d].name;
      auto split = [two, make, name](bool again, int n) {
        make();
        const RecomputedRuns& r = again ? two->again : two->plain;
        if (r.runs.empty()) {
          Fail("fission: no heavy backward run of {} with BatchNorm in two passes{}", Quote(name),
               again ? " copies any forward" : "");
        }
        return ApplyFissions(r.graph, r.dims, r.dim, r.runs, n);
      };
      regions.push_back({fmt::format("{} heavy backward runs (BatchNorm backward in two passes)", name),
                         dims.dims[d].length, [split](int n) { return split(false, n); }, false, true});
      if (options.recompute) {
        regions.push_back({fmt::format("{} heavy backward runs with their forwards again (BatchNorm in two passes)",
                                       name),
                           dims.dims[d].length, [split](int n) { return split(true, n); }, false, true});
      }
      break;
    }
  }
  // Without BatchNorm: the heavy backward runs of each batch dimension at
  // once, each with its forward copied before it, where two or more get
  // copies (the recompute candidate above takes one): a GNN's layers, each
  // holding its messages along the edges from its forward to its backward.
  else if (options.recompute) {
    std::set<std::vector<std::vector<OpId>>> seen_runs;
    for (int d : DimsToTry(dims)) {
      if (dims.dims[d].kind != "batch") break;
      std::vector<std::vector<OpId>> heavy = HeavyBackwardRuns(graph, dims, d);
      if (heavy.size() < 2 || !seen_runs.insert(heavy).second) continue;
      auto again = std::make_shared<std::optional<RecomputedRuns>>();
      regions.push_back({fmt::format("{} heavy backward runs with their forwards again, and the forward", dims.dims[d].name),
                         dims.dims[d].length,
                         [again, &graph, &dims, d, heavy = std::move(heavy)](int n) {
                           if (!*again) *again = RecomputeBeforeEach(graph, dims, d, heavy);
                           const RecomputedRuns& r = **again;
                           if (r.copied < 2 || r.runs.empty()) {
                             Fail("fission: fewer than two heavy backward runs of {} copy their forward",
                                  Quote(dims.dims[d].name));
                           }
                           // ... and the forward's runs whose maps the copies replace.
                           std::vector<std::vector<OpId>> runs = r.runs;
                           for (auto& run : ForwardRunsOfCopies(r)) runs.push_back(std::move(run));
                           return ApplyFissions(r.graph, r.dims, r.dim, runs, n);
                         },
                         false, true});
    }
    // ... and every heavy run, the forward's too, split as it is (a GNN's
    // messages made and summed in parts, and their gradients).
    for (int d : DimsToTry(dims)) {
      if (dims.dims[d].kind != "batch") break;
      std::vector<std::vector<OpId>> heavy = HeavyRuns(graph, dims, d);
      if (heavy.size() < 2 || !seen_runs.insert(heavy).second) continue;
      regions.push_back({fmt::format("{} heavy runs", dims.dims[d].name), dims.dims[d].length,
                         [&graph, &dims, d, heavy = std::move(heavy)](int n) {
                           return ApplyFissions(graph, dims, d, heavy, n);
                         },
                         false, true});
    }
  }
  auto spatial = SpatialRegions(graph, 2);
  // Nesting (where convolutions tile along H; a transformer's attention
  // [B, heads, S, S] tiles too, but its peak is never there, and each
  // refused variant costs a whole split: 2.4 s of vit-base's 10 s): each
  // split of the batch (the longest run, or with its forward recomputed),
  // then the run along H at its program-order peak tiled, in every part
  // when the peak is in one.
  const bool convolutional = std::any_of(spatial.begin(), spatial.end(), [&](const std::vector<OpId>& run) {
    return std::any_of(run.begin(), run.end(),
                       [&](OpId id) { return graph.op(id).type.starts_with("aten.convolution"); });
  });
  if (options.nested_tiles > 1 && convolutional) {
    const size_t splits = regions.size();
    for (size_t i = 0; i < splits; ++i) {
      if (regions[i].band || regions[i].floor) continue;
      regions.push_back({fmt::format("{} (then H x{} at the peak)", regions[i].name, options.nested_tiles),
                         regions[i].max_parts, [split = regions[i].apply, tiles = options.nested_tiles](int n) {
                           return TileAtPeak(split(n), tiles);
                         }});
    }
  }
  // ... and the run at the program-order peak, when it is not one of them
  // (a U-Net's last decoder block: a few ops, the largest maps).
  std::optional<std::vector<OpId>> at_peak = RunAt(graph, spatial, ComputeStats(graph).peak_op);
  if (spatial.size() > options.max_spatial) spatial.resize(options.max_spatial);
  if (at_peak && std::find(spatial.begin(), spatial.end(), *at_peak) == spatial.end()) {
    spatial.push_back(std::move(*at_peak));
  }
  auto spatial_name = [&](size_t i) { return fmt::format("H (spatial, {})", graph.op(spatial[i].front()).name); };
  for (size_t i = 0; i < spatial.size(); ++i) {
    regions.push_back({spatial_name(i), std::numeric_limits<int64_t>::max(),
                       [&graph, ops = spatial[i]](int n) { return ApplySpatialFission(graph, {ops, 2, n}); }});
  }
  // Both spatial runs at once (a CNN's features forward and their
  // backward): the second is found again in the first's result by the
  // name of its first op (ops outside a fission keep their names).
  if (spatial.size() >= 2) {
    regions.push_back({spatial_name(0) + " + " + spatial_name(1), std::numeric_limits<int64_t>::max(),
                       [&graph, first = spatial[0], second = graph.op(spatial[1].front()).name](int n) {
                         FissionResult once = ApplySpatialFission(graph, {first, 2, n});
                         for (const auto& run : SpatialRegions(once.graph, 2)) {
                           for (OpId id : run) {
                             if (once.graph.op(id).name == second) return ApplySpatialFission(once.graph, {run, 2, n});
                           }
                         }
                         Fail("spatial fission: the run from {} is gone after the first fission", Quote(second));
                       }});
  }

  return regions;
}

OptimizeResult OptimizeWithFission(const Graph& graph, const sim::DeviceProfile& device, const sim::CostTable* costs,
                                   const OptimizeOptions& options, const FissionSearchOptions& fission) {
  CheckOptions(options);
  if (options.out_of_place) {
    return PlanOutOfPlace(graph, device, costs, options, [&](const Graph& g, const OptimizeOptions& o) {
      return OptimizeWithFission(g, device, costs, o, fission);
    });
  }
  const auto start = options.budget_start.value_or(Clock::now());
  auto seconds = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  auto emit = [&](SearchEvent e) {
    if (!options.on_event) return;
    e.seconds = seconds();
    options.on_event(e);
  };
  const bool latency_limit = options.lat_limit_ratio.has_value();

  // 0. Convolutions of concatenations written per piece
  //    (transform/concat_convolution.h): the graph every candidate is made
  //    from, where its program order needs less memory at no more time
  //    (U-Net bs32 256x256 on rtx3090: 11.34 -> 10.40 GiB, 445.8 -> 444.6
  //    ms), or at little more where the graph as given needs transforming
  //    anyway (small images: each piece's convolutions add launches; 128x128
  //    at batch 2, +1.3%). The limits stay the graph's as given.
  if (fission.split_concatenations) {
    Graph split = SplitConcatenatedConvolutions(graph);
    if (RecordedFissions(split).size() > RecordedFissions(graph).size()) {
      const sim::SimResult before = sim::Simulate(graph, ProgramOrderSteps(graph), device, costs);
      const sim::SimResult after = sim::Simulate(split, ProgramOrderSteps(split), device, costs);
      const double added_us = after.latency_us - before.latency_us;
      const double affordable_us =
          latency_limit ? kCheapBand * (*options.lat_limit_ratio - 1) * before.latency_us
          : options.mem_limit_bytes.value_or(
                static_cast<int64_t>(options.mem_limit_ratio.value_or(1) * static_cast<double>(before.peak_bytes))) <
                  before.peak_bytes
              ? kCheapRewrite * before.latency_us
              : kNoGain * before.latency_us;
      const bool kept = after.peak_bytes < before.peak_bytes && added_us <= affordable_us;
      emit({0, SearchStage::kFission, "program-order", RecordedFissions(split).back(), 0, after.peak_bytes,
            after.latency_us,
            kept ? "kept: every variant is made from it" : "dropped: its program order needs no less memory or more time"});
      if (kept) {
        OptimizeOptions o = options;
        o.budget_start = start;
        if (!o.reference) {
          o.reference = PlanFigures{before.latency_us, before.peak_bytes, before.recompute_us, before.swap_out_bytes};
        }
        FissionSearchOptions f = fission;
        f.split_concatenations = false;
        OptimizeResult r = OptimizeWithFission(split, device, costs, o, f);
        r.method += " + concatenations split";
        return r;
      }
    }
  }

  // 1. The regions (FissionCandidates). Without recomputation
  //    (--no-recompute) none that copies forward ops to run them again: that
  //    is recomputation written into the graph (ResNet-50 at 0.5 of its peak
  //    took such a plan, at +290%).
  //    They are made from the graph with its masked selections that feed a
  //    sum or a mean written densely (transform/masked_reductions.h: label
  //    smoothing's, which ended every run along the batch at the loss).
  const Graph dense = WriteMaskedReductionsDensely(graph);
  const DimensionGraph dims = ComputeDimensions(dense);
  FissionSearchOptions candidates = fission;
  candidates.recompute = candidates.recompute && options.allow_recompute;
  std::vector<FissionCandidate> regions = FissionCandidates(dense, dims, candidates);

  // A limit below the bytes that exist before the step cannot be met by
  // splitting ops: no variant is tried.
  // The limits refer to `reference`: the graph's own program order, or the
  // one given (the graph before its concatenations were split).
  const sim::SimResult own = sim::Simulate(graph, ProgramOrderSteps(graph), device, costs);
  sim::SimResult reference = own;
  if (options.reference) {
    reference.latency_us = options.reference->latency_us;
    reference.peak_bytes = options.reference->peak_bytes;
    reference.recompute_us = options.reference->recompute_us;
    reference.swap_out_bytes = options.reference->swap_bytes;
  }
  const GraphStats stats = ComputeStats(graph);
  const int64_t fixed_bytes = stats.param_bytes + stats.buffer_bytes + stats.optimizer_state_bytes;
  // The memory limit in bytes; none under a latency limit. A ratio small
  // enough to round to 0 bytes is a limit too, below the fixed bytes.
  const std::optional<int64_t> limit =
      options.mem_limit_bytes ? options.mem_limit_bytes
      : options.mem_limit_ratio
          ? std::optional<int64_t>(static_cast<int64_t>(std::min(*options.mem_limit_ratio * reference.peak_bytes, 0x1p62)))
          : std::nullopt;
  if (limit && *limit < fixed_bytes) regions.clear();
  // The floor candidates are prepared last, under a memory limit nothing
  // else met (never under a latency limit: every BatchNorm written in two
  // passes adds ops).
  std::vector<FissionCandidate> floors;
  for (auto it = regions.begin(); it != regions.end();) {
    if (!it->floor) {
      ++it;
      continue;
    }
    if (!latency_limit) floors.push_back(std::move(*it));
    it = regions.erase(it);
  }

  // Variants of `from`, simulated in program order. One whose program order
  // is already slower than `latency_cap` (the limit, or the plan in hand)
  // cannot win: remat and swapping only add time.
  std::vector<Variant> variants;
  // Into `into`; with `largest`, only in that many of the largest numbers
  // of parts; `reserved`: on time kept for them (the floor variants).
  double last_prepare_seconds = 0;  // what the last preparation took: the next one takes about as long
  auto prepare = [&](const std::vector<FissionCandidate>& from, double latency_cap, std::vector<Variant>& into,
                     size_t largest = std::numeric_limits<size_t>::max(), bool reserved = false) {
    for (const FissionCandidate& region : from) {
      std::vector<int> parts;
      for (int n : fission.parts) {
        if (n <= region.max_parts) parts.push_back(n);
      }
      if (latency_limit) {
        for (int n : fission.latency_limit_parts) {
          if (n <= region.max_parts && std::find(parts.begin(), parts.end(), n) == parts.end()) parts.push_back(n);
        }
        std::sort(parts.begin(), parts.end());
      }
      if (parts.size() > largest) parts.erase(parts.begin(), parts.end() - static_cast<std::ptrdiff_t>(largest));
      for (int n : parts) {
        const std::string label = fmt::format("{} x{}", region.name, n);
        // Preparing a variant (transform + one simulation) is not free on
        // large graphs: keep a fifth of the budget for searching them, and
        // start none that would end past that (bert-base bs32 at +10% with
        // --time-budget 1: x16 took 0.34 s from 0.36 s, on 0.5 s of search).
        if (!reserved && !options.work_budget &&
            seconds() + last_prepare_seconds > kPrepareShare * options.time_budget_seconds) {
          emit({0, SearchStage::kStop, "", "", 0, {}, {}, "time budget spent before preparing fission " + label});
          break;
        }
        const double prepare_start = seconds();
        try {
          FissionResult f = region.apply(n);
          sim::SimResult po = sim::Simulate(f.graph, ProgramOrderSteps(f.graph), device, costs);
          const bool slow = po.latency_us >= latency_cap;
          const bool no_gain = po.peak_bytes >= own.peak_bytes && !region.floor;
          emit({0, SearchStage::kFission, "program-order", label, 0, po.peak_bytes, po.latency_us,
                slow      ? "dropped: slower than the limit or the plan in hand before any remat"
                : no_gain ? "dropped: its program order needs no less memory"
                          : "a candidate"});
          if (!slow && !no_gain) into.push_back({label, std::move(f.graph), std::move(po), region.band, region.floor});
        } catch (const Error& e) {
          emit({0, SearchStage::kFission, "", label, 0, {}, {}, fmt::format("refused: {}", e.what())});
        }
        last_prepare_seconds = seconds() - prepare_start;
      }
    }
  };
  // One variant through the whole pipeline (schedules, remat, swapping,
  // offsets) against the untransformed graph's limits; the better plan is
  // kept. Returns the work it spent.
  std::optional<OptimizeResult> best;
  OptimizeOptions variant_options = options;
  variant_options.reference =
      PlanFigures{reference.latency_us, reference.peak_bytes, reference.recompute_us, reference.swap_out_bytes};
  auto search = [&](const Variant& v, OptimizeOptions o) -> int64_t {
    // The variant's own decisions name it before their schedule, and count
    // their seconds from the start of the whole search.
    if (options.on_event) {
      o.on_event = [&options, &v, offset = seconds()](SearchEvent e) {
        e.schedule = e.schedule.empty() ? v.label : fmt::format("{}/{}", v.label, e.schedule);
        e.seconds += offset;
        options.on_event(e);
      };
    }
    // Under a latency limit only a plan that needs less than the one in
    // hand is of use: the bisection starts there, and a variant that cannot
    // go below it is dropped after one probe.
    if (latency_limit && best) o.below_bytes = best->optimized.peak_bytes;
    try {
      OptimizeResult r = Optimize(v.graph, device, costs, o);
      const bool kept = !best || BetterPlan(r, *best, latency_limit);
      emit({0, SearchStage::kFission, r.scheduler, v.label, r.limit_bytes, r.optimized.peak_bytes,
            r.optimized.latency_us, kept ? "fits, kept" : "fits, dropped (not better)"});
      const int64_t runs = r.heuristic_runs;
      if (kept) {
        r.method = fmt::format("{} + fission {}", r.method, v.label);
        best = std::move(r);
      }
      return runs;
    } catch (const NoSmallerPlan& e) {
      emit({0, SearchStage::kFission, "", v.label, 0, {}, {}, fmt::format("dropped: {}", e.what())});
      return e.runs;
    } catch (const Error& e) {
      emit({0, SearchStage::kFission, "", v.label, 0, {}, {}, fmt::format("no plan: {}", e.what())});
      return o.work_budget.value_or(0);
    }
  };

  // 2. Under a latency limit, a peak band that costs almost nothing in
  //    program order goes first, with half the budget (its bisection
  //    returns what it does not need): it splits only the ops where the
  //    memory sits, so it leaves remat and swapping the limit's slack and
  //    converges sooner than the graph as given (gpt-neo-1.3b bs32 at
  //    +10%: its vocabulary head split x16 reaches 0.131 of the peak in 427
  //    heuristic runs; the graph as given 0.154 in 2,648).
  int64_t work_spent = 0;  // heuristic runs of the band and the graph as given
  const double latency_limit_us = latency_limit ? reference.latency_us * *options.lat_limit_ratio : 0;
  if (latency_limit && !regions.empty()) {
    std::vector<FissionCandidate> bands;
    for (const FissionCandidate& region : regions) {
      if (region.band) bands.push_back(region);
    }
    std::erase_if(regions, [](const FissionCandidate& region) { return region.band; });
    prepare(bands, latency_limit_us, variants);
    const double cheap_us = reference.latency_us + kCheapBand * (latency_limit_us - reference.latency_us);
    auto first = std::min_element(variants.begin(), variants.end(), [&](const Variant& a, const Variant& b) {
      const bool ca = a.program_order.latency_us <= cheap_us, cb = b.program_order.latency_us <= cheap_us;
      return ca != cb ? ca : a.program_order.peak_bytes < b.program_order.peak_bytes;
    });
    if (first != variants.end() && first->program_order.latency_us <= cheap_us) {
      Variant v = std::move(*first);
      variants.erase(first);
      OptimizeOptions o = variant_options;
      o.budget_start = start;
      o.time_budget_seconds = options.time_budget_seconds * kBandShare;
      if (options.work_budget) o.work_budget = std::max<int64_t>(1, *options.work_budget * kBandShare);
      work_spent += search(v, o);
    }
  }

  // The order the variants are searched in, and which are searched at all.
  // Under a memory limit: least added time first, those whose program order
  // already fits the limit before the others. Under a latency limit (every
  // variant left is within it): the least memory first, the objective, but
  // those whose splits leave at least a quarter of the limit's slack for
  // remat and swapping first (one that uses it all cannot go below its
  // program order: gpt-neo-1.3b micro-batched x16 is +9.7% at a limit of
  // +10%; bert-base x8, +5.6% at +10%, reaches 0.151 of the peak with a
  // 10 s budget when it goes first, 0.201 when it went last). Program-order
  // peaks within kSamePeak of the least say little about which variant
  // reaches the least memory: among those, the least added time first, which
  // leaves remat and swapping the most slack (U-Net at batch 32, +5%: its
  // batch in 4 parts reaches 0.364 of the peak; variants 1% lower in program
  // order but slower took its place and reached 0.399). At most
  // max_variants get a search, the last of them replaced by the one that
  // needs the least memory in program order, which the tightest limits
  // need. A peak band splits a few ops where a run splits a whole step: its
  // variants add little time but rarely need the least memory in program
  // order, so the first of them is searched too when none made the cut.
  auto order_variants = [&](double latency_cap) {
    auto roomy = [&](const Variant& v) {
      return (v.program_order.latency_us - reference.latency_us) <=
             (1 - kCrampedSlack) * (latency_cap - reference.latency_us);
    };
    int64_t least_peak = std::numeric_limits<int64_t>::max();
    for (const Variant& v : variants) {
      if (roomy(v)) least_peak = std::min(least_peak, v.program_order.peak_bytes);
    }
    auto near_least = [&](const Variant& v) {
      return static_cast<double>(v.program_order.peak_bytes) <= (1 + kSamePeak) * static_cast<double>(least_peak);
    };
    std::stable_sort(variants.begin(), variants.end(), [&](const Variant& a, const Variant& b) {
      if (latency_limit && roomy(a) != roomy(b)) return roomy(a);
      if (latency_limit && near_least(a) != near_least(b)) return near_least(a);
      if (latency_limit && near_least(a)) return a.program_order.latency_us < b.program_order.latency_us;
      if (latency_limit) return a.program_order.peak_bytes < b.program_order.peak_bytes;
      const bool fa = a.program_order.peak_bytes <= limit.value_or(0), fb = b.program_order.peak_bytes <= limit.value_or(0);
      if (fa != fb) return fa;
      return a.program_order.latency_us < b.program_order.latency_us;
    });
    if (variants.size() > fission.max_variants) {
      auto lowest = std::min_element(variants.begin(), variants.end(), [](const Variant& a, const Variant& b) {
        return a.program_order.peak_bytes < b.program_order.peak_bytes;
      });
      const auto last = variants.begin() + static_cast<std::ptrdiff_t>(fission.max_variants) - 1;
      if (lowest > last) std::iter_swap(last, lowest);
      const auto cut = last + 1;
      const bool has_band = std::any_of(variants.begin(), cut, [](const Variant& v) { return v.band; });
      const auto band = std::find_if(cut, variants.end(), [](const Variant& v) { return v.band; });
      const size_t keep = fission.max_variants + (!has_band && band != variants.end() ? 1 : 0);
      if (keep > fission.max_variants) std::iter_swap(cut, band);
      variants.resize(keep);
    }
  };
  // A variant that leaves most of the peak in program order (a split head
  // of ResNet-50: 5.25 GiB of 5.27) rarely beats the graph as given.
  auto promising = [&](const Variant& v) { return v.program_order.peak_bytes <= kPromisingPeak * reference.peak_bytes; };

  // 3. Under a latency limit, every variant within it is prepared now and
  //    ordered. When no band went first and the first variant is promising,
  //    it goes before the graph as given, on latency_base_share of the
  //    budget: the graph as given is then searched only below the plan in
  //    hand, and is dropped after one probe when it cannot go below it.
  //    bert-base bs32 s512 at +10% on rtx3090 with 3,000 runs: the graph as
  //    given, first, spent 1,500 of them reaching 4.02 GiB, not far below the
  //    4.51 GiB its x8 split needs in program order; x8, left 500, stopped at
  //    0.151 of the peak. Going first it reaches 0.148.
  if (latency_limit) {
    prepare(regions, latency_limit_us, variants);
    regions.clear();
    order_variants(latency_limit_us);
    if (!best && !variants.empty() && promising(variants.front())) {
      Variant v = std::move(variants.front());
      variants.erase(variants.begin());
      OptimizeOptions o = variant_options;
      o.budget_start = Clock::now();
      o.time_budget_seconds = std::max(0.05, (options.time_budget_seconds - seconds()) * fission.latency_base_share);
      if (options.work_budget) {
        o.work_budget = std::max<int64_t>(1, (*options.work_budget - work_spent) * fission.latency_base_share);
      }
      work_spent += search(v, o);
    }
  }

  // 4. The graph as given, on its share of the budget (time or work). Under
  //    a latency limit it takes the whole budget left when there are no
  //    variants, else at most latency_base_share of it, and its bisection
  //    returns what it does not use when it has converged; the variants
  //    share what is left.
  OptimizeOptions base_options = options;
  base_options.budget_start = Clock::now();
  if (options.on_event) {
    base_options.on_event = [&options, offset = seconds()](SearchEvent e) {
      e.seconds += offset;
      options.on_event(e);
    };
  }
  const bool base_first = latency_limit;
  const double share = base_first ? (std::any_of(variants.begin(), variants.end(), promising)
                                         ? fission.latency_base_share
                                         : 1.0)
                       : regions.empty() ? 1.0
                                         : fission.base_share;
  base_options.time_budget_seconds = std::max(0.05, (options.time_budget_seconds - seconds()) * share);
  if (options.work_budget) {
    base_options.work_budget = std::max<int64_t>(1, (*options.work_budget - work_spent) * share);
  }
  if (latency_limit && best) base_options.below_bytes = best->optimized.peak_bytes;
  std::string base_error;
  std::optional<int64_t> base_reached;  // the smallest memory the graph as given reaches, when bisected
  // With a plan in hand and the time spent, the graph as given would only
  // overrun the budget (its search and placement take their minimum anyway).
  const bool base_skipped = best && !options.work_budget && seconds() >= options.time_budget_seconds;
  if (base_skipped) emit({0, SearchStage::kStop, "", "", 0, {}, {}, "time budget spent before the graph as given"});
  if (!base_skipped) try {
    OptimizeResult r = Optimize(graph, device, costs, base_options);
    work_spent += r.heuristic_runs;
    if (!best || BetterPlan(r, *best, latency_limit)) best = std::move(r);
  } catch (const NoSmallerPlan& e) {
    emit({0, SearchStage::kBudget, "", "", 0, {}, {}, fmt::format("the graph as given dropped: {}", e.what())});
    work_spent += e.runs;
  } catch (const NoPlanFits& e) {
    work_spent += base_options.work_budget.value_or(0);
    base_error = e.what();
    base_reached = e.reached_bytes;
  } catch (const Error& e) {
    work_spent += base_options.work_budget.value_or(0);
    base_error = e.what();
  }
  // The work the variants share: what the searches so far left of the
  // budget, or the rest of the budget.
  const int64_t variants_work = !options.work_budget ? 0
                                : base_first ? std::max<int64_t>(0, *options.work_budget - work_spent)
                                             : static_cast<int64_t>(*options.work_budget * (1 - share));
  int64_t variants_spent = 0;  // heuristic runs of the variants below, out of variants_work
  // Nothing to gain from a plan as fast as the unoptimized step (fission
  // adds slices, joins and sums: it is never faster).
  if (best && !latency_limit && best->overhead() < kNoGain) regions.clear();
  if (regions.empty() && variants.empty() && (best || floors.empty())) {
    if (!best && base_reached) throw NoPlanFits(base_error, *base_reached);
    if (!best) throw Error(base_error);
    return *best;
  }

  // 5. The variants of the other regions (and the bands not searched).
  const double latency_cap = latency_limit ? latency_limit_us
                             : best        ? best->optimized.latency_us
                                           : std::numeric_limits<double>::infinity();
  if (!latency_limit) {
    prepare(regions, latency_cap, variants);
    order_variants(latency_cap);
  }

  //    Each through the whole pipeline; the remaining time halves for each
  //    (the least changed variants first, they are the likeliest to be
  //    fastest), and the work left is shared by the variants left (what a
  //    converged bisection did not use goes to the next ones).
  for (size_t i = 0; i < variants.size(); ++i) {
    const Variant& v = variants[i];
    const double left = options.time_budget_seconds - seconds();
    if (!options.work_budget && left <= 0.05) {
      emit({0, SearchStage::kStop, "", "", 0, {}, {}, "time budget spent before fission " + v.label});
      break;
    }
    const bool last = i + 1 == variants.size() && floors.empty();
    variant_options.budget_start = Clock::now();
    variant_options.time_budget_seconds = std::max(0.05, last ? left : left / 2);
    if (options.work_budget) {
      // The floor variants keep a share, as one variant.
      variant_options.work_budget = std::max<int64_t>(
          1, (variants_work - variants_spent) / static_cast<int64_t>(variants.size() - i + (floors.empty() ? 0 : 1)));
    }
    variants_spent += search(v, variant_options);
  }
  //    Then, when no plan met the limit, the floor variants in the most
  //    parts (the tightest limits need them: segnet bs32 reaches 0.36 of
  //    its peak in 4 parts, 0.33 in 8, 0.32 in 16), sharing what is left.
  //    The fastest in program order first; once one fits, the others only
  //    where their program order is faster than its plan (segnet bs32 at
  //    0.35: +82.8% with the backward in two passes, +40.8% with the
  //    forwards again).
  std::vector<Variant> floor_variants;
  if (!best) prepare(floors, latency_cap, floor_variants, kFloorVariants, true);
  std::stable_sort(floor_variants.begin(), floor_variants.end(), [](const Variant& a, const Variant& b) {
    return a.program_order.latency_us < b.program_order.latency_us;
  });
  for (size_t i = 0; i < floor_variants.size(); ++i) {
    if (best && floor_variants[i].program_order.latency_us >= best->optimized.latency_us) continue;
    const double left = options.time_budget_seconds - seconds();
    if (!options.work_budget && left <= 0.05) {
      emit({0, SearchStage::kStop, "", "", 0, {}, {}, "time budget spent before fission " + floor_variants[i].label});
      break;
    }
    const size_t remaining = floor_variants.size() - i;
    variant_options.budget_start = Clock::now();
    variant_options.time_budget_seconds = std::max(0.05, left / static_cast<double>(remaining));
    if (options.work_budget) {
      variant_options.work_budget =
          std::max<int64_t>(1, (variants_work - variants_spent) / static_cast<int64_t>(remaining));
    }
    variants_spent += search(floor_variants[i], variant_options);
  }
  if (!best && latency_limit) throw Error(fmt::format("{} (with fission: no variant within it either)", base_error));
  std::string reached = "no variant fits either";
  std::optional<int64_t> least;  // the least memory a variant reached
  if (!best) {
    // The smallest memory with fission: the variant that needs the least
    // in program order and the floor variant in the most parts, bisected
    // on what is left of the budget. A variant whose bisection goes below
    // the limit fits after all (its search at the limit, on its share of
    // the budget, did not find the plan; a small decoder imported from ONNX
    // at 0.5 of its peak, --time-budget 5, said "cannot be met ... with
    // fission: the smallest memory it reaches is 0.46"): it is searched at
    // the limit again, where a plan the bisection makes within the limit
    // is the plan (Optimize).
    std::vector<const Variant*> tried;
    const Variant* lowest = nullptr;
    for (const Variant& v : variants) {
      if (!lowest || v.program_order.peak_bytes < lowest->program_order.peak_bytes) lowest = &v;
    }
    if (lowest) tried.push_back(lowest);
    const Variant* floor = nullptr;  // the floor variant that needs the least in program order
    for (const Variant& v : floor_variants) {
      if (!floor || v.program_order.peak_bytes <= floor->program_order.peak_bytes) floor = &v;
    }
    if (floor) tried.push_back(floor);
    for (size_t i = 0; i < tried.size() && !best; ++i) {
      const double left_share = (options.time_budget_seconds - seconds()) / static_cast<double>(tried.size() - i);
      OptimizeOptions floor_options = variant_options;
      floor_options.budget_start = Clock::now();
      floor_options.time_budget_seconds = std::max(0.5, left_share);
      floor_options.mem_limit_ratio = 1.0;
      floor_options.lat_limit_ratio.reset();
      floor_options.mem_limit_bytes.reset();
      int64_t bytes = 0;
      try {
        bytes = SmallestReachableBytes(tried[i]->graph, device, costs, floor_options);
      } catch (const Error&) {
        continue;
      }
      bool under_limit = false;
      if (limit && bytes <= *limit) {
        OptimizeOptions at_limit = variant_options;
        at_limit.budget_start = Clock::now();
        at_limit.time_budget_seconds = std::max(0.5, options.time_budget_seconds - seconds());
        search(*tried[i], at_limit);
        if (best) break;
        under_limit = true;
      }
      if (least && *least <= bytes) continue;
      least = bytes;
      if (under_limit) {
        // Under the limit by simulated peak, and still no plan: its storages did
        // not pack into the limit in what was left (a seq2seq LSTM in 8 parts,
        // 12,914 steps: packed at 0.69 of its peak with --time-budget 60, not in
        // the default 10 s). Not "the smallest memory it reaches is" below the limit.
        reached = fmt::format("{} needs {} ({} bytes) by simulated peak, under the limit, but no plan of it was packed "
                              "into the limit within the {} (a larger {} may find one)",
                              tried[i]->label, FormatBytes(bytes), bytes,
                              options.work_budget ? "work budget" : "time budget",
                              options.work_budget ? "--work-budget" : "--time-budget");
        continue;
      }
      // Bisected on what is left of the budget, a variant may reach no
      // less than the graph as given: say so, not a larger "smallest".
      const bool less = !base_reached || bytes < *base_reached;
      const double peak = static_cast<double>(reference.peak_bytes);
      reached = fmt::format("{} {} ({} bytes, {}) with {}",
                            less ? "the smallest memory it reaches is" : "no less; the least a variant reached in the time left is",
                            FormatBytes(bytes), bytes,
                            FormatRatioBeside(static_cast<double>(bytes) / peak, static_cast<double>(limit.value_or(0)) / peak),
                            tried[i]->label);
    }
  }
  if (!best) {
    // What the graph as given or a variant reached (the least), when known:
    // PlanOutOfPlace tells the smaller of two searches'.
    std::optional<int64_t> reached_bytes = base_reached;
    if (least && (!reached_bytes || *least < *reached_bytes)) reached_bytes = least;
    const std::string message = fmt::format("{} (with fission: {})", base_error, reached);
    if (reached_bytes) throw NoPlanFits(message, *reached_bytes);
    throw Error(message);
  }
  best->seconds = seconds();
  emit({0, SearchStage::kResult, best->scheduler, best->method, best->limit_bytes, best->optimized.peak_bytes,
        best->optimized.latency_us,
        best->method.find("fission") != std::string::npos ? "kept: the fissioned graph's plan" : "kept: the plan of the graph as given"});
  return *best;
}

}  // namespace memfit
