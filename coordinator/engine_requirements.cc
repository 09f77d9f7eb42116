#include "coordinator/engine_requirements.h"

#include "absl/strings/str_cat.h"
#include "common/engine_capabilities.h"
#include "common/status_macros.h"

namespace baq::coordinator {
namespace {

template <class T>
absl::Status Check(BlockEngine& engine, const std::string& why) {
  if (why.empty() || CapabilityOf<T>(engine) != nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(engine.name(), " has no ", T::kName,
                                                    " capability, which the job needs (", why,
                                                    ")"));
}

}  // namespace

EngineNeeds NeedsOf(const JobConfig& config, bool recovery, size_t num_engines) {
  EngineNeeds needs;
  if (config.calibration_shards > 1) {
    needs.sharded_calibration = absl::StrCat("calibration_shards = ", config.calibration_shards);
  } else if (recovery) {
    needs.activation_transfer = "checkpointed block inputs";
  } else if (num_engines > 1) {
    needs.activation_transfer = absl::StrCat("block inputs move between ", num_engines, " engines");
  }
  if (config.AllTargets().size() > 1) {
    needs.target_switching = absl::StrCat(config.AllTargets().size(), " bit targets");
  }
  if (config.eval_gate.enabled()) needs.checkpoint_evaluator = "an eval gate";
  return needs;
}

absl::Status CheckCapabilities(BlockEngine& engine, const EngineNeeds& needs) {
  // An engine with layer ownership keeps its inputs resident and checkpoints
  // them itself (coordinator/resident_shards.h): it never needs to hand
  // activations to the coordinator.
  if (CapabilityOf<LayerOwnership>(engine) == nullptr) {
    BAQ_RETURN_IF_ERROR(Check<ActivationTransfer>(engine, needs.activation_transfer));
  }
  BAQ_RETURN_IF_ERROR(Check<ShardedCalibration>(engine, needs.sharded_calibration));
  BAQ_RETURN_IF_ERROR(Check<TargetSwitching>(engine, needs.target_switching));
  BAQ_RETURN_IF_ERROR(Check<CheckpointEvaluator>(engine, needs.checkpoint_evaluator));
  return absl::OkStatus();
}

}  // namespace baq::coordinator
