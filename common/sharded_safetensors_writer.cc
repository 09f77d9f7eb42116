#include "common/sharded_safetensors_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/durable_file.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace baq {
namespace {

constexpr char kSingleFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";

}  // namespace

absl::StatusOr<std::unique_ptr<ShardedSafetensorsWriter>> ShardedSafetensorsWriter::Create(
    std::string dir, int64_t max_shard_bytes) {
  if (max_shard_bytes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": max_shard_bytes = ", max_shard_bytes, " (must be >= 1)"));
  }
  std::unique_ptr<ShardedSafetensorsWriter> w(
      new ShardedSafetensorsWriter(std::move(dir), max_shard_bytes));
  BAQ_RETURN_IF_ERROR(w->StartShard());
  return w;
}

absl::Status ShardedSafetensorsWriter::StartShard() {
  // A name no final file has; renamed in Finish() once the count is known.
  std::string name = absl::StrFormat("model-shard-%05d.safetensors.part", shards_.size() + 1);
  BAQ_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsWriter> shard,
                       SafetensorsWriter::Create(absl::StrCat(dir_, "/", name)));
  shards_.push_back(std::move(shard));
  temp_names_.push_back(std::move(name));
  return absl::OkStatus();
}

absl::Status ShardedSafetensorsWriter::Add(absl::string_view name, DType dtype,
                                           std::vector<int64_t> shape,
                                           absl::Span<const uint8_t> bytes) {
  if (finished_) {
    return absl::FailedPreconditionError(absl::StrCat(dir_, ": sharded writer finished"));
  }
  if (shard_of_.count(std::string(name)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir_, ": tensor \"", name, "\": duplicate tensor name"));
  }
  const uint64_t current = shards_.back()->data_bytes();
  if (current > 0 && current + bytes.size() > static_cast<uint64_t>(max_shard_bytes_)) {
    BAQ_RETURN_IF_ERROR(StartShard());
  }
  BAQ_RETURN_IF_ERROR(shards_.back()->Add(name, dtype, std::move(shape), bytes));
  shard_of_.emplace(std::string(name), shards_.size() - 1);
  total_bytes_ += bytes.size();
  return absl::OkStatus();
}

void ShardedSafetensorsWriter::SetMetadata(std::string key, std::string value) {
  metadata_[std::move(key)] = std::move(value);
}

absl::Status ShardedSafetensorsWriter::Finish() {
  if (finished_) return absl::FailedPreconditionError(absl::StrCat(dir_, ": already finished"));
  const size_t n = shards_.size();
  std::vector<std::string> names;
  for (size_t i = 0; i < n; ++i) {
    names.push_back(n == 1 ? std::string(kSingleFile)
                           : absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, n));
  }
  for (size_t i = 0; i < n; ++i) {
    for (const auto& [key, value] : metadata_) shards_[i]->SetMetadata(key, value);
    BAQ_RETURN_IF_ERROR(shards_[i]->Finish());
    const std::string from = absl::StrCat(dir_, "/", temp_names_[i]);
    const std::string to = absl::StrCat(dir_, "/", names[i]);
    if (std::rename(from.c_str(), to.c_str()) != 0) {
      return absl::InternalError(
          absl::StrCat("rename ", from, " to ", to, ": ", std::strerror(errno)));
    }
  }
  if (n > 1) {
    nlohmann::json weight_map = nlohmann::json::object();
    for (const auto& [tensor, shard] : shard_of_) weight_map[tensor] = names[shard];
    const nlohmann::json index = {{"metadata", {{"total_size", total_bytes_}}},
                                  {"weight_map", weight_map}};
    const std::string text = index.dump(2) + "\n";
    BAQ_RETURN_IF_ERROR(WriteFileDurably(absl::StrCat(dir_, "/", kIndexFile), {text}));
    names.push_back(kIndexFile);
  }
  BAQ_RETURN_IF_ERROR(FsyncDirectory(dir_));
  files_ = std::move(names);
  finished_ = true;
  return absl::OkStatus();
}

}  // namespace baq
