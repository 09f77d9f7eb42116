// common/activation_format: the "BAQA" bytes pinned on a hand-built example
// (and every dtype's wire code), the round trip, and every rejection with
// its message, on encode and on parse.
#include "common/activation_format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"

namespace baq {
namespace {

using ::testing::HasSubstr;

// A float32 [2, 2] tensor [[1, 2], [3, 4]], written out by hand: magic,
// u32 version, u32 dtype code, u32 ndim, i64 shape, then the little-endian
// elements in row-major order. A format change must change this string.
constexpr char kPinnedHex[] =
    "42415141"          // "BAQA"
    "01000000"          // version 1
    "02000000"          // dtype code 2 = F32
    "02000000"          // ndim 2
    "0200000000000000"  // shape[0] = 2
    "0200000000000000"  // shape[1] = 2
    "0000803f"          // 1.0f
    "00000040"          // 2.0f
    "00004040"          // 3.0f
    "00008040";         // 4.0f
constexpr size_t kPinnedHeaderBytes = 32;

std::string Pinned() { return absl::HexStringToBytes(kPinnedHex); }

std::string PinnedPayload() { return Pinned().substr(kPinnedHeaderBytes); }

template <typename T>
std::string WithField(std::string bytes, size_t offset, T value) {
  bytes.replace(offset, sizeof(T), reinterpret_cast<const char*>(&value), sizeof(T));
  return bytes;
}

std::string Message(absl::string_view bytes) {
  absl::StatusOr<ActivationView> v = ParseActivationBytes(bytes);
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(v.status().message());
}

TEST(ActivationFormatTest, EncodesThePinnedBytes) {
  const std::vector<float> values = {1, 2, 3, 4};
  absl::StatusOr<std::string> bytes = EncodeActivationBytes(
      DType::kF32, {2, 2},
      absl::string_view(reinterpret_cast<const char*>(values.data()), 16));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(absl::BytesToHexString(*bytes), kPinnedHex);
}

TEST(ActivationFormatTest, ParsesThePinnedBytes) {
  const std::string bytes = Pinned();
  absl::StatusOr<ActivationView> v = ParseActivationBytes(bytes);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->dtype, DType::kF32);
  EXPECT_EQ(v->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(v->payload, PinnedPayload());
  EXPECT_EQ(v->payload.data(), bytes.data() + kPinnedHeaderBytes);  // A view, no copy.
}

TEST(ActivationFormatTest, DTypeCodesArePinned) {
  // The code at offset 8 is the format's, not DType's enum order.
  const std::vector<std::pair<DType, uint32_t>> codes = {
      {DType::kF16, 0}, {DType::kBF16, 1}, {DType::kF32, 2}, {DType::kF64, 3},
      {DType::kI8, 4},  {DType::kI32, 5},  {DType::kI64, 6}, {DType::kU8, 7}};
  for (const auto& [dtype, code] : codes) {
    const std::string payload(3 * DTypeSize(dtype), '\x5a');
    absl::StatusOr<std::string> bytes = EncodeActivationBytes(dtype, {3}, payload);
    ASSERT_TRUE(bytes.ok()) << DTypeName(dtype) << ": " << bytes.status();
    uint32_t got;
    std::memcpy(&got, bytes->data() + 8, 4);
    EXPECT_EQ(got, code) << DTypeName(dtype);
    absl::StatusOr<ActivationView> v = ParseActivationBytes(*bytes);
    ASSERT_TRUE(v.ok()) << DTypeName(dtype) << ": " << v.status();
    EXPECT_EQ(v->dtype, dtype);
    EXPECT_EQ(v->payload, payload);
  }
}

TEST(ActivationFormatTest, RoundTripsScalarsEmptyAndEightDims) {
  for (const std::vector<int64_t>& shape :
       {std::vector<int64_t>{}, {0}, {3, 0, 5}, {1, 1, 1, 1, 1, 1, 1, 2}}) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    const std::string payload(static_cast<size_t>(n) * 2, '\x7f');
    absl::StatusOr<std::string> bytes = EncodeActivationBytes(DType::kBF16, shape, payload);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    EXPECT_EQ(bytes->size(), 16 + 8 * shape.size() + payload.size());
    absl::StatusOr<ActivationView> v = ParseActivationBytes(*bytes);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->shape, shape);
    EXPECT_EQ(v->payload, payload);
  }
}

TEST(ActivationFormatTest, EncodeRejectsWhatParseWouldReject) {
  EXPECT_THAT(EncodeActivationBytes(DType::kU8, std::vector<int64_t>(9, 1), "x").status().message(),
              HasSubstr("activations: 9 dimensions (at most 8)"));
  EXPECT_THAT(EncodeActivationBytes(DType::kU8, {2, -1}, "").status().message(),
              HasSubstr("activations: dimension 1 is -1"));
  EXPECT_THAT(EncodeActivationBytes(DType::kU8, {int64_t{1} << 21, int64_t{1} << 20}, "")
                  .status()
                  .message(),
              HasSubstr("more than 2^40 elements"));
  const absl::Status s = EncodeActivationBytes(DType::kF32, {2, 2}, "abc").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("activations: payload has 3 bytes, F32 [2, 2] needs 16"));
}

TEST(ActivationFormatTest, RejectsTruncatedHeader) {
  EXPECT_THAT(Message(""), HasSubstr("activations: 0 bytes, shorter than the 16-byte header"));
  EXPECT_THAT(Message(Pinned().substr(0, 15)), HasSubstr("15 bytes, shorter than"));
  EXPECT_THAT(Message(Pinned().substr(0, 20)),
              HasSubstr("header truncated in the shape (2 dimensions, 20 bytes)"));
}

TEST(ActivationFormatTest, RejectsBadMagic) {
  std::string bytes = Pinned();
  bytes[3] = 'H';  // A Hessian sum is not an activation blob.
  EXPECT_THAT(Message(bytes), HasSubstr("activations: magic \"BAQH\" (want \"BAQA\")"));
}

TEST(ActivationFormatTest, RejectsOtherVersions) {
  EXPECT_THAT(Message(WithField<uint32_t>(Pinned(), 4, 2)),
              HasSubstr("activations: format version 2 is not supported (want 1)"));
}

TEST(ActivationFormatTest, RejectsUnknownDTypeCode) {
  EXPECT_THAT(Message(WithField<uint32_t>(Pinned(), 8, 8)),
              HasSubstr("activations: unknown dtype code 8"));
  EXPECT_THAT(Message(WithField<uint32_t>(Pinned(), 8, UINT32_MAX)),
              HasSubstr("unknown dtype code 4294967295"));
}

TEST(ActivationFormatTest, RejectsTooManyDimensions) {
  EXPECT_THAT(Message(WithField<uint32_t>(Pinned(), 12, 9)),
              HasSubstr("activations: 9 dimensions (at most 8)"));
}

TEST(ActivationFormatTest, RejectsNegativeOrHugeShape) {
  EXPECT_THAT(Message(WithField<int64_t>(Pinned(), 24, -2)),
              HasSubstr("activations: dimension 1 is -2"));
  // 2^21 x 2^20 elements: past the bound before the product could overflow.
  EXPECT_THAT(Message(WithField<int64_t>(WithField<int64_t>(Pinned(), 16, int64_t{1} << 21), 24,
                                         int64_t{1} << 20)),
              HasSubstr("shape [2097152, 1048576] has more than 2^40 elements"));
}

TEST(ActivationFormatTest, RejectsPayloadOfTheWrongLength) {
  const std::string bytes = Pinned();
  EXPECT_THAT(Message(bytes.substr(0, bytes.size() - 1)),
              HasSubstr("activations: payload has 15 bytes, F32 [2, 2] needs 16"));
  EXPECT_THAT(Message(bytes + "x"), HasSubstr("payload has 17 bytes"));
  // Same bytes read as another dtype: the length no longer fits.
  EXPECT_THAT(Message(WithField<uint32_t>(bytes, 8, 3)),
              HasSubstr("payload has 16 bytes, F64 [2, 2] needs 32"));
}

}  // namespace
}  // namespace baq
