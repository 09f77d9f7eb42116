// common/tokenizer/onig_regex.h
//
// OnigRegex: a compiled Oniguruma regular expression (UTF-8, Oniguruma
// syntax: the engine and settings Hugging Face `tokenizers` uses for its
// SysRegex), and the one operation the tokenizer needs from it: the
// successive non-overlapping matches over a text, as the `onig` crate's
// find_iter yields them (an empty match right after the previous match is
// skipped by one character). Unicode properties (\p{L}, \p{White_Space}...)
// and look-around work as in the reference.
//
// Thread-safe after construction: searches allocate their own match region.
// Owns the compiled regex; move-only.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(OnigRegex re, OnigRegex::Compile(R"(\p{N}+)"));
//   std::vector<OnigRegex::Match> matches;
//   BAQ_RETURN_IF_ERROR(re.FindAll("a 12 b 3", matches));  // {2,4}, {7,8}
#ifndef BAQ_COMMON_TOKENIZER_ONIG_REGEX_H_
#define BAQ_COMMON_TOKENIZER_ONIG_REGEX_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace baq::tokenizer {

class OnigRegex {
 public:
  struct Match {
    size_t start;  // Byte offsets into the searched text.
    size_t end;
  };

  // InvalidArgument (with Oniguruma's message) if `pattern` does not compile.
  static absl::StatusOr<OnigRegex> Compile(absl::string_view pattern);
  // A pattern matching `literal` exactly (every ASCII punctuation escaped),
  // as tokenizers' regex::escape of String patterns.
  static std::string Escape(absl::string_view literal);

  OnigRegex(OnigRegex&& other) noexcept;
  OnigRegex& operator=(OnigRegex&& other) noexcept;
  OnigRegex(const OnigRegex&) = delete;
  OnigRegex& operator=(const OnigRegex&) = delete;
  ~OnigRegex();

  // Replaces `matches` with the successive matches in `text`. REQUIRES:
  // `text` is valid UTF-8. ResourceExhausted if the engine gives up
  // (backtracking limit), naming the pattern.
  absl::Status FindAll(absl::string_view text,
                       std::vector<Match>& matches) const;

  const std::string& pattern() const { return pattern_; }

 private:
  OnigRegex(void* regex, std::string pattern)
      : regex_(regex), pattern_(std::move(pattern)) {}

  void* regex_;  // regex_t*; owned. Opaque so <oniguruma.h> stays in the .cc.
  std::string pattern_;
};

}  // namespace baq::tokenizer

#endif  // BAQ_COMMON_TOKENIZER_ONIG_REGEX_H_
