// common/matrix_packing.h
//
// Whole-matrix payloads of packed codes, one stream per column or row
// (common/code_packing.h), as the output formats store them: the packed
// format's ".qcodes" (worker/layer_formats.h) and compressed-tensors'
// "weight_packed" (worker/compressed_tensors_format.h).
//
// Both take the codes row-major, as a weight's [out, in] codes come. The
// result is sized once from the stream sizes, and every stream is written
// straight into its slot, in chunks on up to `threads` threads
// (common/parallel_for.h): the bytes are the same for any thread count,
// and equal to packing the streams one by one and concatenating their
// words. Words are little-endian. Column streams are gathered 32 columns at
// a time into a buffer of the packing thread (32 * rows bytes, kept by the
// thread), so no pass transposes the whole matrix.
//
// Stateless functions; thread-safe.
//
// Example:
//   // codes: uint8 [out, in]; levels: int32 [in].
//   BAQ_ASSIGN_OR_RETURN(std::string qcodes,
//                        PackMixedRadixColumns(codes, out, levels, threads));
#ifndef BAQ_COMMON_MATRIX_PACKING_H_
#define BAQ_COMMON_MATRIX_PACKING_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace baq {

// `codes`: row-major [rows, levels.size()]. Returns, for j = 0, 1, ..., the
// words of PackMixedRadix(column j, levels[j]) as bytes.
// InvalidArgument on a size mismatch, and, naming the first offending
// column, on a level count outside 1..256 or a code >= its column's levels.
absl::StatusOr<std::string> PackMixedRadixColumns(absl::Span<const uint8_t> codes,
                                                  int64_t rows,
                                                  absl::Span<const int32_t> levels,
                                                  int threads);

// `codes`: row-major [rows, cols]. Returns, for r = 0, 1, ..., the
// FixedWidthPackedWords(cols, bits) words of PackFixedWidth(row r, bits) as
// bytes. InvalidArgument on a size mismatch, bits outside 1..8, and, naming
// the first offending row, a code >= 2^bits.
absl::StatusOr<std::string> PackFixedWidthRows(absl::Span<const uint8_t> codes, int64_t rows,
                                               int64_t cols, int bits, int threads);

}  // namespace baq

#endif  // BAQ_COMMON_MATRIX_PACKING_H_
