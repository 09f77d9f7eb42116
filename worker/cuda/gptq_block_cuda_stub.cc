// worker/cuda/gptq_block_cuda_stub.cc: builds without BAQ_WITH_CUDA.
#include "absl/status/status.h"
#include "worker/cuda/gptq_block_cuda.h"

namespace baq::worker {

bool HasCudaKernels() { return false; }

absl::StatusOr<GptqBlockResult> GptqBlockCuda(const GptqBlock& block) {
  return absl::UnimplementedError("GptqBlockCuda: built without BAQ_WITH_CUDA");
}

}  // namespace baq::worker
