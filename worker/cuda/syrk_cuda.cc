// worker/cuda/syrk_cuda.cc: cuBLAS DSYRK on LibTorch's stream (BAQ_WITH_CUDA builds).
#include "worker/cuda/syrk_cuda.h"

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <cublas_v2.h>

#include <climits>
#include <string>

#include "absl/strings/str_cat.h"
#include "worker/torch/torch_call.h"

// LibTorch's cuBLAS handle for the current thread, device and stream (it
// sets the handle's stream to the current one on each call), as
// <ATen/cuda/CUDAContext.h> declares it in LibTorch 1.13 and 2.x alike. Declared
// here rather than included: that header needs c10's CUDA build config, which a
// CPU LibTorch (this build's CI, compiling worker/cuda/ against the toolkit)
// does not ship. Defined in libtorch_cuda.
namespace at::cuda {
cublasHandle_t getCurrentCUDABlasHandle();
}  // namespace at::cuda

namespace baq::worker {

bool HasCudaSyrk() { return true; }

absl::Status SyrkUpperCuda(const at::Tensor& x, at::Tensor& upper) {
  if (!x.defined() || !upper.defined() || !x.is_cuda() || x.scalar_type() != at::kDouble ||
      upper.scalar_type() != at::kDouble || x.dim() != 2 || upper.dim() != 2 ||
      !x.is_contiguous() || !upper.is_contiguous() || upper.device() != x.device() ||
      upper.size(0) != x.size(1) || upper.size(1) != x.size(1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SyrkUpperCuda: needs contiguous float64 CUDA x [rows, n] and upper [n, n] on one "
        "device, got x ",
        x.defined() ? x.toString() : std::string("undefined"), " and upper ",
        upper.defined() ? upper.toString() : std::string("undefined")));
  }
  const int64_t n = x.size(1), rows = x.size(0);
  if (rows == 0) return absl::OkStatus();
  if (n > INT_MAX || rows > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("SyrkUpperCuda: [", rows, ", ", n, "] exceeds cuBLAS int sizes"));
  }
  return CallTorch("SyrkUpperCuda", [&]() -> absl::Status {
    const c10::DeviceGuard guard(x.device());
    // Sets the handle's stream to the current one (ATen does on each call).
    cublasHandle_t handle = at::cuda::getCurrentCUDABlasHandle();
    const double one = 1.0;
    // Column-major view: x is the n x rows matrix A = x^T (lda = n) and the
    // row-major upper triangle of `upper` is the column-major lower one, so
    // C_lower += A A^T writes exactly upper[i, j], j >= i.
    const cublasStatus_t s = cublasDsyrk(
        handle, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(rows),
        &one, x.data_ptr<double>(), static_cast<int>(n), &one, upper.data_ptr<double>(),
        static_cast<int>(n));
    if (s != CUBLAS_STATUS_SUCCESS) {
      return absl::InternalError(absl::StrCat("SyrkUpperCuda: cublasDsyrk failed with status ",
                                              static_cast<int>(s), " for n = ", n,
                                              ", rows = ", rows));
    }
    return absl::OkStatus();
  });
}

}  // namespace baq::worker
