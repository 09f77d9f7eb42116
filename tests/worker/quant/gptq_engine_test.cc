// worker/quant/gptq_engine: the pieces GPTQ and BAQ share, each against a
// float64 reference written here (a direct formula or the column-by-column
// loop of IST-DASLab/gptq `fasterquant` with blocksize 1), with named
// tolerances. The end-to-end GPTQ/BAQ comparisons are in gptq_test.cc and
// baq_test.cc; this file pins the engine's own contracts (chunking, dead
// columns, stable act-order, the damped factor and its retry, the blocked
// loop, the proxy loss, the argument checks).
#include "worker/quant/gptq_engine.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "tests/worker/quant/reference_quant.h"

namespace baq::worker::quant_internal {
namespace {

using ::testing::HasSubstr;

// float64 factorizations of well-conditioned 12x12..40x40 matrices.
constexpr double kFactorRtol = 1e-9;
constexpr double kFactorAtol = 1e-11;
// The blocked loop vs the literal per-column loop, both float64: the same
// sums in another association order.
constexpr double kLoopAtol = 1e-10;
constexpr double kLossRtol = 1e-10;
// ProxyLossUnchecked chunks rows; the reference sums in one GEMM.
constexpr double kProxyRtol = 1e-12;

TEST(ForEachChunkTest, CpuCoversEveryIndexOnceInFixedChunks) {
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> calls;
  ForEachChunk(/*cpu=*/true, /*n=*/10, /*chunk=*/4, [&](int64_t b, int64_t e) {
    std::lock_guard<std::mutex> lock(mu);
    calls.emplace_back(b, e);
  });
  std::sort(calls.begin(), calls.end());
  EXPECT_EQ(calls, (std::vector<std::pair<int64_t, int64_t>>{{0, 4}, {4, 8}, {8, 10}}));
}

TEST(ForEachChunkTest, CpuSingleChunkAndOtherDevicesRunOnce) {
  std::vector<std::pair<int64_t, int64_t>> calls;
  ForEachChunk(true, 3, 256, [&](int64_t b, int64_t e) { calls.emplace_back(b, e); });
  EXPECT_EQ(calls, (std::vector<std::pair<int64_t, int64_t>>{{0, 3}}));
  calls.clear();
  ForEachChunk(/*cpu=*/false, 1000, 256, [&](int64_t b, int64_t e) { calls.emplace_back(b, e); });
  EXPECT_EQ(calls, (std::vector<std::pair<int64_t, int64_t>>{{0, 1000}}));
}

TEST(CheckEngineOptionsTest, AcceptsDefaultsAndNamesEachBadField) {
  EXPECT_TRUE(CheckEngineOptions({}).ok());
  auto message = [](EngineOptions o) {
    const absl::Status s = CheckEngineOptions(o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    return std::string(s.message());
  };
  EngineOptions o;
  o.percdamp = -0.1;
  EXPECT_THAT(message(o), HasSubstr("percdamp must be finite and >= 0, got -0.1"));
  o.percdamp = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THAT(message(o), HasSubstr("percdamp"));
  o = {};
  o.damp_auto_increment = -1;
  EXPECT_THAT(message(o), HasSubstr("damp_auto_increment must be finite and >= 0"));
  o = {};
  o.block_size = 0;
  EXPECT_THAT(message(o), HasSubstr("block_size must be >= 1, got 0"));
  o = {};
  o.compute_dtype = at::kHalf;
  EXPECT_THAT(message(o), HasSubstr("compute_dtype must be float32 or float64"));
}

TEST(CheckLayerTest, NamesTheFault) {
  const at::Tensor w = at::randn({4, 6});
  EXPECT_TRUE(CheckLayer(w, at::eye(6)).ok());
  EXPECT_THAT(CheckLayer(w, at::eye(5)).message(), HasSubstr("does not match weight [4, 6]"));
  EXPECT_THAT(CheckLayer(w, at::ones({6, 5})).message(), HasSubstr("must be square"));
  EXPECT_THAT(CheckLayer(at::zeros({0, 6}), at::eye(6)).message(), HasSubstr("non-empty"));
  EXPECT_THAT(CheckLayer(at::zeros({4, 6}, at::kInt), at::eye(6)).message(),
              HasSubstr("weight must be floating point"));
  EXPECT_THAT(CheckLayer(w, at::Tensor()).message(), HasSubstr("hessian is undefined"));
}

TEST(PrepareHessianTest, CopiesAndGivesDeadColumnsUnitDiagonal) {
  // Column 1 is dead (H_11 = 0).
  const at::Tensor h =
      at::tensor({4.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 2.0}, at::kDouble).view({3, 3});
  const at::Tensor before = h.clone();
  const PreparedHessian p = PrepareHessian(h, at::kFloat);
  EXPECT_TRUE(at::equal(h, before));  // The caller's H is untouched.
  EXPECT_EQ(p.h.scalar_type(), at::kFloat);
  EXPECT_EQ(p.dead.scalar_type(), at::kBool);
  EXPECT_TRUE(at::equal(p.dead.to(at::kInt), at::tensor({0, 1, 0}, at::kInt)));
  EXPECT_TRUE(at::equal(p.h.diagonal(), at::tensor({4.0f, 1.0f, 2.0f})));
  EXPECT_EQ(p.h[0][1].item<float>(), 1.0f);  // Off-diagonals kept (gptq.py does too).
}

TEST(ActOrderPermutationTest, DescendingDiagonalTiesKeepOriginalOrder) {
  const at::Tensor h = at::diag(at::tensor({1.0, 3.0, 2.0, 3.0, 1.0, 3.0}, at::kDouble));
  EXPECT_TRUE(at::equal(ActOrderPermutation(h), at::tensor({1, 3, 5, 2, 0, 4}, at::kLong)));
}

TEST(InverseHessianFactorTest, UpperFactorOfTheDampedInverse) {
  at::manual_seed(5);
  const at::Tensor h = testing::RandomHessian(/*cols=*/12, /*n=*/64, /*log_scale_sd=*/1.0);
  absl::StatusOr<InverseFactor> f = InverseHessianFactor(h, /*percdamp=*/0.05, 0);
  ASSERT_TRUE(f.ok()) << f.status();
  const double damp = 0.05 * h.diagonal().mean().item<double>();
  EXPECT_NEAR(f->damp, damp, 1e-15 * damp);
  EXPECT_EQ(f->percdamp, 0.05);
  EXPECT_TRUE(at::equal(f->hinv, f->hinv.triu()));  // Upper triangular.
  // U^T U == (H + damp I)^-1, from a float64 reference inverse.
  const at::Tensor want = at::inverse(h + damp * at::eye(12, at::kDouble));
  EXPECT_TRUE(at::allclose(f->hinv.t().mm(f->hinv), want, kFactorRtol, kFactorAtol));
}

TEST(InverseHessianFactorTest, RetriesWithMoreDampingOnlyWhenAsked) {
  // diag(1, 1, -0.05): mean diag 0.65; percdamp p fixes it once p * 0.65 > 0.05.
  const at::Tensor h = at::diag(at::tensor({1.0, 1.0, -0.05}, at::kDouble));
  absl::StatusOr<InverseFactor> f = InverseHessianFactor(h, 0.01, 0);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(f.status().message(), HasSubstr("H + damp*I is not positive definite"));
  EXPECT_THAT(f.status().message(), HasSubstr("leading minor of order 3"));
  f = InverseHessianFactor(h, 0.01, /*damp_auto_increment=*/0.02);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_NEAR(f->percdamp, 0.09, 1e-12);  // 0.01, 0.03, 0.05, 0.07 fail: 0.07 * 0.65 < 0.05.
  // Never positive definite below percdamp 1: the last failure is returned.
  f = InverseHessianFactor(-at::eye(3, at::kDouble), 0.01, 0.25);
  EXPECT_THAT(f.status().message(), HasSubstr("not positive definite"));
}

// The literal loop of gptq.py fasterquant with blocksize 1 in float64, on a
// fixed per-row grid: W [rows, cols], U upper [cols, cols].
struct LiteralResult {
  at::Tensor q;     // [rows, cols]
  at::Tensor loss;  // [cols]
};
LiteralResult LiteralLoop(const at::Tensor& weight, const at::Tensor& u, const at::Tensor& scale,
                          const at::Tensor& zero, int64_t maxq) {
  at::Tensor w = weight.to(at::kDouble).clone();
  const int64_t rows = w.size(0), cols = w.size(1);
  LiteralResult out{at::zeros({rows, cols}, at::kDouble), at::zeros({cols}, at::kDouble)};
  auto wa = w.accessor<double, 2>();
  auto qa = out.q.accessor<double, 2>();
  auto la = out.loss.accessor<double, 1>();
  auto ua = u.accessor<double, 2>();
  auto sa = scale.accessor<double, 1>();
  auto za = zero.accessor<double, 1>();
  for (int64_t i = 0; i < cols; ++i) {
    for (int64_t r = 0; r < rows; ++r) {
      const double c =
          std::clamp(std::nearbyint(wa[r][i] / sa[r]) + za[r], 0.0, static_cast<double>(maxq));
      qa[r][i] = sa[r] * (c - za[r]);
      const double e = (wa[r][i] - qa[r][i]) / ua[i][i];
      la[i] += e * e / 2;
      for (int64_t j = i + 1; j < cols; ++j) wa[r][j] -= e * ua[i][j];
    }
  }
  return out;
}

TEST(RunGptqLoopTest, BlockedLoopMatchesLiteralLoopAcrossRowChunks) {
  at::manual_seed(7);
  const int64_t rows = kCpuRowChunk + 44;  // Two row chunks.
  const int64_t cols = 40;
  const at::Tensor w = at::randn({rows, cols}, at::kDouble);
  const at::Tensor h = testing::RandomHessian(cols, 256, 0.5);
  absl::StatusOr<InverseFactor> f = InverseHessianFactor(h, 0.01, 0);
  ASSERT_TRUE(f.ok()) << f.status();
  // quant.py's asymmetric 3-bit grid per row of the original W.
  const int64_t maxq = 7;
  const at::Tensor lo = std::get<0>(w.min(1)).clamp_max(0);
  const at::Tensor hi = std::get<0>(w.max(1)).clamp_min(0);
  const at::Tensor scale = (hi - lo) / maxq;
  const at::Tensor zero = at::round(-lo / scale);
  const LiteralResult want = LiteralLoop(w, f->hinv, scale, zero, maxq);

  const GridFnFactory grids = [&](int64_t r0, int64_t r1) -> GridFn {
    return [=](int64_t, const at::Tensor&, ColumnGrid* g) {
      g->scale = scale.narrow(0, r0, r1 - r0);
      g->zero = zero.narrow(0, r0, r1 - r0);
      g->maxq = maxq;
    };
  };
  const at::Tensor wt = w.t().contiguous();
  for (const auto& [block, sub] : std::vector<std::pair<int64_t, int64_t>>{
           {128, kSubBlock}, {16, kSubBlock}, {7, 3}, {1, 1}, {40, 1}}) {
    SCOPED_TRACE(::testing::Message() << "block_size " << block << ", sub_block " << sub);
    const LoopResult got = RunGptqLoop(wt, f->hinv, block, grids, sub, GptqKernel::kTorchOps);
    EXPECT_TRUE(at::equal(wt, w.t()));  // Input not modified.
    EXPECT_TRUE(at::allclose(got.qt.t(), want.q, 0, kLoopAtol));
    // Codes agree with the values: q = scale * (code - zero).
    const at::Tensor dequantized =
        scale.unsqueeze(1) * (got.codes_t.t().to(at::kDouble) - zero.unsqueeze(1));
    EXPECT_TRUE(at::allclose(got.qt.t(), dequantized, 0, kLoopAtol));
    EXPECT_TRUE(at::allclose(got.loss, want.loss, kLossRtol, 0));
  }
}

TEST(ProxyLossUncheckedTest, MatchesTraceFormulaAcrossRowChunks) {
  at::manual_seed(9);
  const int64_t rows = 2 * kCpuRowChunk + 3;
  const at::Tensor w = at::randn({rows, 24}, at::kFloat);
  const at::Tensor q = w + 0.01 * at::randn({rows, 24}, at::kFloat);
  const at::Tensor h = testing::RandomHessian(24, 100, 1.0);
  const at::Tensor e = w.to(at::kDouble) - q.to(at::kDouble);
  const double want = at::trace(e.mm(h).mm(e.t())).item<double>();
  EXPECT_NEAR(ProxyLossUnchecked(w, q, h), want, kProxyRtol * want);
  EXPECT_EQ(ProxyLossUnchecked(w, w, h), 0.0);
}

TEST(UnpermuteTransposedTest, RestoresColumnOrderAndTransposes) {
  // Columns quantized in order perm = [2, 0, 1]; t holds them as rows.
  const at::Tensor perm = at::tensor({2, 0, 1}, at::kLong);
  const at::Tensor original = at::arange(6, at::kFloat).view({2, 3});  // [rows, cols]
  const at::Tensor t = original.t().index_select(0, perm);             // [cols(perm), rows]
  EXPECT_TRUE(at::equal(UnpermuteTransposed(t, at::argsort(perm)), original));
  EXPECT_TRUE(at::equal(UnpermuteTransposed(original.t(), at::Tensor()), original));
  EXPECT_TRUE(UnpermuteTransposed(t, at::argsort(perm)).is_contiguous());
}

TEST(CheckFiniteResultTest, NamesTheResultAndTheRemedy) {
  EXPECT_TRUE(CheckFiniteResult(at::ones({2, 2}), "quantized weight").ok());
  at::Tensor bad = at::ones({2, 2});
  bad[1][0] = std::numeric_limits<float>::infinity();
  const absl::Status s = CheckFiniteResult(bad, "quantized weight");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("quantized weight has non-finite values"));
  EXPECT_THAT(s.message(), HasSubstr("compute_dtype = float64"));
}

TEST(UsesFusedBatchKernelTest, NeverOnCpu) {
  EXPECT_FALSE(UsesFusedBatchKernel(at::zeros({4, 4}), 128));
}

}  // namespace
}  // namespace baq::worker::quant_internal
