// worker/cuda/gptq_block_cuda.cc: checks and launch (BAQ_WITH_CUDA builds).
#include "worker/cuda/gptq_block_cuda.h"

#include <ATen/ATen.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {
namespace cuda_internal {
cudaError_t LaunchGptqBlock(const float* wt, const float* hinv, int64_t hinv_stride,
                            const float* scale, const float* zero, const int* maxq, float* qt,
                            unsigned char* codes, float* err, double* loss, int n, int64_t rows);
}  // namespace cuda_internal

namespace {

// `row_stride_free`: rows may be further apart than their length (a view into
// a larger matrix, as the batch's block of U is).
absl::Status Check(const at::Tensor& t, at::ScalarType dtype, at::IntArrayRef sizes,
                   const char* what, c10::Device device, bool row_stride_free) {
  if (!t.defined() || t.scalar_type() != dtype || t.sizes() != sizes || t.device() != device ||
      t.stride(-1) != 1 || (t.dim() == 2 && !row_stride_free && t.stride(0) != t.size(1))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GptqBlockCuda: ", what, " must be a row-contiguous ", at::toString(dtype), " [",
        absl::StrJoin(sizes, ", "), "] tensor on ", device.str(), ", got ",
        t.defined() ? t.toString() + " [" + absl::StrJoin(t.sizes(), ", ") + "] on " +
                          t.device().str()
                    : std::string("undefined")));
  }
  return absl::OkStatus();
}

}  // namespace

bool HasCudaKernels() { return true; }

absl::StatusOr<GptqBlockResult> GptqBlockCuda(const GptqBlock& b) {
  if (!b.wt.defined() || !b.wt.is_cuda() || b.wt.dim() != 2) {
    return absl::InvalidArgumentError("GptqBlockCuda: wt must be a 2-D CUDA tensor");
  }
  const int64_t n = b.wt.size(0);
  const int64_t rows = b.wt.size(1);
  if (n < 1 || n > kMaxGptqBlock) {
    return absl::InvalidArgumentError(
        absl::StrCat("GptqBlockCuda: ", n, " columns, expected 1..", kMaxGptqBlock));
  }
  const c10::Device dev = b.wt.device();
  // hinv may be a view into the full factor (rows of stride hinv.stride(0)); a
  // column-major one (at::linalg_cholesky(upper=true) returns a transpose) is
  // copied: n x n floats, cheap.
  const at::Tensor* hinv_in = &b.hinv;
  at::Tensor hinv_copy;
  if (b.hinv.defined() && b.hinv.dim() == 2 && b.hinv.stride(1) != 1) {
    BAQ_ASSIGN_OR_RETURN(hinv_copy,
                         CallTorch("GptqBlockCuda hinv", [&] { return b.hinv.contiguous(); }));
    hinv_in = &hinv_copy;
  }
  const at::Tensor& hinv = *hinv_in;
  for (auto [t, dtype, sizes, what] :
       {std::tuple{&b.wt, at::kFloat, std::vector<int64_t>{n, rows}, "wt"},
        std::tuple{&hinv, at::kFloat, std::vector<int64_t>{n, n}, "hinv"},
        std::tuple{&b.scale, at::kFloat, std::vector<int64_t>{n, rows}, "scale"},
        std::tuple{&b.zero, at::kFloat, std::vector<int64_t>{n, rows}, "zero"},
        std::tuple{&b.maxq, at::kInt, std::vector<int64_t>{n}, "maxq"}}) {
    const bool row_stride_free = t == &hinv;
    if (absl::Status s = Check(*t, dtype, sizes, what, dev, row_stride_free); !s.ok()) return s;
  }
  return CallTorch("GptqBlockCuda", [&]() -> absl::StatusOr<GptqBlockResult> {
    GptqBlockResult r;
    r.qt = at::empty({n, rows}, b.wt.options());
    r.codes_t = at::empty({n, rows}, b.wt.options().dtype(at::kByte));
    r.err_t = at::empty({n, rows}, b.wt.options());
    r.loss = at::zeros({n}, b.wt.options().dtype(at::kDouble));
    if (cudaSetDevice(dev.index()) != cudaSuccess) {
      return absl::InternalError("GptqBlockCuda: cudaSetDevice failed");
    }
    const cudaError_t e = cuda_internal::LaunchGptqBlock(
        b.wt.data_ptr<float>(), hinv.data_ptr<float>(), hinv.stride(0),
        b.scale.data_ptr<float>(), b.zero.data_ptr<float>(), b.maxq.data_ptr<int>(),
        r.qt.data_ptr<float>(), r.codes_t.data_ptr<uint8_t>(), r.err_t.data_ptr<float>(),
        r.loss.data_ptr<double>(), static_cast<int>(n), rows);
    if (e != cudaSuccess) {
      return absl::InternalError(absl::StrCat("GptqBlockCuda: launch: ", cudaGetErrorString(e)));
    }
    return r;
  });
}

}  // namespace baq::worker
