#include "common/tokenizer/json_fields.h"

#include "absl/strings/str_cat.h"
#include "common/tokenizer/onig_regex.h"
#include "common/unicode.h"

namespace baq::tokenizer {

const Json* JsonFind(const Json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

std::string JsonType(const Json& j) {
  const Json* t = JsonFind(j, "type");
  return t != nullptr && t->is_string() ? t->get<std::string>() : std::string();
}

absl::Status JsonInvalid(absl::string_view path, absl::string_view key,
                         absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, key.empty() ? "" : ".", key, " ", what));
}

absl::Status JsonUnsupported(absl::string_view kind, absl::string_view type) {
  return absl::UnimplementedError(
      absl::StrCat(kind, " \"", type, "\" is not supported"));
}

absl::StatusOr<bool> JsonBool(const Json& j, const char* key, bool fallback,
                              absl::string_view path) {
  const Json* v = JsonFind(j, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) return JsonInvalid(path, key, "must be a boolean");
  return v->get<bool>();
}

absl::StatusOr<std::string> JsonString(const Json& j, const char* key,
                                       absl::string_view fallback,
                                       absl::string_view path) {
  const Json* v = JsonFind(j, key);
  if (v == nullptr) return std::string(fallback);
  if (!v->is_string()) return JsonInvalid(path, key, "must be a string");
  std::string s = v->get<std::string>();
  if (FindInvalidUtf8(s) != absl::string_view::npos) {
    return JsonInvalid(path, key, "is not valid UTF-8");
  }
  return s;
}

absl::StatusOr<std::string> JsonRequiredString(const Json& j, const char* key,
                                               absl::string_view path) {
  if (JsonFind(j, key) == nullptr) return JsonInvalid(path, key, "is missing");
  return JsonString(j, key, "", path);
}

absl::StatusOr<std::string> JsonChar(const Json& j, const char* key,
                                     absl::string_view path) {
  absl::StatusOr<std::string> s = JsonRequiredString(j, key, path);
  if (!s.ok()) return s.status();
  if (s->empty() ||
      static_cast<size_t>(DecodeUtf8(*s, 0).length) != s->size()) {
    return JsonInvalid(path, key, "must be one character");
  }
  return s;
}

absl::StatusOr<std::string> JsonPattern(const Json& j, const char* key,
                                        absl::string_view path) {
  const Json* p = JsonFind(j, key);
  if (p == nullptr || !p->is_object() || p->size() != 1) {
    return JsonInvalid(path, key,
                       "must be {\"String\": ...} or {\"Regex\": ...}");
  }
  const std::string sub = absl::StrCat(path, ".", key);
  if (JsonFind(*p, "String") != nullptr) {
    absl::StatusOr<std::string> s = JsonString(*p, "String", "", sub);
    if (!s.ok()) return s.status();
    return OnigRegex::Escape(*s);
  }
  if (JsonFind(*p, "Regex") != nullptr) return JsonString(*p, "Regex", "", sub);
  return JsonInvalid(path, key,
                     "must be {\"String\": ...} or {\"Regex\": ...}");
}

}  // namespace baq::tokenizer
