#include "report/roles.h"

namespace memfit::report {

std::string_view ToString(ReportRole role) {
  switch (role) {
    case ReportRole::kParameters:
      return "parameters";
    case ReportRole::kOptimizerState:
      return "optimizer state";
    case ReportRole::kInputs:
      return "inputs";
    case ReportRole::kActivations:
      return "activations";
    case ReportRole::kGradients:
      return "gradients";
    case ReportRole::kWorkspace:
      return "workspace";
  }
  return "?";
}

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
