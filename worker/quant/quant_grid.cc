#include "worker/quant/quant_grid.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/quant/tensor_checks.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {

absl::Status ValidateGridOptions(const GridOptions& options) {
  if (options.levels < 1 || options.levels > kMaxLevels) {
    return absl::InvalidArgumentError(
        absl::StrCat("levels must be in [1, ", kMaxLevels, "], got ", options.levels));
  }
  return absl::OkStatus();
}

RowRange FindRowRangeUnchecked(const at::Tensor& x, bool symmetric) {
  // quant.py find_params: tmp = zeros; xmin = minimum(x.min(1), tmp); ...
  const at::Tensor zeros = at::zeros({x.size(0)}, x.options());
  at::Tensor xmin = at::minimum(at::amin(x, {1}), zeros);
  at::Tensor xmax = at::maximum(at::amax(x, {1}), zeros);
  if (symmetric) {
    xmax = at::maximum(xmin.abs(), xmax);
    xmin = at::where(xmin < 0, -xmax, xmin);
  }
  const at::Tensor both_zero = (xmin == 0).logical_and_(xmax == 0);
  xmin.masked_fill_(both_zero, -1);
  xmax.masked_fill_(both_zero, 1);
  return RowRange{std::move(xmin), std::move(xmax)};
}

QuantGrid GridFromRangeUnchecked(const RowRange& range, const GridOptions& options) {
  QuantGrid grid;
  grid.maxq = options.levels - 1;
  if (grid.maxq == 0) {
    // One level: every value is 0 (code 0 == zero). A finite scale keeps
    // QuantizeCodes NaN-free; BAQ's code gets here via diff / (0 + 1e-8).
    grid.scale = range.xmax - range.xmin;
    grid.zero = at::zeros_like(grid.scale);
    return grid;
  }
  // quant.py's (xmax - xmin) / self.maxq, as a true IEEE division on every
  // device: the divisor is a 0-dim tensor on x's device, because CUDA
  // LibTorch turns division by a host scalar into multiplication by its
  // reciprocal (one ulp off), and the packed format's loader recomputes this
  // grid on the CPU from the stored row range: both must agree bit for bit
  // (a one-ulp scale moves round(-xmin / scale) across a tie and shifts the
  // whole row by one step).
  grid.scale = (range.xmax - range.xmin)
                   .div_(at::scalar_tensor(static_cast<double>(grid.maxq), range.xmax.options()));
  if (options.symmetric) {
    // quant.py: (maxq + 1) / 2, an integer for its 2^bits levels; for odd
    // level counts we take the integer (maxq + 1) // 2 = maxq / 2, the middle
    // level, where quant.py's half-integer zero would make half-integer codes.
    grid.zero = at::full_like(grid.scale, static_cast<double>((grid.maxq + 1) / 2));
  } else {
    grid.zero = at::round(range.xmin.neg().div_(grid.scale));
  }
  return grid;
}

QuantGrid FindGridUnchecked(const at::Tensor& x, const GridOptions& options) {
  return GridFromRangeUnchecked(FindRowRangeUnchecked(x, options.symmetric), options);
}

absl::StatusOr<QuantGrid> FindGrid(const at::Tensor& x, const GridOptions& options) {
  BAQ_RETURN_IF_ERROR(ValidateGridOptions(options));
  BAQ_RETURN_IF_ERROR(CheckFiniteMatrix(x, "x"));
  return CallTorch("FindGrid", [&] { return FindGridUnchecked(x, options); });
}

at::Tensor QuantizeCodes(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero,
                         int64_t maxq) {
  // quant.py quantize(): clamp(round(x / scale) + zero, 0, maxq).
  return at::round(x / scale).add_(zero).clamp_(0, static_cast<double>(maxq));
}

at::Tensor DequantizeCodes(const at::Tensor& codes, const at::Tensor& scale,
                           const at::Tensor& zero) {
  return scale * (codes.to(scale.scalar_type()) - zero);
}

absl::StatusOr<RtnResult> Rtn(const at::Tensor& weight, const GridOptions& options,
                              int64_t group_size) {
  BAQ_RETURN_IF_ERROR(ValidateGridOptions(options));
  BAQ_RETURN_IF_ERROR(CheckFiniteMatrix(weight, "weight"));
  if (group_size != -1 && group_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("group_size must be -1 or >= 1, got ", group_size));
  }
  return CallTorch("Rtn", [&] {
    const at::Tensor w = weight.to(at::kFloat);
    const int64_t rows = w.size(0);
    const int64_t cols = w.size(1);
    const int64_t group = group_size == -1 ? std::max<int64_t>(cols, 1) : group_size;
    const int64_t num_groups = (cols + group - 1) / group;
    RtnResult r;
    r.weight = at::empty_like(w);
    r.codes = at::empty({rows, cols}, w.options().dtype(at::kByte));
    r.scales = at::empty({rows, num_groups}, w.options());
    r.zeros = at::empty({rows, num_groups}, w.options());
    r.g_idx = at::arange(cols, w.options().dtype(at::kInt)).div_(group, "floor");
    for (int64_t g = 0; g < num_groups; ++g) {
      const int64_t begin = g * group;
      const int64_t width = std::min(group, cols - begin);
      const at::Tensor x = w.narrow(1, begin, width);
      const QuantGrid grid = FindGridUnchecked(x, options);
      const at::Tensor scale = grid.scale.unsqueeze(1);
      const at::Tensor zero = grid.zero.unsqueeze(1);
      const at::Tensor codes = QuantizeCodes(x, scale, zero, grid.maxq);
      r.codes.narrow(1, begin, width).copy_(codes);
      r.weight.narrow(1, begin, width).copy_(DequantizeCodes(codes, scale, zero));
      r.scales.select(1, g).copy_(grid.scale);
      r.zeros.select(1, g).copy_(grid.zero);
    }
    return r;
  });
}

}  // namespace baq::worker
