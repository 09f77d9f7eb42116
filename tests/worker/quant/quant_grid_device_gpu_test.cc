// The quantization grid is device-independent bit for bit: scale and zero
// found on CUDA equal those found on the CPU for every level count 1..256,
// asymmetric and symmetric, including rows whose range makes round(-xmin /
// scale) a tie (xmin = -xmax with an even level count). The packed output
// format stores only each row's range and its loader rebuilds the grid on the
// CPU, so any difference here is a packed model that does not decode to the
// weights it was quantized to (seen on H200 before the grid divided by a
// device tensor: CUDA multiplies by the reciprocal of a host scalar).
//
// CTest label gpu; without a CUDA device the test skips.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <cstdint>

#include "worker/quant/quant_grid.h"

namespace baq::worker {
namespace {

// Rows of random ranges, then rows forced onto ties: xmin = -xmax.
at::Tensor Weights(int64_t rows, int64_t cols, uint64_t seed) {
  at::manual_seed(seed);
  at::Tensor w = at::randn({rows, cols}) * at::rand({rows, 1}).mul_(0.1).add_(1e-3);
  const int64_t tied = rows / 2;
  at::Tensor half = w.narrow(0, 0, tied);
  const at::Tensor m = half.abs().amax({1}, /*keepdim=*/true);
  half.select(1, 0).copy_(m.squeeze(1));
  half.select(1, 1).copy_(-m.squeeze(1));
  return w;
}

TEST(QuantGridDeviceTest, CudaGridEqualsCpuGridBitForBit) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const at::Tensor cpu = Weights(/*rows=*/4096, /*cols=*/64, /*seed=*/11);
  const at::Tensor cuda = cpu.to(at::kCUDA);
  int64_t compared = 0;
  for (bool symmetric : {false, true}) {
    for (int levels = 1; levels <= kMaxLevels; ++levels) {
      const GridOptions options{levels, symmetric};
      const QuantGrid a = FindGridUnchecked(cpu, options);
      const QuantGrid b = FindGridUnchecked(cuda, options);
      const at::Tensor b_scale = b.scale.cpu();
      const at::Tensor b_zero = b.zero.cpu();
      const int64_t scale_diff = a.scale.ne(b_scale).sum().item<int64_t>();
      const int64_t zero_diff = a.zero.ne(b_zero).sum().item<int64_t>();
      ASSERT_EQ(scale_diff, 0) << "levels " << levels << (symmetric ? " sym" : " asym");
      ASSERT_EQ(zero_diff, 0) << "levels " << levels << (symmetric ? " sym" : " asym");
      // The codes of the same values on both grids agree too.
      const at::Tensor codes_cpu = QuantizeCodes(cpu, a.scale.unsqueeze(1),
                                                 a.zero.unsqueeze(1), a.maxq);
      const at::Tensor codes_cuda = QuantizeCodes(cuda, b.scale.unsqueeze(1),
                                                  b.zero.unsqueeze(1), b.maxq);
      ASSERT_EQ(codes_cpu.ne(codes_cuda.cpu()).sum().item<int64_t>(), 0)
          << "levels " << levels << (symmetric ? " sym" : " asym");
      compared += a.scale.numel();
    }
  }
  EXPECT_EQ(compared, 2 * kMaxLevels * 4096);
}

}  // namespace
}  // namespace baq::worker
