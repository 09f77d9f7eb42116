#include "worker/quant/gptq_engine.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/cuda/gptq_block_cuda.h"
#include "worker/quant/quant_grid.h"
#include "worker/quant/tensor_checks.h"
#include "worker/torch/torch_call.h"

namespace baq::worker::quant_internal {

absl::Status CheckLayer(const at::Tensor& weight, const at::Tensor& hessian) {
  BAQ_RETURN_IF_ERROR(CheckFiniteMatrix(weight, "weight"));
  BAQ_RETURN_IF_ERROR(CheckFiniteMatrix(hessian, "hessian"));
  if (hessian.size(0) != hessian.size(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("hessian must be square, got shape ", ShapeString(hessian)));
  }
  if (hessian.size(0) != weight.size(1)) {
    return absl::InvalidArgumentError(absl::StrCat("hessian ", ShapeString(hessian),
                                                   " does not match weight ", ShapeString(weight),
                                                   ": expected [in, in] with in = weight.size(1)"));
  }
  if (weight.size(0) == 0 || weight.size(1) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight must be non-empty, got shape ", ShapeString(weight)));
  }
  if (weight.device() != hessian.device()) {
    return absl::InvalidArgumentError(absl::StrCat("weight is on ", weight.device().str(),
                                                   " but hessian on ", hessian.device().str()));
  }
  return absl::OkStatus();
}

absl::Status CheckEngineOptions(const EngineOptions& options) {
  if (!std::isfinite(options.percdamp) || options.percdamp < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("percdamp must be finite and >= 0, got ", options.percdamp));
  }
  if (!std::isfinite(options.damp_auto_increment) || options.damp_auto_increment < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "damp_auto_increment must be finite and >= 0, got ", options.damp_auto_increment));
  }
  if (options.block_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("block_size must be >= 1, got ", options.block_size));
  }
  if (options.compute_dtype != at::kFloat && options.compute_dtype != at::kDouble) {
    return absl::InvalidArgumentError(absl::StrCat("compute_dtype must be float32 or float64, got ",
                                                   c10::toString(options.compute_dtype)));
  }
  return absl::OkStatus();
}

PreparedHessian PrepareHessian(const at::Tensor& hessian, at::ScalarType dtype) {
  PreparedHessian p;
  // Always a copy: the caller's H is never modified.
  p.h = hessian.to(dtype, /*non_blocking=*/false, /*copy=*/true);
  p.dead = p.h.diagonal() == 0;
  // gptq.py: H[dead, dead] = 1 (W[:, dead] = 0 is the caller's job).
  p.h.diagonal().masked_fill_(p.dead, 1);
  return p;
}

at::Tensor ActOrderPermutation(const at::Tensor& h) {
  return std::get<1>(at::sort(h.diagonal(), /*stable=*/true, /*dim=*/0, /*descending=*/true));
}

namespace {

// InvalidArgument for a failed factorization; the retry loop keys on it.
absl::Status NotPositiveDefinite(absl::string_view what, int64_t minor, double percdamp,
                                 double damp) {
  return absl::InvalidArgumentError(absl::StrCat(
      what, " is not positive definite (leading minor of order ", minor,
      ") with percdamp=", percdamp, " (damp=", damp,
      "); the Hessian is not a valid PSD matrix or is too ill-conditioned: raise percdamp, "
      "add calibration samples, or set damp_auto_increment (GPTQModel uses 0.0025)"));
}

absl::StatusOr<InverseFactor> TryInverseFactor(const at::Tensor& h, double percdamp) {
  return CallTorch("inverse Hessian factor", [&]() -> absl::StatusOr<InverseFactor> {
    InverseFactor f;
    f.percdamp = percdamp;
    f.damp = percdamp * h.diagonal().mean().item<double>();
    at::Tensor hd = h.clone();
    hd.diagonal().add_(f.damp);
    at::Tensor l, info;
    std::tie(l, info) = at::linalg_cholesky_ex(hd);
    if (const int64_t minor = info.item<int64_t>(); minor != 0) {
      return NotPositiveDefinite("H + damp*I", minor, percdamp, f.damp);
    }
    const at::Tensor inv = at::cholesky_inverse(l);
    std::tie(f.hinv, info) = at::linalg_cholesky_ex(inv, /*upper=*/true);
    if (const int64_t minor = info.item<int64_t>(); minor != 0) {
      return NotPositiveDefinite("(H + damp*I)^-1", minor, percdamp, f.damp);
    }
    return f;
  });
}

}  // namespace

void ForEachChunk(bool cpu, int64_t n, int64_t chunk,
                  const std::function<void(int64_t, int64_t)>& fn) {
  if (!cpu) {
    fn(0, n);
    return;
  }
  const int64_t chunks = (n + chunk - 1) / chunk;
  // At least two tasks, so that even a single chunk runs inside a parallel
  // region (where BLAS/LAPACK and ATen ops use one thread) whenever more than
  // one thread is configured; with one thread everything is single-threaded.
  at::parallel_for(0, std::max<int64_t>(chunks, 2), 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < std::min(end, chunks); ++c) {
      fn(c * chunk, std::min(n, (c + 1) * chunk));
    }
  });
}

absl::StatusOr<InverseFactor> InverseHessianFactor(const at::Tensor& h, double percdamp,
                                                   double damp_auto_increment) {
  for (;;) {
    absl::StatusOr<InverseFactor> f = TryInverseFactor(h, percdamp);
    if (f.ok() || f.status().code() != absl::StatusCode::kInvalidArgument ||
        damp_auto_increment <= 0 || percdamp + damp_auto_increment >= 1) {
      return f;
    }
    percdamp += damp_auto_increment;
  }
}

namespace {

// One lazy batch [i1, i1 + b) as one launch of the fused CUDA kernel: the
// batch's grids first (from wt as of the batch start), then the kernel; the
// caller applies err_t to the later columns.
at::Tensor RunFusedBatch(const at::Tensor& wt, const at::Tensor& h1, int64_t i1, int64_t b,
                         const GridFn& grid_fn, ColumnGrid& grid, LoopResult& r) {
  const int64_t rows = wt.size(1);
  std::vector<at::Tensor> scales, zeros;
  std::vector<int32_t> maxq;
  for (int64_t i = 0; i < b; ++i) {
    grid_fn(i1 + i, wt, &grid);
    scales.push_back(grid.scale.expand({rows}));
    zeros.push_back(grid.zero.expand({rows}));
    maxq.push_back(static_cast<int32_t>(grid.maxq));
  }
  GptqBlock block{wt.narrow(0, i1, b), h1, at::stack(scales).to(at::kFloat).contiguous(),
                  at::stack(zeros).to(at::kFloat).contiguous(),
                  at::tensor(maxq, at::kInt).to(wt.device())};
  absl::StatusOr<GptqBlockResult> out = GptqBlockCuda(block);
  TORCH_CHECK(out.ok(), "fused GPTQ batch at column ", i1, ": ", out.status().ToString());
  r.qt.narrow(0, i1, b).copy_(out->qt);
  r.codes_t.narrow(0, i1, b).copy_(out->codes_t);
  // The kernel's own loss sums warps with float64 atomics, in no fixed order;
  // the sum here is deterministic (the LibTorch path's), so repeated runs,
  // and the BAQ allocation built on these losses, give the same bits.
  r.loss.narrow(0, i1, b).copy_(out->err_t.to(at::kDouble).square_().sum(1).mul_(0.5));
  return out->err_t;
}

// The loop on one row chunk: wt [cols, chunk rows] is the chunk's working copy.
LoopResult RunChunk(at::Tensor wt, const at::Tensor& hinv, int64_t block_size,
                    const GridFn& grid_fn, int64_t sub_block, bool fused) {
  const int64_t cols = wt.size(0);
  const int64_t rows = wt.size(1);
  LoopResult r;
  r.qt = at::empty_like(wt);
  r.codes_t = at::empty({cols, rows}, wt.options().dtype(at::kByte));
  r.loss = at::empty({cols}, wt.options().dtype(at::kDouble));
  ColumnGrid grid;
  for (int64_t i1 = 0; i1 < cols; i1 += block_size) {
    const int64_t b = std::min(block_size, cols - i1);
    if (fused) {
      const at::Tensor err_t =
          RunFusedBatch(wt, hinv.narrow(0, i1, b).narrow(1, i1, b), i1, b, grid_fn, grid, r);
      if (i1 + b < cols) {
        wt.narrow(0, i1 + b, cols - i1 - b)
            .addmm_(hinv.narrow(0, i1, b).narrow(1, i1 + b, cols - i1 - b).t(), err_t,
                    /*beta=*/1, /*alpha=*/-1);
      }
      continue;
    }
    // The block's working copy (gptq.py W1); `wt` keeps the block-start state
    // that GridFn documents.
    at::Tensor w1 = wt.narrow(0, i1, b).clone();
    at::Tensor err1 = at::empty_like(w1);
    const at::Tensor h1 = hinv.narrow(0, i1, b).narrow(1, i1, b);
    const at::Tensor d1 = h1.diagonal();
    for (int64_t s1 = 0; s1 < b; s1 += sub_block) {
      const int64_t s = std::min(sub_block, b - s1);
      for (int64_t i = s1; i < s1 + s; ++i) {
        const int64_t k = i1 + i;
        grid_fn(k, wt, &grid);
        at::Tensor w = w1[i];
        if (i > s1) {
          // Pending updates from columns s1..i-1 of this sub-block:
          // w -= sum_j err_j * U[j, i].
          w = at::addmv(w, err1.narrow(0, s1, i - s1).t(), h1.select(1, i).narrow(0, s1, i - s1),
                        /*beta=*/1, /*alpha=*/-1);
        }
        const at::Tensor codes = QuantizeCodes(w, grid.scale, grid.zero, grid.maxq);
        const at::Tensor q = grid.scale * (codes - grid.zero);
        at::Tensor err = err1[i];
        at::div_out(err, w - q, d1[i]);
        r.qt[k].copy_(q);
        r.codes_t[k].copy_(codes);
      }
      if (s1 + s < b) {
        // Push the sub-block's error onto the rest of the block.
        w1.narrow(0, s1 + s, b - s1 - s)
            .addmm_(h1.narrow(0, s1, s).narrow(1, s1 + s, b - s1 - s).t(), err1.narrow(0, s1, s),
                    /*beta=*/1, /*alpha=*/-1);
      }
    }
    if (i1 + b < cols) {
      // gptq.py: W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:]).
      wt.narrow(0, i1 + b, cols - i1 - b)
          .addmm_(hinv.narrow(0, i1, b).narrow(1, i1 + b, cols - i1 - b).t(), err1,
                  /*beta=*/1, /*alpha=*/-1);
    }
    r.loss.narrow(0, i1, b).copy_(err1.to(at::kDouble).square_().sum(1).mul_(0.5));
  }
  return r;
}

}  // namespace

bool UsesFusedBatchKernel(const at::Tensor& wt, int64_t block_size) {
  return HasCudaKernels() && wt.is_cuda() && wt.scalar_type() == at::kFloat &&
         block_size <= kMaxGptqBlock;
}

LoopResult RunGptqLoop(const at::Tensor& wt, const at::Tensor& hinv, int64_t block_size,
                       const GridFnFactory& make_grid_fn, int64_t sub_block, GptqKernel kernel) {
  const bool fused = kernel == GptqKernel::kAuto && UsesFusedBatchKernel(wt, block_size) &&
                     hinv.scalar_type() == at::kFloat;
  const int64_t cols = wt.size(0);
  const int64_t rows = wt.size(1);
  const int64_t chunk = wt.is_cpu() ? kCpuRowChunk : rows;
  LoopResult r;
  r.qt = at::empty_like(wt);
  r.codes_t = at::empty({cols, rows}, wt.options().dtype(at::kByte));
  std::vector<at::Tensor> losses((rows + chunk - 1) / chunk);
  ForEachChunk(wt.is_cpu(), rows, chunk, [&](int64_t r0, int64_t r1) {
    LoopResult c = RunChunk(wt.narrow(1, r0, r1 - r0).contiguous(), hinv, block_size,
                            make_grid_fn(r0, r1), sub_block, fused);
    r.qt.narrow(1, r0, r1 - r0).copy_(c.qt);
    r.codes_t.narrow(1, r0, r1 - r0).copy_(c.codes_t);
    losses[r0 / chunk] = std::move(c.loss);
  });
  // Fixed-order sum over chunks.
  r.loss = losses[0];
  for (size_t c = 1; c < losses.size(); ++c) r.loss.add_(losses[c]);
  return r;
}

double ProxyLossUnchecked(const at::Tensor& weight, const at::Tensor& quantized,
                          const at::Tensor& hessian) {
  const at::Tensor h = hessian.to(at::kDouble);
  const int64_t rows = weight.size(0);
  const int64_t chunk = weight.is_cpu() ? kCpuRowChunk : rows;
  std::vector<double> partial((rows + chunk - 1) / chunk);
  ForEachChunk(weight.is_cpu(), rows, chunk, [&](int64_t r0, int64_t r1) {
    const at::Tensor e = weight.narrow(0, r0, r1 - r0).to(at::kDouble) -
                         quantized.narrow(0, r0, r1 - r0).to(at::kDouble);
    // Row sums, then their sum: each reduction runs in an order fixed by the shape (a
    // whole-tensor sum() splits by the intra-op thread count), so the loss has the same bits
    // for any thread count and any (single-threaded) BLAS.
    partial[r0 / chunk] = (e.mm(h) * e).sum(1).sum().item<double>();
  });
  double sum = 0;
  for (double p : partial) sum += p;
  return sum;
}

at::Tensor UnpermuteTransposed(const at::Tensor& t, const at::Tensor& inv_perm) {
  const at::Tensor ordered = inv_perm.defined() ? t.index_select(0, inv_perm) : t;
  return ordered.t().contiguous();
}

absl::Status CheckFiniteResult(const at::Tensor& t, const char* what) {
  absl::StatusOr<bool> finite =
      CallTorch("CheckFiniteResult", [&] { return at::isfinite(t).all().item<bool>(); });
  if (!finite.ok()) return finite.status();
  if (!*finite) {
    return absl::InvalidArgumentError(
        absl::StrCat(what,
                     " has non-finite values: the weight or Hessian range overflows the compute "
                     "dtype; retry with compute_dtype = float64"));
  }
  return absl::OkStatus();
}

}  // namespace baq::worker::quant_internal
