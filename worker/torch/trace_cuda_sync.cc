#include "worker/torch/trace_cuda_sync.h"

#include <torch/cuda.h>

#include "common/trace_recorder.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {
namespace {

void SynchronizeCurrentDevice() {
  // A span cannot fail: a sync error (a device fault) surfaces again at the
  // stage's next CUDA call, which reports it.
  (void)CallTorch("trace span sync", [] { torch::cuda::synchronize(); });
}

}  // namespace

absl::Status SyncCudaAtTraceSpanEnds() {
  absl::StatusOr<bool> available =
      CallTorch("CUDA probe", [] { return torch::cuda::is_available(); });
  if (!available.ok()) return available.status();
  if (!*available) {
    return absl::FailedPreconditionError(
        "--trace_cuda_sync: this build or machine has no CUDA device");
  }
  trace::GlobalTraceRecorder().SetSpanEndHook(&SynchronizeCurrentDevice);
  return absl::OkStatus();
}

}  // namespace baq::worker
