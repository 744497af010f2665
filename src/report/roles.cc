#include "report/roles.h"

#include "util/enum_names.h"

namespace memfit::report {

constexpr EnumName<ReportRole> kReportRoleNames[] = {
    {ReportRole::kParameters, "parameters"}, {ReportRole::kOptimizerState, "optimizer state"},
    {ReportRole::kInputs, "inputs"}, {ReportRole::kActivations, "activations"}, {ReportRole::kGradients, "gradients"},
    {ReportRole::kWorkspace, "workspace"}};

std::string_view ToString(ReportRole role) { return NameOf(kReportRoleNames, role); }

ReportRole RoleOf(TensorRole role) {
  switch (role) {
    case TensorRole::kParameter:
    case TensorRole::kBuffer:
      return ReportRole::kParameters;
    case TensorRole::kOptimizerState:
      return ReportRole::kOptimizerState;
    case TensorRole::kInput:
      return ReportRole::kInputs;
    case TensorRole::kGradient:
      return ReportRole::kGradients;
    case TensorRole::kActivation:
    case TensorRole::kOutput:
      return ReportRole::kActivations;
  }
  return ReportRole::kActivations;
}

}  // namespace memfit::report
