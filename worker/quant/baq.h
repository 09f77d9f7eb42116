// worker/quant/baq.h
//
// BAQ (Zhang et al., arXiv 2506.05664) for one linear layer, in the two passes
// of the authors' code (CSU-ModelCompression/BAQ gptq_baq.py):
//   pass 1, BaqMeasure: GPTQ error feedback at a uniform reference width of
//     `reference_levels` (2^R) on BAQ's grid, returning the per-column loss
//     loss_j = sum_rows (w - q)^2 / U_jj^2 / 2 that the bit allocation
//     (common/bit_allocation.h) turns into levels per column;
//   pass 2, BaqQuantize: the same error feedback with L_j levels for column j.
// BAQ's grid (both passes): per row r, from the ORIGINAL weight (dead columns
// zeroed, before any error feedback), xmin_r = min(min_j W_rj, 0),
// xmax_r = max(max_j W_rj, 0) (0/0 -> -1/+1); column j uses
//   scale_rj = (xmax_r - xmin_r) / (L_j - 1),  zero_rj = round(-xmin_r / scale_rj),
// and one level (L_j = 1) quantizes the column to 0. Asymmetric only, no
// groups (the reference code accepts but ignores sym and groupsize).
// Dequantize code c of (r, j) as scale_rj * (c - zero_rj).
//
// The reference code runs blocksize 1; this runs the lazy-batch blocked form
// (gptq_engine.h), which is the same computation up to float rounding
// (baq_test proves it against a column loop). Device-agnostic, deterministic
// per device/dtype/thread count, stateless; thread-safe.
//
// Example:
//   BaqOptions opt;
//   BAQ_ASSIGN_OR_RETURN(BaqResult m, BaqMeasure(w, h, /*reference_levels=*/8, opt));
//   std::vector<int32_t> levels = ...;  // from m.column_loss (bit allocation)
//   BAQ_ASSIGN_OR_RETURN(BaqResult q, BaqQuantize(w, h, levels, opt));
#ifndef BAQ_WORKER_QUANT_BAQ_H_
#define BAQ_WORKER_QUANT_BAQ_H_

#include <ATen/ATen.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace baq::worker {

struct BaqOptions {
  // Damping and its retry policy, as GptqOptions.
  double percdamp = 0.01;
  double damp_auto_increment = 0;
  // Quantize columns in order of decreasing diag(H) (the reference's actorder).
  bool act_order = false;
  // Lazy-batch block size; 1 reproduces the reference's loop structure.
  int64_t block_size = 128;
  at::ScalarType compute_dtype = at::kFloat;
  bool compute_proxy_loss = true;
};

struct BaqResult {
  at::Tensor weight;       // float32 [out, in]: dequantized, original column order
  at::Tensor codes;        // uint8 [out, in]
  at::Tensor levels;       // int32 [in]: L_j
  at::Tensor row_min;      // float32 [out]: xmin_r (<= 0)
  at::Tensor row_max;      // float32 [out]: xmax_r (>= 0)
  at::Tensor perm;         // int64 [in]: perm[k] = original column quantized k-th
  at::Tensor column_loss;  // float64 [in], original column order
  double proxy_loss = 0;   // tr((W - Q) H (W - Q)^T), undamped H; 0 if skipped
  double percdamp = 0;
  double damp = 0;
};

// Pass 1. REQUIRES 2 <= reference_levels <= 256. Errors as Gptq().
absl::StatusOr<BaqResult> BaqMeasure(const at::Tensor& weight, const at::Tensor& hessian,
                                     int reference_levels, const BaqOptions& options);

// Pass 2. `levels` has one entry per input column (original order), each in
// [1, 256]; InvalidArgument otherwise, and as Gptq().
absl::StatusOr<BaqResult> BaqQuantize(const at::Tensor& weight, const at::Tensor& hessian,
                                      absl::Span<const int32_t> levels, const BaqOptions& options);

}  // namespace baq::worker

#endif  // BAQ_WORKER_QUANT_BAQ_H_
