// worker/quant/tensor_checks.h
//
// Argument checks shared by the quantization entry points: each returns
// InvalidArgument naming the argument and the fault, so a caller can tell
// "weight has NaN" from "hessian is not square". Stateless; thread-safe.
// The finiteness check reads the whole tensor once (one device sync).
//
// Example:
//   BAQ_RETURN_IF_ERROR(CheckFiniteMatrix(weight, "weight"));
#ifndef BAQ_WORKER_QUANT_TENSOR_CHECKS_H_
#define BAQ_WORKER_QUANT_TENSOR_CHECKS_H_

#include <ATen/ATen.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace baq::worker {

// "[3, 4]" for a tensor of that shape; "undefined" for an empty handle.
inline std::string ShapeString(const at::Tensor& t) {
  if (!t.defined()) return "undefined";
  return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]");
}

// OK iff `t` is a defined, 2-D floating-point tensor with only finite values.
inline absl::Status CheckFiniteMatrix(const at::Tensor& t, absl::string_view name) {
  if (!t.defined()) return absl::InvalidArgumentError(absl::StrCat(name, " is undefined"));
  if (t.dim() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be 2-D, got shape ", ShapeString(t)));
  }
  if (!at::isFloatingType(t.scalar_type())) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be floating point, got ", c10::toString(t.scalar_type())));
  }
  if (t.numel() > 0 && !at::isfinite(t).all().item<bool>()) {
    const int64_t nan = at::isnan(t).sum().item<int64_t>();
    const int64_t inf = at::isinf(t).sum().item<int64_t>();
    return absl::InvalidArgumentError(
        absl::StrCat(name, " has non-finite values (", nan, " NaN, ", inf, " Inf)"));
  }
  return absl::OkStatus();
}

}  // namespace baq::worker

#endif  // BAQ_WORKER_QUANT_TENSOR_CHECKS_H_
