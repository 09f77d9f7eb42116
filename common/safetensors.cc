#include "common/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <tuple>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/safetensors_json.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace baq {
namespace {

using Json = nlohmann::json;
using safetensors_internal::ParseJsonRejectingDuplicateKeys;
using safetensors_internal::QuoteForError;

// A valid header nests 3 deep ({name: {"shape": [...]}}). Rejecting deeper
// nesting before building the DOM bounds the parser's memory on hostile input.
constexpr int kMaxHeaderNesting = 4;

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Deepest [ / { nesting outside strings. Cheap pre-pass before the DOM parse.
int MaxNesting(absl::string_view s) {
  int depth = 0, max_depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

// Reads a JSON integer in [0, max] into *out; false for anything else.
bool AsUint(const Json& v, uint64_t max, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
  } else if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(v.get<int64_t>());
  } else {
    return false;
  }
  return *out <= max;
}

absl::Status EntryError(absl::string_view name, absl::string_view fault) {
  return absl::InvalidArgumentError(absl::StrCat("tensor ", QuoteForError(name), ": ", fault));
}

absl::StatusOr<TensorInfo> ParseEntry(const std::string& name, const Json& entry,
                                      uint64_t data_size) {
  if (!entry.is_object()) return EntryError(name, "entry is not a JSON object");
  for (const auto& item : entry.items()) {
    const std::string& key = item.key();
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return EntryError(name, absl::StrCat("unknown field ", QuoteForError(key)));
    }
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(field)) {
      return EntryError(name, absl::StrCat("missing field \"", field, "\""));
    }
  }
  TensorInfo info;
  info.name = name;

  const Json& dtype = entry["dtype"];
  if (!dtype.is_string()) return EntryError(name, "dtype is not a string");
  absl::StatusOr<DType> parsed = ParseDType(dtype.get_ref<const std::string&>());
  if (!parsed.ok()) return EntryError(name, parsed.status().message());
  info.dtype = *parsed;

  // Element count with overflow checks in dimension order, as the Rust
  // reference does (checked_mul), so NumElements() can never overflow.
  const Json& shape = entry["shape"];
  if (!shape.is_array()) return EntryError(name, "shape is not a list");
  uint64_t elements = 1;
  constexpr uint64_t kMaxInt64 = std::numeric_limits<int64_t>::max();
  for (const Json& dim : shape) {
    uint64_t d;
    if (!AsUint(dim, kMaxInt64, &d)) {
      return EntryError(name, absl::StrCat("shape element ", dim.dump(),
                                           " is not a non-negative 64-bit integer"));
    }
    info.shape.push_back(static_cast<int64_t>(d));
    if (__builtin_mul_overflow(elements, d, &elements) || elements > kMaxInt64) {
      return EntryError(name, absl::StrCat("shape ", shape.dump(), " overflows the element count"));
    }
  }
  uint64_t nbytes;
  if (__builtin_mul_overflow(elements, DTypeSize(info.dtype), &nbytes)) {
    return EntryError(name, absl::StrCat("shape ", shape.dump(), " overflows the byte size"));
  }

  const Json& offsets = entry["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 ||
      !AsUint(offsets[0], std::numeric_limits<uint64_t>::max(), &info.data_begin) ||
      !AsUint(offsets[1], std::numeric_limits<uint64_t>::max(), &info.data_end)) {
    return EntryError(name, absl::StrCat("data_offsets ", offsets.dump(),
                                         " is not a list of two non-negative integers"));
  }
  if (info.data_begin > info.data_end) {
    return EntryError(
        name, absl::StrCat("data_offsets begin ", info.data_begin, " > end ", info.data_end));
  }
  if (info.data_end - info.data_begin != nbytes) {
    return EntryError(
        name, absl::StrCat("data_offsets [", info.data_begin, ", ", info.data_end, "] hold ",
                           info.data_end - info.data_begin, " bytes but byte size of ",
                           DTypeName(info.dtype), " ", ShapeString(info.shape), " is ", nbytes));
  }
  if (info.data_end > data_size) {
    return EntryError(name,
                      absl::StrCat("data_offsets [", info.data_begin, ", ", info.data_end,
                                   "] out of bounds of the ", data_size, "-byte data section"));
  }
  return info;
}

absl::StatusOr<std::map<std::string, std::string>> ParseMetadata(const Json& json) {
  std::map<std::string, std::string> metadata;
  if (json.is_null()) return metadata;  // serde's Option<HashMap> accepts null
  if (!json.is_object()) {
    return absl::InvalidArgumentError("__metadata__ is not a JSON object of strings");
  }
  for (const auto& item : json.items()) {
    if (!item.value().is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("__metadata__ value of ", QuoteForError(item.key()), " is not a string"));
    }
    metadata.emplace(item.key(), item.value().get<std::string>());
  }
  return metadata;
}

// The format requires the tensors to tile the data section exactly: sorted by
// offsets, each begins where the previous one ended and the last ends at EOF.
absl::Status CheckCoverage(const std::vector<TensorInfo>& tensors, uint64_t data_size) {
  uint64_t covered = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& t : tensors) {
    if (t.data_begin < covered) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensors ", QuoteForError(prev->name), " [", prev->data_begin, ", ", prev->data_end,
                       ") and ", QuoteForError(t.name), " [", t.data_begin, ", ", t.data_end, ") overlap"));
    }
    if (t.data_begin > covered) {
      return absl::InvalidArgumentError(absl::StrCat("gap in data section: bytes [", covered, ", ",
                                                     t.data_begin, ") belong to no tensor"));
    }
    covered = t.data_end;
    prev = &t;
  }
  if (covered != data_size) {
    return absl::InvalidArgumentError(absl::StrCat("trailing bytes: data section is ", data_size,
                                                   " bytes but tensors cover only ", covered));
  }
  return absl::OkStatus();
}

int64_t Product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Reads all `size` bytes of `fd`; DataLoss if the file ends early.
absl::Status ReadAll(int fd, size_t size, const std::string& path, std::string* out) {
  out->resize(size);
  size_t done = 0;
  while (done < size) {
    const ssize_t n = pread(fd, out->data() + done, size - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": read failed"));
    if (n == 0) {
      return absl::DataLossError(
          absl::StrCat(path, ": short read: got ", done, " of ", size, " bytes"));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

int64_t TensorInfo::NumElements() const { return Product(shape); }
int64_t TensorView::NumElements() const { return Product(shape); }

SafetensorsFile::~SafetensorsFile() {
  if (mapped_ != nullptr) munmap(mapped_, mapped_size_);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot open"));
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  absl::Status status = [&]() -> absl::Status {
    struct stat st;
    if (fstat(fd, &st) != 0) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": fstat"));
    if (!S_ISREG(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
    }
    const size_t size = static_cast<size_t>(st.st_size);
    // Files too short to hold a header length are read (mmap of 0 bytes fails)
    // and then rejected by Parse() with the same message as FromBytes().
    void* map = size < 8 ? MAP_FAILED : mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map != MAP_FAILED) {
      file->mapped_ = map;
      file->mapped_size_ = size;
      file->data_ = static_cast<const uint8_t*>(map);
      file->size_ = size;
      return absl::OkStatus();
    }
    // Some file systems cannot mmap: read instead.
    BAQ_RETURN_IF_ERROR(ReadAll(fd, size, path, &file->owned_));
    file->data_ = reinterpret_cast<const uint8_t*>(file->owned_.data());
    file->size_ = file->owned_.size();
    return absl::OkStatus();
  }();
  close(fd);
  BAQ_RETURN_IF_ERROR(status);
  return Parse(std::move(file));
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(
    std::string bytes, std::string source_name) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = std::move(source_name);
  file->owned_ = std::move(bytes);
  file->data_ = reinterpret_cast<const uint8_t*>(file->owned_.data());
  file->size_ = file->owned_.size();
  return Parse(std::move(file));
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Parse(
    std::unique_ptr<SafetensorsFile> file) {
  auto invalid = [&](absl::string_view fault) {
    return absl::InvalidArgumentError(absl::StrCat(file->path_, ": ", fault));
  };
  auto annotate = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(file->path_, ": ", s.message()));
  };
  if (file->size_ < 8) {
    return invalid(
        absl::StrCat("file is ", file->size_, " bytes, shorter than the 8-byte header length"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file->data_[i];  // little-endian
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return invalid(absl::StrCat("header length ", header_len, " exceeds the limit of ",
                                kMaxSafetensorsHeaderBytes, " bytes"));
  }
  if (header_len > file->size_ - 8) {
    return invalid(absl::StrCat("header length ", header_len, " runs past end of file (",
                                file->size_, " bytes)"));
  }
  const absl::string_view header(reinterpret_cast<const char*>(file->data_ + 8), header_len);
  if (MaxNesting(header) > kMaxHeaderNesting) {
    return invalid(absl::StrCat("header nests deeper than ", kMaxHeaderNesting, " levels"));
  }
  absl::StatusOr<Json> json = ParseJsonRejectingDuplicateKeys(header);
  if (!json.ok()) {
    return annotate(absl::InvalidArgumentError(absl::StrCat("header ", json.status().message())));
  }
  if (!json->is_object()) return invalid("header is not a JSON object");

  file->data_section_offset_ = 8 + header_len;
  const uint64_t data_size = file->size_ - file->data_section_offset_;
  for (const auto& item : json->items()) {
    if (item.key() == "__metadata__") {
      absl::StatusOr<std::map<std::string, std::string>> metadata = ParseMetadata(item.value());
      if (!metadata.ok()) return annotate(metadata.status());
      file->metadata_ = *std::move(metadata);
      continue;
    }
    absl::StatusOr<TensorInfo> info = ParseEntry(item.key(), item.value(), data_size);
    if (!info.ok()) return annotate(info.status());
    file->tensors_.push_back(*std::move(info));
  }
  std::sort(file->tensors_.begin(), file->tensors_.end(),
            [](const TensorInfo& a, const TensorInfo& b) {
              return std::tie(a.data_begin, a.data_end, a.name) <
                     std::tie(b.data_begin, b.data_end, b.name);
            });
  if (absl::Status s = CheckCoverage(file->tensors_, data_size); !s.ok()) return annotate(s);
  for (size_t i = 0; i < file->tensors_.size(); ++i) {
    file->index_.emplace(file->tensors_[i].name, i);
  }
  return file;
}

bool SafetensorsFile::Contains(absl::string_view name) const {
  return index_.find(name) != index_.end();
}

absl::StatusOr<TensorInfo> SafetensorsFile::Info(absl::string_view name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor ", QuoteForError(name)));
  }
  return tensors_[it->second];
}

absl::StatusOr<TensorView> SafetensorsFile::Get(absl::string_view name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor ", QuoteForError(name)));
  }
  const TensorInfo& info = tensors_[it->second];
  TensorView view;
  view.dtype = info.dtype;
  view.shape = info.shape;
  view.bytes = absl::MakeConstSpan(data_ + data_section_offset_ + info.data_begin,
                                   info.data_end - info.data_begin);
  return view;
}

}  // namespace baq
