#include "common/column_gather.h"

#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace baq {
namespace {

// Shapes around the 8x8 blocks: rows and band widths below, at and past
// multiples of 8, bands that start anywhere, strides past the rows.
TEST(ColumnGatherTest, MatchesElementwiseCopy) {
  std::mt19937 rng(7);
  for (int64_t rows : {0, 1, 7, 8, 9, 40, 77}) {
    for (int64_t cols : {1, 8, 13, 70}) {
      std::vector<uint8_t> matrix(static_cast<size_t>(rows * cols));
      for (uint8_t& v : matrix) v = static_cast<uint8_t>(rng());
      for (int64_t begin : {int64_t{0}, cols / 3, cols - 1}) {
        for (int64_t end : {begin, begin + 1, (begin + cols) / 2 + 1, cols}) {
          if (end < begin || end > cols) continue;
          for (int64_t stride : {rows, rows + 5}) {
            const int64_t width = end - begin;
            std::vector<uint8_t> out(static_cast<size_t>(width * stride), 0xAB);
            GatherColumns(matrix.data(), rows, cols, begin, end, stride, out.data());
            for (int64_t c = 0; c < width; ++c) {
              for (int64_t i = 0; i < rows; ++i) {
                ASSERT_EQ(out[c * stride + i], matrix[i * cols + begin + c])
                    << rows << "x" << cols << " [" << begin << ", " << end << ") at " << i
                    << ", " << c;
              }
              for (int64_t i = rows; i < stride; ++i) {
                ASSERT_EQ(out[c * stride + i], 0xAB) << "wrote past the column";
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace baq
