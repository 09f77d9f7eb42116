#include "worker/engine/shard_checkpoint_writer.h"

#include <cstdio>
#include <filesystem>
#include <map>
#include <system_error>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/durable_file.h"
#include "common/status_macros.h"

namespace baq::worker {

std::string ShardCheckpointWriter::Path(const std::string& dir, int32_t shard, int64_t block) {
  return absl::StrCat(dir, "/shard-", shard, ".block-", block, ".baqa");
}

std::vector<std::string> ShardCheckpointWriter::Superseded(const std::string& dir, int32_t shard,
                                                           int64_t block) {
  const std::string prefix = absl::StrCat("shard-", shard, ".block-");
  std::map<int64_t, std::string> older;  // block -> path, blocks before `block`
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    absl::string_view rest = name;
    if (!absl::ConsumePrefix(&rest, prefix) || !absl::ConsumeSuffix(&rest, ".baqa")) continue;
    int64_t b = 0;
    if (!absl::SimpleAtoi(rest, &b) || absl::StrCat(b) != rest || b >= block) continue;
    older.emplace(b, entry.path().string());
  }
  std::vector<std::string> out;
  if (older.empty()) return out;
  older.erase(std::prev(older.end()));  // The newest older one stays.
  for (auto& [b, path] : older) out.push_back(std::move(path));
  return out;
}

absl::Status ShardCheckpointWriter::WriteAll(const std::vector<File>& files) {
  for (const File& f : files) {
    BAQ_RETURN_IF_ERROR(WriteFileDurably(f.path, {f.bytes}));
    // Best effort: a file left behind costs disk, not correctness (the job's
    // directory goes when the job ends).
    std::error_code ec;
    for (const std::string& old : f.superseded) std::filesystem::remove(old, ec);
  }
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
