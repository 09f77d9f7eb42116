// common/status_macros.h
//
// BAQ_RETURN_IF_ERROR / BAQ_ASSIGN_OR_RETURN: propagate absl::Status without
// exceptions. Abseil 20220623 (Debian 12) ships no public status macros, so we
// define the two we need, as Abseil's internal status_macros.h and
// tensorstore's TENSORSTORE_RETURN_IF_ERROR do.
//
// Example:
//   absl::StatusOr<Foo> LoadFoo(const std::string& path) {
//     BAQ_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
//     BAQ_RETURN_IF_ERROR(Validate(bytes));
//     return ParseFoo(bytes);
//   }
#ifndef BAQ_COMMON_STATUS_MACROS_H_
#define BAQ_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define BAQ_STATUS_MACROS_CONCAT_INNER_(x, y) x##y
#define BAQ_STATUS_MACROS_CONCAT_(x, y) BAQ_STATUS_MACROS_CONCAT_INNER_(x, y)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing
// function if it is not OK.
#define BAQ_RETURN_IF_ERROR(expr)                                  \
  do {                                                             \
    ::absl::Status baq_status_macro_status_ = (expr);              \
    if (!baq_status_macro_status_.ok()) return baq_status_macro_status_; \
  } while (0)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status,
// otherwise moves the value into `lhs` (a declaration or an lvalue).
#define BAQ_ASSIGN_OR_RETURN(lhs, rexpr)                                      \
  BAQ_ASSIGN_OR_RETURN_IMPL_(                                                 \
      BAQ_STATUS_MACROS_CONCAT_(baq_statusor_, __LINE__), lhs, rexpr)

#define BAQ_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                               \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // BAQ_COMMON_STATUS_MACROS_H_
