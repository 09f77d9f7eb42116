#include "coordinator/job_runner.h"

#include <filesystem>
#include <iostream>
#include <memory>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/model_config.h"
#include "common/status_macros.h"
#include "coordinator/engine_requirements.h"
#include "coordinator/job_checkpoint.h"
#include "coordinator/job_run.h"
#include "coordinator/parallel_run.h"
#include "coordinator/sequential_run.h"
#include "coordinator/target_output.h"

namespace baq::coordinator {

JobRunner::JobRunner(JobConfig config, std::vector<BlockEngine*> engines, ProgressFn progress,
                     JobRunnerOptions options)
    : config_(std::move(config)),
      engines_(std::move(engines)),
      progress_(std::move(progress)),
      options_(std::move(options)) {}

void JobRunner::Log(const std::string& line) const {
  std::cerr << "baq-coordinator: job " << (options_.job_id.empty() ? "?" : options_.job_id)
            << ": " << line << std::endl;
}

absl::StatusOr<std::vector<std::unique_ptr<TargetOutput>>> JobRunner::CreateTargets(
    const ModelConfig& model) const {
  // One output per bit target (JobConfig::AllTargets); all are created up
  // front so that an existing output fails the job before any work.
  const std::vector<double> all_targets = config_.AllTargets();
  if (all_targets.size() > 1) {
    std::error_code ec;
    std::filesystem::create_directories(config_.output_dir, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot create output dir ", config_.output_dir, ": ", ec.message()));
    }
  }
  std::vector<std::unique_ptr<TargetOutput>> targets;
  for (double t : all_targets) {
    BAQ_ASSIGN_OR_RETURN(std::unique_ptr<TargetOutput> target,
                         TargetOutput::Create(config_.ForTarget(t), model,
                                              options_.module_objective));
    targets.push_back(std::move(target));
  }
  return targets;
}

absl::StatusOr<JobSummary> JobRunner::FinishTargets(
    const JobRun& run, std::vector<std::unique_ptr<TargetOutput>>& targets) {
  // Publish every target's output (each gated on its own); a failed gate
  // keeps that output unpublished and fails the job after the others.
  TargetOutput::FinishContext finish{run.engines.For(run.num_blocks - 1),
                                     run.num_blocks,
                                     &config_.measurement_dir,
                                     &run.progress,
                                     [&run] { return run.CheckCancel(); },
                                     run.log};
  JobSummary summary;
  absl::Status gate_failure;
  for (std::unique_ptr<TargetOutput>& target : targets) {
    run.progress.set_stage_report(&target->report());
    BAQ_ASSIGN_OR_RETURN(TargetSummary ts, target->Finish(finish));
    if (!ts.gate_status.ok() && gate_failure.ok()) gate_failure = ts.gate_status;
    summary.targets.push_back(std::move(ts));
  }
  static_cast<TargetSummary&>(summary) = summary.targets.front();
  summary.output_dir = config_.output_dir;
  if (!gate_failure.ok()) return gate_failure;  // The failing outputs are removed.
  return summary;
}

absl::StatusOr<JobSummary> JobRunner::Run() {
  BAQ_RETURN_IF_ERROR(config_.Validate());
  if (engines_.empty()) return absl::FailedPreconditionError("no workers to run the job on");
  if (config_.calibration_shards == 0) {
    // One shard per engine; a resumed job keeps the count its checkpoint has.
    const int32_t checkpointed = JobCheckpoint::CheckpointedShards(options_.checkpoint_dir);
    config_.calibration_shards = checkpointed > 0
                                     ? checkpointed
                                     : ResolveCalibrationShards(config_, engines_.size());
    if (engines_.size() > 1 || checkpointed > 0) {  // Local mode: one shard, nothing to say.
      Log(absl::StrCat("calibration shards: ", config_.calibration_shards,
                       checkpointed > 0 ? " (from the checkpoint)" : " (one per worker device)"));
    }
  }
  BAQ_ASSIGN_OR_RETURN(ModelConfig model, LoadModelConfig(config_.model_dir));
  ProgressReporter progress(progress_);
  const bool sequential = config_.mode == ExecutionMode::kSequential;
  const bool recovery = sequential && options_.recovery();
  BAQ_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<TargetOutput>> targets, CreateTargets(model));
  // The target whose quant_report.json records the stage times.
  progress.set_stage_report(&targets.front()->report());

  progress.Report(JobStage::kStarting, -1, 0, 0, "loading model and calibration data");
  EngineSet::Options set_options;
  set_options.max_worker_failures = options_.max_worker_failures;
  set_options.replacement_wait = options_.replacement_wait;
  set_options.survive_losses = recovery;
  if (recovery) set_options.more_engines = options_.more_engines;
  set_options.log = [this](const std::string& line) { Log(line); };
  if (options_.metrics != nullptr) {
    set_options.on_loss = [this] { options_.metrics->AddWorkerLoss(options_.job_id); };
  }
  set_options.needs = NeedsOf(config_, recovery, engines_.size());
  EngineSet engines(engines_, set_options, &cancelled_);
  BAQ_RETURN_IF_ERROR(engines.StartAll(config_));
  const int64_t n = engines.num_blocks();
  progress.set_num_blocks(n);
  progress.set_units_total(2 * n);
  engines.Plan(0, n);

  const JobRun run{config_,   options_,  engines_, engines, progress, cancelled_,
                   [this](const std::string& line) { Log(line); }, n};
  std::unique_ptr<SequentialRun> blocks;  // Keeps the checkpoint until the output is out.
  if (sequential) {
    blocks = std::make_unique<SequentialRun>(run, *targets.front());
    BAQ_RETURN_IF_ERROR(blocks->Run());
  } else {
    BAQ_RETURN_IF_ERROR(ParallelRun(run, targets).Run());
  }
  BAQ_ASSIGN_OR_RETURN(JobSummary summary, FinishTargets(run, targets));
  if (blocks != nullptr && blocks->resident() != nullptr) {
    const ResidentShards& r = *blocks->resident();
    summary.wire = r.wire();
    summary.replayed_blocks = r.replayed_blocks();
    summary.replay_seconds = r.replay_seconds();
    Log(absl::StrFormat(
        "resident shards: %.1f MB over the wire (Hessian partials %.1f, merged %.1f, weights "
        "%.1f, outputs %.1f, activations %.1f), %d block forward(s) replayed in %.2f s",
        summary.wire.total() / 1e6, summary.wire.hessian_partials / 1e6,
        summary.wire.hessian_merged / 1e6, summary.wire.weights / 1e6,
        summary.wire.outputs / 1e6, summary.wire.activations / 1e6, summary.replayed_blocks,
        summary.replay_seconds));
  }
  // Published: the checkpoint has served its purpose.
  if (blocks != nullptr) blocks->DiscardCheckpoint();
  for (BlockEngine* e : engines_) e->Reset();
  summary.wall_time = absl::Now() - progress.start();
  progress.Report(JobStage::kDone, -1, n, summary.achieved_bits,
                  absl::StrFormat("achieved %.4f bits (target %.4f)", summary.achieved_bits,
                                  summary.target_bits));
  return summary;
}

}  // namespace baq::coordinator
