// common/block_engine.h
//
// BlockEngine: what a worker does for one job on one device, block by block.
// Implemented by worker::TorchBlockEngine (LibTorch, CPU or CUDA); driven by
// the coordinator's JobRunner through a WorkerHandle — in process in local
// mode, over gRPC (worker/service/worker_service.cc) in the distributed service.
// The interface is torch-free so the coordinator and the service layer can
// name it without linking LibTorch.
//
// BlockEngine holds only what every engine does. What only some engines do
// (move activations, shard the calibration set, switch bit targets, evaluate
// checkpoints) are separate interfaces in common/engine_capabilities.h, which
// an engine offers through the accessors below; callers ask by type:
//
//   BAQ_ASSIGN_OR_RETURN(ActivationTransfer* t,
//                        RequireCapability<ActivationTransfer>(engine));
//   BAQ_ASSIGN_OR_RETURN(std::string bytes, t->ExportInputs(block));
//
// Sequential mode: Measure(l) needs the inputs of block l, which Quantize(l-1)
// produced from the *quantized* block l-1 (or ActivationTransfer::ImportInputs).
// Parallel mode: Measure(l) also produces the inputs of l+1 from the
// unquantized block, so all blocks can be measured before any is quantized.
//
// Thread-compatible: one thread (the device executor) calls all methods,
// except Cancel().
#ifndef BAQ_COMMON_BLOCK_ENGINE_H_
#define BAQ_COMMON_BLOCK_ENGINE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/block_protocol.h"
#include "common/job_config.h"

namespace baq {

class ActivationTransfer;
class ShardedCalibration;
class TargetSwitching;
class CheckpointEvaluator;
class LayerOwnership;

class BlockEngine {
 public:
  virtual ~BlockEngine() = default;

  // Names the engine in messages, e.g. "worker w1 (10.0.0.5:7001) device 0".
  virtual std::string name() const = 0;

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

  // Drops all state of the job (cancel, finish).
  virtual void Reset() = 0;

  // Thread-safe: the one method any thread may call, also while another
  // method runs. Makes the call in progress return Cancelled soon (between
  // layers and calibration windows, not at the next block), and every later
  // call too; the owner then Reset()s or destroys the engine. Sticky: a
  // cancelled engine is not reused. An engine whose calls are short may make
  // this a no-op.
  virtual void Cancel() = 0;

  // Optional capabilities (common/engine_capabilities.h): the engine itself
  // (or a part it owns) when it offers one, else null. The pointer lives as
  // long as the engine. Prefer CapabilityOf<T>/RequireCapability<T>.
  virtual ActivationTransfer* activation_transfer() { return nullptr; }
  virtual ShardedCalibration* sharded_calibration() { return nullptr; }
  virtual TargetSwitching* target_switching() { return nullptr; }
  virtual CheckpointEvaluator* checkpoint_evaluator() { return nullptr; }
  virtual LayerOwnership* layer_ownership() { return nullptr; }
};

}  // namespace baq

#endif  // BAQ_COMMON_BLOCK_ENGINE_H_
