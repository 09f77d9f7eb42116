#include "common/tokenizer/onig_regex.h"

#include <dlfcn.h>

#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "oniguruma.h"

namespace baq::tokenizer {
namespace {

// Oniguruma, loaded with dlopen(RTLD_LOCAL) instead of linked: libonig.so also exports the
// POSIX names regcomp/regexec/regfree/regerror, and as a direct dependency it would come before
// libc in the process's symbol lookup and replace glibc's POSIX regex for every library in the
// process (GoogleTest's MatchesRegex failed that way; a caller passing glibc's regex_t to
// Oniguruma's regcomp would corrupt memory). RTLD_LOCAL keeps its symbols out of the global
// scope; only the functions below are looked up. oniguruma.h is used for types and constants.
struct OnigLibrary {
  decltype(&onig_initialize) initialize = nullptr;
  decltype(&onig_new) new_regex = nullptr;
  decltype(&onig_free) free_regex = nullptr;
  decltype(&onig_search) search = nullptr;
  decltype(&onig_region_new) region_new = nullptr;
  decltype(&onig_region_free) region_free = nullptr;
  decltype(&onig_error_code_to_str) error_code_to_str = nullptr;
  OnigEncoding utf8 = nullptr;
  OnigSyntaxType* syntax = nullptr;
  std::string error;  // Why loading failed; empty when every symbol was found.
};

template <typename T>
bool Resolve(void* handle, const char* name, T& out, std::string& error) {
  out = reinterpret_cast<T>(dlsym(handle, name));
  if (out == nullptr && error.empty()) error = absl::StrCat("symbol ", name, " not found");
  return out != nullptr;
}

const OnigLibrary& Library() {
  static const OnigLibrary* const library = [] {
    auto* lib = new OnigLibrary;
    void* handle = nullptr;
    for (const char* name : {"libonig.so.5", "libonig.so"}) {
      handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (handle != nullptr) break;
    }
    if (handle == nullptr) {
      const char* why = dlerror();
      lib->error = absl::StrCat("cannot load libonig.so.5 (Oniguruma; Debian/Ubuntu package "
                                "libonig5): ", why != nullptr ? why : "not found");
      return lib;
    }
    Resolve(handle, "onig_initialize", lib->initialize, lib->error);
    Resolve(handle, "onig_new", lib->new_regex, lib->error);
    Resolve(handle, "onig_free", lib->free_regex, lib->error);
    Resolve(handle, "onig_search", lib->search, lib->error);
    Resolve(handle, "onig_region_new", lib->region_new, lib->error);
    Resolve(handle, "onig_region_free", lib->region_free, lib->error);
    Resolve(handle, "onig_error_code_to_str", lib->error_code_to_str, lib->error);
    Resolve(handle, "OnigEncodingUTF8", lib->utf8, lib->error);
    Resolve(handle, "OnigSyntaxOniguruma", lib->syntax, lib->error);
    if (lib->error.empty()) {
      OnigEncoding encodings[] = {lib->utf8};
      lib->initialize(encodings, 1);
    } else {
      lib->error = absl::StrCat("libonig.so.5 (Oniguruma): ", lib->error);
    }
    return lib;
  }();
  return *library;
}

std::string ErrorText(int code, OnigErrorInfo* info) {
  OnigUChar buffer[ONIG_MAX_ERROR_MESSAGE_LEN];
  const OnigLibrary& lib = Library();
  const int n = info != nullptr ? lib.error_code_to_str(buffer, code, info)
                                : lib.error_code_to_str(buffer, code);
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
  const OnigLibrary& lib = Library();
  if (!lib.error.empty()) return absl::FailedPreconditionError(lib.error);
  regex_t* regex = nullptr;
  OnigErrorInfo info;
  // tokenizers builds its SysRegex with onig::Regex::new: no options and the
  // default (Oniguruma) syntax.
  const int rc = lib.new_regex(&regex, Bytes(pattern), Bytes(pattern) + pattern.size(),
                               ONIG_OPTION_NONE, lib.utf8, lib.syntax, &info);
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
    if (regex_ != nullptr) Library().free_regex(static_cast<regex_t*>(regex_));
    regex_ = std::exchange(other.regex_, nullptr);
    pattern_ = std::move(other.pattern_);
  }
  return *this;
}

OnigRegex::~OnigRegex() {
  if (regex_ != nullptr) Library().free_regex(static_cast<regex_t*>(regex_));
}

absl::Status OnigRegex::FindAll(absl::string_view text,
                                std::vector<Match>& matches) const {
  matches.clear();
  regex_t* regex = static_cast<regex_t*>(regex_);
  OnigRegion* region = Library().region_new();
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
    const int r = Library().search(regex, begin, end, begin + from, end, region,
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
  Library().region_free(region, 1);
  return status;
}

}  // namespace baq::tokenizer
