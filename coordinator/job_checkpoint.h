// coordinator/job_checkpoint.h
//
// JobCheckpoint: the durable progress of one sequential-mode job, in
// `<data_dir>/jobs/<job id>/`, so a job survives the loss of a worker (the
// next block's inputs are restored from here onto another worker) and a
// coordinator restart (finished blocks are read back, never recomputed).
//
// After block b is quantized the runner saves, in this order:
//   block-<b>.out      b's output tensors and layer reports (the bytes the
//                      OutputAssembler gets; the coordinator has no LibTorch)
//   inputs-<b+1>.bin   the serialized activations entering block b+1
//                      (BlockEngine::ExportInputs of the worker that ran b)
//   manifest.json      blocks_done = b+1, the bit budget's carried state
//                      (BitBudget::State, including the reference losses
//                      solved so far; doubles as their IEEE bit patterns), worker failures survived, and the job's
//                      config, so a checkpoint is never applied to another
//                      job.
// Each file is written to a temporary name, fsync'ed, renamed into place,
// and the directory fsync'ed: the manifest is the commit point, so a crash
// at any moment leaves the previous consistent checkpoint. Older inputs
// files are deleted once the manifest no longer needs them.
//
// Thread-compatible: the job's runner thread calls all methods.
//
// Example:
//   JobCheckpoint ckpt(dir, JobConfigToJson(config));
//   absl::StatusOr<CheckpointState> s = ckpt.Load();   // NotFound: fresh job
//   ...
//   BAQ_RETURN_IF_ERROR(ckpt.SaveBlock(output, &next_inputs, state));
#ifndef BAQ_COORDINATOR_JOB_CHECKPOINT_H_
#define BAQ_COORDINATOR_JOB_CHECKPOINT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/block_protocol.h"
#include "coordinator/bit_budget.h"
#include "nlohmann/json.hpp"

namespace baq::coordinator {

// What manifest.json records.
struct CheckpointState {
  int64_t num_blocks = 0;
  int64_t blocks_done = 0;  // Blocks [0, blocks_done) are in the checkpoint.
  BitBudget::State budget;
  // Worker failures the job has survived, across coordinator restarts (the
  // retry budget is per job, not per run).
  int64_t worker_failures = 0;
  // How many times a coordinator resumed the job from this checkpoint.
  int64_t resumes = 0;
  // Resident shards (coordinator/resident_shards.h): the block whose inputs
  // every shard has durably checkpointed on the workers' storage; -1: none
  // (recovery re-embeds and replays from block 0).
  int64_t shard_checkpoint_block = -1;
  // The shard checkpoint before it (-1: the embeddings). Workers may still
  // be writing the latest one when they are lost (asynchronous checkpoints);
  // then the shards come back from this one, whose files and replay weights
  // are kept until a newer checkpoint supersedes the latest.
  int64_t shard_checkpoint_previous = -1;
};

class JobCheckpoint {
 public:
  // `config` identifies the job (JobConfigToJson); a manifest written for
  // another config is not loaded.
  JobCheckpoint(std::string dir, nlohmann::json config);

  const std::string& dir() const { return dir_; }

  // The calibration_shards of the job config a manifest in `dir` was written
  // for; 0 when there is none or it cannot be read (a fresh start).
  static int32_t CheckpointedShards(const std::string& dir);

  // NotFound: no checkpoint (a fresh job). FailedPrecondition: the
  // checkpoint belongs to another config. DataLoss: unreadable manifest.
  absl::StatusOr<CheckpointState> Load() const;
  // DataLoss if the file is missing, truncated or malformed.
  absl::StatusOr<BlockOutput> LoadBlock(int64_t block) const;
  absl::StatusOr<std::string> LoadInputs(int64_t block) const;

  // Saves `output` (block b = output.block), then `next_inputs` (the inputs
  // of b+1; null for the last block), then the manifest `state`
  // (REQUIRES: state.blocks_done == b + 1). Internal on I/O errors
  // (disk full: the job fails rather than run on without durability).
  absl::Status SaveBlock(const BlockOutput& output, const std::string* next_inputs,
                         const CheckpointState& state);
  // Resident shards: the quantized weights of `block` as the next block sees
  // them (LayerOwnership), kept until every shard has a checkpoint past it,
  // so a lost shard can be replayed; "weights-<b>.bin", the block file's
  // encoding. DataLoss/NotFound as LoadBlock.
  absl::Status SaveWeights(int64_t block, const std::vector<TensorBytes>& weights);
  absl::StatusOr<std::vector<TensorBytes>> LoadWeights(int64_t block) const;
  // Deletes the weights of the blocks before `block`.
  void DropWeightsBefore(int64_t block);
  // Rewrites the manifest only (e.g. the failure count after a failover).
  absl::Status SaveState(const CheckpointState& state);
  // Deletes the directory (the job is finished). Best effort.
  void Remove();

 private:
  std::string BlockPath(int64_t block) const;
  std::string InputsPath(int64_t block) const;
  std::string WeightsPath(int64_t block) const;
  absl::Status CreateDir();
  absl::StatusOr<BlockOutput> ReadBlockFile(const std::string& path, int64_t block) const;
  absl::Status WriteManifest(const CheckpointState& state);

  const std::string dir_;
  const nlohmann::json config_;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_JOB_CHECKPOINT_H_
