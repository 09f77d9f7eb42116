// worker/cuda/gptq_block_cuda.h
//
// One lazy batch of GPTQ's error-feedback loop (worker/quant/gptq_engine.h,
// RunGptqLoop's inner block) fused into ONE CUDA launch: for each column k of
// the batch, in order, every row r
//   c = clamp(round(w_kr / s_kr) + z_kr, 0, maxq_k)     (round half to even)
//   q_kr = s_kr * (c - z_kr),   e_kr = (w_kr - q_kr) / U_kk
//   w_jr -= e_kr * U_kj   for the later columns j of the batch
//   loss_k += e_kr^2 / 2
// One thread per row keeps its column of the batch in shared memory, so a
// 128-column batch costs one launch instead of the ~15 launches per column of
// the LibTorch-op loop (docs/performance.md: that loop is launch-bound on
// H100, ~90 us per column at any row count). The caller still applies the
// batch's error to the later columns with one GEMM (W[i2:] -= E^T U[i1:i2, i2:]).
// Grids (scale, zero, maxq per column) are inputs: the caller evaluates them
// for the whole batch first, from the weight as of the batch start, which is
// what gptq.py's outer W holds (GridFn's contract in gptq_engine.h).
//
// Same computation as the column loop up to float rounding (the update order
// inside a batch is column by column, as gptq.py with blocksize 128).
// Runs on the device's default stream (the executor's LibTorch stream).
// Built with BAQ_WITH_CUDA; otherwise GptqBlockCuda returns Unimplemented.
// Stateless; thread-safe.
//
// Example:
//   GptqBlock b{wt.narrow(0, i1, n), hinv.narrow(0, i1, n).narrow(1, i1, n), scale, zero, maxq};
//   BAQ_ASSIGN_OR_RETURN(GptqBlockResult r, GptqBlockCuda(b));
#ifndef BAQ_WORKER_CUDA_GPTQ_BLOCK_CUDA_H_
#define BAQ_WORKER_CUDA_GPTQ_BLOCK_CUDA_H_

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"

namespace baq::worker {

// Most columns one launch takes (the shared-memory tile is kMaxGptqBlock x 64 floats).
inline constexpr int64_t kMaxGptqBlock = 128;

struct GptqBlock {
  at::Tensor wt;     // float32 [n, rows] CUDA, contiguous rows: the batch's columns (read only)
  at::Tensor hinv;   // float32 [n, n] CUDA: the batch's diagonal block of U (upper), any strides
  at::Tensor scale;  // float32 [n, rows] CUDA
  at::Tensor zero;   // float32 [n, rows] CUDA
  at::Tensor maxq;   // int32 [n] CUDA: levels - 1 per column
};

struct GptqBlockResult {
  at::Tensor qt;       // float32 [n, rows]: dequantized
  at::Tensor codes_t;  // uint8 [n, rows]
  at::Tensor err_t;    // float32 [n, rows]: e above (for the GEMM onto later columns)
  at::Tensor loss;     // float64 [n]
};

// InvalidArgument on shapes, dtypes, devices or n > kMaxGptqBlock; Internal on
// a CUDA error; Unimplemented without BAQ_WITH_CUDA.
absl::StatusOr<GptqBlockResult> GptqBlockCuda(const GptqBlock& block);

// Whether this build has the CUDA kernels (BAQ_WITH_CUDA).
bool HasCudaKernels();

}  // namespace baq::worker

#endif  // BAQ_WORKER_CUDA_GPTQ_BLOCK_CUDA_H_
