#include "worker/quant/hessian_accumulator.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "common/hessian_format.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/cuda/syrk_cuda.h"
#include "worker/quant/gptq_engine.h"
#include "worker/quant/tensor_checks.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {

HessianAccumulator::HessianAccumulator(int64_t num_columns, at::Device device)
    : num_columns_(num_columns),
      sum_(at::zeros({num_columns, num_columns}, at::TensorOptions(device).dtype(at::kDouble))) {}

absl::Status HessianAccumulator::Add(const at::Tensor& activations) {
  if (!activations.defined() || activations.dim() < 1 || activations.size(-1) != num_columns_) {
    return absl::InvalidArgumentError(absl::StrCat("activations must be [..., ", num_columns_,
                                                   "], got ", ShapeString(activations)));
  }
  if (!at::isFloatingType(activations.scalar_type())) {
    return absl::InvalidArgumentError(absl::StrCat("activations must be floating point, got ",
                                                   c10::toString(activations.scalar_type())));
  }
  if (activations.numel() == 0) return absl::OkStatus();
  return CallTorch("HessianAccumulator::Add", [&]() -> absl::Status {
    const at::Tensor x = activations.reshape({-1, num_columns_}).to(sum_.device(), at::kDouble);
    if (sum_.is_cuda() && HasCudaSyrk()) {
      // Only the upper triangle from here on: a full sum (merged or
      // deserialized) keeps its upper half, which holds all of it.
      if (!upper_only_) {
        sum_.triu_();
        upper_only_ = true;
      }
      const at::Tensor xc = x.contiguous();
      BAQ_RETURN_IF_ERROR(SyrkUpperCuda(xc, sum_));
      unchecked_ = true;
      rows_ += x.size(0);
      return absl::OkStatus();
    }
    BAQ_RETURN_IF_ERROR(CheckFiniteMatrix(x, "activations"));
    // sum += x^T x, unnormalized (gptq.py keeps a running mean; see header),
    // by fixed column blocks on CPU so that a multi-threaded BLAS cannot make
    // the bits depend on the thread count.
    quant_internal::ForEachChunk(
        sum_.is_cpu(), num_columns_, quant_internal::kCpuRowChunk, [&](int64_t j0, int64_t j1) {
          sum_.narrow(1, j0, j1 - j0).addmm_(x.t(), x.narrow(1, j0, j1 - j0));
        });
    rows_ += x.size(0);
    return absl::OkStatus();
  });
}

absl::Status HessianAccumulator::Merge(const HessianAccumulator& other) {
  if (other.num_columns_ != num_columns_) {
    return absl::InvalidArgumentError(absl::StrCat("cannot merge a ", other.num_columns_,
                                                   "-column accumulator into a ", num_columns_,
                                                   "-column one"));
  }
  return CallTorch("HessianAccumulator::Merge", [&] {
    MirrorUpper();
    sum_.add_(other.sum().to(sum_.device()));
    unchecked_ = unchecked_ || other.unchecked_;
    rows_ += other.rows_;
  });
}

void HessianAccumulator::MirrorUpper() const {
  if (!upper_only_) return;
  // The lower triangle is zero: adding the transposed strict upper one fills it.
  sum_.add_(sum_.triu(1).t());
  upper_only_ = false;
}

const at::Tensor& HessianAccumulator::sum() const {
  MirrorUpper();
  return sum_;
}

at::Tensor& HessianAccumulator::mutable_sum() {
  MirrorUpper();
  return sum_;
}

absl::StatusOr<at::Tensor> HessianAccumulator::Finalize(at::ScalarType dtype) const {
  if (rows_ == 0) return absl::FailedPreconditionError("no calibration rows were added");
  if (dtype != at::kFloat && dtype != at::kDouble) {
    return absl::InvalidArgumentError(
        absl::StrCat("Finalize dtype must be float32 or float64, got ", c10::toString(dtype)));
  }
  return CallTorch("HessianAccumulator::Finalize", [&]() -> absl::StatusOr<at::Tensor> {
    if (unchecked_) {
      // Add() skipped its per-batch check on this path: any NaN/Inf input
      // left a non-finite diagonal entry (a sum of squares). One sync.
      if (!at::isfinite(sum_.diagonal()).all().item<bool>()) {
        return absl::InvalidArgumentError(
            "activations had non-finite values (NaN/Inf on the Hessian diagonal)");
      }
      unchecked_ = false;
    }
    // From the upper triangle, mirrored: the sum's two triangles need not be
    // bitwise equal (a GEMM's tiles), a SYRK fills only the upper one, and a
    // Hessian that crossed the wire as an upper triangle must finalize to
    // the same bits.
    at::Tensor h = (sum_ * (2.0 / static_cast<double>(rows_))).to(dtype).triu_();
    return h.add_(h.triu(1).t());
  });
}

std::string HessianAccumulator::Serialize(HessianLayout layout) const {
  const at::Tensor cpu = sum().to(at::kCPU).contiguous();
  const absl::Span<const double> values =
      absl::MakeConstSpan(cpu.data_ptr<double>(), static_cast<size_t>(cpu.numel()));
  return layout == HessianLayout::kUpperTriangle ? EncodeUpperHessianSum(num_columns_, rows_, values)
                                                 : EncodeHessianSum(num_columns_, rows_, values);
}

absl::StatusOr<HessianAccumulator> HessianAccumulator::Deserialize(absl::string_view bytes,
                                                                   at::Device device) {
  // The format and its validation live in common/hessian_format.h; this is
  // the tensor adapter around it.
  BAQ_ASSIGN_OR_RETURN(const HessianSumView wire,
                       Annotate(ParseHessianSum(bytes), "HessianAccumulator::Deserialize"));
  BAQ_RETURN_IF_ERROR(Annotate(CheckHessianSumFinite(wire), "HessianAccumulator::Deserialize"));
  return CallTorch("HessianAccumulator::Deserialize", [&]() -> HessianAccumulator {
    HessianAccumulator acc(wire.columns, device);
    // Decoded on the host: in place on CPU, through one host buffer otherwise.
    at::Tensor host = acc.sum_.is_cpu() ? acc.sum_ : at::empty_like(acc.sum_, at::kCPU);
    wire.CopyTo(absl::MakeSpan(host.data_ptr<double>(), static_cast<size_t>(host.numel())));
    if (!acc.sum_.is_cpu()) acc.sum_.copy_(host);
    acc.rows_ = wire.rows;
    return acc;
  });
}

}  // namespace baq::worker
