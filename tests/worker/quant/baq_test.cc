#include "worker/quant/baq.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "tests/worker/quant/reference_quant.h"
#include "worker/quant/gptq.h"

namespace baq::worker {
namespace {

using ::testing::HasSubstr;

BaqOptions Float64(int64_t block_size = 128, bool act_order = false) {
  BaqOptions o;
  o.compute_dtype = at::kDouble;
  o.block_size = block_size;
  o.act_order = act_order;
  return o;
}

std::vector<int32_t> RandomLevels(int64_t cols) {
  std::vector<int32_t> levels;
  const int32_t choices[] = {1, 2, 3, 4, 5, 8, 13, 16, 64, 256};
  for (int64_t j = 0; j < cols; ++j)
    levels.push_back(choices[at::randint(10, {1}, at::kLong).item<int64_t>()]);
  return levels;
}

// The reference's allocation (gptq_baq.py fasterquant, theta = 1.95), with the
// per-layer geometric-mean reference, clamped to our 256-level cap.
std::vector<int32_t> PaperAllocation(const at::Tensor& loss, double reference_bits) {
  const at::Tensor l = loss.to(at::kDouble);
  const double geo = std::exp(at::log(l + 1e-8).mean().item<double>());
  constexpr double kTheta = 1.95;
  std::vector<int32_t> levels;
  for (int64_t j = 0; j < l.size(0); ++j) {
    const double two_pow_r =
        std::pow(l[j].item<double>() / geo * std::exp2(kTheta * reference_bits), 1 / kTheta);
    levels.push_back(
        static_cast<int32_t>(std::min(256.0, std::nearbyint(std::max(two_pow_r, 1.0)))));
  }
  return levels;
}

double MeanBits(const std::vector<int32_t>& levels) {
  double s = 0;
  for (int32_t l : levels) s += std::log2(l);
  return s / levels.size();
}

TEST(BaqTest, MatchesReferenceColumnLoopWithBlockedUpdates) {
  // Reference: gptq_baq.py's blocksize-1 column loop; ours: lazy batches of 16
  // (and 128, one block), with sub-blocks. Identical codes in float64.
  at::manual_seed(20);
  const at::Tensor w = at::randn({24, 80}, at::kDouble) * 0.1;
  const at::Tensor h = testing::RandomHessian(80, 300, 1.0, {5});
  const std::vector<int32_t> levels = RandomLevels(80);
  for (bool act_order : {false, true}) {
    testing::RefOptions ro;
    ro.baq_levels.assign(levels.begin(), levels.end());
    ro.block_size = 1;
    ro.act_order = act_order;
    const testing::RefResult ref = testing::RefQuantize(w, h, ro);
    for (int64_t block : {16, 128}) {
      auto got = BaqQuantize(w, h, levels, Float64(block, act_order));
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_TRUE(at::equal(got->codes.to(at::kDouble), testing::ToTensor(ref.codes)))
          << act_order << " " << block;
      EXPECT_TRUE(at::allclose(got->weight.to(at::kDouble), testing::ToTensor(ref.q), 1e-6, 1e-9));
      EXPECT_TRUE(at::allclose(got->column_loss, at::tensor(ref.loss, at::kDouble), 1e-9, 1e-14));
      EXPECT_TRUE(at::equal(got->levels, at::tensor(at::ArrayRef<int32_t>(levels))));
    }
  }
}

TEST(BaqTest, OneLevelColumnsAreZeroAndDequantizationFormulaHolds) {
  at::manual_seed(21);
  const at::Tensor w = at::randn({10, 30}, at::kDouble);
  const at::Tensor h = testing::RandomHessian(30, 90, 0.5);
  std::vector<int32_t> levels = RandomLevels(30);
  levels[0] = levels[29] = 1;
  auto r = BaqQuantize(w, h, levels, Float64());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->weight.select(1, 0).abs().max().item<float>(), 0);
  EXPECT_EQ(r->weight.select(1, 29).abs().max().item<float>(), 0);
  // weight_rj = scale_rj * (code - zero_rj) with the documented per-column grid.
  const at::Tensor lv = r->levels.to(at::kDouble).clamp_min(2) - 1;
  const at::Tensor diff = (r->row_max - r->row_min).to(at::kDouble).unsqueeze(1);
  const at::Tensor scale = diff / lv;
  const at::Tensor zero = at::round(-r->row_min.to(at::kDouble).unsqueeze(1) / scale);
  at::Tensor rebuilt = scale * (r->codes.to(at::kDouble) - zero);
  rebuilt.masked_fill_((r->levels == 1).unsqueeze(0).expand_as(rebuilt), 0);
  EXPECT_TRUE(at::allclose(rebuilt, r->weight.to(at::kDouble), 1e-6, 1e-7));
  EXPECT_TRUE((r->row_min <= 0).all().item<bool>());
  EXPECT_TRUE((r->row_max >= 0).all().item<bool>());
}

TEST(BaqTest, MeasureIsUniformQuantizeAndEqualsAsymmetricGptq) {
  at::manual_seed(22);
  const at::Tensor w = at::randn({32, 64}, at::kDouble);
  const at::Tensor h = testing::RandomHessian(64, 256, 1.0);
  auto m = BaqMeasure(w, h, 8, Float64());
  auto u = BaqQuantize(w, h, std::vector<int32_t>(64, 8), Float64());
  GptqOptions g;
  g.grid.levels = 8;
  g.compute_dtype = at::kDouble;
  auto gptq = Gptq(w, h, g);
  ASSERT_TRUE(m.ok() && u.ok() && gptq.ok());
  EXPECT_TRUE(at::equal(m->codes, u->codes));
  EXPECT_TRUE(at::equal(m->column_loss, u->column_loss));
  // Without dead columns BAQ's pass-1 grid is quant.py's asymmetric row grid.
  EXPECT_TRUE(at::equal(m->codes, gptq->codes));
  EXPECT_TRUE(at::allclose(m->column_loss, gptq->column_loss, 1e-12, 0));
}

TEST(BaqTest, BeatsGptqAtTheSameAverageBitsOnHeterogeneousColumns) {
  // Columns whose input scales span ~3 orders of magnitude: importance is
  // very uneven, which is where a per-column allocation pays.
  at::manual_seed(23);
  const at::Tensor w = at::randn({128, 256}, at::kFloat);
  const at::Tensor h = testing::RandomHessian(256, 1024, 1.5).to(at::kFloat);
  for (int bits : {2, 3, 4}) {
    auto m = BaqMeasure(w, h, 1 << bits, BaqOptions{});
    ASSERT_TRUE(m.ok());
    // Lower the reference until the allocation fits the budget.
    std::vector<int32_t> levels;
    for (double r = bits; r > 0; r -= 0.01) {
      levels = PaperAllocation(m->column_loss, r);
      if (MeanBits(levels) <= bits) break;
    }
    ASSERT_LE(MeanBits(levels), bits);
    auto q = BaqQuantize(w, h, levels, BaqOptions{});
    GptqOptions g;
    g.grid.levels = 1 << bits;
    g.block_size = 128;
    auto gptq = Gptq(w, h, g);
    ASSERT_TRUE(q.ok() && gptq.ok());
    EXPECT_LT(q->proxy_loss, gptq->proxy_loss)
        << bits << " bits, BAQ mean bits " << MeanBits(levels);
  }
}

TEST(BaqTest, SameBitsForOneAndTwoThreads) {
  at::manual_seed(24);
  const at::Tensor w = at::randn({300, 384}, at::kFloat);
  const at::Tensor h = testing::RandomHessian(384, 800, 1.0).to(at::kFloat);
  const std::vector<int32_t> levels = RandomLevels(384);
  BaqOptions o;
  o.act_order = true;
  auto r = testing::ResultsWithOneAndTwoThreads([&] { return BaqQuantize(w, h, levels, o); });
  ASSERT_TRUE(r.ok()) << r.status();
  testing::ExpectBitwiseEqual((*r)[0], (*r)[1]);
}

TEST(BaqTest, RejectsBadInput) {
  const at::Tensor w = at::randn({4, 6});
  const at::Tensor h = at::eye(6);
  auto code = [](const absl::StatusOr<BaqResult>& r) { return r.status().code(); };
  EXPECT_EQ(code(BaqMeasure(w, h, 1, {})), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(BaqMeasure(w, h, 512, {})), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(BaqQuantize(w, h, std::vector<int32_t>(5, 4), {})),
            absl::StatusCode::kInvalidArgument);
  std::vector<int32_t> levels(6, 4);
  levels[3] = 0;
  auto r = BaqQuantize(w, h, levels, {});
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("levels[3]"));
  levels[3] = 257;
  EXPECT_EQ(code(BaqQuantize(w, h, levels, {})), absl::StatusCode::kInvalidArgument);
  at::Tensor nan_h = h.clone();
  nan_h[2][3] = NAN;
  EXPECT_THAT(std::string(BaqMeasure(w, nan_h, 8, {}).status().message()),
              HasSubstr("hessian has non-finite"));
  EXPECT_EQ(code(BaqMeasure(w, -h, 8, {})), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baq::worker
