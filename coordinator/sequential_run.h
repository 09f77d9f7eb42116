// coordinator/sequential_run.h
//
// SequentialRun: the blocks of a sequential-mode job, one after another,
// each measured and quantized with the inputs the previous block's
// quantized output produced (JobRunner's header describes the modes). It
// moves inputs between engines when the plan switches engine, and in
// recovery mode (JobRunnerOptions::recovery()) checkpoints every block,
// resumes from an earlier checkpoint, and redoes a block whose worker was
// lost on the live engines, restoring the bit budget first, so the output
// is byte-identical to an undisturbed run.
//
// When every engine offers LayerOwnership (real engines do), a job with
// recovery or with calibration shards over several engines runs resident
// (coordinator/resident_shards.h): activations never leave the workers, the
// checkpoint holds outputs, budget and the quantized weights since the
// workers' last shard checkpoint, and a lost worker's shards are replayed.
// Otherwise (scripted engines in tests) inputs move through the coordinator
// and sharded blocks run on all live engines (coordinator/calibration_shards.h).
//
// Thread-compatible: the job's runner thread makes every call.
//
// Example:
//   SequentialRun blocks(run, *targets.front());
//   BAQ_RETURN_IF_ERROR(blocks.Run());
//   ... publish ...
//   blocks.DiscardCheckpoint();
#ifndef BAQ_COORDINATOR_SEQUENTIAL_RUN_H_
#define BAQ_COORDINATOR_SEQUENTIAL_RUN_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/block_engine.h"
#include "coordinator/calibration_shards.h"
#include "coordinator/job_checkpoint.h"
#include "coordinator/job_run.h"
#include "coordinator/resident_shards.h"
#include "coordinator/target_output.h"

namespace baq::coordinator {

class SequentialRun {
 public:
  // `run` and `target` (the job's only target) must outlive *this.
  SequentialRun(const JobRun& run, TargetOutput& target);

  // Runs every block not in the checkpoint and hands each to the target.
  absl::Status Run();
  // Removes the checkpoint, if any (after the output is published).
  void DiscardCheckpoint();
  // The resident data path's counters, or null when the job did not run
  // resident.
  const ResidentShards* resident() const { return resident_.get(); }

 private:
  // Reads the checkpoint back (recovery mode with a checkpoint dir).
  absl::Status Resume();
  // Block `b` on engine `e`: inputs, measure, allocate, quantize, export the
  // next block's inputs (recovery), checkpoint, publish. Errors may be the
  // loss of a worker; `next_inputs` gets the next block's inputs.
  absl::Status RunBlock(int64_t b, BlockEngine* e, std::string& next_inputs);
  // Block `b` on the resident shards; `committed` is set once the block's
  // output is recorded (a later error only concerns the engines' state).
  absl::Status RunResidentBlock(int64_t b, bool& committed);
  // Adds a block's bytes to the job's wire-bytes metric (if metrics are on).
  void CountWireBytes(const WireBytes& block);
  // Records block b's output: budget, checkpoint, publish.
  absl::Status Commit(int64_t b, const BlockOutput& output, const std::string* next_inputs);
  // After `error` in block `b` on `e`: drops the lost worker and re-plans
  // the remaining blocks, or returns the error if the job cannot go on.
  absl::Status Recover(int64_t b, BlockEngine* e, const absl::Status& error);

  const JobRun& run_;
  TargetOutput& target_;
  const bool recovery_;
  const bool sharded_;  // Calibration shards (coordinator/calibration_shards.h).
  std::unique_ptr<JobCheckpoint> checkpoint_;
  CheckpointState state_;
  int64_t first_ = 0;  // The first block to run.
  // The inputs of the next block, exported after the previous one (recovery
  // mode; in sharded jobs every shard's, packed).
  std::string inputs_;
  // The engine holding the next block's inputs when it is not `inputs_`
  // (every started engine holds block 0's after Start).
  BlockEngine* holder_ = nullptr;
  // Sharded jobs: each block runs on the live engines, the shards dealt over them.
  ShardedBlock shard_run_;
  // The resident data path, when the engines offer it (see the file comment).
  std::unique_ptr<ResidentShards> resident_;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_SEQUENTIAL_RUN_H_
