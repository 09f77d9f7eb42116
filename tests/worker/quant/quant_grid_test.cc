#include "worker/quant/quant_grid.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "tests/worker/quant/reference_quant.h"

namespace baq::worker {
namespace {

using ::testing::HasSubstr;

at::Tensor Rows(std::initializer_list<std::initializer_list<double>> rows) {
  std::vector<double> flat;
  int64_t n = 0, m = 0;
  for (const auto& r : rows) {
    flat.insert(flat.end(), r.begin(), r.end());
    m = static_cast<int64_t>(r.size());
    ++n;
  }
  return at::tensor(flat, at::kDouble).view({n, m});
}

TEST(QuantGridTest, AsymmetricMatchesQuantPy) {
  // Row 0: [-1, 3]; row 1 positive only (xmin clamped to 0); row 2 negative
  // only (xmax clamped to 0); row 3 all zero (-> [-1, 1]).
  const at::Tensor x = Rows({{-1, 3}, {2, 4}, {-4, -2}, {0, 0}});
  auto grid = FindGrid(x, GridOptions{/*levels=*/4, /*symmetric=*/false});
  ASSERT_TRUE(grid.ok()) << grid.status();
  EXPECT_EQ(grid->maxq, 3);
  const std::vector<double> scale = {4.0 / 3, 4.0 / 3, 4.0 / 3, 2.0 / 3};
  const std::vector<double> zero = {1, 0, 3, 2};  // round(-xmin / scale), 0.75 -> 1, 1.5 -> 2
  for (int r = 0; r < 4; ++r) {
    EXPECT_DOUBLE_EQ(grid->scale[r].item<double>(), scale[r]) << r;
    EXPECT_DOUBLE_EQ(grid->zero[r].item<double>(), zero[r]) << r;
  }
}

TEST(QuantGridTest, SymmetricMatchesQuantPy) {
  const at::Tensor x = Rows({{-1, 3}, {2, 4}, {0, 0}});
  auto grid = FindGrid(x, GridOptions{/*levels=*/16, /*symmetric=*/true});
  ASSERT_TRUE(grid.ok());
  // Row 0: xmax = 3, xmin = -3; row 1: xmin stays 0 (quant.py only mirrors
  // negative minima); row 2: [-1, 1]. zero = (maxq + 1) / 2 = 8.
  EXPECT_DOUBLE_EQ(grid->scale[0].item<double>(), 6.0 / 15);
  EXPECT_DOUBLE_EQ(grid->scale[1].item<double>(), 4.0 / 15);
  EXPECT_DOUBLE_EQ(grid->scale[2].item<double>(), 2.0 / 15);
  EXPECT_TRUE(at::equal(grid->zero, at::full({3}, 8.0, at::kDouble)));
}

TEST(QuantGridTest, SymmetricOddLevelCountsUseTheMiddleLevelAsZero) {
  auto grid = FindGrid(Rows({{-1, 3}}), GridOptions{/*levels=*/5, /*symmetric=*/true});
  ASSERT_TRUE(grid.ok());
  EXPECT_DOUBLE_EQ(grid->scale[0].item<double>(), 6.0 / 4);
  EXPECT_EQ(grid->zero[0].item<double>(), 2);  // levels -3, -1.5, 0, 1.5, 3
}

TEST(QuantGridTest, CodesAndValuesMatchReferenceForAnyLevelCount) {
  at::manual_seed(1);
  const at::Tensor x = at::randn({16, 40}, at::kDouble) * 3 + 0.5;
  for (int levels : {1, 2, 3, 5, 8, 16, 100, 256}) {
    for (bool sym : {false, true}) {
      auto grid = FindGrid(x, GridOptions{levels, sym});
      ASSERT_TRUE(grid.ok());
      const at::Tensor codes =
          QuantizeCodes(x, grid->scale.unsqueeze(1), grid->zero.unsqueeze(1), grid->maxq);
      const at::Tensor values =
          DequantizeCodes(codes, grid->scale.unsqueeze(1), grid->zero.unsqueeze(1));
      const auto ref = testing::RefGrids(testing::ToMatrix(x), 0, 40, levels, sym);
      for (int r = 0; r < 16; ++r) {
        for (int c = 0; c < 40; ++c) {
          const double code = testing::RefCode(x[r][c].item<double>(), ref[r]);
          ASSERT_EQ(codes[r][c].item<double>(), code) << levels << sym << r << c;
          ASSERT_NEAR(values[r][c].item<double>(), ref[r].scale * (code - ref[r].zero), 1e-12);
          ASSERT_GE(code, 0);
          ASSERT_LE(code, levels - 1);
        }
      }
      if (levels == 1) {
        EXPECT_EQ(values.abs().max().item<double>(), 0);
      }
    }
  }
}

TEST(QuantGridTest, RoundingErrorIsAtMostHalfAStepInsideTheRange) {
  at::manual_seed(2);
  const at::Tensor x = at::randn({8, 64}, at::kDouble);
  auto r = Rtn(x, GridOptions{/*levels=*/8, false});
  ASSERT_TRUE(r.ok());
  const at::Tensor err = (x - r->weight.to(at::kDouble)).abs();
  // float32 output: half a step plus float32 rounding.
  EXPECT_TRUE((err <= r->scales.to(at::kDouble) / 2 * (1 + 1e-6) + 1e-6).all().item<bool>());
}

TEST(QuantGridTest, RtnGroupsMatchReference) {
  at::manual_seed(3);
  const at::Tensor x = at::randn({6, 50}, at::kFloat);
  auto r = Rtn(x, GridOptions{/*levels=*/16, false}, /*group_size=*/16);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->scales.size(1), 4);  // 16 + 16 + 16 + 2
  EXPECT_EQ(r->codes.scalar_type(), at::kByte);
  const testing::Matrix m = testing::ToMatrix(x);
  for (int g = 0; g < 4; ++g) {
    const auto ref = testing::RefGrids(m, g * 16, std::min(50, g * 16 + 16), 16, false);
    for (int row = 0; row < 6; ++row) {
      EXPECT_NEAR(r->scales[row][g].item<double>(), ref[row].scale, 1e-6);
      EXPECT_EQ(r->zeros[row][g].item<double>(), ref[row].zero);
    }
  }
  for (int c = 0; c < 50; ++c) EXPECT_EQ(r->g_idx[c].item<int>(), c / 16);
  // weight == scale[g_idx] * (code - zero[g_idx]).
  const at::Tensor g = r->g_idx.to(at::kLong);
  const at::Tensor rebuilt =
      r->scales.index_select(1, g) * (r->codes.to(at::kFloat) - r->zeros.index_select(1, g));
  EXPECT_TRUE(at::allclose(rebuilt, r->weight, 0, 1e-6));
}

TEST(QuantGridTest, ExtremeMagnitudesStayFinite) {
  const at::Tensor big = Rows({{-1e30, 3e30}, {1e-30, -2e-30}});
  auto r = Rtn(big, GridOptions{/*levels=*/4, false});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(at::isfinite(r->weight).all().item<bool>());
  // Grid 4/3e30 * {-1, 0, 1, 2}; 3e30 rounds to the top level.
  EXPECT_NEAR(r->weight[0][1].item<double>() / (8.0 / 3 * 1e30), 1, 1e-6);
  EXPECT_NEAR(r->weight[1][1].item<double>() / -2e-30, 1, 1e-6);
}

TEST(QuantGridTest, RejectsBadInput) {
  const at::Tensor x = at::ones({2, 2});
  EXPECT_EQ(FindGrid(x, GridOptions{0, false}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FindGrid(x, GridOptions{257, false}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FindGrid(at::ones({4}), GridOptions{}).status().code(),
            absl::StatusCode::kInvalidArgument);
  at::Tensor bad = x.clone();
  bad[0][1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT(std::string(Rtn(bad, GridOptions{}).status().message()), HasSubstr("NaN"));
  bad[0][1] = std::numeric_limits<float>::infinity();
  EXPECT_THAT(std::string(Rtn(bad, GridOptions{}).status().message()), HasSubstr("Inf"));
  EXPECT_EQ(Rtn(x, GridOptions{}, /*group_size=*/0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Rtn(at::ones({2, 2}, at::kInt), GridOptions{}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baq::worker
