// RunGptqLoop (worker/quant/gptq_engine.h) with the fused CUDA batch kernel
// (GptqKernel::kAuto on a CUDA float32 layer) against its LibTorch-op path
// (kTorchOps) on the same GPU, and the time of each. CTest label gpu; skips
// without a GPU or without the CUDA kernels (BAQ_WITH_CUDA=OFF).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <chrono>
#include <cstdint>
#include <iostream>

#include "worker/cuda/gptq_block_cuda.h"
#include "worker/quant/gptq_engine.h"

namespace baq::worker::quant_internal {
namespace {

// Both paths are float32 with different summation orders: a code flips only
// where a value sits within float32 rounding of a grid midpoint.
constexpr double kCodeMismatch = 1e-3;
constexpr double kLossRelDiff = 1e-4;  // Sum over columns.

struct Layer {
  at::Tensor wt;    // [cols, rows] float32 CUDA
  at::Tensor hinv;  // [cols, cols] upper factor, float32 CUDA
  at::Tensor scale, zero;  // [rows]: one asymmetric 4-bit grid per row
};

Layer MakeLayer(int64_t rows, int64_t cols) {
  at::manual_seed(11);
  const at::TensorOptions f64 = at::TensorOptions().dtype(at::kDouble).device(at::kCUDA);
  Layer l;
  const at::Tensor w = at::randn({rows, cols}, f64) * 0.02;
  const at::Tensor x = at::randn({4 * cols, cols}, f64);
  at::Tensor h = x.t().mm(x) / (4 * cols);
  h.diagonal().add_(0.01 * h.diagonal().mean());
  l.hinv = at::linalg_cholesky(at::cholesky_inverse(at::linalg_cholesky(h)), /*upper=*/true)
               .to(at::kFloat);
  l.wt = w.t().contiguous().to(at::kFloat);
  const at::Tensor xmin = at::clamp_max(w.amin(1), 0), xmax = at::clamp_min(w.amax(1), 0);
  l.scale = ((xmax - xmin) / 15).to(at::kFloat);
  l.zero = at::round(-xmin / ((xmax - xmin) / 15)).to(at::kFloat);
  return l;
}

LoopResult RunTimed(const Layer& l, GptqKernel kernel, double* ms) {
  GridFnFactory factory = [&](int64_t r0, int64_t r1) -> GridFn {
    return [&l, r0, r1](int64_t, const at::Tensor&, ColumnGrid* g) {
      g->scale = l.scale.narrow(0, r0, r1 - r0);
      g->zero = l.zero.narrow(0, r0, r1 - r0);
      g->maxq = 15;
    };
  };
  LoopResult r;
  for (int rep = 0; rep < 2; ++rep) {  // The first run warms up (kernels, handles).
    const auto t0 = std::chrono::steady_clock::now();
    r = RunGptqLoop(l.wt.clone(), l.hinv, /*block_size=*/128, factory, kSubBlock, kernel);
    (void)r.loss.sum().item<double>();
    *ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  return r;
}

TEST(GptqFusedLoopGpuTest, FusedBatchesMatchTorchOps) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!HasCudaKernels()) GTEST_SKIP() << "built without BAQ_WITH_CUDA";
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{4096, 4096}, {11008, 4096}, {300, 200}}) {
    const Layer l = MakeLayer(rows, cols);
    ASSERT_TRUE(UsesFusedBatchKernel(l.wt, 128));
    double fused_ms = 0, ops_ms = 0;
    const LoopResult fused = RunTimed(l, GptqKernel::kAuto, &fused_ms);
    const LoopResult ops = RunTimed(l, GptqKernel::kTorchOps, &ops_ms);
    const double mismatch = (fused.codes_t != ops.codes_t).to(at::kDouble).mean().item<double>();
    const double loss_f = fused.loss.sum().item<double>(), loss_o = ops.loss.sum().item<double>();
    const double qdiff = ((fused.qt - ops.qt).norm() / ops.qt.norm()).item<double>();
    std::cout << "GPTQ loop " << rows << "x" << cols << ": fused " << fused_ms << " ms, torch ops "
              << ops_ms << " ms (" << ops_ms / fused_ms << "x); codes differing " << mismatch
              << ", loss " << loss_f << " vs " << loss_o << ", |dq|/|q| " << qdiff << "\n";
    EXPECT_LE(mismatch, kCodeMismatch) << rows << "x" << cols;
    EXPECT_LE(std::abs(loss_f - loss_o), kLossRelDiff * std::abs(loss_o)) << rows << "x" << cols;
  }
}

TEST(GptqFusedLoopGpuTest, Float64AndLargeBlocksKeepTorchOps) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const at::Tensor wt32 = at::zeros({8, 8}, at::TensorOptions().device(at::kCUDA));
  EXPECT_FALSE(UsesFusedBatchKernel(wt32.to(at::kDouble), 128));
  EXPECT_FALSE(UsesFusedBatchKernel(wt32, kMaxGptqBlock + 1));
  EXPECT_FALSE(UsesFusedBatchKernel(wt32.cpu(), 128));
  EXPECT_EQ(UsesFusedBatchKernel(wt32, 128), HasCudaKernels());
}

}  // namespace
}  // namespace baq::worker::quant_internal
