#include "common/safetensors_json.h"

#include <set>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace baq::safetensors_internal {

using Json = nlohmann::json;

std::string QuoteForError(absl::string_view s) {
  constexpr size_t kMaxShown = 128;
  if (s.size() > kMaxShown) {
    size_t cut = kMaxShown;
    while (cut > 0 && (static_cast<uint8_t>(s[cut]) & 0xC0) == 0x80) --cut;  // UTF-8 boundary
    return absl::StrCat("\"", absl::Utf8SafeCHexEscape(s.substr(0, cut)), "...\"");
  }
  return absl::StrCat("\"", absl::Utf8SafeCHexEscape(s), "\"");
}

absl::StatusOr<Json> ParseJsonRejectingDuplicateKeys(absl::string_view text) {
  // Keys seen in each object still open, innermost last.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  bool has_duplicate = false;
  auto callback = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == Json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (event == Json::parse_event_t::key && !has_duplicate) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) {
        has_duplicate = true;
        duplicate = key;
      }
    }
    return true;
  };
  Json json;
  try {
    json = Json::parse(text.begin(), text.end(), callback);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("not valid JSON: ", absl::CHexEscape(e.what())));
  }
  if (has_duplicate) {
    return absl::InvalidArgumentError(absl::StrCat("duplicate key ", QuoteForError(duplicate)));
  }
  return json;
}

}  // namespace baq::safetensors_internal
