#include "worker/model/tensor_convert.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace baq::worker {
namespace {

using ::testing::HasSubstr;

TensorView ViewOf(const std::string& bytes, DType dtype, std::vector<int64_t> shape,
                  size_t offset = 0) {
  return TensorView{dtype, std::move(shape),
                    absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()) + offset,
                                        bytes.size() - offset)};
}

TEST(TensorConvertTest, DTypeMapRoundTrips) {
  for (DType d : {DType::kF16, DType::kBF16, DType::kF32, DType::kF64, DType::kI8, DType::kI32,
                  DType::kI64, DType::kU8}) {
    auto back = ToDType(ToScalarType(d));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, d);
    EXPECT_EQ(c10::elementSize(ToScalarType(d)), DTypeSize(d));
  }
  EXPECT_EQ(ToDType(at::kBool).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TensorConvertTest, TensorFromViewIsZeroCopy) {
  const at::Tensor src = at::arange(12, at::kFloat).reshape({3, 4}).to(at::kHalf);
  auto bytes = TensorToBytes(src, DType::kF16);
  ASSERT_TRUE(bytes.ok());
  ASSERT_EQ(bytes->size(), 24u);
  auto t = TensorFromView(ViewOf(*bytes, DType::kF16, {3, 4}));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->data_ptr(), static_cast<const void*>(bytes->data()));
  EXPECT_EQ(t->scalar_type(), at::kHalf);
  EXPECT_TRUE(at::equal(*t, src));
}

TEST(TensorConvertTest, RejectsWrongByteCountAndMisalignment) {
  const std::string bytes(26, '\0');
  auto wrong = TensorFromView(ViewOf(bytes, DType::kF32, {2, 3}));
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(wrong.status().message()), HasSubstr("expected 24"));
  EXPECT_EQ(CopyTensorFromView(ViewOf(bytes, DType::kF32, {2, 3}), at::kCPU, at::kFloat)
                .status().code(),
            absl::StatusCode::kInvalidArgument);
  // 25 bytes from an odd offset: 12 F16 values, misaligned for zero-copy.
  const std::string odd(25, '\0');
  EXPECT_EQ(TensorFromView(ViewOf(odd, DType::kF16, {12}, 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TensorConvertTest, CopyHandlesMisalignedDataAndConverts) {
  const at::Tensor src = at::randn({5, 3});
  auto bytes = TensorToBytes(src, DType::kBF16);
  ASSERT_TRUE(bytes.ok());
  const std::string shifted = "x" + *bytes;
  auto t = CopyTensorFromView(ViewOf(shifted, DType::kBF16, {5, 3}, 1), at::kCPU, at::kFloat);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(*t, src.to(at::kBFloat16).to(at::kFloat)));
  // An aligned copy never aliases the source bytes.
  auto aligned = CopyTensorFromView(ViewOf(*bytes, DType::kBF16, {5, 3}), at::kCPU,
                                    at::kBFloat16);
  ASSERT_TRUE(aligned.ok());
  EXPECT_NE(aligned->data_ptr(), static_cast<const void*>(bytes->data()));
}

TEST(TensorConvertTest, TensorToBytesIsRowMajorLittleEndian) {
  const at::Tensor t = at::tensor(std::vector<int64_t>{1, 2, 3, 4}).reshape({2, 2}).t();
  auto bytes = TensorToBytes(t, DType::kI32);  // Non-contiguous input, converted.
  ASSERT_TRUE(bytes.ok());
  std::vector<int32_t> values(4);
  std::memcpy(values.data(), bytes->data(), 16);
  EXPECT_EQ(values, (std::vector<int32_t>{1, 3, 2, 4}));
}

TEST(TensorConvertTest, CheckFiniteNamesTheTensor) {
  EXPECT_TRUE(CheckFinite(at::ones({4}, at::kHalf), "w").ok());
  // Large finite float16 values must not overflow the check's sum.
  EXPECT_TRUE(CheckFinite(at::full({100000}, 65504.0, at::kHalf), "big").ok());
  at::Tensor bad = at::ones({4});
  bad[2] = std::numeric_limits<float>::quiet_NaN();
  const absl::Status s = CheckFinite(bad, "tensor model.norm.weight");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("model.norm.weight"));
}

TEST(TensorConvertTest, ShapeString) { EXPECT_EQ(ShapeString({2, 64, 384}), "[2, 64, 384]"); }

}  // namespace
}  // namespace baq::worker
