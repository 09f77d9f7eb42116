// worker/torch/trace_cuda_sync.h
//
// --trace_cuda_sync: makes every span of the process's trace
// (common/trace_recorder.h) wait for the CUDA work queued on its thread's
// current device before it ends, so a span's duration is the device time of
// its stage rather than the time to launch its kernels. It serializes the
// host with the GPU at every span end (one cudaDeviceSynchronize each), so
// the traced run is slower than an untraced one and overlaps less; use it to
// attribute time, and an untraced run to measure the total.
//
// Thread-safe (the hook runs on whichever thread ends a span).
//
// Example (a main() with --trace_file and --trace_cuda_sync):
//   baq::trace::StartGlobalTrace(trace_file, "baq quantize");
//   if (cuda_sync) BAQ_RETURN_IF_ERROR(baq::worker::SyncCudaAtTraceSpanEnds());
#ifndef BAQ_WORKER_TORCH_TRACE_CUDA_SYNC_H_
#define BAQ_WORKER_TORCH_TRACE_CUDA_SYNC_H_

#include "absl/status/status.h"

namespace baq::worker {

// Installs the synchronizing span-end hook on the global trace recorder.
// FailedPrecondition when this build or machine has no CUDA device.
absl::Status SyncCudaAtTraceSpanEnds();

}  // namespace baq::worker

#endif  // BAQ_WORKER_TORCH_TRACE_CUDA_SYNC_H_
