#include "common/code_packing.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace baq {
namespace {

std::vector<uint8_t> RandomCodes(std::mt19937_64& rng, int64_t n,
                                 int32_t levels) {
  std::uniform_int_distribution<int32_t> code(0, levels - 1);
  std::vector<uint8_t> codes(n);
  for (uint8_t& c : codes) c = static_cast<uint8_t>(code(rng));
  return codes;
}

// Bits [first, first + width) of a uint32 stream, read one bit at a time.
uint32_t StreamBits(const std::vector<uint32_t>& words, int64_t first,
                    int width) {
  uint32_t v = 0;
  for (int k = 0; k < width; ++k) {
    const int64_t bit = first + k;
    v |= ((words[bit / 32] >> (bit % 32)) & 1u) << k;
  }
  return v;
}

TEST(CodePackingTest, FixedWidthRoundTripsEveryWidth) {
  std::mt19937_64 rng(1);
  for (int bits = 1; bits <= 8; ++bits) {
    for (int64_t n : {0, 1, 7, 31, 32, 33, 96, 1000}) {
      const std::vector<uint8_t> codes = RandomCodes(rng, n, 1 << bits);
      absl::StatusOr<std::vector<uint32_t>> words = PackFixedWidth(codes, bits);
      ASSERT_TRUE(words.ok()) << words.status();
      ASSERT_EQ(static_cast<int64_t>(words->size()), (n * bits + 31) / 32);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(StreamBits(*words, i * bits, bits), codes[i]);
      }
      absl::StatusOr<std::vector<uint8_t>> back =
          UnpackFixedWidth(*words, bits, n);
      ASSERT_TRUE(back.ok()) << back.status();
      EXPECT_EQ(*back, codes) << bits << " bits, " << n << " codes";
    }
  }
}

TEST(CodePackingTest, PowerOfTwoWidthsPutCodeZeroInTheLowBits) {
  std::vector<uint8_t> nibbles = {0, 1, 2, 3, 4, 5, 6, 7};
  EXPECT_EQ(PackFixedWidth(nibbles, 4)->at(0), 0x76543210u);
  std::vector<uint8_t> bytes = {0x11, 0x22, 0x33, 0x44};
  EXPECT_EQ(PackFixedWidth(bytes, 8)->at(0), 0x44332211u);
  std::vector<uint8_t> pairs(16, 0);
  pairs[15] = 3;
  EXPECT_EQ(PackFixedWidth(pairs, 2)->at(0), 0xC0000000u);
}

TEST(CodePackingTest, ThreeBitsUseGptqsThirtyTwoCodesInThreeWords) {
  // GPTQ's 3-bit qweight: codes 0-9 in word 0 bits 0-29, code 10 split as
  // its low 2 bits in word 0 bits 30-31 and its high bit in word 1 bit 0,
  // codes 11-20 in word 1 bits 1-30, code 21 split over word 1 bit 31 and
  // word 2 bits 0-1, codes 22-31 in word 2 bits 2-31.
  std::mt19937_64 rng(2);
  const std::vector<uint8_t> c = RandomCodes(rng, 32, 8);
  absl::StatusOr<std::vector<uint32_t>> w = PackFixedWidth(c, 3);
  ASSERT_TRUE(w.ok());
  ASSERT_EQ(w->size(), 3u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(((*w)[0] >> (3 * i)) & 7, c[i]);
  EXPECT_EQ((*w)[0] >> 30, c[10] & 3u);
  EXPECT_EQ((*w)[1] & 1, c[10] >> 2);
  for (int i = 11; i < 21; ++i) {
    EXPECT_EQ(((*w)[1] >> (3 * (i - 11) + 1)) & 7, c[i]);
  }
  EXPECT_EQ((*w)[1] >> 31, c[21] & 1u);
  EXPECT_EQ((*w)[2] & 3, static_cast<uint32_t>(c[21] >> 1));
  for (int i = 22; i < 32; ++i) {
    EXPECT_EQ(((*w)[2] >> (3 * (i - 22) + 2)) & 7, c[i]);
  }
}

TEST(CodePackingTest, GptqQweightLayout) {
  std::mt19937_64 rng(3);
  for (int bits : {2, 3, 4, 8}) {
    const int64_t out = 5, in = 64;
    const std::vector<uint8_t> codes = RandomCodes(rng, out * in, 1 << bits);
    absl::StatusOr<std::vector<uint32_t>> q =
        PackGptqQweight(codes, out, in, bits);
    ASSERT_TRUE(q.ok()) << q.status();
    const int64_t rows = in * bits / 32;
    ASSERT_EQ(static_cast<int64_t>(q->size()), rows * out);
    for (int64_t o = 0; o < out; ++o) {
      std::vector<uint32_t> column(rows);
      for (int64_t r = 0; r < rows; ++r) column[r] = (*q)[r * out + o];
      for (int64_t i = 0; i < in; ++i) {
        ASSERT_EQ(StreamBits(column, i * bits, bits), codes[o * in + i]);
      }
    }
    absl::StatusOr<std::vector<uint8_t>> back =
        UnpackGptqQweight(*q, out, in, bits);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, codes);
  }
  EXPECT_FALSE(PackGptqQweight(std::vector<uint8_t>(5 * 10), 5, 10, 3).ok());
}

TEST(CodePackingTest, MixedRadixRoundTripsEveryLevelCount) {
  std::mt19937_64 rng(4);
  for (int32_t levels = 1; levels <= 256; ++levels) {
    absl::StatusOr<MixedRadixLayout> layout = MixedRadixLayoutFor(levels);
    ASSERT_TRUE(layout.ok());
    const int64_t t = layout->codes_per_group;
    ASSERT_LE(layout->bits_per_group, 64);
    ASSERT_GE(std::ldexp(1.0, layout->bits_per_group),
              std::pow(static_cast<double>(levels), t) * (1 - 1e-12));
    for (int64_t n :
         {int64_t{0}, int64_t{1}, t - 1, t, t + 1, 3 * t + 2, int64_t{1000}}) {
      if (n < 0) continue;
      const std::vector<uint8_t> codes = RandomCodes(rng, n, levels);
      absl::StatusOr<std::vector<uint64_t>> words =
          PackMixedRadix(codes, levels);
      ASSERT_TRUE(words.ok()) << words.status();
      EXPECT_EQ(static_cast<int64_t>(words->size()),
                (MixedRadixPackedBits(*layout, n) + 63) / 64);
      absl::StatusOr<std::vector<uint8_t>> back =
          UnpackMixedRadix(*words, levels, n);
      ASSERT_TRUE(back.ok()) << back.status();
      ASSERT_EQ(*back, codes) << levels << " levels, " << n << " codes";
    }
  }
  EXPECT_TRUE(PackMixedRadix(std::vector<uint8_t>(100, 0), 1)->empty());
}

TEST(CodePackingTest, MixedRadixIsWithinTwoPercentOfTheEntropy) {
  const int64_t n = int64_t{1} << 17;  // a multiple of 64
  std::mt19937_64 rng(5);
  for (int32_t levels = 3; levels <= 256; ++levels) {
    absl::StatusOr<std::vector<uint64_t>> words =
        PackMixedRadix(RandomCodes(rng, n, levels), levels);
    ASSERT_TRUE(words.ok());
    const double ideal = n * std::log2(static_cast<double>(levels));
    EXPECT_LE(64.0 * words->size(), 1.02 * ideal) << levels;
    if ((levels & (levels - 1)) == 0) {
      EXPECT_EQ(64.0 * words->size(), ideal) << levels;
    }
  }
}

TEST(CodePackingTest, RejectsBadInputAndCorruptWords) {
  EXPECT_EQ(PackFixedWidth(std::vector<uint8_t>{4}, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PackFixedWidth(std::vector<uint8_t>{0}, 9).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PackMixedRadix(std::vector<uint8_t>{5}, 5).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MixedRadixLayoutFor(257).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UnpackFixedWidth(std::vector<uint32_t>(2), 3, 5).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Non-zero bits after the last 3-bit code.
  EXPECT_EQ(
      UnpackFixedWidth(std::vector<uint32_t>{1u << 20}, 3, 5).status().code(),
      absl::StatusCode::kDataLoss);
  // A group value >= L^t: all ones in a group of 3-level codes.
  const MixedRadixLayout layout = *MixedRadixLayoutFor(3);
  std::vector<uint64_t> words(
      MixedRadixPackedWords(layout, layout.codes_per_group), 0);
  words[0] = (uint64_t{1} << layout.bits_per_group) - 1;
  EXPECT_EQ(UnpackMixedRadix(words, 3, layout.codes_per_group).status().code(),
            absl::StatusCode::kDataLoss);
  // A non-zero padding code in a short last group.
  std::vector<uint64_t> padded = *PackMixedRadix(std::vector<uint8_t>{2}, 3);
  padded[0] += 3;  // code 1 of the group := 1
  EXPECT_EQ(UnpackMixedRadix(padded, 3, 1).status().code(),
            absl::StatusCode::kDataLoss);
}

// The bit-at-a-time encoders of the layouts in code_packing.h, written from
// its description: the packers' bytes must equal these exactly.
void PutBits(std::vector<uint8_t>& bytes, int64_t& bit, uint64_t value, int width) {
  for (int k = 0; k < width; ++k, ++bit) {
    if ((value >> k) & 1) bytes[bit / 8] |= static_cast<uint8_t>(1u << (bit % 8));
  }
}

std::vector<uint8_t> ReferenceFixedWidth(const std::vector<uint8_t>& codes, int bits) {
  std::vector<uint8_t> bytes(FixedWidthPackedWords(codes.size(), bits) * 4, 0);
  int64_t bit = 0;
  for (uint8_t c : codes) PutBits(bytes, bit, c, bits);
  return bytes;
}

std::vector<uint8_t> ReferenceMixedRadix(const std::vector<uint8_t>& codes,
                                         const MixedRadixLayout& layout) {
  const int64_t n = static_cast<int64_t>(codes.size());
  std::vector<uint8_t> bytes(MixedRadixPackedWords(layout, n) * 8, 0);
  int64_t bit = 0;
  for (int64_t start = 0; layout.bits_per_group > 0 && start < n;
       start += layout.codes_per_group) {
    uint64_t value = 0;
    for (int64_t i = std::min(n, start + layout.codes_per_group) - 1; i >= start; --i) {
      value = value * layout.levels + codes[i];
    }
    PutBits(bytes, bit, value, layout.bits_per_group);
  }
  return bytes;
}

template <typename Word>
std::vector<uint8_t> AsBytes(const std::vector<Word>& words) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(words.data());
  return std::vector<uint8_t>(p, p + words.size() * sizeof(Word));
}

// log2(levels) rounded down.
int BitWidth(int32_t levels) {
  int bits = 0;
  while ((2 << bits) <= levels) ++bits;
  return bits;
}

// The allocating packer's words and the ...Into packer's bytes both equal
// `want`.
template <typename Words, typename Into>
void ExpectBytes(const absl::StatusOr<Words>& words, const Into& into,
                 const std::vector<uint8_t>& want, const std::string& what) {
  ASSERT_TRUE(words.ok()) << words.status();
  EXPECT_EQ(AsBytes(*words), want) << what;
  std::vector<uint8_t> out(want.size(), 0xFF);
  ASSERT_TRUE(into(absl::MakeSpan(out)).ok()) << what;
  EXPECT_EQ(out, want) << what;
}

// Every level count, mixed radix; the powers of two also fixed width.
TEST(CodePackingTest, BytesEqualTheBitAtATimeEncoders) {
  std::mt19937_64 rng(6);
  for (int32_t levels = 1; levels <= 256; ++levels) {
    const MixedRadixLayout layout = *MixedRadixLayoutFor(levels);
    const int64_t t = layout.codes_per_group;
    const int bits = BitWidth(levels);
    for (int64_t n : {int64_t{0}, int64_t{1}, t - 1, t, t + 1, 3 * t + 2, int64_t{31},
                      int64_t{32}, int64_t{33}, int64_t{63}, int64_t{64}, int64_t{65},
                      int64_t{1000}}) {
      if (n < 0) continue;
      const std::vector<uint8_t> codes = RandomCodes(rng, n, levels);
      const std::string what = absl::StrCat(levels, " levels, ", n, " codes");
      ExpectBytes(
          PackMixedRadix(codes, levels),
          [&](absl::Span<uint8_t> out) { return PackMixedRadixInto(codes, layout, out); },
          ReferenceMixedRadix(codes, layout), what);
      if (levels == 1 << bits && bits >= 1) {
        ExpectBytes(
            PackFixedWidth(codes, bits),
            [&](absl::Span<uint8_t> out) { return PackFixedWidthInto(codes, bits, out); },
            ReferenceFixedWidth(codes, bits), what);
      }
    }
  }
}

TEST(CodePackingTest, IntoRejectsWrongSizesLayoutsAndCodes) {
  const std::vector<uint8_t> codes(10, 1);
  std::vector<uint8_t> out(100);
  EXPECT_EQ(PackFixedWidthInto(codes, 3, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  const MixedRadixLayout layout = *MixedRadixLayoutFor(5);
  EXPECT_EQ(PackMixedRadixInto(codes, layout, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  MixedRadixLayout bogus = layout;
  bogus.codes_per_group = 100;
  EXPECT_EQ(PackMixedRadixInto(codes, bogus, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> fits(MixedRadixPackedWords(layout, 10) * 8);
  std::vector<uint8_t> bad = codes;
  bad[9] = 5;
  EXPECT_EQ(PackMixedRadixInto(bad, layout, absl::MakeSpan(fits)).message(),
            "code 5 at 9 >= 5");
  std::vector<uint8_t> four(FixedWidthPackedWords(10, 2) * 4);
  bad[9] = 4;
  EXPECT_EQ(PackFixedWidthInto(bad, 2, absl::MakeSpan(four)).message(), "code 4 at 9 >= 4");
}

// One code == levels, early (in the eight-at-a-time check) or in the tail,
// for every level count, so each check of `code < levels` is exercised.
TEST(CodePackingTest, MixedRadixFindsEveryOutOfRangeCode) {
  std::mt19937_64 rng(9);
  for (int32_t levels = 1; levels <= 255; ++levels) {
    for (int64_t at : {0, 13, 99}) {
      std::vector<uint8_t> codes = RandomCodes(rng, 100, levels);
      codes[at] = static_cast<uint8_t>(levels);
      EXPECT_EQ(PackMixedRadix(codes, levels).status().message(),
                absl::StrCat("code ", levels, " at ", at, " >= ", levels));
    }
  }
}

TEST(CodePackingTest, GptqQweightIsTheSameForAnyThreadCountAndShape) {
  std::mt19937_64 rng(8);
  // in_features past a multiple of 32 (the last words of each output come
  // from fewer than 32 codes) and output counts around the 32-output chunks.
  for (const auto& [bits, in] : {std::pair{2, 48}, std::pair{3, 96}, std::pair{4, 40},
                                 std::pair{8, 36}, std::pair{4, 128}}) {
    for (int64_t out : {1, 31, 33, 100}) {
      const std::vector<uint8_t> codes = RandomCodes(rng, out * in, 1 << bits);
      const int64_t rows = in * bits / 32;
      std::vector<uint32_t> want(rows * out);
      for (int64_t o = 0; o < out; ++o) {
        const std::vector<uint8_t> stream(codes.begin() + o * in, codes.begin() + (o + 1) * in);
        const std::vector<uint8_t> b = ReferenceFixedWidth(stream, bits);
        for (int64_t r = 0; r < rows; ++r) std::memcpy(&want[r * out + o], &b[r * 4], 4);
      }
      ASSERT_EQ(*PackGptqQweight(codes, out, in, bits), want) << bits << " bits, " << out;
      for (int threads : {1, 2, 5}) {
        std::vector<uint8_t> into(rows * out * 4, 0xFF);
        ASSERT_TRUE(
            PackGptqQweightInto(codes, out, in, bits, threads, absl::MakeSpan(into)).ok());
        ASSERT_EQ(into, AsBytes(want)) << bits << " bits, " << out << ", " << threads;
      }
    }
  }
  std::vector<uint8_t> bad(4 * 32, 0);
  bad[3 * 32 + 5] = 16;
  std::vector<uint8_t> out(4 * 32 / 8 * 4);
  EXPECT_EQ(PackGptqQweightInto(bad, 4, 32, 4, 2, absl::MakeSpan(out)).message(),
            "code 16 at 101 >= 16");
}

}  // namespace
}  // namespace baq
