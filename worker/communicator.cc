// worker/communicator.cc: AllReduceHessian (the Communicator interface itself
// has no code).
#include "worker/communicator.h"

#include <ATen/ATen.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/quant/hessian_accumulator.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {

absl::Status AllReduceHessian(HessianAccumulator& accumulator, Communicator& communicator,
                              absl::Duration timeout, HessianReduction reduction) {
  at::Tensor& sum = accumulator.mutable_sum();
  const int64_t n = accumulator.num_columns();
  if (!sum.defined() || sum.scalar_type() != at::kDouble || sum.dim() != 2 ||
      sum.size(0) != n || sum.size(1) != n || !sum.is_contiguous()) {
    return absl::InvalidArgumentError(
        absl::StrCat("AllReduceHessian: expected a contiguous float64 [", n, ", ", n,
                     "] Hessian sum"));
  }
  const absl::Time deadline = absl::Now() + timeout;

  // Rows first: a tiny collective that also checks that every rank is there
  // before the large one (and the int64 count is exact, unlike a float sum).
  BAQ_ASSIGN_OR_RETURN(at::Tensor rows, CallTorch("AllReduceHessian rows", [&] {
                         return at::full({1}, accumulator.rows(),
                                         at::TensorOptions().dtype(at::kLong).device(
                                             sum.device()));
                       }));
  BAQ_RETURN_IF_ERROR(communicator.AllReduceSum(rows, deadline - absl::Now()));

  if (reduction == HessianReduction::kBackend || communicator.world_size() == 1) {
    BAQ_RETURN_IF_ERROR(communicator.AllReduceSum(sum, deadline - absl::Now()));
  } else {
    const int world = communicator.world_size();
    BAQ_ASSIGN_OR_RETURN(at::Tensor slots, CallTorch("AllReduceHessian slots", [&] {
                           at::Tensor s = at::zeros({world, n, n}, sum.options());
                           s.select(0, communicator.rank()).copy_(sum);
                           return s;
                         }));
    BAQ_RETURN_IF_ERROR(communicator.AllReduceSum(slots, deadline - absl::Now()));
    BAQ_RETURN_IF_ERROR(CallTorch("AllReduceHessian ordered sum", [&] {
      // In rank order, one addition at a time: the same rounding as merging
      // the partial accumulators in rank order on one device.
      sum.copy_(slots.select(0, 0));
      for (int r = 1; r < world; ++r) sum.add_(slots.select(0, r));
    }));
  }
  BAQ_ASSIGN_OR_RETURN(int64_t total_rows, CallTorch("AllReduceHessian rows item", [&] {
                         return rows.to(at::kCPU).item<int64_t>();
                       }));
  accumulator.set_rows(total_rows);
  return absl::OkStatus();
}

}  // namespace baq::worker
