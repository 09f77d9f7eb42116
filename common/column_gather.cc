#include "common/column_gather.h"

#include <cstring>
#include <initializer_list>

namespace baq {
namespace {

// Transposes the 8x8 bytes m[i] byte k -> m[k] byte i in place: swap the
// off-diagonal 4x4 blocks, then 2x2 blocks within them, then single bytes
// (the recursive block transpose, on 64-bit words: portable, no SIMD).
void Transpose8x8(uint64_t m[8]) {
  for (int i = 0; i < 4; ++i) {
    const uint64_t a = m[i], b = m[i + 4];
    m[i] = (a & 0x00000000FFFFFFFFull) | (b << 32);
    m[i + 4] = (a >> 32) | (b & 0xFFFFFFFF00000000ull);
  }
  for (int i : {0, 1, 4, 5}) {
    const uint64_t a = m[i], b = m[i + 2];
    m[i] = (a & 0x0000FFFF0000FFFFull) | ((b & 0x0000FFFF0000FFFFull) << 16);
    m[i + 2] = ((a >> 16) & 0x0000FFFF0000FFFFull) | (b & 0xFFFF0000FFFF0000ull);
  }
  for (int i = 0; i < 8; i += 2) {
    const uint64_t a = m[i], b = m[i + 1];
    m[i] = (a & 0x00FF00FF00FF00FFull) | ((b & 0x00FF00FF00FF00FFull) << 8);
    m[i + 1] = ((a >> 8) & 0x00FF00FF00FF00FFull) | (b & 0xFF00FF00FF00FF00ull);
  }
}

}  // namespace

void GatherColumns(const uint8_t* matrix, int64_t rows, int64_t cols, int64_t begin,
                   int64_t end, int64_t stride, uint8_t* out) {
  const int64_t width = end - begin, blocked = width / 8 * 8;
  const uint8_t* in = matrix + begin;
  int64_t i = 0;
  for (; i + 8 <= rows; i += 8) {
    // 32 rows ahead: the rows are pages apart, beyond the hardware's reach.
    for (int64_t k = 0; k < 8 && i + 32 + k < rows; ++k) {
      for (int64_t c = 0; c < width; c += 64) __builtin_prefetch(in + (i + 32 + k) * cols + c);
    }
    for (int64_t c = 0; c < blocked; c += 8) {
      uint64_t m[8];
      for (int k = 0; k < 8; ++k) std::memcpy(&m[k], in + (i + k) * cols + c, 8);
      Transpose8x8(m);
      for (int k = 0; k < 8; ++k) std::memcpy(out + (c + k) * stride + i, &m[k], 8);
    }
    for (int64_t c = blocked; c < width; ++c) {
      for (int64_t k = 0; k < 8; ++k) out[c * stride + i + k] = in[(i + k) * cols + c];
    }
  }
  for (; i < rows; ++i) {
    for (int64_t c = 0; c < width; ++c) out[c * stride + i] = in[i * cols + c];
  }
}

}  // namespace baq
