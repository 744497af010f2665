#include "remat/eviction.h"

#include "util/enum_names.h"

namespace memfit::remat {
namespace {

// Keeps a use or an access at the current instant finite.
constexpr double kEpsilonUs = 1e-3;

}  // namespace

constexpr EnumName<EvictionScore> kEvictionScoreNames[] = {
    {EvictionScore::kNextUse, "next-use"}, {EvictionScore::kStaleness, "staleness"},
    {EvictionScore::kCostPerByte, "cost-per-byte"}};

std::string_view ToString(EvictionScore score) { return NameOf(kEvictionScoreNames, score); }

double NextUseScore(double penalty_us, int64_t bytes, double until_use_us) {
  return penalty_us / (static_cast<double>(bytes) * (until_use_us + kEpsilonUs));
}

double StalenessScore(double penalty_us, double evicted_readers_us, int64_t bytes, double staleness_us) {
  return (penalty_us + evicted_readers_us) / (static_cast<double>(bytes) * (staleness_us + kEpsilonUs));
}

double CostPerByteScore(double penalty_us, int64_t bytes) { return penalty_us / static_cast<double>(bytes); }

double SwapPenalty(double stall_us, double copy_us, double swap_bias) { return stall_us + swap_bias * copy_us; }

}  // namespace memfit::remat
