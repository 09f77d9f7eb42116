#include "common/dtype.h"

#include "gtest/gtest.h"

namespace baq {
namespace {

TEST(DTypeTest, RoundTripsEverySupportedName) {
  for (DType d : {DType::kF16, DType::kBF16, DType::kF32, DType::kF64, DType::kI8,
                  DType::kI32, DType::kI64, DType::kU8}) {
    absl::StatusOr<DType> parsed = ParseDType(DTypeName(d));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, d);
  }
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kI64), 8u);
}

TEST(DTypeTest, UnknownNameListsSupported) {
  absl::StatusOr<DType> parsed = ParseDType("F8_E4M3");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("F8_E4M3"), std::string::npos);
  EXPECT_NE(parsed.status().message().find("BF16"), std::string::npos);
}

}  // namespace
}  // namespace baq
