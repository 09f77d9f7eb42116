// worker/cuda/syrk_cuda.h
//
// The symmetric rank-k update of the Hessian sums on CUDA: upper += x^T x for
// a float64 [rows, n] row-major `x` into a float64 [n, n] row-major `upper`,
// of which only the upper triangle (j >= i) is written (cuBLAS DSYRK: half
// the multiply-adds of the GEMM x^T x). The strictly lower triangle is left
// as it was; HessianAccumulator keeps it zero and mirrors the upper one when
// the full sum is read (worker/quant/hessian_accumulator.h).
//
// Runs on LibTorch's current CUDA stream of x's device, with LibTorch's cuBLAS
// handle for that stream (at::cuda::getCurrentCUDABlasHandle), so it is
// ordered with the forward's kernels like any ATen op and adds no host sync.
// Built with BAQ_WITH_CUDA; otherwise SyrkUpperCuda returns Unimplemented and
// HasCudaSyrk() is false. Stateless; thread-safe (one handle per thread and
// device, as ATen keeps them).
//
// Example:
//   if (HasCudaSyrk()) BAQ_RETURN_IF_ERROR(SyrkUpperCuda(x64, sum));
#ifndef BAQ_WORKER_CUDA_SYRK_CUDA_H_
#define BAQ_WORKER_CUDA_SYRK_CUDA_H_

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"

namespace baq::worker {

// upper[i, j] += sum_t x[t, i] * x[t, j] for j >= i. InvalidArgument unless
// x is a contiguous float64 CUDA [rows, n] tensor and upper a contiguous
// float64 [n, n] one on the same device; Internal on a cuBLAS error;
// Unimplemented without BAQ_WITH_CUDA. May not throw.
absl::Status SyrkUpperCuda(const at::Tensor& x, at::Tensor& upper);

// Whether this build has SyrkUpperCuda (BAQ_WITH_CUDA).
bool HasCudaSyrk();

}  // namespace baq::worker

#endif  // BAQ_WORKER_CUDA_SYRK_CUDA_H_
