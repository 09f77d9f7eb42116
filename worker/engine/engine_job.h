// worker/engine/engine_job.h
//
// What the pieces of a TorchBlockEngine share about the job in progress:
// EngineJob (the config, the model and its checkpoint, set by Start) and
// BlockState (one measured block: its weights on every rank and its layers'
// Hessians). Plain structs, owned by the engine facade
// (worker/torch_block_engine.cc) and read by the pieces in worker/engine/.
#ifndef BAQ_WORKER_ENGINE_ENGINE_JOB_H_
#define BAQ_WORKER_ENGINE_ENGINE_JOB_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "common/job_config.h"
#include "common/model_config.h"
#include "common/safetensors_checkpoint.h"
#include "worker/model/decoder_block.h"

namespace baq::worker {

// Returns Cancelled once the engine was cancelled; checked between layers
// and calibration chunks.
using CancelCheck = std::function<absl::Status()>;

struct EngineJob {
  JobConfig config;  // The current target's (TargetSwitching::SetTarget).
  ModelConfig model;
  std::unique_ptr<SafetensorsCheckpoint> ckpt;
  BlockOptions block_options;  // On the first device, in the forward dtype.
  int64_t calibration_tokens = 0;
  // Partial Hessian sums per layer input (EngineOptions::hessian_partials).
  int num_partials = 1;

  bool sequential() const { return config.mode == ExecutionMode::kSequential; }
  bool sharded() const { return config.calibration_shards > 1; }
};

struct BlockState {
  std::unique_ptr<DecoderBlock> block;
  // The block on ranks 1.. (same weights), for their share of the forward.
  std::vector<std::unique_ptr<DecoderBlock>> replicas;
  // Parallel to block->linear_layers(); hessians[i] on rank i % world.
  // Undefined for a layer whose input group's merged sum was not imported
  // here (LayerOwnership: an owner gets only its layers' groups).
  std::vector<at::Tensor> hessians;
  // Parallel to block->linear_layers(), or empty (nothing quantized yet):
  // the replicas hold layer i's quantized weight (sequential mode).
  std::vector<bool> quantized;

  // The block on every rank: [block, replicas...].
  std::vector<DecoderBlock*> AllReplicas() const {
    std::vector<DecoderBlock*> out = {block.get()};
    for (const auto& r : replicas) out.push_back(r.get());
    return out;
  }
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_ENGINE_ENGINE_JOB_H_
