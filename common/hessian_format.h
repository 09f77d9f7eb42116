// common/hessian_format.h
//
// The one implementation of the "BAQH" wire format: the unnormalized float64
// Hessian sum S = sum_t x_t x_t^T of one layer input plus its row count, as a
// worker's HessianAccumulator serializes it and the coordinator merges it
// across calibration shards (docs/wire-formats.md).
//
//   offset  size            field
//   0       4               magic "BAQH"
//   4       4               u32 version: 1 (full) or 2 (upper triangle)
//   8       8               i64 columns C, 1 <= C <= kMaxHessianColumns
//   16      8               i64 rows (token count), >= 0
//   24      C * C * 8       version 1: float64 S, row-major
//           C(C+1)/2 * 8    version 2: the upper triangle of S (S is
//                           symmetric), row by row: S[i][j] for j >= i
//
// All integers and floats little-endian; nothing follows the payload.
// Version 2 is what workers send (AccumulateHessians partials): half the
// bytes; the reader mirrors the upper triangle onto the lower one.
//
// Torch-free so the coordinator (no LibTorch) and the worker's tensor
// adapter (worker/quant/hessian_accumulator.cc) share it. Stateless;
// thread-safe. Views borrow the bytes they were parsed from.
//
// Example:
//   std::string wire = EncodeHessianSum(cols, rows, sum);   // worker
//   BAQ_ASSIGN_OR_RETURN(HessianSumView v, ParseHessianSum(wire));
//   BAQ_RETURN_IF_ERROR(CheckHessianSumFinite(v));
//   v.CopyTo(absl::MakeSpan(dst));
//   BAQ_RETURN_IF_ERROR(AddHessianSum(other_wire, &wire));  // coordinator merge
#ifndef BAQ_COMMON_HESSIAN_FORMAT_H_
#define BAQ_COMMON_HESSIAN_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace baq {

inline constexpr uint32_t kHessianFormatVersion = 1;
inline constexpr uint32_t kHessianUpperFormatVersion = 2;
inline constexpr size_t kHessianHeaderBytes = 24;
// Wider than any transformer's linear layer (a 2^20-column sum is 8 TiB);
// bounds the size arithmetic before any allocation.
inline constexpr int64_t kMaxHessianColumns = int64_t{1} << 20;

// A parsed, size-checked "BAQH" byte string.
struct HessianSumView {
  int64_t columns = 0;
  int64_t rows = 0;
  bool upper = false;  // Version 2: the payload is the upper triangle.
  // elements() float64, little-endian; not necessarily aligned.
  absl::string_view payload;

  // Payload elements: columns^2, or columns (columns + 1) / 2 (upper).
  int64_t elements() const { return upper ? columns * (columns + 1) / 2 : columns * columns; }
  // Payload element `index`. REQUIRES: 0 <= index < elements().
  double At(int64_t index) const;
  // The full columns x columns sum, row-major (the upper triangle mirrored
  // onto the lower one for version 2). REQUIRES: out.size() == columns^2.
  void CopyTo(absl::Span<double> out) const;
};

// The wire bytes of a sum. REQUIRES (aborts otherwise: a caller bug):
// 1 <= columns <= kMaxHessianColumns, rows >= 0, sum.size() == columns^2.
std::string EncodeHessianSum(int64_t columns, int64_t rows, absl::Span<const double> sum);
// Version 2: the upper triangle of the full row-major `sum` (same REQUIRES).
std::string EncodeUpperHessianSum(int64_t columns, int64_t rows, absl::Span<const double> sum);

// Checks the header and the length; does not read the payload.
// InvalidArgument naming the fault: truncated header, bad magic, unsupported
// version, columns out of range, negative rows, payload length mismatch.
absl::StatusOr<HessianSumView> ParseHessianSum(absl::string_view bytes);

// InvalidArgument naming the count of NaN/Inf elements and the first one's
// (row, column). One pass over the payload.
absl::Status CheckHessianSumFinite(const HessianSumView& sum);

// *sum += addend: rows, and every element by one float64 addition in payload
// order (the additions at::add_ makes in HessianAccumulator::Merge, so the
// bits do not depend on which side merges). InvalidArgument if either is
// malformed, their columns differ or one is an upper triangle and the other
// not; *sum is unchanged then.
absl::Status AddHessianSum(absl::string_view addend, std::string* sum);

}  // namespace baq

#endif  // BAQ_COMMON_HESSIAN_FORMAT_H_
