// worker/activation_codec: the tensor adapter writes exactly the "BAQA" bytes
// of common/activation_format (pinned here on a non-contiguous tensor, so the
// row-major copy is checked), round-trips every dtype bit for bit, and
// passes the codec's rejections through.
#include "worker/activation_codec.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/escaping.h"

namespace baq::worker {
namespace {

using ::testing::HasSubstr;

// The F32 [2, 2] tensor [[1, 2], [3, 4]] (tests/common/activation_format_test.cc).
constexpr char kPinnedHex[] =
    "42415141" "01000000" "02000000" "02000000"
    "0200000000000000" "0200000000000000"
    "0000803f" "00000040" "00004040" "00008040";

TEST(ActivationCodecTest, WritesThePinnedBytesInRowMajorOrder) {
  // A transposed view: its storage order is 1, 3, 2, 4.
  const at::Tensor t = at::tensor({1.0f, 3.0f, 2.0f, 4.0f}).view({2, 2}).t();
  ASSERT_FALSE(t.is_contiguous());
  absl::StatusOr<std::string> bytes = EncodeActivations(t);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(absl::BytesToHexString(*bytes), kPinnedHex);

  absl::StatusOr<at::Tensor> back = DecodeActivations(absl::HexStringToBytes(kPinnedHex), at::kCPU);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(at::equal(*back, t));
}

TEST(ActivationCodecTest, RoundTripsEveryDTypeBitForBit) {
  at::manual_seed(0);
  const at::Tensor x = at::randn({2, 3, 5}, at::kDouble) * 100;
  for (at::ScalarType type : {at::kHalf, at::kBFloat16, at::kFloat, at::kDouble, at::kChar,
                              at::kInt, at::kLong, at::kByte}) {
    SCOPED_TRACE(c10::toString(type));
    const at::Tensor t = x.to(type);
    absl::StatusOr<std::string> bytes = EncodeActivations(t);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    EXPECT_EQ(bytes->size(), 16 + 3 * 8 + t.numel() * t.element_size());
    absl::StatusOr<at::Tensor> back = DecodeActivations(*bytes, at::kCPU);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->scalar_type(), type);
    EXPECT_TRUE(at::equal(*back, t));
  }
}

TEST(ActivationCodecTest, EmptyAndScalarTensors) {
  for (const at::Tensor& t : {at::zeros({0, 4}), at::scalar_tensor(2.5)}) {
    absl::StatusOr<std::string> bytes = EncodeActivations(t);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    absl::StatusOr<at::Tensor> back = DecodeActivations(*bytes, at::kCPU);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->sizes(), t.sizes());
    EXPECT_TRUE(at::equal(*back, t));
  }
}

TEST(ActivationCodecTest, RejectsWhatTheFormatCannotCarry) {
  EXPECT_EQ(EncodeActivations(at::zeros({2}, at::kBool)).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::string> nine = EncodeActivations(at::zeros(std::vector<int64_t>(9, 1)));
  EXPECT_EQ(nine.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(nine.status().message(), HasSubstr("9 dimensions (at most 8)"));
}

TEST(ActivationCodecTest, DecodePassesTheCodecsRejectionThrough) {
  const std::string good = absl::HexStringToBytes(kPinnedHex);
  absl::StatusOr<at::Tensor> got = DecodeActivations(good.substr(0, good.size() - 2), at::kCPU);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(got.status().message(), HasSubstr("activations: payload has 14 bytes"));
  got = DecodeActivations("BAQH", at::kCPU);
  EXPECT_THAT(got.status().message(), HasSubstr("shorter than the 16-byte header"));
}

}  // namespace
}  // namespace baq::worker
