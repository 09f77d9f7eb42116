// common/sharded_safetensors_writer.h
//
// ShardedSafetensorsWriter writes one checkpoint's tensors into a directory
// the way transformers' save_pretrained does: a single `model.safetensors`
// while the tensor data fits `max_shard_bytes`, else
// `model-00001-of-0000N.safetensors`, ... with `model.safetensors.index.json`
// ({"metadata": {"total_size": bytes}, "weight_map": {tensor: file}}).
// Tensors go to the current shard in the order added; a tensor that would
// take the shard past the limit starts the next one (a tensor larger than
// the limit gets a shard of its own). Each shard is a streaming
// SafetensorsWriter; shard files get their final names in Finish(), once
// the count is known, so publish the directory atomically
// (common/atomic_output_dir.h) for readers never to see a partial set.
//
// Thread-compatible: one thread uses a writer. Destroying an unfinished
// writer removes its temporary files (shards already renamed stay: they are
// inside the caller's temp dir).
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(auto w, ShardedSafetensorsWriter::Create(dir, 5'000'000'000));
//   BAQ_RETURN_IF_ERROR(w->Add("lm_head.weight", DType::kF16, {8192, 384}, bytes));
//   BAQ_RETURN_IF_ERROR(w->Finish());
#ifndef BAQ_COMMON_SHARDED_SAFETENSORS_WRITER_H_
#define BAQ_COMMON_SHARDED_SAFETENSORS_WRITER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/safetensors.h"
#include "common/safetensors_writer.h"

namespace baq {

class ShardedSafetensorsWriter {
 public:
  // InvalidArgument if max_shard_bytes < 1.
  static absl::StatusOr<std::unique_ptr<ShardedSafetensorsWriter>> Create(
      std::string dir, int64_t max_shard_bytes);

  // As SafetensorsWriter::Add; the name must be unique across all shards.
  absl::Status Add(absl::string_view name, DType dtype, std::vector<int64_t> shape,
                   absl::Span<const uint8_t> bytes);
  // Applies to every shard's header.
  void SetMetadata(std::string key, std::string value);
  // Writes every shard, names them and writes the index when there are
  // several. FailedPrecondition if already finished.
  absl::Status Finish();

  // The files written (relative to dir), valid after Finish().
  const std::vector<std::string>& files() const { return files_; }

 private:
  ShardedSafetensorsWriter(std::string dir, int64_t max_shard_bytes)
      : dir_(std::move(dir)), max_shard_bytes_(max_shard_bytes) {}
  absl::Status StartShard();

  const std::string dir_;
  const int64_t max_shard_bytes_;
  std::vector<std::unique_ptr<SafetensorsWriter>> shards_;
  std::vector<std::string> temp_names_;      // Per shard, relative to dir_.
  std::map<std::string, size_t> shard_of_;   // Tensor name -> shard index.
  std::map<std::string, std::string> metadata_;
  uint64_t total_bytes_ = 0;
  std::vector<std::string> files_;
  bool finished_ = false;
};

}  // namespace baq

#endif  // BAQ_COMMON_SHARDED_SAFETENSORS_WRITER_H_
