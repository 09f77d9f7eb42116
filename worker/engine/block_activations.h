// worker/engine/block_activations.h
//
// BlockActivations: the calibration activations a TorchBlockEngine holds at
// block boundaries — per block for unsharded jobs, per (block, shard) for
// calibration shards — in memory on the engine's first device or in a spill
// file (ActivationSpillOptions, worker/calibration_inputs.h), and their
// export/import as bytes (worker/activation_codec.h).
//
// Hand-over and retries: in sequential mode Export(block) hands the inputs
// to another engine, but keeps them until ReleaseHandedOver() (the engine
// calls it when it moves on: its next Measure, Quantize, import, Start or
// Reset), so a retried export after a lost reply returns the same bytes.
// Memory: an engine that handed a boundary over holds at most that one
// boundary while idle, less than the two it holds while quantizing.
// ExportShard() hands a shard over at once (the shard protocol does not
// retry it).
//
// Thread-compatible: the engine's caller thread only.
#ifndef BAQ_WORKER_ENGINE_BLOCK_ACTIVATIONS_H_
#define BAQ_WORKER_ENGINE_BLOCK_ACTIVATIONS_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/calibration_inputs.h"

namespace baq::worker {

class BlockActivations {
 public:
  explicit BlockActivations(ActivationSpillOptions spill) : spill_(std::move(spill)) {}

  // `device`: where activations live (the engine's first device).
  void set_device(at::Device device) { device_ = device; }
  // Drops everything.
  void Clear();

  // `x` where the spill options put activations of its size: itself, or a
  // copy in a spill file (x is dropped then).
  absl::StatusOr<at::Tensor> Keep(at::Tensor x) const;
  // An uninitialized buffer shaped like `x`, in memory or a spill file.
  absl::StatusOr<at::Tensor> AllocateLike(const at::Tensor& x) const;

  // Unsharded jobs: the inputs of `block`, or null.
  const at::Tensor* Find(int64_t block) const;
  // Stores `x` (already kept) as the inputs of `block`.
  void Set(int64_t block, at::Tensor x) { inputs_[block] = std::move(x); }
  void Erase(int64_t block) { inputs_.erase(block); }
  // Serialized inputs of `block`; FailedPrecondition when absent. With
  // `hand_over`, the inputs are dropped at the next ReleaseHandedOver().
  absl::StatusOr<std::string> Export(int64_t block, bool hand_over);
  // Decodes and keeps `bytes` as the inputs of `block`.
  absl::Status Import(int64_t block, const std::string& bytes);
  // Drops the inputs handed over by Export, if any.
  void ReleaseHandedOver();

  // Sharded jobs. Splits the embedded windows into the shards' inputs of
  // block 0: shard k is chunks k, k + S, k + 2S, ... back to back.
  // InvalidArgument when there are fewer chunks than shards.
  absl::Status SplitIntoShards(at::Tensor x, int shards);
  // Shard `shard` of the embedded windows `x` (as SplitIntoShards splits
  // them) as the shard's inputs of block 0 (LayerOwnership::RestoreShard).
  absl::Status SetShardOf(at::Tensor x, int32_t shard, int shards);
  // Keeps `x` as `shard`'s inputs of `block`, replacing any.
  absl::Status SetShard(int64_t block, int32_t shard, at::Tensor x);
  // OK if this engine holds `shard`'s inputs of `block` (of `shards`).
  absl::Status CheckShard(int64_t block, int32_t shard, int shards) const;
  // REQUIRES: CheckShard(block, shard, ...) is OK.
  const at::Tensor& Shard(int64_t block, int32_t shard) const;
  // Drops the shards of `block` not in `keep`.
  void KeepOnlyShards(int64_t block, const std::vector<int32_t>& keep);
  // The shards of `block` this engine holds (tensor handles, no copy).
  std::map<int32_t, at::Tensor> HeldShards(int64_t block) const;
  void EraseShards(int64_t block) { shard_inputs_.erase(block); }
  // Stores `shards` (already kept) as block's, beside (or replacing) the
  // shards of `block` held already (a replay may restore a shard there).
  void SetShards(int64_t block, std::map<int32_t, at::Tensor> shards);
  // Hands shard `shard` of `block` over. REQUIRES: CheckShard is OK.
  absl::StatusOr<std::string> ExportShard(int64_t block, int32_t shard);
  absl::Status ImportShard(int64_t block, int32_t shard, const std::string& bytes);

 private:
  const ActivationSpillOptions spill_;
  at::Device device_ = at::Device(at::kCPU);
  std::map<int64_t, at::Tensor> inputs_;  // Block -> its input activations.
  // Sharded jobs, instead of inputs_: block -> shard -> that shard's input
  // activations (the shards this engine holds).
  std::map<int64_t, std::map<int32_t, at::Tensor>> shard_inputs_;
  // The block whose inputs Export(hand_over) handed over, kept for a retry.
  std::optional<int64_t> handed_over_;
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_ENGINE_BLOCK_ACTIVATIONS_H_
