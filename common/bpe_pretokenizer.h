// common/bpe_pretokenizer.h
//
// The pre-tokenization step of byte-level BPE tokenizers (GPT-2, OPT,
// Llama 3, Qwen2), without a regex engine: the few split regexes these
// tokenizers use are recognized by their exact text and implemented by hand
// over UTF-8 code points, with Oniguruma's semantics for \p{L}, \p{N} and \s
// (common/unicode.h). Also the ByteLevel byte <-> printable-character map of
// GPT-2's `bytes_to_unicode()`.
//
// Stateless; thread-safe.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(SplitPattern p, SplitPatternFromRegex(regex_text));
//   std::vector<absl::string_view> pieces;
//   SplitByPattern(p, text, pieces);  // Concatenated, `pieces` == text.
#ifndef BAQ_COMMON_BPE_PRETOKENIZER_H_
#define BAQ_COMMON_BPE_PRETOKENIZER_H_

#include <array>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace baq {

enum class SplitPattern {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  // (GPT-2; HF ByteLevel with use_regex=true).
  kGpt2,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
  //  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+   (Llama 3).
  kLlama3,
  // As kLlama3 but \p{N} (single digits) (Qwen2).
  kQwen2,
};

// The regex text of `pattern`, exactly as tokenizer.json spells it.
absl::string_view SplitPatternRegex(SplitPattern pattern);

// Recognizes a Split pre-tokenizer regex; Unimplemented (quoting it) if it is
// none of the supported patterns.
absl::StatusOr<SplitPattern> SplitPatternFromRegex(absl::string_view regex);

// Appends to `pieces` the successive matches of `pattern` in `text`; every
// pattern matches every character, so the pieces concatenate to `text`.
// REQUIRES: `text` is valid UTF-8.
void SplitByPattern(SplitPattern pattern, absl::string_view text,
                    std::vector<absl::string_view>& pieces);

// GPT-2's bytes_to_unicode(): byte -> code point of a printable character.
const std::array<char32_t, 256>& ByteToUnicode();
// The inverse: the byte of a code point, or -1 if it is not in the map.
int UnicodeToByte(char32_t code_point);

}  // namespace baq

#endif  // BAQ_COMMON_BPE_PRETOKENIZER_H_
