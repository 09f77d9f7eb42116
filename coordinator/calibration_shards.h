// coordinator/calibration_shards.h
//
// The coordinator's side of a job whose calibration set is split into S
// shards (JobConfig::calibration_shards > 1, sequential mode; the engine
// protocol is in common/block_engine.h):
//
//   * ShardedBlock deals the shards over the live engines (shard k to
//     engine k mod E, E = min(S, live engines); an engine may own several
//     shards, which is how fewer workers than shards, e.g. local mode or
//     after a worker loss, give the same bytes) and runs one block: each
//     owner accumulates its shards' fp64 Hessian partials, the partials are
//     merged here in shard order, every owner imports the merged sums, the
//     first owner measures, the budget allocates, every owner quantizes
//     (identically: same Hessians, same allocation) and produces the next
//     block's inputs of its shards. The first owner's output is published;
//     the others' must be byte-identical (checked: a mismatch means the
//     workers' numerics differ, e.g. mixed GPU models).
//   * HessianMerger adds the partials of shards 0, 1, ..., S-1 in that
//     order with plain IEEE float64 additions, exactly the additions one
//     engine holding every shard makes (HessianAccumulator::Merge), so the
//     bits do not depend on how many workers held the shards.
//   * PackShardInputs / UnpackShardInputs frame the shards' inputs of a
//     block as one checkpoint blob (recovery mode).
//
// Costs (docs/architecture.md): every owner quantizes every block (the
// quantization is redundant E times), each block moves S x groups fp64
// partials to the coordinator and E x groups merged sums back, and the
// owners' output tensors all cross the wire (for the check). The coordinator
// holds the running sum plus the shards that arrived before their turn.
//
// Thread-compatible: the job runner's thread calls all methods. Engines are
// not owned.
#ifndef BAQ_COORDINATOR_CALIBRATION_SHARDS_H_
#define BAQ_COORDINATOR_CALIBRATION_SHARDS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/block_engine.h"
#include "common/engine_capabilities.h"
#include "common/block_protocol.h"

namespace baq::coordinator {

// One shard's partials, by input group, and who sent them (for messages).
struct ShardPartials {
  std::string source;
  std::vector<HessianPartial> partials;
};

// Merges the partials of shards 0, 1, ..., S-1 of one block as they arrive,
// in shard order: a shard that arrives early waits until every shard before
// it is added, so with one shard per engine the coordinator holds the sum
// and one shard's partials, not all S. InvalidArgument naming the source,
// the shard and the layer when a partial is malformed, a shard's groups,
// columns or row counts differ from shard 0's, or a shard's groups disagree
// on their token count.
class HessianMerger {
 public:
  HessianMerger(int64_t block, int shards) : block_(block), shards_(shards) {}

  // REQUIRES: 0 <= shard < shards, each shard added once.
  absl::Status Add(int shard, ShardPartials partials);
  // The merged sums (shard -1), by input group. InvalidArgument if a shard
  // is missing.
  absl::StatusOr<std::vector<HessianPartial>> Finish() &&;

 private:
  absl::Status MergeNext(ShardPartials& shard);

  const int64_t block_;
  const int shards_;
  int next_ = 0;                          // The next shard to add to the sum.
  std::vector<ShardPartials> waiting_;    // Arrived early, by shard (empty source: not yet).
  std::vector<bool> arrived_;
  std::string first_source_;
  std::vector<HessianPartial> merged_;    // The sum of shards < next_.
  std::vector<int64_t> columns_;         // By group, from shard 0.
};

// All shards at once: by_shard[k] is shard k's.
absl::StatusOr<std::vector<HessianPartial>> MergeHessianPartials(int64_t block,
                                                                 std::vector<ShardPartials> by_shard);

// "BAQS", u32 version 1, u32 count, then per shard u64 length + bytes.
std::string PackShardInputs(const std::vector<std::string>& shards);
// InvalidArgument for a malformed blob or one with another shard count.
absl::StatusOr<std::vector<std::string>> UnpackShardInputs(absl::string_view blob, int shards);

class ShardedBlock {
 public:
  explicit ShardedBlock(int shards) : shards_(shards) {}

  // Deals the shards over `live`; with none, or with an owner that lacks the
  // ShardedCalibration capability, every call below is FailedPrecondition.
  void Assign(const std::vector<BlockEngine*>& live);

  // Hands shard k's inputs of `block` to its owner (recovery mode).
  absl::Status ImportInputs(int64_t block, std::vector<std::string> inputs);
  // Takes every shard's inputs of `block` from the engine that holds them
  // all (after Start, before any block ran: the first owner).
  absl::StatusOr<std::vector<std::string>> ExportAllFromFirst(int64_t block);
  // Steps 1-3 up to the measurement (see the file comment).
  absl::StatusOr<BlockMeasurement> Measure(int64_t block);
  // Quantizes on every owner; returns the first owner's output.
  absl::StatusOr<BlockOutput> Quantize(int64_t block, const std::vector<LayerAllocation>& allocation);
  // Takes every shard's inputs of `block` (the next block) from its owner.
  absl::StatusOr<std::vector<std::string>> ExportInputs(int64_t block);

  // The engine whose call failed in the last failed method, or null when
  // the failure was not one engine's (e.g. inconsistent partials).
  BlockEngine* failed() const { return failed_; }

 private:
  // The shards `owner_index` owns, increasing.
  std::vector<int32_t> ShardsOf(size_t owner_index) const;
  // OK if there are owners and each offers ShardedCalibration.
  absl::Status CheckOwners() const;
  // REQUIRES: CheckOwners() is OK and `owner` is one of owners_.
  static ShardedCalibration& Sharding(BlockEngine* owner);
  // Runs `call` on `engine`; remembers it as failed() on error.
  absl::Status On(BlockEngine* engine, const std::function<absl::Status()>& call);

  const int shards_;
  std::vector<BlockEngine*> owners_;
  BlockEngine* failed_ = nullptr;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_CALIBRATION_SHARDS_H_
