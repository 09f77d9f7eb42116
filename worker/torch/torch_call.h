// worker/torch/torch_call.h
//
// CallTorch: the exception boundary between LibTorch (which throws c10::Error)
// and our Status-based code (STYLE R13). Every numeric entry point of worker/
// wraps its LibTorch work in CallTorch so nothing above it sees exceptions.
// Stateless; thread-safe.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(at::Tensor l, CallTorch("cholesky", [&] {
//     return at::linalg_cholesky(h);
//   }));
#ifndef BAQ_WORKER_TORCH_TORCH_CALL_H_
#define BAQ_WORKER_TORCH_TORCH_CALL_H_

#include <c10/util/Exception.h>

#include <exception>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace baq::worker {

namespace torch_call_internal {
inline absl::Status FromException(absl::string_view what) {
  try {
    throw;
  } catch (const c10::OutOfMemoryError& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, ": out of memory: ", e.what_without_backtrace()));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what_without_backtrace()));
  } catch (const std::bad_alloc& e) {
    return absl::ResourceExhaustedError(absl::StrCat(what, ": out of memory"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what()));
  }
}
template <typename T>
struct IsStatusOr : std::false_type {};
template <typename T>
struct IsStatusOr<absl::StatusOr<T>> : std::true_type {};
}  // namespace torch_call_internal

// Runs `fn` and converts LibTorch exceptions into a Status. `fn` may return
// void, a value, an absl::Status or an absl::StatusOr<T>.
template <typename Fn>
auto CallTorch(absl::string_view what, Fn&& fn) {
  using R = std::invoke_result_t<Fn>;
  if constexpr (std::is_void_v<R>) {
    try {
      fn();
      return absl::OkStatus();
    } catch (...) {
      return torch_call_internal::FromException(what);
    }
  } else if constexpr (std::is_same_v<R, absl::Status>) {
    try {
      return fn();
    } catch (...) {
      return torch_call_internal::FromException(what);
    }
  } else {
    using Out = std::conditional_t<torch_call_internal::IsStatusOr<R>::value,
                                   R, absl::StatusOr<R>>;
    try {
      return Out(fn());
    } catch (...) {
      return Out(torch_call_internal::FromException(what));
    }
  }
}

}  // namespace baq::worker

#endif  // BAQ_WORKER_TORCH_TORCH_CALL_H_
