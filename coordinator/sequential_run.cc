#include "coordinator/sequential_run.h"

#include <iostream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/engine_capabilities.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "coordinator/job_store.h"

namespace baq::coordinator {
namespace {

struct ResumePoint {
  int64_t first_block = 0;  // The first block not in the checkpoint.
  std::string inputs;       // Its inputs (empty for block 0).
  CheckpointState state;
};

// Reads `checkpoint` back: hands the finished blocks to `publish` in order,
// restores `budget`, and counts the resume. A checkpoint of another config
// or one that cannot be read is discarded (the job starts over: slower,
// never wrong).
absl::StatusOr<ResumePoint> ReadCheckpoint(JobCheckpoint& checkpoint, int64_t num_blocks,
                                           BitBudget& budget, TargetOutput& publish,
                                           bool resident) {
  ResumePoint point;
  point.state.num_blocks = num_blocks;
  absl::StatusOr<CheckpointState> state = checkpoint.Load();
  if (!state.ok()) {
    if (!absl::IsNotFound(state.status())) {
      std::cerr << "baq-coordinator: discarding checkpoint " << checkpoint.dir() << ": "
                << state.status() << std::endl;
      checkpoint.Remove();
    }
    return point;
  }
  if (state->num_blocks != num_blocks) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint ", checkpoint.dir(), " has ", state->num_blocks,
                     " blocks, the model ", num_blocks, ": was the model changed?"));
  }
  for (int64_t b = 0; b < state->blocks_done; ++b) {
    BAQ_ASSIGN_OR_RETURN(BlockOutput output, checkpoint.LoadBlock(b));
    BAQ_RETURN_IF_ERROR(publish.AddBlock(output));
  }
  budget.Restore(state->budget);
  if (!resident && state->blocks_done > 0 && state->blocks_done < num_blocks) {
    BAQ_ASSIGN_OR_RETURN(point.inputs, checkpoint.LoadInputs(state->blocks_done));
  }
  point.first_block = state->blocks_done;
  point.state = *state;
  ++point.state.resumes;
  BAQ_RETURN_IF_ERROR(checkpoint.SaveState(point.state));
  std::cerr << "baq-coordinator: resuming from " << checkpoint.dir() << ": " << state->blocks_done
            << " of " << num_blocks << " blocks done, " << state->worker_failures
            << " worker failure(s) so far, resume " << point.state.resumes << std::endl;
  return point;
}

}  // namespace

SequentialRun::SequentialRun(const JobRun& run, TargetOutput& target)
    : run_(run),
      target_(target),
      recovery_(run.options.recovery()),
      sharded_(run.config.calibration_shards > 1),
      shard_run_(run.config.calibration_shards) {
  state_.num_blocks = run.num_blocks;
}

absl::Status SequentialRun::Resume() {
  const int64_t n = run_.num_blocks;
  BitBudget& budget = target_.budget();
  checkpoint_ = std::make_unique<JobCheckpoint>(run_.options.checkpoint_dir,
                                                JobConfigToJson(run_.config));
  BAQ_ASSIGN_OR_RETURN(ResumePoint resume,
                       ReadCheckpoint(*checkpoint_, n, budget, target_, resident_ != nullptr));
  first_ = resume.first_block;
  state_ = resume.state;
  inputs_ = std::move(resume.inputs);
  run_.engines.set_failures(static_cast<int>(state_.worker_failures));
  if (first_ > 0) {
    run_.progress.set_units_done(2 * first_);
    run_.progress.Report(JobStage::kQuantizing, first_, first_, budget.achieved_bits(),
                         absl::StrCat("resumed from the checkpoint: ", first_, " of ", n,
                                      " blocks done"));
  }
  run_.engines.Plan(first_, n);
  return absl::OkStatus();
}

absl::Status SequentialRun::Run() {
  const std::vector<BlockEngine*> live = run_.engines.Live();
  if ((recovery_ || (sharded_ && live.size() > 1)) &&
      ResidentShards::Supports(live, run_.config.calibration_shards).ok()) {
    ResidentOptions options;
    options.shards = run_.config.calibration_shards;
    options.num_blocks = run_.num_blocks;
    options.checkpoint_every = run_.options.shard_checkpoint_every;
    options.shard_dir = run_.options.shard_checkpoint_dir;
    if (options.shard_dir.empty() && !run_.options.checkpoint_dir.empty()) {
      options.shard_dir = run_.options.checkpoint_dir + "/shards";
    }
    options.keep_weights = recovery_;
    resident_ = std::make_unique<ResidentShards>(std::move(options));
  }
  if (recovery_ && !run_.options.checkpoint_dir.empty()) BAQ_RETURN_IF_ERROR(Resume());
  if (resident_ != nullptr) {
    // Weights are stored next to the outputs when there is a checkpoint.
    resident_->set_weight_store(checkpoint_.get());
    resident_->Begin(first_, state_.shard_checkpoint_block, state_.shard_checkpoint_previous);
  }
  BitBudget& budget = target_.budget();
  for (int64_t b = first_; b < run_.num_blocks;) {
    BAQ_RETURN_IF_ERROR(run_.CheckCancel());
    if (resident_ != nullptr) {
      const BitBudget::State before = budget.state();
      bool committed = false;
      const absl::Status status = RunResidentBlock(b, committed);
      if (status.ok()) {
        run_.progress.AddUnits(2);
        ++b;
        continue;
      }
      if (!recovery_ || run_.cancelled.load()) return status;
      if (!committed) budget.Restore(before);
      BAQ_RETURN_IF_ERROR(Recover(b, nullptr, status));
      if (committed) {
        run_.progress.AddUnits(2);
        ++b;
      }
      continue;
    }
    BlockEngine* e = run_.engines.For(b);
    const BitBudget::State before = budget.state();
    std::string next_inputs;
    // Calls on `e`; errors here may be the worker's loss.
    const absl::Status engine_status = RunBlock(b, e, next_inputs);
    if (engine_status.ok()) {
      run_.progress.AddUnits(2);
      // An engine's ExportInputs hands its copy over (sequential mode), so
      // in recovery mode every block imports the checkpointed inputs.
      holder_ = recovery_ ? nullptr : e;
      inputs_ = std::move(next_inputs);
      ++b;
      continue;
    }
    if (!recovery_ || run_.cancelled.load()) return engine_status;
    budget.Restore(before);
    BAQ_RETURN_IF_ERROR(Recover(b, e, engine_status));
  }
  return absl::OkStatus();
}

absl::Status SequentialRun::RunBlock(int64_t b, BlockEngine* e, std::string& next_inputs) {
  const int64_t n = run_.num_blocks;
  const JobConfig& config = run_.config;
  BitBudget& budget = target_.budget();
  if (sharded_) {
    shard_run_.Assign(run_.engines.Live());
    if (recovery_) {
      if (inputs_.empty()) {  // Block 0 and no checkpoint: every engine has it.
        BAQ_ASSIGN_OR_RETURN(std::vector<std::string> all, shard_run_.ExportAllFromFirst(b));
        inputs_ = PackShardInputs(all);
      }
      BAQ_ASSIGN_OR_RETURN(std::vector<std::string> parts,
                           UnpackShardInputs(inputs_, config.calibration_shards));
      BAQ_RETURN_IF_ERROR(shard_run_.ImportInputs(b, std::move(parts)));
    }
  } else if (b > 0 && e != holder_) {
    BAQ_ASSIGN_OR_RETURN(ActivationTransfer * to, RequireCapability<ActivationTransfer>(*e));
    if (recovery_) {
      BAQ_RETURN_IF_ERROR(to->ImportInputs(b, inputs_));
    } else {
      BAQ_ASSIGN_OR_RETURN(ActivationTransfer * from,
                           RequireCapability<ActivationTransfer>(*holder_));
      BAQ_ASSIGN_OR_RETURN(std::string bytes, from->ExportInputs(b));
      WireBytes moved;
      moved.activations = 2 * static_cast<int64_t>(bytes.size());  // Out and in.
      CountWireBytes(moved);
      BAQ_RETURN_IF_ERROR(to->ImportInputs(b, std::move(bytes)));
    }
  }
  run_.progress.Report(JobStage::kMeasuring, b, b, budget.achieved_bits(),
                       absl::StrCat("block ", b));
  BAQ_ASSIGN_OR_RETURN(BlockMeasurement m, sharded_ ? shard_run_.Measure(b) : e->Measure(b));
  BAQ_ASSIGN_OR_RETURN(std::vector<LayerAllocation> alloc, budget.AllocateBlock(m));
  target_.report().AddAllocation(alloc);
  run_.progress.Report(JobStage::kQuantizing, b, b, budget.achieved_bits(),
                       absl::StrCat("block ", b));
  BAQ_ASSIGN_OR_RETURN(BlockOutput output,
                       sharded_ ? shard_run_.Quantize(b, alloc) : e->Quantize(b, alloc));
  if (recovery_ && b + 1 < n && sharded_) {
    BAQ_ASSIGN_OR_RETURN(std::vector<std::string> parts, shard_run_.ExportInputs(b + 1));
    next_inputs = PackShardInputs(parts);
  } else if (recovery_ && b + 1 < n) {
    BAQ_ASSIGN_OR_RETURN(ActivationTransfer * from, RequireCapability<ActivationTransfer>(*e));
    BAQ_ASSIGN_OR_RETURN(next_inputs, from->ExportInputs(b + 1));
  }
  if (!next_inputs.empty()) {
    WireBytes moved;  // The next block's inputs, to the checkpoint.
    moved.activations = static_cast<int64_t>(next_inputs.size());
    CountWireBytes(moved);
  }
  return Commit(b, output, b + 1 < n ? &next_inputs : nullptr);
}

absl::Status SequentialRun::Commit(int64_t b, const BlockOutput& output,
                                   const std::string* next_inputs) {
  BitBudget& budget = target_.budget();
  budget.Record(output);
  if (checkpoint_ != nullptr) {
    state_.blocks_done = b + 1;
    state_.budget = budget.state();
    state_.worker_failures = run_.engines.failures();
    if (resident_ != nullptr) {
      state_.shard_checkpoint_block = resident_->durable();
      state_.shard_checkpoint_previous = resident_->previous();
    }
    BAQ_RETURN_IF_ERROR(Annotate(checkpoint_->SaveBlock(output, next_inputs, state_),
                                 absl::StrCat("checkpointing block ", b)));
  }
  return target_.AddBlock(output);
}

void SequentialRun::CountWireBytes(const WireBytes& block) {
  CoordinatorMetrics* metrics = run_.options.metrics;
  if (metrics == nullptr) return;
  const std::string& job = run_.options.job_id;
  metrics->AddWireBytes(job, WireKind::kHessian, block.hessian_partials + block.hessian_merged);
  metrics->AddWireBytes(job, WireKind::kWeights, block.weights + block.outputs);
  metrics->AddWireBytes(job, WireKind::kActivations, block.activations);
}

absl::Status SequentialRun::RunResidentBlock(int64_t b, bool& committed) {
  BitBudget& budget = target_.budget();
  resident_->Assign(run_.engines.Live());
  run_.progress.Report(JobStage::kMeasuring, b, b, budget.achieved_bits(),
                       absl::StrCat("block ", b));
  BAQ_ASSIGN_OR_RETURN(BlockMeasurement m, resident_->Measure(b));
  BAQ_ASSIGN_OR_RETURN(std::vector<LayerAllocation> alloc, budget.AllocateBlock(m));
  target_.report().AddAllocation(alloc);
  run_.progress.Report(JobStage::kQuantizing, b, b, budget.achieved_bits(),
                       absl::StrCat("block ", b));
  BAQ_ASSIGN_OR_RETURN(BlockOutput output, resident_->Quantize(b, alloc));
  // The engines run their shards through the quantized block (and, when
  // due, checkpoint them) while the weights are written for replays. The
  // block is decided either way: it is committed even when an engine is
  // lost in Advance, whose shards are then replayed before the next block.
  const int64_t durable = resident_->durable();
  const absl::Status advanced = resident_->Advance(b);
  CountWireBytes(resident_->block_wire());
  BAQ_RETURN_IF_ERROR(resident_->FlushWeights());
  BAQ_RETURN_IF_ERROR(Commit(b, output, nullptr));  // Records durable() too.
  committed = true;
  // A newer shard checkpoint is recorded: the weights before the one before
  // it (the fallback while workers may still be writing the newest) are not
  // needed for a replay any more.
  if (resident_->durable() != durable && resident_->previous() >= 0) {
    resident_->ReleaseWeightsBefore(resident_->previous());
  }
  return advanced;
}

absl::Status SequentialRun::Recover(int64_t b, BlockEngine* e, const absl::Status& error) {
  const absl::Time lost = absl::Now();
  // A sharded block's failure names its engine (none: not a worker's).
  BlockEngine* failed = resident_ != nullptr ? resident_->failed()
                        : sharded_           ? shard_run_.failed()
                                             : e;
  if (failed == nullptr) return error;
  BAQ_RETURN_IF_ERROR(run_.engines.Fail(failed, error, run_.config));
  if (holder_ == failed) holder_ = nullptr;
  run_.engines.Plan(b, run_.num_blocks);
  if (checkpoint_ != nullptr) {
    state_.worker_failures = run_.engines.failures();
    BAQ_RETURN_IF_ERROR(checkpoint_->SaveState(state_));
  }
  const std::string msg = absl::StrFormat(
      "worker lost at block %d (%s); redoing it on %d live engine(s) after %s, failure %d "
      "of at most %d",
      b, error.message(), run_.engines.live(), absl::FormatDuration(absl::Now() - lost),
      run_.engines.failures(), run_.options.max_worker_failures);
  run_.log(msg);
  run_.progress.Report(JobStage::kMeasuring, b, b, target_.budget().achieved_bits(), msg);
  return absl::OkStatus();
}

void SequentialRun::DiscardCheckpoint() {
  if (checkpoint_ != nullptr) checkpoint_->Remove();
}

}  // namespace baq::coordinator
