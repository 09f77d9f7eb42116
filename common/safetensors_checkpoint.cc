#include "common/safetensors_checkpoint.h"

#include <sys/stat.h>

#include <cerrno>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/safetensors_json.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace baq {
namespace {

using Json = nlohmann::json;

constexpr char kSingleFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";
// An index is a name -> file map; real ones are a few hundred KB.
constexpr uint64_t kMaxIndexBytes = 100'000'000;

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return absl::ErrnoToStatus(errno, path);
  if (static_cast<uint64_t>(st.st_size) > kMaxIndexBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", st.st_size, " bytes is too large"));
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream contents;
  contents << in.rdbuf();
  if (!in) return absl::DataLossError(absl::StrCat(path, ": read failed"));
  return std::move(contents).str();
}

// A shard must be a plain file name inside the checkpoint dir.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find_first_of(std::string("/\\\0", 3)) == std::string::npos;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Open(
    const std::string& dir) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat("checkpoint directory ", dir, " does not exist"));
  }
  std::unique_ptr<SafetensorsCheckpoint> ckpt(new SafetensorsCheckpoint(dir));
  const std::string index_path = absl::StrCat(dir, "/", kIndexFile);
  const std::string single_path = absl::StrCat(dir, "/", kSingleFile);

  if (Exists(index_path)) {
    auto invalid = [&](absl::string_view fault) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": ", fault));
    };
    BAQ_ASSIGN_OR_RETURN(const std::string text, ReadSmallFile(index_path));
    // Duplicate keys are errors: two shards for one tensor is ambiguous.
    absl::StatusOr<Json> index = safetensors_internal::ParseJsonRejectingDuplicateKeys(text);
    if (!index.ok()) return invalid(index.status().message());
    if (!index->is_object() || !index->contains("weight_map") ||
        !(*index)["weight_map"].is_object()) {
      return invalid("no \"weight_map\" object");
    }
    const Json& weight_map = (*index)["weight_map"];
    if (weight_map.empty()) return invalid("weight_map is empty");
    std::set<std::string> checked;
    for (const auto& item : weight_map.items()) {
      if (!item.value().is_string()) {
        return invalid(absl::StrCat("weight_map value for \"", item.key(), "\" is not a string"));
      }
      const std::string& file = item.value().get_ref<const std::string&>();
      if (!IsPlainFileName(file)) {
        return invalid(absl::StrCat("shard \"", file, "\" of tensor \"", item.key(),
                                    "\" is not a plain file name in the checkpoint directory"));
      }
      if (checked.insert(file).second && !IsRegularFile(absl::StrCat(dir, "/", file))) {
        return absl::NotFoundError(absl::StrCat(index_path, " names missing shard file \"", file,
                                                "\" (for tensor \"", item.key(), "\")"));
      }
      ckpt->weight_map_.emplace(item.key(), file);
    }
    return ckpt;
  }

  if (Exists(single_path)) {
    BAQ_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(single_path));
    for (const TensorInfo& t : file->tensors()) ckpt->weight_map_.emplace(t.name, kSingleFile);
    absl::MutexLock lock(&ckpt->mu_);
    ckpt->shards_.emplace(kSingleFile, std::move(file));
    return ckpt;
  }

  std::string message = absl::StrCat("no ", kSingleFile, " or ", kIndexFile, " in ", dir);
  if (Exists(absl::StrCat(dir, "/pytorch_model.bin")) ||
      Exists(absl::StrCat(dir, "/pytorch_model.bin.index.json"))) {
    absl::StrAppend(&message,
                    "; found pytorch_model.bin, but .bin/pickle checkpoints are not supported "
                    "(pickle can run code): convert it to safetensors first");
  }
  return absl::NotFoundError(message);
}

std::vector<std::string> SafetensorsCheckpoint::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(weight_map_.size());
  for (const auto& [name, file] : weight_map_) names.push_back(name);
  return names;
}

bool SafetensorsCheckpoint::Contains(absl::string_view name) const {
  return weight_map_.find(name) != weight_map_.end();
}

absl::StatusOr<const SafetensorsFile*> SafetensorsCheckpoint::Shard(const std::string& file) const {
  absl::MutexLock lock(&mu_);
  auto it = shards_.find(file);
  if (it != shards_.end()) return it->second.get();
  const std::string path = absl::StrCat(dir_, "/", file);
  BAQ_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> shard, SafetensorsFile::Open(path));
  // The index promised these tensors live here; catch a stale index on first
  // use, naming both the shard and the tensor.
  for (const auto& [name, owner] : weight_map_) {
    if (owner == file && !shard->Contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat("shard ", path, " lacks tensor \"", name,
                                                     "\" that ", kIndexFile, " assigns to it"));
    }
  }
  return shards_.emplace(file, std::move(shard)).first->second.get();
}

absl::StatusOr<TensorView> SafetensorsCheckpoint::Get(absl::string_view name) const {
  auto it = weight_map_.find(name);
  if (it == weight_map_.end()) {
    return absl::NotFoundError(absl::StrCat("no tensor \"", name, "\" in checkpoint ", dir_));
  }
  BAQ_ASSIGN_OR_RETURN(const SafetensorsFile* shard, Shard(it->second));
  return shard->Get(name);
}

absl::StatusOr<TensorInfo> SafetensorsCheckpoint::Info(absl::string_view name) const {
  auto it = weight_map_.find(name);
  if (it == weight_map_.end()) {
    return absl::NotFoundError(absl::StrCat("no tensor \"", name, "\" in checkpoint ", dir_));
  }
  BAQ_ASSIGN_OR_RETURN(const SafetensorsFile* shard, Shard(it->second));
  return shard->Info(name);
}

}  // namespace baq
