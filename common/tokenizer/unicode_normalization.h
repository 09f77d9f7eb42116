// common/tokenizer/unicode_normalization.h
//
// Unicode normalization forms (NFC, NFD, NFKC, NFKD; UAX #15: full
// decomposition, canonical ordering, canonical composition with blocking,
// Hangul by algorithm) and per-character lowercasing (Rust's
// char::to_lowercase, as tokenizers' Lowercase normalizer: no final-sigma
// context), on data generated from Python's unicodedata
// (common/unicode_normalization_tables.cc; UnicodeVersion() in
// common/unicode.h names the version).
//
// Stateless; thread-safe.
//
// Example:
//   std::string nfc = NormalizeUnicode("Cafe\u0301", NormalizationForm::kNfc);
//   // "Café"
#ifndef BAQ_COMMON_TOKENIZER_UNICODE_NORMALIZATION_H_
#define BAQ_COMMON_TOKENIZER_UNICODE_NORMALIZATION_H_

#include <string>

#include "absl/strings/string_view.h"

namespace baq::tokenizer {

enum class NormalizationForm { kNfc, kNfd, kNfkc, kNfkd };

// REQUIRES: `text` is valid UTF-8.
std::string NormalizeUnicode(absl::string_view text, NormalizationForm form);

// Every character replaced by its lowercase mapping. REQUIRES: valid UTF-8.
std::string LowercaseUnicode(absl::string_view text);

}  // namespace baq::tokenizer

#endif  // BAQ_COMMON_TOKENIZER_UNICODE_NORMALIZATION_H_
