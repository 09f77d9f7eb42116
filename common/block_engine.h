// common/block_engine.h
//
// BlockEngine: what a worker does for one job on one device, block by block.
// Implemented by worker::TorchBlockEngine (LibTorch, CPU or CUDA); driven by
// the coordinator's JobRunner through a WorkerHandle — in process in local
// mode, over gRPC (worker/worker_service.cc) in the distributed service.
// The interface is torch-free so the coordinator and the service layer can
// name it without linking LibTorch.
//
// Sequential mode: Measure(l) needs the inputs of block l, which Quantize(l-1)
// produced from the *quantized* block l-1 (or ImportInputs). Parallel mode:
// Measure(l) also produces the inputs of l+1 from the unquantized block, so
// all blocks can be measured before any is quantized.
//
// Thread-compatible: one thread (the device executor) calls all methods,
// except Cancel().
#ifndef BAQ_COMMON_BLOCK_ENGINE_H_
#define BAQ_COMMON_BLOCK_ENGINE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/block_protocol.h"
#include "common/job_config.h"

namespace baq {

class BlockEngine {
 public:
  virtual ~BlockEngine() = default;

  // Names the engine in messages, e.g. "worker w1 (10.0.0.5:7001) device 0".
  virtual std::string name() const { return "local engine"; }

  // Validates the model and calibration data of `config`, draws the
  // calibration windows and embeds them (the inputs of block 0).
  virtual absl::Status Start(const JobConfig& config) = 0;
  virtual int64_t num_blocks() const = 0;

  // Runs block `block` over its inputs, accumulating each linear layer's
  // Hessian; for BAQ also runs pass 1 and returns the per-column losses
  // (layers have empty losses for GPTQ/RTN).
  // REQUIRES: the inputs of `block` are present.
  virtual absl::StatusOr<BlockMeasurement> Measure(int64_t block) = 0;

  // Quantizes block `block` (BAQ pass 2 with `allocation`, one entry per
  // layer of the measurement; ignored for GPTQ/RTN), returns its output
  // tensors and, in sequential mode, runs the quantized block to produce the
  // inputs of block+1. Frees the block's Hessians.
  // REQUIRES: Measure(block) succeeded.
  virtual absl::StatusOr<BlockOutput> Quantize(
      int64_t block, const std::vector<LayerAllocation>& allocation) = 0;

  // Hands the inputs of `block` to another worker: serialized activations.
  virtual absl::StatusOr<std::string> ExportInputs(int64_t block) = 0;
  virtual absl::Status ImportInputs(int64_t block, std::string bytes) = 0;

  // Drops all state of the job (cancel, finish).
  virtual void Reset() = 0;

  // Perplexity of the checkpoint in `model_dir` (HF layout, e.g. a job's
  // staged fake-quant output or its unquantized input) over non-overlapping
  // `seqlen`-token windows of `text_file`, the GPTQ paper's protocol as
  // `baq eval` computes it (worker/model/checkpoint_perplexity.h), on this
  // engine's device. Independent of the job state: callable before Start()
  // and after Reset(). The paths are on this engine's file system.
  // Default: Unimplemented (engines that cannot evaluate).
  virtual absl::StatusOr<double> Evaluate(const std::string& model_dir,
                                          const std::string& text_file, int64_t seqlen) {
    (void)model_dir, (void)text_file, (void)seqlen;
    return absl::UnimplementedError("this engine cannot evaluate checkpoints");
  }

  // Several bit targets over one measurement (JobConfig::extra_target_bits,
  // parallel mode). Later Measure/Quantize calls use `target_bits` instead of
  // the job's target (BAQ's reference width, GPTQ/RTN's width). With
  // `keep_measurement`, Quantize(b) keeps block b's weights and Hessians, and
  // a later Measure(b) only redoes BAQ pass 1 at the new target from them
  // (no calibration forward, no inputs needed). Default: Unimplemented.
  virtual absl::Status SetTarget(double target_bits, bool keep_measurement) {
    (void)target_bits, (void)keep_measurement;
    return absl::UnimplementedError("this engine cannot switch bit targets");
  }

  // Calibration shards (JobConfig::calibration_shards = S > 1, sequential
  // mode): after Start() the engine holds every shard's inputs of block 0.
  // Per block the coordinator
  //   1. calls AccumulateHessians(block, shards) on each engine with the
  //      shards it owns: the engine runs the unquantized block over those
  //      shards' windows, drops its other shards' inputs of the block, and
  //      returns one fp64 partial per (shard, input group), by shard then
  //      group;
  //   2. merges the partials in shard order (p_0 + p_1 + ..., exactly the
  //      additions one engine holding all shards makes in Measure) and hands
  //      the merged sums (shard -1) to every engine with ImportHessians;
  //   3. calls Measure(block) on one engine (it uses the imported Hessians,
  //      no forward) and Quantize(block, allocation) on every engine: each
  //      produces the next block's inputs of its own shards.
  // Measure() on an engine that was not given Hessians does steps 1-2 itself
  // (it must hold all S shards). ExportShardInputs/ImportShardInputs move one
  // shard's inputs of a block (checkpoints, failover); an export hands the
  // shard over (the engine drops it).
  // Defaults: Unimplemented (engines that cannot shard).
  virtual absl::StatusOr<std::vector<HessianPartial>> AccumulateHessians(
      int64_t block, const std::vector<int32_t>& shards) {
    (void)block, (void)shards;
    return absl::UnimplementedError("this engine cannot shard the calibration set");
  }
  virtual absl::Status ImportHessians(int64_t block, std::vector<HessianPartial> merged) {
    (void)block, (void)merged;
    return absl::UnimplementedError("this engine cannot shard the calibration set");
  }
  virtual absl::StatusOr<std::string> ExportShardInputs(int64_t block, int32_t shard) {
    (void)block, (void)shard;
    return absl::UnimplementedError("this engine cannot shard the calibration set");
  }
  virtual absl::Status ImportShardInputs(int64_t block, int32_t shard, std::string bytes) {
    (void)block, (void)shard, (void)bytes;
    return absl::UnimplementedError("this engine cannot shard the calibration set");
  }

  // Thread-safe: the one method any thread may call, also while another
  // method runs. Makes the call in progress return Cancelled soon (between
  // layers and calibration windows, not at the next block), and every later
  // call too; the owner then Reset()s or destroys the engine. Sticky: a
  // cancelled engine is not reused. Default: no-op (calls run to their end).
  virtual void Cancel() {}
};

}  // namespace baq

#endif  // BAQ_COMMON_BLOCK_ENGINE_H_
