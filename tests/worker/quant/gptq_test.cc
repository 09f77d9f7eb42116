#include "worker/quant/gptq.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <tuple>

#include "tests/worker/quant/reference_quant.h"

namespace baq::worker {
namespace {

using ::testing::HasSubstr;
using testing::RefOptions;
using testing::RefQuantize;

// Ours and the reference both in float64: identical codes, values to rounding.
constexpr double kValueAtol = 1e-9;
constexpr double kLossRtol = 1e-9;

GptqOptions ToOptions(const RefOptions& r) {
  GptqOptions o;
  o.grid = GridOptions{r.levels, r.sym};
  o.group_size = r.group_size;
  o.act_order = r.act_order;
  o.static_groups = r.static_groups;
  o.block_size = r.block_size;
  o.percdamp = r.percdamp;
  o.compute_dtype = at::kDouble;
  return o;
}

void ExpectMatchesReference(const at::Tensor& w, const at::Tensor& h, const RefOptions& ro) {
  auto got = Gptq(w, h, ToOptions(ro));
  ASSERT_TRUE(got.ok()) << got.status();
  const testing::RefResult ref = RefQuantize(w, h, ro);
  const at::Tensor ref_codes = testing::ToTensor(ref.codes);
  EXPECT_TRUE(at::equal(got->codes.to(at::kDouble), ref_codes))
      << "codes differ in " << (got->codes.to(at::kDouble) != ref_codes).sum().item<int64_t>()
      << " entries";
  EXPECT_TRUE(
      at::allclose(got->weight.to(at::kDouble), testing::ToTensor(ref.q), 1e-6, kValueAtol));
  const at::Tensor ref_loss = at::tensor(ref.loss, at::kDouble);
  EXPECT_TRUE(at::allclose(got->column_loss, ref_loss, kLossRtol, 1e-12));
  // weight == scales[:, g_idx] * (codes - zeros[:, g_idx]).
  const at::Tensor g = got->g_idx.to(at::kLong);
  const at::Tensor rebuilt =
      got->scales.index_select(1, g) * (got->codes.to(at::kFloat) - got->zeros.index_select(1, g));
  EXPECT_TRUE(at::allclose(rebuilt, got->weight, 1e-5, 1e-6));
}

struct Case {
  int levels;
  bool sym;
  int64_t group;
  bool act_order;
  bool static_groups;
  int64_t block;
};

class GptqReferenceTest : public ::testing::TestWithParam<Case> {};

TEST_P(GptqReferenceTest, MatchesReferenceTranscription) {
  const Case c = GetParam();
  at::manual_seed(10);
  const at::Tensor w = at::randn({24, 64}, at::kDouble);
  const at::Tensor h = testing::RandomHessian(64, 200, 1.0);
  RefOptions ro;
  ro.levels = c.levels;
  ro.sym = c.sym;
  ro.group_size = c.group;
  ro.act_order = c.act_order;
  ro.static_groups = c.static_groups;
  ro.block_size = c.block;
  ExpectMatchesReference(w, h, ro);
}

INSTANTIATE_TEST_SUITE_P(
    AllOptions, GptqReferenceTest,
    ::testing::Values(Case{8, false, -1, false, false, 128}, Case{16, true, -1, false, false, 128},
                      Case{5, false, -1, false, false, 128}, Case{3, true, -1, true, false, 128},
                      Case{8, false, -1, true, false, 16}, Case{8, false, 16, false, false, 32},
                      // group < block: grids from gptq.py's block-start weights
                      Case{8, false, 8, true, false, 32}, Case{4, false, 20, true, false, 7},
                      Case{8, true, 16, true, true, 128}, Case{2, false, 32, false, true, 1},
                      Case{256, false, -1, true, false, 128}, Case{1, false, -1, false, false, 5}));

TEST(GptqTest, DeadColumnsAreZeroedAndIgnored) {
  at::manual_seed(11);
  const at::Tensor w = at::randn({16, 32}, at::kDouble);
  const at::Tensor h = testing::RandomHessian(32, 100, 0.5, {0, 7, 31});
  RefOptions ro;
  ro.act_order = true;
  ExpectMatchesReference(w, h, ro);
  auto r = Gptq(w, h, ToOptions(ro));
  ASSERT_TRUE(r.ok());
  for (int64_t j : {0, 7, 31}) EXPECT_EQ(r->weight.select(1, j).abs().max().item<float>(), 0);
  EXPECT_EQ(r->column_loss[7].item<double>(), 0);
}

TEST(GptqTest, RankDeficientHessianAndConstantRows) {
  at::manual_seed(12);
  at::Tensor w = at::randn({12, 48}, at::kDouble);
  w[0].fill_(0.75);  // constant positive row: xmin clamps to 0
  w[1].fill_(0);     // zero row: grid [-1, 1]
  w[2].fill_(-2);
  const at::Tensor h = testing::RandomHessian(48, 10, 0.0);  // rank 10 < 48
  ExpectMatchesReference(w, h, RefOptions{});
  RefOptions grouped;
  grouped.group_size = 16;
  grouped.sym = true;
  ExpectMatchesReference(w, h, grouped);
}

TEST(GptqTest, HugeAndTinyScales) {
  at::manual_seed(13);
  const at::Tensor w = at::randn({8, 32}, at::kDouble);
  const at::Tensor h = testing::RandomHessian(32, 64, 2.0);
  for (double s : {1e-30, 1e30}) ExpectMatchesReference(w * s, h * s, RefOptions{});
  // float32 overflow of the grid range is reported, not returned as Inf/NaN.
  GptqOptions o;
  auto r = Gptq(w * 1e38, h, o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("float64"));
}

TEST(GptqTest, BlockSizeDoesNotChangeTheResult) {
  // The lazy-batch blocked form equals the column loop (blocksize 1).
  at::manual_seed(14);
  const at::Tensor w = at::randn({20, 100}, at::kDouble);
  const at::Tensor h = testing::RandomHessian(100, 300, 1.0);
  GptqOptions o;
  o.compute_dtype = at::kDouble;
  o.act_order = true;
  o.block_size = 1;
  auto base = Gptq(w, h, o);
  ASSERT_TRUE(base.ok());
  for (int64_t b : {3, 16, 64, 128, 1000}) {
    o.block_size = b;
    auto r = Gptq(w, h, o);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(at::equal(r->codes, base->codes)) << b;
    EXPECT_TRUE(at::allclose(r->weight, base->weight, 0, 1e-12)) << b;
    EXPECT_NEAR(r->proxy_loss, base->proxy_loss, 1e-10 * base->proxy_loss) << b;
  }
}

TEST(GptqTest, LossesSumToTheDampedProxyLoss) {
  // tr(E (H + damp I) E^T) = 2 * sum_j loss_j for E = W - Q: Hinv = U^T U makes
  // E = Err U, so E Hd E^T = Err Err^T.
  at::manual_seed(15);
  const at::Tensor w = at::randn({16, 40}, at::kDouble);
  const at::Tensor h = testing::RandomHessian(40, 80, 1.0);
  GptqOptions o;
  o.compute_dtype = at::kDouble;
  o.grid.levels = 4;
  auto r = Gptq(w, h, o);
  ASSERT_TRUE(r.ok());
  const at::Tensor hd = h + r->damp * at::eye(40, at::kDouble);
  auto damped = ProxyLoss(w, r->weight.to(at::kDouble), hd);
  ASSERT_TRUE(damped.ok());
  EXPECT_NEAR(*damped, 2 * r->column_loss.sum().item<double>(), 1e-6 * *damped);
  EXPECT_NEAR(r->proxy_loss, *ProxyLoss(w, r->weight, h), 1e-9 * r->proxy_loss);
}

TEST(GptqTest, ProxyLossIsBelowRtn) {
  for (int seed = 0; seed < 5; ++seed) {
    at::manual_seed(100 + seed);
    const at::Tensor w = at::randn({64, 128}, at::kFloat);
    const at::Tensor h = testing::RandomHessian(128, 512, 1.0).to(at::kFloat);
    for (int levels : {4, 8, 16}) {
      GptqOptions o;
      o.grid.levels = levels;
      auto g = Gptq(w, h, o);
      auto rtn = Rtn(w, o.grid);
      ASSERT_TRUE(g.ok() && rtn.ok());
      EXPECT_LT(g->proxy_loss, *ProxyLoss(w, rtn->weight, h)) << seed << " " << levels;
    }
  }
}

TEST(GptqTest, SameBitsForOneAndTwoThreads) {
  at::manual_seed(16);
  const at::Tensor w = at::randn({384, 512}, at::kFloat);
  const at::Tensor h = testing::RandomHessian(512, 1024, 1.0).to(at::kFloat);
  GptqOptions o;
  o.act_order = true;
  o.group_size = 128;
  auto r = testing::ResultsWithOneAndTwoThreads([&] { return Gptq(w, h, o); });
  ASSERT_TRUE(r.ok()) << r.status();
  testing::ExpectBitwiseEqual((*r)[0], (*r)[1]);
}

TEST(GptqTest, RejectsBadInputNamingTheFault) {
  const at::Tensor w = at::randn({4, 6});
  const at::Tensor h = at::eye(6);
  auto message = [](const absl::StatusOr<GptqResult>& r) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(r.status().message());
  };
  at::Tensor nan_w = w.clone();
  nan_w[1][2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT(message(Gptq(nan_w, h, {})), HasSubstr("weight has non-finite"));
  at::Tensor inf_h = h.clone();
  inf_h[0][0] = std::numeric_limits<float>::infinity();
  EXPECT_THAT(message(Gptq(w, inf_h, {})), HasSubstr("hessian has non-finite"));
  EXPECT_THAT(message(Gptq(w, at::eye(5), {})), HasSubstr("does not match weight"));
  EXPECT_THAT(message(Gptq(w, at::ones({6, 5}), {})), HasSubstr("square"));
  EXPECT_THAT(message(Gptq(w.view({-1}), h, {})), HasSubstr("2-D"));
  GptqOptions o;
  o.static_groups = true;
  EXPECT_THAT(message(Gptq(w, h, o)), HasSubstr("static_groups"));
  o = {};
  o.grid.levels = 0;
  EXPECT_THAT(message(Gptq(w, h, o)), HasSubstr("levels"));
  o = {};
  o.block_size = 0;
  EXPECT_THAT(message(Gptq(w, h, o)), HasSubstr("block_size"));
}

TEST(GptqTest, NotPositiveDefiniteFailsOrRetriesWithMoreDamping) {
  // Eigenvalues 1..2 and one at -0.02 * mean: percdamp 0.01 cannot fix it.
  at::manual_seed(17);
  const at::Tensor q = std::get<0>(at::linalg_qr(at::randn({10, 10}, at::kDouble)));
  at::Tensor ev = at::linspace(1, 2, 10, at::kDouble);
  ev[0] = -0.02 * 1.5;
  const at::Tensor h = (q * ev).mm(q.t());
  const at::Tensor w = at::randn({4, 10}, at::kDouble);
  GptqOptions o;
  o.compute_dtype = at::kDouble;
  auto r = Gptq(w, h, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("not positive definite"));
  o.damp_auto_increment = 0.0025;
  r = Gptq(w, h, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->percdamp, 0.02);
  EXPECT_LT(r->percdamp, 0.0226);
  // Negative definite: no damping below 1 helps.
  EXPECT_FALSE(Gptq(w, -at::eye(10, at::kDouble), o).ok());
}

}  // namespace
}  // namespace baq::worker
