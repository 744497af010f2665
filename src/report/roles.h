// The roles a report stacks memory by: the tensor roles of ir/tensor.h
// grouped as a reader thinks of a training step, plus an op's workspace.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "ir/tensor.h"

namespace memfit::report {

enum class ReportRole : uint8_t {
  kParameters,      // parameters and buffers (BatchNorm running stats)
  kOptimizerState,  // Adam moments, SGD momentum
  kInputs,          // the data fed to the step
  kActivations,     // forward and backward intermediates, the step's outputs
  kGradients,
  kWorkspace,       // an op's scratch memory
};
inline constexpr size_t kNumReportRoles = 6;

// "parameters", "optimizer state", "inputs", "activations", "gradients", "workspace".
std::string_view ToString(ReportRole role);
ReportRole RoleOf(TensorRole role);

// Bytes by report role.
using RoleBytes = std::array<int64_t, kNumReportRoles>;

}  // namespace memfit::report
