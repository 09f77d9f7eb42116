// common/status_util.h
//
// Small helpers for adding context to an absl::Status on its way up, so the
// message names the thing at fault ("model.layers.3.mlp.up_proj: ...") without
// logging at every level. Stateless; thread-safe.
#ifndef BAQ_COMMON_STATUS_UTIL_H_
#define BAQ_COMMON_STATUS_UTIL_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace baq {

// Returns `status` with "`context`: " prefixed to its message; OK stays OK.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

template <typename T>
absl::StatusOr<T> Annotate(absl::StatusOr<T> result, absl::string_view context) {
  if (result.ok()) return result;
  return Annotate(result.status(), context);
}

}  // namespace baq

#endif  // BAQ_COMMON_STATUS_UTIL_H_
