#include "common/safetensors_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/failpoint.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace baq {
namespace {

using Json = nlohmann::json;

constexpr size_t kCopyChunkBytes = 1 << 20;

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

absl::Status ErrnoError(int error, const std::string& path, absl::string_view what) {
  return absl::ErrnoToStatus(error, absl::StrCat(path, ": ", what));
}

// Creates a unique hidden sibling of `path` (".<base>.<tag>-XXXXXX") and
// returns its fd; `*temp_path` receives its name.
absl::StatusOr<int> MakeSiblingTemp(const std::string& path, absl::string_view tag,
                                    std::string* temp_path) {
  std::string templ = absl::StrCat(DirName(path), "/.", BaseName(path), ".", tag, "-XXXXXX");
  const int fd = mkostemp(templ.data(), O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, templ, "cannot create temporary file");
  *temp_path = std::move(templ);
  return fd;
}

absl::Status WriteAll(int fd, const char* data, size_t size, const std::string& path) {
  while (size > 0) {
    const ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, path, "write failed");
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status FsyncDir(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, dir, "cannot open directory");
  const int rc = fsync(fd);
  const int error = errno;
  close(fd);
  if (rc != 0) return ErrnoError(error, dir, "fsync failed");
  return absl::OkStatus();
}

bool IsValidUtf8(absl::string_view s) {
  // nlohmann's dump() throws on invalid UTF-8; a Json string round-trip
  // through the parser is the simplest strict check that agrees with it.
  try {
    (void)Json(std::string(s)).dump();
    return true;
  } catch (const Json::exception&) {
    return false;
  }
}

}  // namespace

// 8-byte little-endian length, then the JSON header padded with spaces to a
// multiple of 8 so the data section starts aligned (as HF safetensors does).
std::string SafetensorsHeader(const std::vector<TensorInfo>& tensors,
                            const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();  // std::map-backed: keys come out sorted
  for (const TensorInfo& t : tensors) {
    header[t.name] = {{"dtype", std::string(DTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {t.data_begin, t.data_end}}};
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((uint64_t{json.size()} >> (8 * i)) & 0xFF);
  return out + json;
}

absl::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(std::string path) {
  std::unique_ptr<SafetensorsWriter> writer(new SafetensorsWriter(std::move(path)));
  BAQ_ASSIGN_OR_RETURN(const int fd, MakeSiblingTemp(writer->path_, "spill", &writer->spill_path_));
  writer->spill_ = fdopen(fd, "w+b");
  if (writer->spill_ == nullptr) {
    const int error = errno;
    close(fd);
    return ErrnoError(error, writer->spill_path_, "fdopen failed");
  }
  return writer;
}

SafetensorsWriter::~SafetensorsWriter() {
  if (spill_ != nullptr) std::fclose(spill_);
  if (!spill_path_.empty()) unlink(spill_path_.c_str());
}

absl::Status SafetensorsWriter::Add(absl::string_view name, DType dtype, std::vector<int64_t> shape,
                                    absl::Span<const uint8_t> bytes) {
  const std::string quoted = absl::StrCat(path_, ": tensor \"", name, "\"");
  if (finished_) return absl::FailedPreconditionError(absl::StrCat(quoted, ": writer finished"));
  if (name.empty() || name == "__metadata__" || !IsValidUtf8(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(quoted, ": name must be non-empty UTF-8 other than __metadata__"));
  }
  if (names_.count(name) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(quoted, ": duplicate tensor name"));
  }
  uint64_t expected = DTypeSize(dtype);
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(expected, static_cast<uint64_t>(d), &expected) ||
        expected > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat(quoted, ": invalid shape"));
    }
  }
  if (bytes.size() != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(quoted, ": got ", bytes.size(), " bytes, shape and dtype need ", expected));
  }
  BAQ_FAILPOINT("safetensors_writer.add");
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), spill_) != bytes.size()) {
    const int error = errno;
    // Drop the partial tensor: the next one is written where this one began.
    std::clearerr(spill_);
    fseeko(spill_, static_cast<off_t>(data_bytes_), SEEK_SET);
    return ErrnoError(error, spill_path_, "write failed");
  }
  TensorInfo info;
  info.name = std::string(name);
  info.dtype = dtype;
  info.shape = std::move(shape);
  info.data_begin = data_bytes_;
  info.data_end = data_bytes_ + bytes.size();
  data_bytes_ = info.data_end;
  names_.insert(info.name);
  tensors_.push_back(std::move(info));
  return absl::OkStatus();
}

void SafetensorsWriter::SetMetadata(std::string key, std::string value) {
  metadata_[std::move(key)] = std::move(value);
}

absl::Status SafetensorsWriter::Finish() {
  if (finished_) return absl::FailedPreconditionError(absl::StrCat(path_, ": already finished"));
  for (const auto& [key, value] : metadata_) {
    if (!IsValidUtf8(key) || !IsValidUtf8(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": metadata key or value is not valid UTF-8"));
    }
  }
  const std::string header = SafetensorsHeader(tensors_, metadata_);
  if (header.size() - 8 > kMaxSafetensorsHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": header of ", header.size() - 8,
                                                   " bytes exceeds the readers' limit"));
  }
  if (std::fflush(spill_) != 0) return ErrnoError(errno, spill_path_, "flush failed");

  std::string temp_path;
  BAQ_ASSIGN_OR_RETURN(const int fd, MakeSiblingTemp(path_, "tmp", &temp_path));
  absl::Status status = [&]() -> absl::Status {
    BAQ_FAILPOINT("safetensors_writer.before_write");
    BAQ_RETURN_IF_ERROR(WriteAll(fd, header.data(), header.size(), temp_path));
    std::string chunk(kCopyChunkBytes, '\0');
    const int spill_fd = fileno(spill_);
    for (uint64_t done = 0; done < data_bytes_;) {
      const ssize_t n = pread(spill_fd, chunk.data(), chunk.size(), static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError(errno, spill_path_, "read failed");
      if (n == 0) {
        return absl::DataLossError(
            absl::StrCat(spill_path_, ": short read at ", done, " of ", data_bytes_, " bytes"));
      }
      BAQ_RETURN_IF_ERROR(WriteAll(fd, chunk.data(), static_cast<size_t>(n), temp_path));
      done += static_cast<uint64_t>(n);
      BAQ_FAILPOINT("safetensors_writer.after_chunk");
    }
    // mkstemp makes 0600; a published model is readable like any output file.
    if (fchmod(fd, 0644) != 0) return ErrnoError(errno, temp_path, "fchmod failed");
    BAQ_FAILPOINT("safetensors_writer.before_fsync");
    if (fsync(fd) != 0) return ErrnoError(errno, temp_path, "fsync failed");
    return absl::OkStatus();
  }();
  if (close(fd) != 0 && status.ok()) status = ErrnoError(errno, temp_path, "close failed");
  if (status.ok()) status = failpoint::Eval("safetensors_writer.before_rename");
  if (status.ok() && rename(temp_path.c_str(), path_.c_str()) != 0) {
    status = ErrnoError(errno, path_, "rename failed");
  }
  if (!status.ok()) {
    unlink(temp_path.c_str());
    return status;
  }
  BAQ_FAILPOINT("safetensors_writer.after_rename");
  BAQ_RETURN_IF_ERROR(FsyncDir(DirName(path_)));
  finished_ = true;
  std::fclose(spill_);
  spill_ = nullptr;
  unlink(spill_path_.c_str());
  spill_path_.clear();
  return absl::OkStatus();
}

}  // namespace baq
