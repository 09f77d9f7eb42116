// worker/quant/gptq_engine.h
//
// Internal: the pieces GPTQ (gptq.h) and BAQ (baq.h) share: argument checks,
// dead-column handling, the act-order permutation, the damped inverse-Hessian
// factor, the lazy-batch error-feedback loop and the proxy loss. Only
// worker/quant/ and its tests include this header.
//
// The loop works on the transposed weight Wt [cols, rows] so that a column of
// W is a contiguous row (cache-friendly on CPU, coalesced on GPU). It is the
// blocked form of IST-DASLab/gptq `fasterquant`: outer blocks of `block_size`
// columns whose error is pushed onto the later columns with one GEMM, and,
// inside a block, sub-blocks of kSubBlock columns that push their error onto
// the rest of the block with one GEMM; within a sub-block each column takes
// the pending updates of its predecessors as one matrix-vector product.
// Mathematically identical to the column-by-column loop (blocksize 1).
//
// Unless noted, functions may throw c10::Error: call them inside CallTorch.
// Stateless; thread-safe.
#ifndef BAQ_WORKER_QUANT_GPTQ_ENGINE_H_
#define BAQ_WORKER_QUANT_GPTQ_ENGINE_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace baq::worker::quant_internal {

// Columns per sub-block inside a lazy batch (see the file comment).
inline constexpr int64_t kSubBlock = 16;

// Rows per chunk on CPU. GPTQ is separable by output row (given U and the
// per-row grids), so CPU layers run as independent row chunks in parallel,
// each single-threaded; the chunking is fixed, so results are bitwise the same
// for any thread count even with a multi-threaded BLAS (MKL), whose rounding
// depends on its thread count. Other devices run all rows as one chunk.
inline constexpr int64_t kCpuRowChunk = 256;

// Calls fn(begin, end) for the chunks [c * chunk, min(n, (c + 1) * chunk)) of
// [0, n): on CPU (`cpu`) in parallel through at::parallel_for, each chunk
// single-threaded (also when there is only one chunk); otherwise fn(0, n).
void ForEachChunk(bool cpu, int64_t n, int64_t chunk,
                  const std::function<void(int64_t, int64_t)>& fn);

// Checks weight [out, in] and hessian [in, in]: defined, 2-D, floating, finite,
// square, matching widths, same device. Does not throw.
absl::Status CheckLayer(const at::Tensor& weight, const at::Tensor& hessian);

// Common numeric options, validated by CheckEngineOptions (does not throw).
struct EngineOptions {
  double percdamp = 0.01;
  double damp_auto_increment = 0;
  int64_t block_size = 128;
  at::ScalarType compute_dtype = at::kFloat;
};
absl::Status CheckEngineOptions(const EngineOptions& options);

// H in the compute dtype with dead columns (diag == 0) given H_ii = 1, as
// gptq.py does; `dead` marks them (bool [cols]).
struct PreparedHessian {
  at::Tensor h;
  at::Tensor dead;
};
PreparedHessian PrepareHessian(const at::Tensor& hessian, at::ScalarType dtype);

// act-order: columns by diag(H) descending; a stable sort, so ties keep their
// original order (torch.argsort in gptq.py is not stable; ties are rare).
at::Tensor ActOrderPermutation(const at::Tensor& h);

// U = upper Cholesky factor of (H + damp I)^-1, damp = percdamp * mean(diag H),
// computed as gptq.py does: cholesky, cholesky_inverse, cholesky(upper).
// When a factorization fails and damp_auto_increment > 0, retries with
// percdamp += damp_auto_increment while percdamp < 1 (GPTQModel's policy, but
// each try damps the undamped H afresh). InvalidArgument if it never succeeds.
// Does not throw.
struct InverseFactor {
  at::Tensor hinv;  // [cols, cols], upper triangular
  double percdamp = 0;
  double damp = 0;
};
absl::StatusOr<InverseFactor> InverseHessianFactor(const at::Tensor& h, double percdamp,
                                                   double damp_auto_increment);

// The grid of one column: per-row scale and zero, and the top code.
struct ColumnGrid {
  at::Tensor scale;  // [rows]
  at::Tensor zero;   // [rows]
  int64_t maxq = 0;
};

// Called once per column k = 0..cols-1 in order, before column k is quantized;
// must leave column k's grid in *grid (it may keep the previous one). `wt` is
// the working weight of the row chunk ([cols, chunk rows]) as gptq.py's outer
// `W` holds it: every column updated with the error of all columns before the
// current lazy batch (block), not yet with the error of earlier columns of the
// same block (this matters only for gptq.py's group grids when
// group_size < block_size).
using GridFn = std::function<void(int64_t k, const at::Tensor& wt, ColumnGrid* grid)>;
// Makes the GridFn of the row chunk [row_begin, row_end) (grids for those rows
// only). Called once per chunk, possibly from several threads at once; each
// GridFn it returns is used by one thread.
using GridFnFactory = std::function<GridFn(int64_t row_begin, int64_t row_end)>;

struct LoopResult {
  at::Tensor qt;       // [cols, rows] dequantized, compute dtype
  at::Tensor codes_t;  // [cols, rows] uint8
  at::Tensor loss;     // [cols] float64: sum_rows (w - q)^2 / U_kk^2 / 2
};

// How RunGptqLoop runs a lazy batch.
enum class GptqKernel {
  // The fused CUDA batch kernel (worker/cuda/gptq_block_cuda.h: one launch
  // per batch, ~15x faster on H100) when the build has CUDA kernels, wt is a
  // float32 CUDA tensor and block_size <= kMaxGptqBlock; LibTorch ops
  // otherwise. The grids of a batch are then all evaluated before its first
  // column is quantized (GridFn's contract allows it).
  kAuto,
  // Always LibTorch ops (the reference path; tests and benchmarks).
  kTorchOps,
};

// Runs the error-feedback loop on wt [cols, rows] (not modified) with the
// upper factor `hinv`, in row chunks (kCpuRowChunk). `sub_block` = 1 gives the
// plain per-column rank-1 update inside each block, as gptq.py writes it.
LoopResult RunGptqLoop(const at::Tensor& wt, const at::Tensor& hinv, int64_t block_size,
                       const GridFnFactory& make_grid_fn, int64_t sub_block = kSubBlock,
                       GptqKernel kernel = GptqKernel::kAuto);

// Whether RunGptqLoop(wt, ..., block_size, ..., kAuto) takes the fused kernel.
bool UsesFusedBatchKernel(const at::Tensor& wt, int64_t block_size);

// tr((W - Q) H (W - Q)^T), accumulated in float64, by row chunks on CPU.
double ProxyLossUnchecked(const at::Tensor& weight, const at::Tensor& quantized,
                          const at::Tensor& hessian);

// Restores the original column order of a [cols(perm), rows] tensor and
// transposes it to [rows, cols]; `inv_perm` undefined means no permutation.
at::Tensor UnpermuteTransposed(const at::Tensor& t, const at::Tensor& inv_perm);

// InvalidArgument naming `what` when a result has non-finite values (the
// weight or Hessian range overflowed the compute dtype). Does not throw.
absl::Status CheckFiniteResult(const at::Tensor& t, const char* what);

}  // namespace baq::worker::quant_internal

#endif  // BAQ_WORKER_QUANT_GPTQ_ENGINE_H_
