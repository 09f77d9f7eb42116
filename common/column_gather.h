// common/column_gather.h
//
// GatherColumns copies a band of columns out of a row-major byte matrix so
// each column lies contiguous: the transpose that packing codes column by
// column needs (common/matrix_packing.h), done one band at a time by the
// thread that packs it instead of as a pass over the whole matrix.
//
// It moves 8x8 byte blocks through 64-bit words (portable, no SIMD) and
// prefetches the rows ahead: consecutive rows of a wide matrix are pages
// apart, which hardware prefetchers do not follow.
//
// Stateless; thread-safe.
//
// Example:
//   // columns 64..127 of codes [rows, cols], column 64 + c at out[c * stride]
//   GatherColumns(codes, rows, cols, 64, 128, stride, out);
#ifndef BAQ_COMMON_COLUMN_GATHER_H_
#define BAQ_COMMON_COLUMN_GATHER_H_

#include <cstdint>

namespace baq {

// Copies columns [begin, end) of the row-major [rows, cols] `matrix`: column
// begin + c goes to out[c * stride + i], i < rows.
// REQUIRES: 0 <= begin <= end <= cols, stride >= rows, `out` holds
// (end - begin) * stride bytes.
void GatherColumns(const uint8_t* matrix, int64_t rows, int64_t cols, int64_t begin,
                   int64_t end, int64_t stride, uint8_t* out);

}  // namespace baq

#endif  // BAQ_COMMON_COLUMN_GATHER_H_
