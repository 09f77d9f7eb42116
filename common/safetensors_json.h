// common/safetensors_json.h
//
// Internal to common/safetensors*.cc: the strict JSON parse both the
// safetensors header (safetensors.cc) and the sharded checkpoint index
// (safetensors_checkpoint.cc) use. nlohmann silently keeps one of two equal
// keys in an object; for these files that is ambiguity (two entries for one
// tensor, two shards for one name), so a duplicate key anywhere is an error.
// nlohmann's lexer rejects ill-formed UTF-8 (RFC 3629) and lone surrogate
// escapes, so every string in the result is valid UTF-8. Exceptions of the
// parser stop here (STYLE R13).
//
// Stateless; thread-safe.
#ifndef BAQ_COMMON_SAFETENSORS_JSON_H_
#define BAQ_COMMON_SAFETENSORS_JSON_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace baq::safetensors_internal {

// InvalidArgument "not valid JSON: <parser message>" or "duplicate key
// <QuoteForError(key)>" (the first duplicate, in document order). Callers
// prefix what was being parsed.
absl::StatusOr<nlohmann::json> ParseJsonRejectingDuplicateKeys(absl::string_view text);

// `s` in double quotes, C-escaped (UTF-8 kept), cut at 128 bytes on a UTF-8
// boundary with "..." appended: names come from untrusted files.
std::string QuoteForError(absl::string_view s);

}  // namespace baq::safetensors_internal

#endif  // BAQ_COMMON_SAFETENSORS_JSON_H_
