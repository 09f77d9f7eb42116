// common/activation_format.h
//
// The one implementation of the "BAQA" format: the calibration activations
// at a block boundary (one dense tensor) as they move between workers
// (ExportInputs / ImportInputs and the shard variants) and as the
// coordinator checkpoints them (inputs-<b>.bin, opaque to it)
// (docs/wire-formats.md).
//
//   offset      size              field
//   0           4                 magic "BAQA"
//   4           4                 u32 version = 1
//   8           4                 u32 dtype code: F16 0, BF16 1, F32 2, F64 3,
//                                 I8 4, I32 5, I64 6, U8 7
//   12          4                 u32 ndim, <= kMaxActivationDims
//   16          8 * ndim          i64 shape, each >= 0
//   16 + 8*ndim elements * size   the elements, row-major (C order)
//
// All integers and elements little-endian; nothing follows the payload; at
// most kMaxActivationElements elements. The dtype codes are part of the
// format, not DType's enum order.
//
// Torch-free: the worker's tensor adapter (worker/activation_codec.h) wraps
// it, and torch-free code can check a blob without LibTorch. Stateless;
// thread-safe. Views borrow the bytes they were parsed from.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(std::string wire,
//                        EncodeActivationBytes(DType::kF32, {2, 64, 384}, payload));
//   BAQ_ASSIGN_OR_RETURN(ActivationView v, ParseActivationBytes(wire));
//   // v.dtype, v.shape, v.payload
#ifndef BAQ_COMMON_ACTIVATION_FORMAT_H_
#define BAQ_COMMON_ACTIVATION_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/dtype.h"

namespace baq {

inline constexpr uint32_t kActivationFormatVersion = 1;
inline constexpr uint32_t kMaxActivationDims = 8;
// 2^40 elements (8 TiB of float64): bounds the size arithmetic.
inline constexpr uint64_t kMaxActivationElements = uint64_t{1} << 40;

// A parsed, size-checked "BAQA" byte string.
struct ActivationView {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  // The elements, row-major, little-endian; not necessarily aligned.
  absl::string_view payload;
};

// The wire bytes of a tensor of `dtype` and `shape` whose row-major
// elements are `payload`. InvalidArgument if shape has more than
// kMaxActivationDims dimensions, a negative one, more than
// kMaxActivationElements elements, or payload is not elements x size bytes.
absl::StatusOr<std::string> EncodeActivationBytes(DType dtype, absl::Span<const int64_t> shape,
                                                  absl::string_view payload);

// Checks every header field and the payload length; does not read the
// payload. InvalidArgument naming the fault: truncated header, bad magic,
// unsupported version, unknown dtype code, too many dimensions, truncated
// or negative shape, too many elements, payload length mismatch.
absl::StatusOr<ActivationView> ParseActivationBytes(absl::string_view bytes);

}  // namespace baq

#endif  // BAQ_COMMON_ACTIVATION_FORMAT_H_
