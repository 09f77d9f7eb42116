// worker/quant/quant_grid.h
//
// Min-max quantization grids per output row (or per row and column group), and
// the round-to-nearest (RTN) baseline. The semantics are those of
// IST-DASLab/gptq quant.py (`Quantizer.find_params(W, weight=True)` with
// perchannel=True, and `quantize`), generalized from 2^bits to any level count
// 1..256 (maxq = levels - 1):
//   xmin = min(row_min, 0), xmax = max(row_max, 0)
//   sym:  xmax = max(|xmin|, xmax); xmin = -xmax where xmin < 0
//   xmin == xmax == 0  ->  xmin = -1, xmax = +1
//   scale = (xmax - xmin) / maxq
//   zero  = sym ? (maxq + 1) / 2 (integer division) : round(-xmin / scale)
//   code  = clamp(round(x / scale) + zero, 0, maxq);  value = scale * (code - zero)
// One level (maxq = 0) is defined as "every value is 0": code 0, zero 0 and
// scale = xmax - xmin (finite); quant.py has no such case (BAQ's code reaches
// the same result through scale = diff / 1e-8). Rounding is half-to-even as in
// torch.round. For odd level counts the symmetric zero is the middle level
// maxq / 2 (quant.py's (maxq + 1) / 2 would be a half-integer and give
// half-integer codes; it only ever sees 2^bits levels). See docs/numerics.md.
//
// All functions are device-agnostic (CPU or CUDA tensors) and stateless;
// thread-safe. Grid tensors are in the dtype of the input they were found on.
//
// Example:
//   GridOptions grid{.levels = 8};
//   BAQ_ASSIGN_OR_RETURN(RtnResult r, Rtn(weight, grid, /*group_size=*/128));
#ifndef BAQ_WORKER_QUANT_QUANT_GRID_H_
#define BAQ_WORKER_QUANT_QUANT_GRID_H_

#include <ATen/ATen.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace baq::worker {

inline constexpr int kMaxLevels = 256;

struct GridOptions {
  // Number of quantization levels, 1..256 (2^bits for integer bits).
  int levels = 16;
  // Symmetric grid around 0 (quant.py sym=True); asymmetric with a zero point
  // otherwise.
  bool symmetric = false;
};

// Grid of one column group: one (scale, zero) per output row.
struct QuantGrid {
  at::Tensor scale;  // [rows]
  at::Tensor zero;   // [rows], integer-valued
  int64_t maxq = 0;  // levels - 1
};

// InvalidArgument unless 1 <= levels <= 256.
absl::Status ValidateGridOptions(const GridOptions& options);

// Per-row grid of `x` [rows, cols] (floating point, finite). InvalidArgument
// on bad options, rank or non-finite values.
absl::StatusOr<QuantGrid> FindGrid(const at::Tensor& x, const GridOptions& options);

// The unchecked core of FindGrid, for callers that validated already (GPTQ's
// per-group loop). May throw c10::Error; call inside CallTorch.
QuantGrid FindGridUnchecked(const at::Tensor& x, const GridOptions& options);

// FindGridUnchecked in two steps, for BAQ's many level counts on one row range:
// the per-row range after quant.py's clamps (xmin <= 0 <= xmax, sym, and the
// 0/0 -> -1/+1 fix), then the grid of a level count on it. May throw.
struct RowRange {
  at::Tensor xmin;  // [rows]
  at::Tensor xmax;  // [rows]
};
RowRange FindRowRangeUnchecked(const at::Tensor& x, bool symmetric);
QuantGrid GridFromRangeUnchecked(const RowRange& range, const GridOptions& options);

// Integer codes (in x's dtype) of `x` on the grid; scale and zero broadcast
// against x (e.g. [rows] against a column [rows], or [rows, 1] against
// [rows, cols]). May throw c10::Error.
at::Tensor QuantizeCodes(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero,
                         int64_t maxq);

// scale * (codes - zero), in the dtype of scale. May throw c10::Error.
at::Tensor DequantizeCodes(const at::Tensor& codes, const at::Tensor& scale,
                           const at::Tensor& zero);

// Round-to-nearest baseline (quant.py `quantize` on `find_params(W)`), per row
// or per group of `group_size` consecutive columns (-1: whole row).
struct RtnResult {
  at::Tensor weight;  // float32 [out, in], dequantized
  at::Tensor codes;   // uint8 [out, in]
  at::Tensor scales;  // float32 [out, num_groups]
  at::Tensor zeros;   // float32 [out, num_groups]
  at::Tensor g_idx;   // int32 [in]: group of each column
};

// InvalidArgument on a non-2-D or non-finite weight, bad options or
// group_size (must be -1 or >= 1).
absl::StatusOr<RtnResult> Rtn(const at::Tensor& weight, const GridOptions& options,
                              int64_t group_size = -1);

}  // namespace baq::worker

#endif  // BAQ_WORKER_QUANT_QUANT_GRID_H_
