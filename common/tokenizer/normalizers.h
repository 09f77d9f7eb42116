// common/tokenizer/normalizers.h
//
// The normalizers of tokenizer.json, with the semantics of Hugging Face
// `tokenizers`: Sequence, Prepend, Replace (String or Regex pattern), NFC,
// NFD, NFKC, NFKD, Lowercase, Strip and StripAccents. Any other type is
// refused at load with Unimplemented: `normalizer "Precompiled" is not
// supported`.
//
// A Normalizer is immutable after ParseNormalizer(); thread-safe. The caller
// owns it (unique_ptr).
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(std::unique_ptr<Normalizer> n,
//                        ParseNormalizer(json["normalizer"], "normalizer"));
//   Piece p{"Hello world", /*at_start=*/true};
//   BAQ_RETURN_IF_ERROR(n->Normalize(p));  // Llama-2: "▁Hello▁world"
#ifndef BAQ_COMMON_TOKENIZER_NORMALIZERS_H_
#define BAQ_COMMON_TOKENIZER_NORMALIZERS_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tokenizer/json_fields.h"
#include "common/tokenizer/pieces.h"

namespace baq::tokenizer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Normalizes piece.text (valid UTF-8) in place. Clears piece.at_start if
  // the normalizer deletes the first original character (Strip,
  // StripAccents, Replace by ""), as tokenizers' offsets then no longer start
  // at 0.
  virtual absl::Status Normalize(Piece& piece) const = 0;
};

// Builds the normalizer described by `j` (the "normalizer" object of
// tokenizer.json); `path` names it in errors. InvalidArgument for malformed
// fields, Unimplemented for unsupported types.
absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(
    const Json& j, absl::string_view path);

}  // namespace baq::tokenizer

#endif  // BAQ_COMMON_TOKENIZER_NORMALIZERS_H_
