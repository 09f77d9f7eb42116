// coordinator/resident_shards.h
//
// ResidentShards: the coordinator's side of the resident data path
// (common/engine_capabilities.h, LayerOwnership, has the protocol). The
// calibration set is split into S shards dealt over the live engines; each
// engine keeps its shards' activations on its own device for the whole job,
// so per block only these travel through the coordinator:
//
//   engines -> coordinator   one fp64 Hessian partial per (shard, input
//                            group), upper triangle (none with one engine)
//   coordinator -> owners    the merged sums of the groups each owner needs
//   owners -> coordinator    their layers' output tensors and quantized weights
//   coordinator -> engines   the weights of the layers each did not quantize
//
// Calls on different engines run concurrently (one thread per engine per
// step), so S workers compute a block's forward in 1/S of the time. Memory:
// every shard's partials of a block arrive (concurrently) before the merge,
// so the coordinator holds S x the block's Hessians at that point; merging
// them as they stream in, in shard order, would hold about one sum plus one
// partial per engine, but needs a streaming AccumulateHessians.
// Every K blocks (checkpoint_every) each engine writes its shards' inputs to
// the shard checkpoint directory (its own or a shared volume); the
// quantized weights of the blocks since the oldest such checkpoint are kept
// (in the job checkpoint, or in memory without one). When an engine is
// lost, Assign() deals its shards to the survivors, and the next block first
// restores each orphaned shard from the latest checkpoint (block 0: the
// embeddings) and replays the quantized blocks since: recovery costs at most
// K blocks of forward work, never a re-quantization, and the bits equal an
// undisturbed run (and local mode with --hessian_partials S).
//
// Thread-compatible: the job runner's thread calls every method; the
// per-engine threads it starts end before the method returns. Engines and
// the checkpoint are not owned.
#ifndef BAQ_COORDINATOR_RESIDENT_SHARDS_H_
#define BAQ_COORDINATOR_RESIDENT_SHARDS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/block_engine.h"
#include "common/block_protocol.h"
#include "coordinator/job_checkpoint.h"

namespace baq::coordinator {

// Bytes that crossed between the coordinator and the engines, by kind.
struct WireBytes {
  int64_t hessian_partials = 0;  // Engines -> coordinator.
  int64_t hessian_merged = 0;    // Coordinator -> owners.
  int64_t weights = 0;           // Owners -> coordinator -> other engines, and replays.
  int64_t outputs = 0;           // The blocks' output tensors, owners -> coordinator.
  int64_t activations = 0;       // Calibration activations: none on this path.

  int64_t total() const {
    return hessian_partials + hessian_merged + weights + outputs + activations;
  }
  WireBytes& operator+=(const WireBytes& o);
};

struct ResidentOptions {
  int shards = 1;            // S: JobConfig::calibration_shards.
  int64_t num_blocks = 0;
  // K: every engine checkpoints its shards' inputs of block b when b is a
  // multiple of K (b > 0); 0, or an empty shard_dir: never (recovery then
  // replays from the embeddings).
  int checkpoint_every = 4;
  std::string shard_dir;
  // Keep the quantized weights since the last shard checkpoint for replays
  // (false: no replays: a lost engine fails the job).
  bool keep_weights = true;
};

class ResidentShards {
 public:
  explicit ResidentShards(ResidentOptions options);
  ~ResidentShards();
  ResidentShards(const ResidentShards&) = delete;
  ResidentShards& operator=(const ResidentShards&) = delete;

  // Where kept weights go (the job checkpoint, not owned); null: memory.
  void set_weight_store(JobCheckpoint* store) { weight_store_ = store; }

  // Every engine offers LayerOwnership (and ShardedCalibration when S > 1)?
  // FailedPrecondition naming the first that does not.
  static absl::Status Supports(const std::vector<BlockEngine*>& engines, int shards);

  // Where the shards stand before the first block to run. first_block 0:
  // every engine holds every shard's block-0 inputs (Start embedded them).
  // Later (a resumed job): every shard is restored from the checkpoint of
  // block `durable` (-1: re-embedded), or of `previous` where that one's
  // file is missing or damaged, and replayed when the next block runs.
  void Begin(int64_t first_block, int64_t durable, int64_t previous = -1);

  // (Re)deals the shards over `live`: a shard stays with its engine while it
  // lives; an orphaned shard goes to the survivor holding the fewest (ties:
  // the first), to be restored and replayed by the next Measure.
  void Assign(const std::vector<BlockEngine*>& live);

  // Brings every shard to block `b` (restoring and replaying where needed),
  // accumulates and merges the Hessians, places the layers on owners and
  // measures them: the whole block's measurement, in layer order.
  absl::StatusOr<BlockMeasurement> Measure(int64_t b);
  // Quantizes every layer on its owner; the block's output in layer order
  // (the bytes one engine's Quantize returns). Keeps the quantized weights
  // for Advance and for replays.
  absl::StatusOr<BlockOutput> Quantize(int64_t b, const std::vector<LayerAllocation>& allocation);
  // Every engine applies the weights it lacks and runs its shards through
  // the quantized block; then, when due, the engines checkpoint their shards
  // of block b + 1 (durable() moves) and older weights are dropped.
  absl::Status Advance(int64_t b);

  // Waits for the store write of the last quantized block's weights: its
  // error, if any. Call before the job checkpoint records that block, so a
  // restarted coordinator always finds the weights a replay needs.
  absl::Status FlushWeights();

  // Drops the kept weights of the blocks before `block` (call once the job
  // checkpoint records durable() = block, so a restart never needs them).
  void ReleaseWeightsBefore(int64_t block);

  // The block of the latest shard checkpoint every shard has; -1: none.
  // Workers may still be writing it (asynchronous checkpoints): a shard whose
  // file is missing or damaged is restored from previous() instead (-1: the
  // embeddings), so replay weights are kept from previous() on.
  int64_t durable() const { return durable_; }
  int64_t previous() const { return previous_; }
  // The engine whose call failed in the last failed method, or null when
  // the failure was not one engine's.
  BlockEngine* failed() const { return failed_; }
  // Everything so far, and the block in progress (or the last one).
  WireBytes wire() const {
    WireBytes w = wire_;
    w += block_wire_;
    return w;
  }
  const WireBytes& block_wire() const { return block_wire_; }
  // Forward passes of blocks replayed to recover lost shards, and their time.
  int64_t replayed_blocks() const { return replayed_blocks_; }
  double replay_seconds() const { return replay_seconds_; }

 private:
  struct Shard {
    BlockEngine* holder = nullptr;
    int64_t at = -1;  // The block whose inputs the holder has; -1: to restore.
  };
  // The shards `engine` holds, increasing.
  std::vector<int32_t> ShardsOf(const BlockEngine* engine) const;
  // Runs calls[i] on engines_[i] concurrently; the first error in engine
  // order is returned and its engine remembered as failed(). `each`, if
  // given, gets every call's status (OK for engines without a call).
  absl::Status OnEngines(const std::vector<std::function<absl::Status()>>& calls,
                         std::vector<absl::Status>* each = nullptr);
  absl::Status Sync(int64_t b);
  absl::Status Restore(int64_t b);
  // RestoreShard of `shard` on `e` from the shard checkpoint of block
  // `checkpoint` (-1: the embeddings), annotated for redoing block `b`.
  absl::Status RestoreShardFrom(BlockEngine* e, int32_t shard, int64_t checkpoint, int64_t b);
  absl::StatusOr<std::vector<TensorBytes>> WeightsOf(int64_t block);
  // Starts writing the weights to the store on a background thread (the
  // write of the previous block is joined first); in memory without one.
  absl::Status KeepWeights(int64_t block, std::shared_ptr<const std::vector<TensorBytes>> weights);
  absl::Status Checkpoint(int64_t block);

  const ResidentOptions options_;
  std::vector<BlockEngine*> engines_;  // The live engines, in order.
  std::vector<Shard> shards_;
  int64_t durable_ = -1;
  int64_t previous_ = -1;
  // The block in progress: its layers and owners (index into engines_).
  std::vector<LayerShape> layers_;
  std::vector<int> owners_;
  // By layer, of the block quantized last (shared with its store write),
  // from Quantize to Advance.
  std::shared_ptr<const std::vector<TensorBytes>> block_weights_;
  std::thread weight_writer_;      // The store write in flight, if joinable.
  absl::Status weight_write_status_;  // Its result, read after the join.
  JobCheckpoint* weight_store_ = nullptr;
  std::map<int64_t, std::vector<TensorBytes>> memory_weights_;  // No weight store.
  BlockEngine* failed_ = nullptr;
  WireBytes wire_;        // Blocks before the one in progress.
  WireBytes block_wire_;  // The block in progress (or the last one).
  int64_t replayed_blocks_ = 0;
  double replay_seconds_ = 0;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_RESIDENT_SHARDS_H_
