// common/tokenizer/json_fields.h
//
// Small typed readers of tokenizer.json fields that turn a wrong type into an
// InvalidArgument naming the field ("pre_tokenizer.pretokenizers[1].split
// must be a boolean"), shared by the parsers of the tokenizer components.
//
// Stateless; thread-safe.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(bool split, JsonBool(j, "split", true, path));
#ifndef BAQ_COMMON_TOKENIZER_JSON_FIELDS_H_
#define BAQ_COMMON_TOKENIZER_JSON_FIELDS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace baq::tokenizer {

using Json = nlohmann::json;

// The value of `key` in object `j`, or nullptr if `j` is not an object or the
// key is absent or null.
const Json* JsonFind(const Json& j, const char* key);
// The "type" string of a component, or "" if there is none.
std::string JsonType(const Json& j);
// InvalidArgument("<path>.<key> <what>").
absl::Status JsonInvalid(absl::string_view path, absl::string_view key,
                         absl::string_view what);
// Unimplemented("<kind> \"<type>\" is not supported").
absl::Status JsonUnsupported(absl::string_view kind, absl::string_view type);

absl::StatusOr<bool> JsonBool(const Json& j, const char* key, bool fallback,
                              absl::string_view path);
absl::StatusOr<std::string> JsonString(const Json& j, const char* key,
                                       absl::string_view fallback,
                                       absl::string_view path);
// A string field that must be present.
absl::StatusOr<std::string> JsonRequiredString(const Json& j, const char* key,
                                               absl::string_view path);
// A field holding exactly one character (Metaspace's replacement,
// CharDelimiterSplit's delimiter), as its UTF-8 text.
absl::StatusOr<std::string> JsonChar(const Json& j, const char* key,
                                     absl::string_view path);
// A {"String": s} or {"Regex": r} pattern, as an Oniguruma pattern (a String
// is escaped, as tokenizers does).
absl::StatusOr<std::string> JsonPattern(const Json& j, const char* key,
                                        absl::string_view path);

}  // namespace baq::tokenizer

#endif  // BAQ_COMMON_TOKENIZER_JSON_FIELDS_H_
