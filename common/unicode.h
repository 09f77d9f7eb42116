// common/unicode.h
//
// The little Unicode the tokenizer needs, without ICU: strict UTF-8
// validation, decoding and encoding, and the character classes of the
// pre-tokenizer regexes of Hugging Face `tokenizers` (Oniguruma semantics):
// \p{L}, \p{N} and \s. Classes come from tables generated out of Python's
// unicodedata by tools/gen_unicode_tables.py (UnicodeVersion() says which).
//
// Stateless; thread-safe.
//
// Example:
//   if (FindInvalidUtf8(text) != absl::string_view::npos) return error;
//   for (size_t pos = 0; pos < text.size();) {
//     const Utf8Char c = DecodeUtf8(text, pos);
//     if (IsUnicodeLetter(c.code_point)) ...
//     pos += c.length;
//   }
#ifndef BAQ_COMMON_UNICODE_H_
#define BAQ_COMMON_UNICODE_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace baq {

struct Utf8Char {
  char32_t code_point = 0;
  int length = 0;  // Bytes, 1..4.
};

// Offset of the first byte that does not start a well-formed UTF-8 sequence
// (overlong forms, surrogates and code points above U+10FFFF are ill-formed,
// as in Python's strict decoder), or absl::string_view::npos if none.
size_t FindInvalidUtf8(absl::string_view text);

// Decodes the character starting at text[pos]. REQUIRES: `text` is valid
// UTF-8 and pos < text.size() is at a character boundary.
Utf8Char DecodeUtf8(absl::string_view text, size_t pos);

// Appends the UTF-8 encoding of `code_point` (REQUIRES: <= U+10FFFF).
void AppendUtf8(char32_t code_point, std::string& out);

// General category L (Lu, Ll, Lt, Lm, Lo).
bool IsUnicodeLetter(char32_t code_point);
// General category N (Nd, Nl, No).
bool IsUnicodeNumber(char32_t code_point);
// Oniguruma's Unicode \s: U+0009..U+000D, U+0085 and categories Zs, Zl, Zp.
bool IsUnicodeWhitespace(char32_t code_point);
// True if a text containing `code_point` may change under NFC normalization
// (combining marks, characters that compose with a predecessor, singletons).
// Text without any such character is already NFC.
bool MayChangeUnderNfc(char32_t code_point);

// The Unicode version of the tables, e.g. "14.0.0".
absl::string_view UnicodeVersion();

}  // namespace baq

#endif  // BAQ_COMMON_UNICODE_H_
