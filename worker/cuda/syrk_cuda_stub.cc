// worker/cuda/syrk_cuda_stub.cc: builds without BAQ_WITH_CUDA.
#include "absl/status/status.h"
#include "worker/cuda/syrk_cuda.h"

namespace baq::worker {

bool HasCudaSyrk() { return false; }

absl::Status SyrkUpperCuda(const at::Tensor& x, at::Tensor& upper) {
  return absl::UnimplementedError("SyrkUpperCuda: built without BAQ_WITH_CUDA");
}

}  // namespace baq::worker
