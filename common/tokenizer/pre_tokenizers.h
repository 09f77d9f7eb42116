// common/tokenizer/pre_tokenizers.h
//
// The pre-tokenizers of tokenizer.json, with the semantics of Hugging Face
// `tokenizers`: Sequence, ByteLevel (use_regex, add_prefix_space; offsets
// are not tracked, so trim_offsets does not matter), Split (String or Regex
// pattern, every behavior, invert), Digits, Punctuation, Metaspace
// (replacement, prepend_scheme first/always/never, split), Whitespace,
// WhitespaceSplit and CharDelimiterSplit. Every split runs on Oniguruma
// (common/tokenizer/onig_regex.h); a character-class split is a regex
// matching one character, which splits exactly as tokenizers' char
// predicates do. Any other type is refused with Unimplemented:
// `pre_tokenizer "BertPreTokenizer" is not supported`.
//
// A PreTokenizer is immutable after ParsePreTokenizer(); thread-safe. The
// caller owns it.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(std::unique_ptr<PreTokenizer> p,
//                        ParsePreTokenizer(json["pre_tokenizer"],
//                        "pre_tokenizer"));
//   std::vector<Piece> pieces = {{"Hello world", true}};
//   BAQ_RETURN_IF_ERROR(p->PreTokenize(pieces));  // GPT-2: "Hello", "Ġworld"
#ifndef BAQ_COMMON_TOKENIZER_PRE_TOKENIZERS_H_
#define BAQ_COMMON_TOKENIZER_PRE_TOKENIZERS_H_

#include <array>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tokenizer/json_fields.h"
#include "common/tokenizer/pieces.h"

namespace baq::tokenizer {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits (and for ByteLevel/Metaspace, rewrites) every piece in place;
  // never leaves an empty piece.
  virtual absl::Status PreTokenize(std::vector<Piece>& pieces) const = 0;
  // True if the pipeline maps bytes to GPT-2's printable alphabet (a
  // ByteLevel step), which is how Decode must undo it.
  virtual bool IsByteLevel() const { return false; }
};

// Builds the pre-tokenizer described by `j`; `path` names it in errors.
absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(
    const Json& j, absl::string_view path);

// GPT-2's bytes_to_unicode(): byte -> code point of a printable character.
const std::array<char32_t, 256>& ByteToUnicode();
// The inverse: the byte of a code point, or -1 if it is not in the map.
int UnicodeToByte(char32_t code_point);

}  // namespace baq::tokenizer

#endif  // BAQ_COMMON_TOKENIZER_PRE_TOKENIZERS_H_
