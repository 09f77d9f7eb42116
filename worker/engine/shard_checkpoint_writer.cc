#include "worker/engine/shard_checkpoint_writer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/durable_file.h"
#include "common/status_macros.h"

namespace baq::worker {

absl::Status ShardCheckpointWriter::WriteAll(const std::vector<File>& files) {
  for (const File& f : files) BAQ_RETURN_IF_ERROR(WriteFileDurably(f.path, {f.bytes}));
  return absl::OkStatus();
}

absl::Status ShardCheckpointWriter::Write(std::vector<File> files) {
  if (absl::Status earlier = Wait(); !earlier.ok()) {
    return absl::Status(earlier.code(), absl::StrCat("an earlier shard checkpoint was not written: ",
                                                     earlier.message()));
  }
  if (!async_) return WriteAll(files);
  thread_ = std::thread([this, files = std::move(files)] { status_ = WriteAll(files); });
  return absl::OkStatus();
}

absl::Status ShardCheckpointWriter::Wait() {
  Join();
  absl::Status s = std::move(status_);
  status_ = absl::OkStatus();
  return s;
}

}  // namespace baq::worker
