// worker/engine/sharded_hessians.h
//
// ShardedHessians: a TorchBlockEngine's side of calibration shards
// (JobConfig::calibration_shards = S > 1; the protocol is in
// common/engine_capabilities.h, ShardedCalibration). It runs the unquantized
// block over the shards' inputs this engine holds (one fp64 partial per
// shard and input group), builds a block's state from merged sums, and, for
// an engine holding all S shards, merges them itself in shard order — the
// same additions as the coordinator's merge (coordinator/calibration_shards.h).
// Sharded engines span one device (the facade checks), so every call runs
// on rank 0.
//
// Thread-compatible: the engine's caller thread only.
#ifndef BAQ_WORKER_ENGINE_SHARDED_HESSIANS_H_
#define BAQ_WORKER_ENGINE_SHARDED_HESSIANS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/block_protocol.h"
#include "worker/engine/block_activations.h"
#include "worker/engine/device_group.h"
#include "worker/engine/engine_job.h"
#include "worker/quant/hessian_accumulator.h"

namespace baq::worker {

class ShardedHessians {
 public:
  // Not owned; outlive *this.
  ShardedHessians(DeviceGroup* group, BlockActivations* activations)
      : group_(group), activations_(activations) {}

  void Clear() { pending_.clear(); }

  // ShardedCalibration::AccumulateHessians: `shards` distinct, increasing,
  // held by this engine (InvalidArgument / FailedPrecondition otherwise); the
  // engine's other shards of the block are dropped. Keeps the loaded block
  // for ImportHessians.
  absl::StatusOr<std::vector<HessianPartial>> Accumulate(const EngineJob& job, int64_t block,
                                                         const std::vector<int32_t>& shards,
                                                         const CancelCheck& check);
  // ShardedCalibration::ImportHessians: the block's state from the merged
  // sums of all or some of the block's input groups (InvalidArgument for an
  // extra, repeated or misshapen sum). The layers of a group not given get
  // an undefined Hessian (LayerOwnership: owners import only their groups).
  absl::StatusOr<BlockState> Import(const EngineJob& job, int64_t block,
                                    std::vector<HessianPartial> merged);
  // Measure() without imported sums: accumulates every shard (all must be
  // held here) and merges them in shard order.
  absl::StatusOr<BlockState> AccumulateAll(const EngineJob& job, int64_t block,
                                           const CancelCheck& check);
  // The block Accumulate loaded for `block` and Import has not taken, or
  // null; the caller owns it then (LayerOwnership::AdvanceShards on an
  // engine that owns no layer of the block).
  std::unique_ptr<DecoderBlock> TakePending(int64_t block);
  // Quantize(): each shard this engine holds goes through the quantized
  // block; they become the shards' inputs of block + 1.
  absl::Status ForwardShards(int64_t block, const std::vector<DecoderBlock*>& replicas,
                             const CancelCheck& check);

 private:
  // Runs `b` over each of `shards`' inputs of `block`, in order; element i
  // holds shard i's partial sums by input group.
  absl::StatusOr<std::vector<std::map<int, HessianAccumulator>>> AccumulateShards(
      DecoderBlock& b, int64_t block, const std::vector<int32_t>& shards,
      const CancelCheck& check);

  DeviceGroup* const group_;
  BlockActivations* const activations_;
  // Blocks loaded by Accumulate, awaiting Import.
  std::map<int64_t, std::unique_ptr<DecoderBlock>> pending_;
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_ENGINE_SHARDED_HESSIANS_H_
