#include "common/matrix_packing.h"

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/code_packing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baq {
namespace {

using ::testing::HasSubstr;

template <typename Word>
std::string Bytes(const std::vector<Word>& words) {
  return std::string(reinterpret_cast<const char*>(words.data()), words.size() * sizeof(Word));
}

// Row-major [rows, levels.size()] codes, column j below levels[j].
std::vector<uint8_t> RandomCodes(std::mt19937& rng, int64_t rows,
                                 const std::vector<int32_t>& levels) {
  const int64_t cols = static_cast<int64_t>(levels.size());
  std::vector<uint8_t> codes(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) codes[i * cols + j] = rng() % levels[j];
  }
  return codes;
}

// The column streams one at a time, concatenated: what the payload must be.
std::string ColumnByColumn(const std::vector<uint8_t>& codes, int64_t rows,
                           const std::vector<int32_t>& levels) {
  const int64_t cols = static_cast<int64_t>(levels.size());
  std::string bytes;
  for (int64_t j = 0; j < cols; ++j) {
    std::vector<uint8_t> column(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) column[i] = codes[i * cols + j];
    bytes += Bytes(*PackMixedRadix(column, levels[j]));
  }
  return bytes;
}

TEST(MatrixPackingTest, ColumnsEqualColumnByColumnForAnyThreadCount) {
  std::mt19937 rng(11);
  // Rows and columns around the 8x8 gather blocks and the 64-column chunks;
  // levels mostly 2..16 (a BAQ allocation), some 1 and up to 256.
  for (int64_t rows : {0, 1, 9, 130}) {
    for (int64_t cols : {0, 1, 63, 64, 65, 200}) {
      std::vector<int32_t> levels(static_cast<size_t>(cols));
      for (int32_t& l : levels) l = rng() % 4 == 0 ? 1 + rng() % 256 : 2 + rng() % 15;
      const std::vector<uint8_t> codes = RandomCodes(rng, rows, levels);
      const std::string want = ColumnByColumn(codes, rows, levels);
      for (int threads : {1, 2, 3, 8}) {
        absl::StatusOr<std::string> got = PackMixedRadixColumns(codes, rows, levels, threads);
        ASSERT_TRUE(got.ok()) << got.status();
        ASSERT_EQ(*got, want) << rows << "x" << cols << ", " << threads << " threads";
      }
    }
  }
}

TEST(MatrixPackingTest, ColumnErrorsNameTheFirstBadColumnForAnyThreadCount) {
  std::mt19937 rng(12);
  const int64_t rows = 50, cols = 300;
  std::vector<int32_t> levels(cols, 5);
  std::vector<uint8_t> codes = RandomCodes(rng, rows, levels);
  codes[7 * cols + 250] = 5;  // a later chunk fails too
  codes[40 * cols + 70] = 9;
  for (int threads : {1, 4}) {
    absl::StatusOr<std::string> r = PackMixedRadixColumns(codes, rows, levels, threads);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr("column 70: code 9 at 40 >= 5"));
  }
  levels[3] = 0;
  EXPECT_THAT(PackMixedRadixColumns(codes, rows, levels, 2).status().message(),
              HasSubstr("column 3: levels must be in 1..256, got 0"));
  EXPECT_EQ(PackMixedRadixColumns(codes, rows + 1, levels, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MatrixPackingTest, RowsEqualRowByRowForAnyThreadCount) {
  std::mt19937 rng(13);
  for (int bits = 1; bits <= 8; ++bits) {
    for (int64_t rows : {0, 1, 5, 100}) {
      for (int64_t cols : {0, 1, 31, 33, 100}) {
        std::vector<uint8_t> codes(static_cast<size_t>(rows * cols));
        for (uint8_t& c : codes) c = rng() % (1 << bits);
        std::string want;
        for (int64_t r = 0; r < rows; ++r) {
          want += Bytes(*PackFixedWidth(
              absl::MakeConstSpan(codes.data() + r * cols, static_cast<size_t>(cols)), bits));
        }
        for (int threads : {1, 2, 7}) {
          absl::StatusOr<std::string> got = PackFixedWidthRows(codes, rows, cols, bits, threads);
          ASSERT_TRUE(got.ok()) << got.status();
          ASSERT_EQ(*got, want) << bits << " bits, " << rows << "x" << cols;
        }
      }
    }
  }
}

TEST(MatrixPackingTest, RowErrorsNameTheFirstBadRow) {
  const int64_t rows = 2000, cols = 40;
  std::vector<uint8_t> codes(rows * cols, 1);
  codes[1900 * cols + 3] = 4;
  codes[1200 * cols + 39] = 8;
  for (int threads : {1, 3}) {
    EXPECT_THAT(PackFixedWidthRows(codes, rows, cols, 2, threads).status().message(),
                HasSubstr("row 1200: code 8 at 39 >= 4"));
  }
  EXPECT_EQ(PackFixedWidthRows(codes, rows, cols, 9, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PackFixedWidthRows(codes, rows, cols + 1, 2, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baq
