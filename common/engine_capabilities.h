// common/engine_capabilities.h
//
// The optional capabilities of a BlockEngine (common/block_engine.h), one
// interface each, torch-free. An engine offers a capability by returning it
// from the matching accessor (usually `this`, the engine inheriting the
// interface); the coordinator asks by type before it relies on one, so a
// missing capability is a clear FailedPrecondition naming the engine and the
// capability, never an Unimplemented error code found mid-job:
//
//   BAQ_ASSIGN_OR_RETURN(ShardedCalibration* s,
//                        RequireCapability<ShardedCalibration>(engine));
//   BAQ_ASSIGN_OR_RETURN(std::vector<HessianPartial> p, s->AccumulateHessians(b, {0}));
//
// Same threading as BlockEngine: the engine's one caller thread calls these.
#ifndef BAQ_COMMON_ENGINE_CAPABILITIES_H_
#define BAQ_COMMON_ENGINE_CAPABILITIES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/block_engine.h"
#include "common/block_protocol.h"

namespace baq {

// Moves one block boundary's calibration activations between engines
// (several workers, checkpoints, failover). Unsharded jobs only.
class ActivationTransfer {
 public:
  static constexpr const char kName[] = "activation transfer";
  virtual ~ActivationTransfer() = default;

  // The inputs of `block`, serialized. Idempotent: a repeated call returns
  // the same bytes, so a lost reply may be retried. In sequential mode the
  // engine keeps them until the block has moved on (see the engine's doc).
  virtual absl::StatusOr<std::string> ExportInputs(int64_t block) = 0;
  // Takes the inputs of `block` (bytes from ExportInputs).
  virtual absl::Status ImportInputs(int64_t block, std::string bytes) = 0;
};

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
class ShardedCalibration {
 public:
  static constexpr const char kName[] = "sharded calibration";
  virtual ~ShardedCalibration() = default;

  virtual absl::StatusOr<std::vector<HessianPartial>> AccumulateHessians(
      int64_t block, const std::vector<int32_t>& shards) = 0;
  virtual absl::Status ImportHessians(int64_t block, std::vector<HessianPartial> merged) = 0;
  virtual absl::StatusOr<std::string> ExportShardInputs(int64_t block, int32_t shard) = 0;
  virtual absl::Status ImportShardInputs(int64_t block, int32_t shard, std::string bytes) = 0;
};

// Several bit targets over one measurement (JobConfig::extra_target_bits,
// parallel mode).
class TargetSwitching {
 public:
  static constexpr const char kName[] = "bit-target switching";
  virtual ~TargetSwitching() = default;

  // Later Measure/Quantize calls use `target_bits` instead of the job's
  // target (BAQ's reference width, GPTQ/RTN's width). With
  // `keep_measurement`, Quantize(b) keeps block b's weights and Hessians,
  // and a later Measure(b) only redoes BAQ pass 1 at the new target from
  // them (no calibration forward, no inputs needed).
  virtual absl::Status SetTarget(double target_bits, bool keep_measurement) = 0;
};

// Resident calibration shards with one owner per layer (the distributed
// data path, docs/architecture.md). Every engine keeps the calibration
// shards it was dealt on its own device for the whole job; per block only
// Hessian partials and quantized weights travel. For block b the coordinator
//   1. calls ShardedCalibration::AccumulateHessians(b, its shards) on every
//      engine at once and merges the partials in shard order (an engine that
//      holds every shard instead measures with plain Measure(b): no
//      partials travel);
//   2. places every layer of BlockLayers(b) on one owner (balanced by
//      Hessian size) and hands each owner the merged sums of the input
//      groups of its layers (ShardedCalibration::ImportHessians with only
//      those groups);
//   3. MeasureLayers(b, owned) on each owner; the bit budget allocates over
//      the whole block's measurement;
//   4. QuantizeLayers(b, owned, allocation) on each owner: its layers'
//      output tensors and their quantized weights;
//   5. AdvanceShards(b, the weights of the layers the engine did not
//      quantize) on every engine: each runs its own shards through the
//      quantized block, producing their inputs of b + 1 in place.
//   6. every K blocks, CheckpointShards(b + 1, dir) on every engine.
// A lost engine's shards are dealt to the survivors, which RestoreShard()
// them from the latest checkpoint (or re-embed them: block 0) and replay the
// blocks since with AdvanceShards(block, every layer's weights). No decided
// layer is re-quantized; the bits equal local mode with P = shards.
// Unsharded jobs (calibration_shards = 1) are one shard, numbered 0.
class LayerOwnership {
 public:
  static constexpr const char kName[] = "layer ownership";
  virtual ~LayerOwnership() = default;

  // The linear layers of `block` in the block's order (the order of
  // BlockMeasurement::layers and BlockOutput::layers).
  virtual absl::StatusOr<std::vector<LayerShape>> BlockLayers(int64_t block) = 0;

  // BAQ pass 1 of `layers` (indices into BlockLayers(block), distinct,
  // increasing; empty losses for GPTQ/RTN), from merged Hessians this engine
  // imported or measured. The result lists exactly those layers, in order.
  virtual absl::StatusOr<BlockMeasurement> MeasureLayers(int64_t block,
                                                         const std::vector<int32_t>& layers) = 0;

  // Quantizes `layers` (as above) with `allocation` (one entry per listed
  // layer, in the same order). The output's layers and tensors cover only
  // those layers, in order; the weights are what the next block must see.
  virtual absl::StatusOr<OwnedLayersOutput> QuantizeLayers(
      int64_t block, const std::vector<int32_t>& layers,
      const std::vector<LayerAllocation>& allocation) = 0;

  // Sets the quantized weights of `block` this engine did not quantize
  // itself (`weights`, one per layer, named by the layer; a replay gives
  // every layer) and runs every shard the engine holds at `block` through
  // the quantized block: they become the shards' inputs of block + 1. Then
  // drops the block's state. FailedPrecondition naming the layer if a layer
  // has neither been quantized here nor been given.
  virtual absl::Status AdvanceShards(int64_t block, std::vector<TensorBytes> weights) = 0;

  // Writes every shard this engine holds at `block` to
  // `dir`/shard-<k>.block-<b>.baqa (activation_format, written to a
  // temporary name, fsync'ed and renamed) and returns their numbers.
  virtual absl::StatusOr<std::vector<int32_t>> CheckpointShards(int64_t block,
                                                                const std::string& dir) = 0;

  // Takes `shard`'s inputs of `block` from the file CheckpointShards wrote in
  // `dir` (NotFound when absent, DataLoss when malformed), or, for block 0
  // with an empty `dir`, embeds the shard's calibration windows again.
  virtual absl::Status RestoreShard(int64_t block, int32_t shard, const std::string& dir) = 0;
};

// Perplexity of a checkpoint, for the eval gate (coordinator/eval_gate.h).
class CheckpointEvaluator {
 public:
  static constexpr const char kName[] = "checkpoint evaluation";
  virtual ~CheckpointEvaluator() = default;

  // Perplexity of the checkpoint in `model_dir` (HF layout, e.g. a job's
  // staged fake-quant output or its unquantized input) over non-overlapping
  // `seqlen`-token windows of `text_file`, the GPTQ paper's protocol as
  // `baq eval` computes it (worker/model/checkpoint_perplexity.h), on this
  // engine's device. Independent of the job state: callable before Start()
  // and after Reset(). The paths are on this engine's file system.
  virtual absl::StatusOr<double> Evaluate(const std::string& model_dir,
                                          const std::string& text_file, int64_t seqlen) = 0;
};

namespace engine_internal {
inline ActivationTransfer* Find(BlockEngine& e, ActivationTransfer*) {
  return e.activation_transfer();
}
inline ShardedCalibration* Find(BlockEngine& e, ShardedCalibration*) {
  return e.sharded_calibration();
}
inline TargetSwitching* Find(BlockEngine& e, TargetSwitching*) { return e.target_switching(); }
inline CheckpointEvaluator* Find(BlockEngine& e, CheckpointEvaluator*) {
  return e.checkpoint_evaluator();
}
inline LayerOwnership* Find(BlockEngine& e, LayerOwnership*) { return e.layer_ownership(); }
}  // namespace engine_internal

// The capability T of `engine`, or null when it does not offer it.
template <class T>
T* CapabilityOf(BlockEngine& engine) {
  return engine_internal::Find(engine, static_cast<T*>(nullptr));
}

// The capability T of `engine`, or FailedPrecondition naming the engine and
// the capability ("worker w1 (...) device 0 has no sharded calibration").
template <class T>
absl::StatusOr<T*> RequireCapability(BlockEngine& engine) {
  if (T* c = CapabilityOf<T>(engine)) return c;
  return absl::FailedPreconditionError(
      absl::StrCat(engine.name(), " has no ", T::kName, " capability"));
}

}  // namespace baq

#endif  // BAQ_COMMON_ENGINE_CAPABILITIES_H_
