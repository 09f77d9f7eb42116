// common/safetensors.h
//
// Reader for the safetensors format (https://github.com/huggingface/safetensors):
// an 8-byte little-endian header length N, N bytes of JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
// then the data section. Files are memory-mapped; tensors come back as
// zero-copy byte views (worker/ turns them into at::Tensor without copying).
//
// Every structural fault is rejected by Open() with an InvalidArgument (or
// NotFound / DataLoss for I/O) status naming the file and the fault: header
// length > 100 MB or past EOF, invalid JSON, unknown dtype, shape/byte-size
// mismatch, duplicate/overlapping/out-of-bounds offsets, gaps in the data
// section, non-UTF-8 names. After Open() succeeds, every view is in bounds.
//
// Thread-safety: immutable after Open(); all const methods are thread-safe.
// Ownership: views borrow from the SafetensorsFile, which must outlive them.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open("model.safetensors"));
//   BAQ_ASSIGN_OR_RETURN(TensorView w, file->Get("lm_head.weight"));
#ifndef BAQ_COMMON_SAFETENSORS_H_
#define BAQ_COMMON_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/dtype.h"

namespace baq {

// One tensor's entry in a safetensors header.
struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  // Byte range inside the data section, [begin, end).
  uint64_t data_begin = 0;
  uint64_t data_end = 0;
  int64_t NumElements() const;
};

// A borrowed view of one tensor's bytes (little-endian, row-major).
struct TensorView {
  DType dtype;
  std::vector<int64_t> shape;
  absl::Span<const uint8_t> bytes;
  int64_t NumElements() const;
};

// Largest header we accept (the reference Rust implementation uses 100 MB).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

class SafetensorsFile {
 public:
  // Memory-maps and validates `path`.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // Validates an in-memory image (used by the fuzzer and tests); `source_name`
  // names it in errors.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(
      std::string bytes, std::string source_name);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  // Tensors in header order of their data offsets.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

  bool Contains(absl::string_view name) const;
  // NotFound naming the file and tensor when absent.
  absl::StatusOr<TensorView> Get(absl::string_view name) const;
  // Header entry only; NotFound naming the file and tensor when absent.
  absl::StatusOr<TensorInfo> Info(absl::string_view name) const;

 private:
  SafetensorsFile() = default;
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Parse(
      std::unique_ptr<SafetensorsFile> file);

  std::string path_;
  // Either an mmap (mapped_, mapped_size_) or an owned buffer (owned_).
  void* mapped_ = nullptr;
  size_t mapped_size_ = 0;
  std::string owned_;
  const uint8_t* data_ = nullptr;  // Start of the whole file image.
  size_t size_ = 0;
  uint64_t data_section_offset_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> tensors_ index
  std::map<std::string, std::string> metadata_;
};

}  // namespace baq

#endif  // BAQ_COMMON_SAFETENSORS_H_
