// worker/engine/block_prefetcher.h
//
// BlockPrefetcher: loads one block's weights ahead of time (mmap -> device
// copies and their checks), on a persistent host thread of its own and, on a
// CUDA device, on a side stream of that device, so that the load of block
// l + 1 overlaps the calibration forward of block l on the engine's stream.
//
// Ordering on CUDA: Start() makes the side stream wait for everything the
// calling thread has enqueued on its current stream so far, so memory freed
// before Start() (e.g. block l - 1's weights, which the caching allocator
// hands back to the stream that allocated it) is rewritten only after the
// kernels that read it. The load ends with a synchronization of the side
// stream, so a taken block is ready for any stream. REQUIRES: while a load is
// in flight, the caller frees no tensor that an earlier load allocated
// (TorchBlockEngine waits with Wait() before its Measure() returns).
//
// Thread-compatible: one thread (the engine's caller) calls all methods; the
// load itself runs on the prefetcher's thread and reads only the values
// Start() was given (the checkpoint must outlive the load: Wait()/Clear()
// before releasing it).
//
// Example:
//   prefetcher.Start(job.model, job.ckpt.get(), block + 1, job.block_options);
//   ...  // block's forward on the engine's stream
//   prefetcher.Wait();
//   std::unique_ptr<DecoderBlock> next = prefetcher.Take(block + 1);  // nullptr: load it
#ifndef BAQ_WORKER_ENGINE_BLOCK_PREFETCHER_H_
#define BAQ_WORKER_ENGINE_BLOCK_PREFETCHER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/model_config.h"
#include "common/safetensors_checkpoint.h"
#include "worker/model/decoder_block.h"

namespace baq::worker {

class BlockPrefetcher {
 public:
  BlockPrefetcher();
  ~BlockPrefetcher();  // Waits for a load in flight.

  BlockPrefetcher(const BlockPrefetcher&) = delete;
  BlockPrefetcher& operator=(const BlockPrefetcher&) = delete;

  // Starts loading `block` of `model` from `ckpt` with `options` (not owned;
  // must outlive the load). Drops an earlier result that was not taken.
  // Returns at once; a failed load is reported by Take().
  void Start(const ModelConfig& model, const SafetensorsCheckpoint* ckpt, int64_t block,
             const BlockOptions& options);
  // Blocks until no load is in flight.
  void Wait();
  // The block of the last Start() if it was `block` (waits for it), its load
  // error, or nullptr when there is none for `block` (load it directly).
  absl::StatusOr<std::unique_ptr<DecoderBlock>> Take(int64_t block);
  // Waits for a load in flight and drops its result.
  void Clear();

 private:
  void Loop();
  bool HasWork() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || task_ != nullptr; }

  absl::Mutex mu_;
  std::function<void()> task_ ABSL_GUARDED_BY(mu_);  // The load to run next.
  bool busy_ ABSL_GUARDED_BY(mu_) = false;          // A task is queued or running.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t block_ ABSL_GUARDED_BY(mu_) = -1;         // Block of the last Start(); -1: none.
  absl::StatusOr<std::unique_ptr<DecoderBlock>> result_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;  // Last: started after the state above.
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_ENGINE_BLOCK_PREFETCHER_H_
