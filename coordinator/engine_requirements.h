// coordinator/engine_requirements.h
//
// Which optional engine capabilities (common/engine_capabilities.h) a job
// relies on, and the check that an engine offers them. EngineSet checks every
// engine before it starts it (replacements too), so a job that needs, say,
// sharded calibration fails at once with FailedPrecondition naming the engine
// and the capability, instead of mid-job.
//
// Example:
//   EngineNeeds needs = NeedsOf(config, /*recovery=*/true, engines.size());
//   BAQ_RETURN_IF_ERROR(CheckCapabilities(*engine, needs));
#ifndef BAQ_COORDINATOR_ENGINE_REQUIREMENTS_H_
#define BAQ_COORDINATOR_ENGINE_REQUIREMENTS_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "common/block_engine.h"
#include "common/job_config.h"

namespace baq::coordinator {

struct EngineNeeds {
  // Each names why the job needs the capability; empty: not needed.
  std::string activation_transfer;
  std::string sharded_calibration;
  std::string target_switching;
  std::string checkpoint_evaluator;
};

// What a job with `config` run on `num_engines` engines needs: activation
// transfer when activations cross engines or go into checkpoints (recovery
// mode; unsharded jobs), sharded calibration for calibration_shards > 1,
// target switching for several bit targets, checkpoint evaluation for an
// eval gate.
EngineNeeds NeedsOf(const JobConfig& config, bool recovery, size_t num_engines);

// OK if `engine` offers everything in `needs` (layer ownership stands in for
// activation transfer: such engines run the resident data path); else
// FailedPrecondition, e.g.
// "worker a:1 device 0 has no sharded calibration capability, which the job
// needs (calibration_shards = 4)".
absl::Status CheckCapabilities(BlockEngine& engine, const EngineNeeds& needs);

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_ENGINE_REQUIREMENTS_H_
