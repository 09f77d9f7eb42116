// worker/engine/measurement_cache.h
//
// MeasurementCache: the measured blocks of a TorchBlockEngine and where
// their Hessians come from or go to.
//  * In memory: blocks measured and not yet quantized; with several bit
//    targets over one measurement (TargetSwitching::SetTarget with
//    keep_measurement) quantized blocks stay too, so a later Measure only
//    redoes BAQ pass 1 at the new target.
//  * On disk (JobConfig::measurement_dir, common/measurement_store.h): a
//    fresh dir gets every measured block's Hessians (Save); a complete one
//    with the same fingerprint is reused instead of any forward (LoadKept).
//
// Thread-compatible: the engine's caller thread only.
#ifndef BAQ_WORKER_ENGINE_MEASUREMENT_CACHE_H_
#define BAQ_WORKER_ENGINE_MEASUREMENT_CACHE_H_

#include <cstdint>
#include <map>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/device_group.h"
#include "worker/engine/engine_job.h"

namespace baq::worker {

class MeasurementCache {
 public:
  // What Open() found in the job's measurement_dir.
  enum class Use { kNone, kSave, kReuse };

  // Looks at job.config.measurement_dir: none, a reusable measurement (its
  // block count must be the model's: FailedPrecondition otherwise), or a
  // dir to fill (created).
  absl::Status Open(const EngineJob& job);
  Use use() const { return use_; }

  // Drops every block and forgets the dir.
  void Clear();
  // SetTarget(): whether Done() keeps quantized blocks.
  void set_keep_measurement(bool keep) { keep_measurement_ = keep; }

  // The measured state of `block`, or null.
  BlockState* Find(int64_t block);
  void Put(int64_t block, BlockState state) { blocks_[block] = std::move(state); }
  // Frees the block (LayerOwnership::AdvanceShards took its state).
  void Erase(int64_t block) { blocks_.erase(block); }
  // After Quantize(block): frees the block unless measurements are kept.
  void Done(int64_t block);

  // Writes block `block`'s Hessians into the measurement dir, atomically.
  absl::Status Save(const EngineJob& job, int64_t block, const BlockState& state) const;
  // The block's weights from the model (on every rank) and its Hessians
  // from the measurement dir: no forward, no inputs. FailedPrecondition for
  // a measurement of another hessian_partials; DataLoss for a bad tensor.
  absl::StatusOr<BlockState> LoadKept(DeviceGroup& group, const EngineJob& job,
                                      int64_t block) const;

 private:
  Use use_ = Use::kNone;
  bool keep_measurement_ = false;
  std::map<int64_t, BlockState> blocks_;  // Measured, not yet quantized (or kept).
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_ENGINE_MEASUREMENT_CACHE_H_
