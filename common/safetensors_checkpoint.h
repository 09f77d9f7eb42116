// common/safetensors_checkpoint.h
//
// A Hugging Face checkpoint directory's weights: either one
// `model.safetensors` or shards listed by `model.safetensors.index.json`
// ({"weight_map": {tensor: shard_file}}). Shards are opened (mmap) lazily on
// first access, so streaming a model block by block touches only the shards
// that hold that block. Open() validates the index: every shard it names
// exists and holds the tensors it is said to hold (checked when the shard is
// first opened), no path escapes the directory. No pickle/.bin is ever read.
//
// Thread-safety: thread-safe (shard opening is guarded by a mutex).
// Ownership: views returned by Get() stay valid while the checkpoint lives.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(auto ckpt, SafetensorsCheckpoint::Open(model_dir));
//   BAQ_ASSIGN_OR_RETURN(TensorView w, ckpt->Get("model.layers.0.mlp.up_proj.weight"));
#ifndef BAQ_COMMON_SAFETENSORS_CHECKPOINT_H_
#define BAQ_COMMON_SAFETENSORS_CHECKPOINT_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/safetensors.h"

namespace baq {

class SafetensorsCheckpoint {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  // All tensor names, sorted.
  std::vector<std::string> TensorNames() const;
  bool Contains(absl::string_view name) const;
  // Opens the owning shard if needed. NotFound names the tensor and dir.
  absl::StatusOr<TensorView> Get(absl::string_view name) const;
  // Header info without reading data.
  absl::StatusOr<TensorInfo> Info(absl::string_view name) const;

 private:
  explicit SafetensorsCheckpoint(std::string dir) : dir_(std::move(dir)) {}
  absl::StatusOr<const SafetensorsFile*> Shard(const std::string& file) const;

  const std::string dir_;
  std::map<std::string, std::string, std::less<>> weight_map_;  // tensor -> shard file
  mutable absl::Mutex mu_;
  mutable std::map<std::string, std::unique_ptr<SafetensorsFile>> shards_ ABSL_GUARDED_BY(mu_);
};

}  // namespace baq

#endif  // BAQ_COMMON_SAFETENSORS_CHECKPOINT_H_
