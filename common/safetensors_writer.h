// common/safetensors_writer.h
//
// Streaming safetensors writer: tensors are appended one at a time (only the
// current tensor is in memory) to a spill file; Finish() writes the header,
// then the data, fsyncs and renames into place, so a reader never sees a
// half-written file. Output is byte-deterministic: tensors are laid out in
// the order they were added, header keys sorted.
//
// Thread-compatible: one thread uses a writer. Destroying an unfinished
// writer removes its temporary files.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(auto w, SafetensorsWriter::Create(dir + "/model.safetensors"));
//   BAQ_RETURN_IF_ERROR(w->Add("lm_head.weight", DType::kF16, {8192, 384}, bytes));
//   BAQ_RETURN_IF_ERROR(w->Finish());
#ifndef BAQ_COMMON_SAFETENSORS_WRITER_H_
#define BAQ_COMMON_SAFETENSORS_WRITER_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/safetensors.h"

namespace baq {

// The start of a safetensors image holding `tensors` (their data_begin and
// data_end set, in data order): the 8-byte little-endian header length, then
// the JSON header with sorted keys, padded with spaces to a multiple of 8 so
// the data starts aligned (as HF safetensors does). Append the data to get
// the image; SafetensorsFile::FromBytes reads it back.
std::string SafetensorsHeader(const std::vector<TensorInfo>& tensors,
                              const std::map<std::string, std::string>& metadata);

class SafetensorsWriter {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsWriter>> Create(std::string path);
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // InvalidArgument on a duplicate, empty, non-UTF-8 or "__metadata__" name, a
  // negative dimension, or bytes.size() != prod(shape)*size.
  absl::Status Add(absl::string_view name, DType dtype, std::vector<int64_t> shape,
                   absl::Span<const uint8_t> bytes);
  void SetMetadata(std::string key, std::string value);
  // Total bytes of tensor data added so far.
  uint64_t data_bytes() const { return data_bytes_; }
  // Writes the file and renames it onto the target path. FailedPrecondition
  // if already finished; on error the target is untouched and Finish() may be
  // retried.
  absl::Status Finish();

 private:
  explicit SafetensorsWriter(std::string path) : path_(std::move(path)) {}

  const std::string path_;
  std::string spill_path_;
  std::FILE* spill_ = nullptr;
  uint64_t data_bytes_ = 0;
  std::vector<TensorInfo> tensors_;  // In the order added (= data layout).
  std::set<std::string, std::less<>> names_;
  std::map<std::string, std::string> metadata_;
  bool finished_ = false;
};

}  // namespace baq

#endif  // BAQ_COMMON_SAFETENSORS_WRITER_H_
