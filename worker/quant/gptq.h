// worker/quant/gptq.h
//
// GPTQ (Frantar et al., arXiv 2210.17323) for one linear layer: quantizes W
// [out, in] column by column on a min-max grid (quant_grid.h), feeding each
// column's rounding error back onto the not-yet-quantized columns through the
// upper Cholesky factor U of (H + damp I)^-1:
//   err_k = (w_k - q_k) / U_kk,   w_j -= err_k * U_kj  (j > k),
//   loss_k = sum_rows err_k^2 / 2.
// Semantics follow IST-DASLab/gptq gptq.py `fasterquant` with all its options
// (percdamp, dead columns, act-order, group size, static groups, sym, lazy
// batches); the deviations are listed in docs/numerics.md.
//
// Device-agnostic: runs where `weight` and `hessian` live (CPU or CUDA). The
// caller's tensors are not modified. Results are bitwise reproducible for a
// given device, dtype and thread count (see docs/numerics.md).
// Stateless; thread-safe.
//
// Example:
//   GptqOptions opt;
//   opt.grid.levels = 8;        // 3 bits
//   opt.group_size = 128;
//   opt.act_order = true;
//   BAQ_ASSIGN_OR_RETURN(GptqResult r, Gptq(weight, hessian, opt));
//   // r.weight: dequantized [out, in]; r.codes, r.scales, r.zeros, r.g_idx.
#ifndef BAQ_WORKER_QUANT_GPTQ_H_
#define BAQ_WORKER_QUANT_GPTQ_H_

#include <ATen/ATen.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "worker/quant/quant_grid.h"

namespace baq::worker {

struct GptqOptions {
  // Levels (2^bits) and symmetric / asymmetric grid.
  GridOptions grid;
  // Damping added to diag(H): percdamp * mean(diag(H)).
  double percdamp = 0.01;
  // If > 0 and the Cholesky factorization fails, retry with percdamp += this
  // while percdamp < 1 (GPTQModel's damp_auto_increment; it uses 0.0025). The
  // reference gptq.py fails instead, as does the default 0.
  double damp_auto_increment = 0;
  // Columns per grid group; -1 = one grid per row over all columns.
  int64_t group_size = -1;
  // Quantize columns in order of decreasing diag(H) ("desc_act").
  bool act_order = false;
  // Precompute all group grids from the (dead-zeroed) original weight before
  // quantizing, over original column order. REQUIRES group_size > 0.
  bool static_groups = false;
  // Lazy-batch block: columns whose error is pushed onward with one GEMM.
  int64_t block_size = 128;
  // float32 (as the reference codes) or float64.
  at::ScalarType compute_dtype = at::kFloat;
  // Compute proxy_loss (one [out, in] x [in, in] float64 GEMM; skip it where
  // only the weights matter).
  bool compute_proxy_loss = true;
};

struct GptqResult {
  at::Tensor weight;       // float32 [out, in]: dequantized, original column order
  at::Tensor codes;        // uint8 [out, in]: weight = scale * (code - zero)
  at::Tensor scales;       // float32 [out, num_groups]
  at::Tensor zeros;        // float32 [out, num_groups], integer-valued
  at::Tensor g_idx;        // int32 [in]: group (column of scales/zeros) of each column
  at::Tensor perm;         // int64 [in]: perm[k] = original column quantized k-th
  at::Tensor column_loss;  // float64 [in], original column order: loss_j above
  double proxy_loss = 0;   // tr((W - Q) H (W - Q)^T) with the undamped H; 0 if skipped
  double percdamp = 0;     // the damping actually used (after any auto-increment)
  double damp = 0;         // percdamp * mean(diag(H)) (dead columns counted as 1)
};

// InvalidArgument on: weight not 2-D / not floating / NaN or Inf; hessian not
// square, not [in, in], NaN or Inf; bad options; H + damp I not positive
// definite (after any auto-increment); results that overflow compute_dtype.
// ResourceExhausted on device OOM.
absl::StatusOr<GptqResult> Gptq(const at::Tensor& weight, const at::Tensor& hessian,
                                const GptqOptions& options);

// tr((W - Q) H (W - Q)^T) in float64 for W, Q [out, in] and H [in, in].
// InvalidArgument on mismatched or non-finite inputs.
absl::StatusOr<double> ProxyLoss(const at::Tensor& weight, const at::Tensor& quantized,
                                 const at::Tensor& hessian);

}  // namespace baq::worker

#endif  // BAQ_WORKER_QUANT_GPTQ_H_
