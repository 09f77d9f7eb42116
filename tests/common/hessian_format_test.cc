// common/hessian_format: the "BAQH" bytes pinned on a hand-built example, the
// round trip, every rejection with its message, and the float64 merge.
#include "common/hessian_format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"

namespace baq {
namespace {

using ::testing::HasSubstr;

// The 2-column sum [[1, 2], [-0.5, 4]] over 3 rows, written out by hand:
// magic, u32 version, i64 columns, i64 rows, then four little-endian float64
// in row-major order. A format change must change this string.
constexpr char kPinnedHex[] =
    "42415148"          // "BAQH"
    "01000000"          // version 1
    "0200000000000000"  // columns 2
    "0300000000000000"  // rows 3
    "000000000000f03f"  // 1.0
    "0000000000000040"  // 2.0
    "000000000000e0bf"  // -0.5
    "0000000000001040";  // 4.0
const std::vector<double> kPinnedSum = {1.0, 2.0, -0.5, 4.0};

std::string Pinned() { return absl::HexStringToBytes(kPinnedHex); }

template <typename T>
std::string WithField(std::string bytes, size_t offset, T value) {
  bytes.replace(offset, sizeof(T), reinterpret_cast<const char*>(&value), sizeof(T));
  return bytes;
}

std::string Message(absl::string_view bytes) {
  absl::StatusOr<HessianSumView> v = ParseHessianSum(bytes);
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(v.status().message());
}

TEST(HessianFormatTest, EncodesThePinnedBytes) {
  EXPECT_EQ(absl::BytesToHexString(EncodeHessianSum(2, 3, kPinnedSum)), kPinnedHex);
}

TEST(HessianFormatTest, ParsesThePinnedBytes) {
  const std::string bytes = Pinned();
  absl::StatusOr<HessianSumView> v = ParseHessianSum(bytes);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->columns, 2);
  EXPECT_EQ(v->rows, 3);
  EXPECT_EQ(v->elements(), 4);
  EXPECT_EQ(v->payload.size(), 32u);
  EXPECT_EQ(v->At(2), -0.5);
  std::vector<double> back(4);
  v->CopyTo(absl::MakeSpan(back));
  EXPECT_EQ(back, kPinnedSum);
  EXPECT_TRUE(CheckHessianSumFinite(*v).ok());
}

TEST(HessianFormatTest, RoundTripIsBitExact) {
  // Values whose bits a lossy path would change: denormal, -0, extremes.
  const std::vector<double> sum = {std::numeric_limits<double>::denorm_min(), -0.0,
                                   std::numeric_limits<double>::max(), 1.0 / 3,
                                   -1e-300, 7.0, 0.1, -2.5, 1e16};
  const std::string bytes = EncodeHessianSum(3, 1234567, sum);
  EXPECT_EQ(bytes.size(), kHessianHeaderBytes + 9 * 8);
  absl::StatusOr<HessianSumView> v = ParseHessianSum(bytes);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->rows, 1234567);
  std::vector<double> back(9);
  v->CopyTo(absl::MakeSpan(back));
  EXPECT_EQ(std::memcmp(back.data(), sum.data(), 9 * sizeof(double)), 0);
}

TEST(HessianFormatTest, ZeroRowsIsValid) {
  // An accumulator that saw no tokens still serializes (an empty shard).
  EXPECT_TRUE(ParseHessianSum(EncodeHessianSum(1, 0, {0.0})).ok());
}

TEST(HessianFormatTest, RejectsTruncatedHeader) {
  EXPECT_THAT(Message(""), HasSubstr("not a Hessian sum: 0 bytes, shorter than the 24-byte header"));
  EXPECT_THAT(Message(Pinned().substr(0, 23)), HasSubstr("23 bytes, shorter than"));
}

TEST(HessianFormatTest, RejectsBadMagic) {
  std::string bytes = Pinned();
  bytes[0] = 'X';
  EXPECT_THAT(Message(bytes), HasSubstr("not a Hessian sum: magic \"XAQH\" (want \"BAQH\")"));
  bytes = Pinned();
  bytes[3] = 'A';  // An activation blob is not a Hessian.
  EXPECT_THAT(Message(bytes), HasSubstr("magic \"BAQA\""));
}

TEST(HessianFormatTest, RejectsOtherVersions) {
  EXPECT_THAT(Message(WithField<uint32_t>(Pinned(), 4, 3)),
              HasSubstr("Hessian sum format version 3 is not supported (want 1 or 2)"));
  EXPECT_THAT(Message(WithField<uint32_t>(Pinned(), 4, 0)), HasSubstr("version 0"));
}

TEST(HessianFormatTest, RejectsColumnsOutOfRange) {
  EXPECT_THAT(Message(WithField<int64_t>(Pinned(), 8, 0)),
              HasSubstr("Hessian sum has 0 columns (want 1 to 1048576)"));
  EXPECT_THAT(Message(WithField<int64_t>(Pinned(), 8, -2)), HasSubstr("-2 columns"));
  EXPECT_THAT(Message(WithField<int64_t>(Pinned(), 8, kMaxHessianColumns + 1)),
              HasSubstr("1048577 columns"));
  // 2^62 columns: squared it would overflow a size computation.
  EXPECT_THAT(Message(WithField<int64_t>(Pinned(), 8, int64_t{1} << 62)), HasSubstr("columns"));
}

TEST(HessianFormatTest, RejectsNegativeRows) {
  EXPECT_THAT(Message(WithField<int64_t>(Pinned(), 16, -1)), HasSubstr("Hessian sum has -1 rows"));
}

TEST(HessianFormatTest, RejectsPayloadOfTheWrongLength) {
  const std::string bytes = Pinned();
  EXPECT_THAT(Message(bytes.substr(0, bytes.size() - 1)),
              HasSubstr("Hessian sum: 55 bytes, a 2-column sum has 56"));
  EXPECT_THAT(Message(bytes + "x"), HasSubstr("57 bytes, a 2-column sum has 56"));
  // A header that claims more columns than the payload carries.
  EXPECT_THAT(Message(WithField<int64_t>(bytes, 8, 3)), HasSubstr("a 3-column sum has 96"));
}

TEST(HessianFormatTest, FinitenessCheckNamesCountAndFirstElement) {
  std::vector<double> sum = kPinnedSum;
  sum[2] = std::numeric_limits<double>::quiet_NaN();
  sum[3] = -std::numeric_limits<double>::infinity();
  const std::string bytes = EncodeHessianSum(2, 3, sum);
  absl::StatusOr<HessianSumView> v = ParseHessianSum(bytes);
  ASSERT_TRUE(v.ok());  // Parsing does not read the payload.
  const absl::Status s = CheckHessianSumFinite(*v);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(),
              HasSubstr("non-finite values (1 NaN, 1 Inf; first at row 1, column 0)"));
}

TEST(HessianFormatTest, AddSumsRowsAndElementsInFloat64) {
  // (1 + 1e16) - 1e16 == 0 in float64: the additions are plain IEEE ones,
  // applied in call order.
  std::string sum = EncodeHessianSum(1, 10, {1.0});
  ASSERT_TRUE(AddHessianSum(EncodeHessianSum(1, 7, {1e16}), &sum).ok());
  ASSERT_TRUE(AddHessianSum(EncodeHessianSum(1, 5, {-1e16}), &sum).ok());
  absl::StatusOr<HessianSumView> v = ParseHessianSum(sum);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->rows, 22);
  EXPECT_EQ(v->At(0), 0.0);

  std::string pinned = Pinned();
  ASSERT_TRUE(AddHessianSum(Pinned(), &pinned).ok());
  EXPECT_EQ(pinned, EncodeHessianSum(2, 6, {2.0, 4.0, -1.0, 8.0}));
}

TEST(HessianFormatTest, AddRejectsMismatchAndLeavesTheSumAlone) {
  std::string sum = Pinned();
  absl::Status s = AddHessianSum(EncodeHessianSum(1, 1, {1.0}), &sum);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("cannot add a 1-column Hessian sum to a 2-column one"));
  EXPECT_THAT(AddHessianSum("BAQH", &sum).message(), HasSubstr("4 bytes, shorter than"));
  EXPECT_THAT(AddHessianSum(WithField<int64_t>(Pinned(), 16, std::numeric_limits<int64_t>::max()),
                            &sum)
                  .message(),
              HasSubstr("overflow the row count"));
  EXPECT_EQ(sum, Pinned());

  std::string not_a_sum = "garbage";
  EXPECT_THAT(AddHessianSum(Pinned(), &not_a_sum).message(), HasSubstr("not a Hessian sum"));
}

// The same sum as its upper triangle (version 2): [[1, 2], [2, 4]] over 3
// rows is 1, 2, 4. A format change must change this string.
constexpr char kPinnedUpperHex[] =
    "42415148"          // "BAQH"
    "02000000"          // version 2
    "0200000000000000"  // columns 2
    "0300000000000000"  // rows 3
    "000000000000f03f"  // 1.0
    "0000000000000040"  // 2.0
    "0000000000001040";  // 4.0

TEST(HessianFormatTest, UpperTriangleEncodesThePinnedBytesAndMirrors) {
  // The lower triangle (here -0.5) is not sent: the reader mirrors the upper.
  EXPECT_EQ(absl::BytesToHexString(EncodeUpperHessianSum(2, 3, kPinnedSum)), kPinnedUpperHex);
  const std::string bytes = absl::HexStringToBytes(kPinnedUpperHex);
  absl::StatusOr<HessianSumView> v = ParseHessianSum(bytes);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->upper);
  EXPECT_EQ(v->columns, 2);
  EXPECT_EQ(v->rows, 3);
  EXPECT_EQ(v->elements(), 3);
  std::vector<double> back(4);
  v->CopyTo(absl::MakeSpan(back));
  EXPECT_EQ(back, (std::vector<double>{1.0, 2.0, 2.0, 4.0}));
  EXPECT_THAT(Message(bytes.substr(0, bytes.size() - 1)),
              HasSubstr("47 bytes, a 2-column upper triangle has 48"));
}

TEST(HessianFormatTest, UpperTriangleRoundTripIsBitExactAndAddsLikeTheFullSum) {
  // A symmetric 4 x 4 sum with values a lossy path would change.
  std::vector<double> sum(16);
  for (int i = 0; i < 4; ++i) {
    for (int j = i; j < 4; ++j) {
      sum[i * 4 + j] = sum[j * 4 + i] = (i + 1) * 0.1 / (j + 3) - (j == 3 ? 1e-300 : 0.0);
    }
  }
  const std::string bytes = EncodeUpperHessianSum(4, 9, sum);
  EXPECT_EQ(bytes.size(), kHessianHeaderBytes + 10 * 8);
  absl::StatusOr<HessianSumView> v = ParseHessianSum(bytes);
  ASSERT_TRUE(v.ok()) << v.status();
  std::vector<double> back(16);
  v->CopyTo(absl::MakeSpan(back));
  EXPECT_EQ(std::memcmp(back.data(), sum.data(), 16 * sizeof(double)), 0);
  // Adding triangles makes the additions of adding the full sums.
  std::string upper = bytes;
  ASSERT_TRUE(AddHessianSum(EncodeUpperHessianSum(4, 2, sum), &upper).ok());
  std::string full = EncodeHessianSum(4, 9, sum);
  ASSERT_TRUE(AddHessianSum(EncodeHessianSum(4, 2, sum), &full).ok());
  absl::StatusOr<HessianSumView> fv = ParseHessianSum(full);
  ASSERT_TRUE(fv.ok());
  std::vector<double> full_back(16);
  fv->CopyTo(absl::MakeSpan(full_back));
  v = ParseHessianSum(upper);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->rows, 11);
  v->CopyTo(absl::MakeSpan(back));
  EXPECT_EQ(std::memcmp(back.data(), full_back.data(), 16 * sizeof(double)), 0);
  // Layouts do not mix.
  absl::Status s = AddHessianSum(EncodeHessianSum(4, 2, sum), &upper);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("upper triangle and full"));
}

TEST(HessianFormatTest, UpperTriangleFinitenessCheckNamesRowAndColumn) {
  std::vector<double> sum(9, 1.0);
  sum[1 * 3 + 2] = std::numeric_limits<double>::infinity();  // Payload element 4.
  const std::string bytes = EncodeUpperHessianSum(3, 1, sum);
  absl::StatusOr<HessianSumView> v = ParseHessianSum(bytes);
  ASSERT_TRUE(v.ok());
  EXPECT_THAT(CheckHessianSumFinite(*v).message(),
              HasSubstr("(0 NaN, 1 Inf; first at row 1, column 2)"));
}

TEST(HessianFormatDeathTest, EncodeAbortsOnInconsistentArguments) {
  // The accumulator's own state, not client input (STYLE R14).
  EXPECT_DEATH(EncodeHessianSum(2, 1, {1.0, 2.0, 3.0}), "EncodeHessianSum");
  EXPECT_DEATH(EncodeHessianSum(1, -1, {1.0}), "EncodeHessianSum");
}

}  // namespace
}  // namespace baq
