// common/dtype.h
//
// Element types of tensors on disk and on the wire (safetensors names), with
// their sizes. Torch-free so the coordinator can use it. Thread-safe.
#ifndef BAQ_COMMON_DTYPE_H_
#define BAQ_COMMON_DTYPE_H_

#include <cstddef>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace baq {

enum class DType { kF16, kBF16, kF32, kF64, kI8, kI32, kI64, kU8 };

// "F16" -> kF16 ...; InvalidArgument listing the supported names otherwise.
absl::StatusOr<DType> ParseDType(absl::string_view name);
// kF16 -> "F16".
absl::string_view DTypeName(DType dtype);
// Bytes per element.
size_t DTypeSize(DType dtype);

}  // namespace baq

#endif  // BAQ_COMMON_DTYPE_H_
