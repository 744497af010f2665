// The checkpointing baselines users apply today, without a budget: forward
// results that are not checkpoints are dropped after their last forward use
// and recomputed on demand in the backward pass (torch.utils.checkpoint
// semantics). They run the heuristic's stage loop (heuristic.h) with
// HeuristicOptions::drop_after_forward and no budget.
#pragma once

#include <cstdint>
#include <string_view>

#include "remat/heuristic.h"
#include "remat/problem.h"

namespace memfit::remat {

enum class Baseline : uint8_t {
  kCheckpointBlocks,  // keep each block's inputs (block: name up to its first numeric component)
  kSqrtN,             // Chen et al.: sqrt(n) segments of the forward nodes
};
std::string_view ToString(Baseline baseline);

// Always done() and fits (there is no budget to miss).
HeuristicResult RunBaseline(const Problem& problem, Baseline baseline);

}  // namespace memfit::remat
