// worker/engine/shard_checkpoint_writer.h
//
// ShardCheckpointWriter: writes a TorchBlockEngine's shard checkpoint files
// (LayerOwnership::CheckpointShards: `dir`/shard-<k>.block-<b>.baqa), each
// durably (common/durable_file.h: temporary name, fsync, rename, fsync of
// the directory), either at once or on a background thread, and removes the
// shard's older checkpoints once the new one is durable (two stay per shard).
//
// Asynchronous mode (EngineOptions::async_shard_checkpoints): Write() waits
// for the previous batch, returns that batch's error if it failed, and
// starts the new batch on a thread of its own; the engine has already
// copied the shards to host memory (the encoded bytes), so the device and
// the caller go on at once. A batch is durable when the next Write() or
// Wait() returns OK. The engine calls Join() before RestoreShard reads a
// checkpoint (the error stays for the next Write) and Wait() on Reset (where
// an error can only be dropped). Memory: one batch's encoded shards in host
// memory while it is written.
//
// Thread-compatible: the engine's caller thread calls every method; the
// background thread touches only its batch and its status, which the caller
// reads after joining it.
#ifndef BAQ_WORKER_ENGINE_SHARD_CHECKPOINT_WRITER_H_
#define BAQ_WORKER_ENGINE_SHARD_CHECKPOINT_WRITER_H_

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace baq::worker {

class ShardCheckpointWriter {
 public:
  struct File {
    std::string path;
    std::string bytes;
    // Removed once `path` is durable: older checkpoints of the same shard
    // (Superseded), so a long job keeps at most two per shard on disk.
    std::vector<std::string> superseded;
  };

  // `dir`/shard-<shard>.block-<block>.baqa.
  static std::string Path(const std::string& dir, int32_t shard, int64_t block);
  // The files of `shard` in `dir` that a new checkpoint at `block` makes
  // unnecessary: every one older than the newest one before `block` (that
  // one stays, in case the new one is lost before it is durable). Files of
  // other shards, later blocks and other names are never listed.
  static std::vector<std::string> Superseded(const std::string& dir, int32_t shard,
                                             int64_t block);

  explicit ShardCheckpointWriter(bool async) : async_(async) {}
  ShardCheckpointWriter(const ShardCheckpointWriter&) = delete;
  ShardCheckpointWriter& operator=(const ShardCheckpointWriter&) = delete;
  ~ShardCheckpointWriter() { Join(); }

  bool async() const { return async_; }

  // Synchronous: writes `files` in order and returns the first error.
  // Asynchronous: Wait(); on its error returns it (and drops `files`),
  // otherwise starts writing `files` in the background and returns OK.
  absl::Status Write(std::vector<File> files);
  // Joins the batch in flight, if any: its error, or OK (then forgotten).
  absl::Status Wait();
  // Joins the batch in flight, if any; its error stays for Write or Wait.
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  static absl::Status WriteAll(const std::vector<File>& files);

  const bool async_;
  std::thread thread_;
  absl::Status status_;  // Of the batch thread_ writes; read after joining.
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_ENGINE_SHARD_CHECKPOINT_WRITER_H_
