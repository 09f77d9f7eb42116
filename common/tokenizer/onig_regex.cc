#include "common/tokenizer/onig_regex.h"

#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "oniguruma.h"

namespace baq::tokenizer {
namespace {

void InitializeOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
}

std::string ErrorText(int code, OnigErrorInfo* info) {
  OnigUChar buffer[ONIG_MAX_ERROR_MESSAGE_LEN];
  const int n = info != nullptr ? onig_error_code_to_str(buffer, code, info)
                                : onig_error_code_to_str(buffer, code);
  return std::string(reinterpret_cast<const char*>(buffer), n > 0 ? n : 0);
}

const OnigUChar* Bytes(absl::string_view s) {
  return reinterpret_cast<const OnigUChar*>(s.data());
}

// Length of the UTF-8 character starting with byte `b` (1 for stray bytes).
size_t CharLength(unsigned char b) {
  if (b < 0xC0) return 1;
  if (b < 0xE0) return 2;
  if (b < 0xF0) return 3;
  return 4;
}

}  // namespace

absl::StatusOr<OnigRegex> OnigRegex::Compile(absl::string_view pattern) {
  InitializeOnce();
  regex_t* regex = nullptr;
  OnigErrorInfo info;
  // tokenizers builds its SysRegex with onig::Regex::new: no options and the
  // default (Oniguruma) syntax.
  const int rc = onig_new(&regex, Bytes(pattern),
                          Bytes(pattern) + pattern.size(), ONIG_OPTION_NONE,
                          ONIG_ENCODING_UTF8, ONIG_SYNTAX_ONIGURUMA, &info);
  if (rc != ONIG_NORMAL) {
    return absl::InvalidArgumentError(absl::StrCat(
        "regex \"", pattern, "\" does not compile: ", ErrorText(rc, &info)));
  }
  return OnigRegex(regex, std::string(pattern));
}

std::string OnigRegex::Escape(absl::string_view literal) {
  std::string out;
  for (char c : literal) {
    const unsigned char u = static_cast<unsigned char>(c);
    const bool punct = u < 0x80 && u > ' ' && !(u >= '0' && u <= '9') &&
                       !((u | 0x20) >= 'a' && (u | 0x20) <= 'z');
    if (punct) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

OnigRegex::OnigRegex(OnigRegex&& other) noexcept
    : regex_(std::exchange(other.regex_, nullptr)),
      pattern_(std::move(other.pattern_)) {}

OnigRegex& OnigRegex::operator=(OnigRegex&& other) noexcept {
  if (this != &other) {
    if (regex_ != nullptr) onig_free(static_cast<regex_t*>(regex_));
    regex_ = std::exchange(other.regex_, nullptr);
    pattern_ = std::move(other.pattern_);
  }
  return *this;
}

OnigRegex::~OnigRegex() {
  if (regex_ != nullptr) onig_free(static_cast<regex_t*>(regex_));
}

absl::Status OnigRegex::FindAll(absl::string_view text,
                                std::vector<Match>& matches) const {
  matches.clear();
  regex_t* regex = static_cast<regex_t*>(regex_);
  OnigRegion* region = onig_region_new();
  const OnigUChar* begin = Bytes(text);
  const OnigUChar* end = begin + text.size();
  size_t from = 0;
  bool have_last = false;
  size_t last_end = 0;
  absl::Status status;
  // As onig's FindMatches: search from `from` with the whole text as
  // context (look-behind sees what precedes), skip an empty match at the
  // end of the previous one by advancing one character.
  while (from <= text.size()) {
    const int r = onig_search(regex, begin, end, begin + from, end, region,
                              ONIG_OPTION_NONE);
    if (r == ONIG_MISMATCH) break;
    if (r < 0) {
      status = absl::ResourceExhaustedError(absl::StrCat(
          "regex \"", pattern_, "\" failed: ", ErrorText(r, nullptr)));
      break;
    }
    const size_t s = static_cast<size_t>(region->beg[0]);
    const size_t e = static_cast<size_t>(region->end[0]);
    if (s == e && have_last && last_end == e) {
      if (from >= text.size()) break;
      from += CharLength(static_cast<unsigned char>(text[from]));
      continue;
    }
    from = e;
    have_last = true;
    last_end = e;
    matches.push_back({s, e});
    if (s == e && from >= text.size()) break;
  }
  onig_region_free(region, 1);
  return status;
}

}  // namespace baq::tokenizer
