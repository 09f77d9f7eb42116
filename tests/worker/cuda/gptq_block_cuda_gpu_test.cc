// GptqBlockCuda (worker/cuda/gptq_block_cuda.h) against the column loop it
// fuses, written out here in float64 on the CPU. CTest label gpu.
#include "worker/cuda/gptq_block_cuda.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstdint>
#include <iostream>

namespace baq::worker {
namespace {

// float32 kernel vs float64 loop: a code flips only where a value sits within
// float32 rounding of a grid midpoint.
constexpr double kCodeMismatch = 1e-3;
constexpr double kErrRelDiff = 1e-3;   // ||e - e_ref|| / ||e_ref||
constexpr double kLossRelDiff = 1e-3;  // per column, max over columns

struct Inputs {
  at::Tensor wt, hinv, scale, zero, maxq;  // CPU float64 / int32
};

Inputs MakeInputs(int64_t n, int64_t rows) {
  at::manual_seed(7);
  Inputs in;
  in.wt = at::randn({n, rows}, at::kDouble) * 0.02;
  const at::Tensor a = at::randn({n, n}, at::kDouble);
  const at::Tensor h = a.mm(a.t()) / n + at::eye(n, at::kDouble) * 0.5;
  in.hinv = at::linalg_cholesky(at::cholesky_inverse(at::linalg_cholesky(h)), /*upper=*/true);
  in.maxq = at::arange(n, at::kInt).remainder(16);  // includes 0 (one level: all zero)
  const at::Tensor xmin = at::clamp_max(in.wt.amin(0), 0);
  const at::Tensor xmax = at::clamp_min(in.wt.amax(0), 0);
  const at::Tensor levels = at::clamp_min(in.maxq.to(at::kDouble), 1).unsqueeze(1);
  in.scale = ((xmax - xmin).unsqueeze(0) / levels).contiguous();
  in.zero = at::round(-xmin.unsqueeze(0) / in.scale).contiguous();
  return in;
}

// The loop of the header comment, column by column, float64.
GptqBlockResult Reference(const Inputs& in) {
  at::Tensor w = in.wt.clone();
  const int64_t n = w.size(0);
  GptqBlockResult r;
  r.qt = at::zeros_like(w);
  r.codes_t = at::zeros(w.sizes(), at::kByte);
  r.err_t = at::zeros_like(w);
  r.loss = at::zeros({n}, at::kDouble);
  for (int64_t k = 0; k < n; ++k) {
    const at::Tensor s = in.scale[k], z = in.zero[k];
    const at::Tensor c =
        at::clamp(at::round(w[k] / s) + z, 0, static_cast<double>(in.maxq[k].item<int>()));
    const at::Tensor q = s * (c - z);
    const at::Tensor e = (w[k] - q) / in.hinv[k][k];
    r.qt[k] = q;
    r.codes_t[k] = c.to(at::kByte);
    r.err_t[k] = e;
    r.loss[k] = (e * e).sum() / 2;
    if (k + 1 < n) {
      w.narrow(0, k + 1, n - k - 1) -=
          in.hinv[k].narrow(0, k + 1, n - k - 1).unsqueeze(1) * e.unsqueeze(0);
    }
  }
  return r;
}

TEST(GptqBlockCudaGpuTest, MatchesFloat64ColumnLoop) {
  if (!HasCudaKernels()) GTEST_SKIP() << "built without BAQ_WITH_CUDA";
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  for (auto [n, rows] : {std::pair<int64_t, int64_t>{128, 300}, {37, 4096}, {1, 65}}) {
    const Inputs in = MakeInputs(n, rows);
    const GptqBlockResult ref = Reference(in);
    // The kernel reads the block of U through a view with a larger row stride.
    const at::Tensor big = at::zeros({n + 3, n + 5}, at::TensorOptions(at::kFloat).device(at::kCUDA));
    big.narrow(0, 1, n).narrow(1, 2, n).copy_(in.hinv);
    GptqBlock b;
    const auto f32 = at::TensorOptions(at::kFloat).device(at::kCUDA);
    b.wt = in.wt.to(f32);
    b.hinv = big.narrow(0, 1, n).narrow(1, 2, n);
    b.scale = in.scale.to(f32);
    b.zero = in.zero.to(f32);
    b.maxq = in.maxq.to(at::kCUDA);
    auto got = GptqBlockCuda(b);
    ASSERT_TRUE(got.ok()) << got.status();
    // A column-major block of U (as at::linalg_cholesky(upper=true) returns) is accepted too.
    b.hinv = in.hinv.t().contiguous().t().to(f32);
    auto col_major = GptqBlockCuda(b);
    ASSERT_TRUE(col_major.ok()) << col_major.status();
    EXPECT_TRUE(at::equal(col_major->codes_t, got->codes_t));
    const double mismatch =
        (got->codes_t.cpu() != ref.codes_t).to(at::kDouble).mean().item<double>();
    const double err = ((got->err_t.cpu().to(at::kDouble) - ref.err_t).norm() /
                        ref.err_t.norm()).item<double>();
    const double loss = ((got->loss.cpu() - ref.loss).abs() /
                         ref.loss.clamp_min(1e-30)).max().item<double>();
    std::cout << "GptqBlockCuda n=" << n << " rows=" << rows << ": code mismatch " << mismatch
              << ", err rel diff " << err << ", max loss rel diff " << loss << "\n";
    EXPECT_LE(mismatch, kCodeMismatch);
    EXPECT_LE(err, kErrRelDiff);
    EXPECT_LE(loss, kLossRelDiff);
    EXPECT_TRUE(at::allclose(got->qt.cpu().to(at::kDouble), ref.qt, 1e-5, 1e-6));
  }
}

TEST(GptqBlockCudaGpuTest, RejectsBadInputs) {
  GptqBlock b;
  EXPECT_FALSE(GptqBlockCuda(b).ok());
  if (!HasCudaKernels() || !at::hasCUDA()) return;
  const auto f32 = at::TensorOptions(at::kFloat).device(at::kCUDA);
  b.wt = at::zeros({kMaxGptqBlock + 1, 8}, f32);
  EXPECT_EQ(GptqBlockCuda(b).status().code(), absl::StatusCode::kInvalidArgument);
  b.wt = at::zeros({4, 8}, f32);
  b.hinv = at::eye(4, f32);
  b.scale = at::ones({4, 8}, f32);
  b.zero = at::zeros({4, 8}, f32);
  b.maxq = at::ones({4}, at::TensorOptions(at::kLong).device(at::kCUDA));  // not int32
  EXPECT_EQ(GptqBlockCuda(b).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baq::worker
