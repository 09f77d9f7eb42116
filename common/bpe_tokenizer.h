// common/bpe_tokenizer.h
//
// BpeTokenizer: reads a Hugging Face `tokenizer.json` with a BPE model and
// encodes text exactly as the `tokenizers` library does (Tokenizer::encode
// with add_special_tokens=False), for the decoder LLM families baq serves
// (GPT-2/OPT, Llama 2/3, Mistral, Phi, GPT-NeoX, OLMo, Falcon, SmolLM...),
// with no per-family code:
//   1. added tokens (common/tokenizer/added_vocabulary.h) split the raw text;
//   2. each remaining part is normalized (common/tokenizer/normalizers.h) and
//      split again on the added tokens that match normalized text;
//   3. the pre-tokenizer (common/tokenizer/pre_tokenizers.h) splits it into
//      pieces;
//   4. the BPE model (common/tokenizer/bpe_model.h) encodes each piece, with
//      a per-call cache of pieces already seen (a WikiText-2 file is one
//      Encode() call).
// The post-processor and decoder of the file are not used: Encode never adds
// special tokens (callers prepend bos_id()). What is supported and refused is
// listed in docs/tokenizers.md; an unsupported component fails Load/FromJson
// with Unimplemented naming it (`normalizer "Precompiled" is not supported`).
//
// Immutable after loading; thread-safe. Move-only.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(BpeTokenizer tok, BpeTokenizer::Load(dir +
//   "/tokenizer.json")); BAQ_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
//   tok.Encode("Hello world"));
#ifndef BAQ_COMMON_BPE_TOKENIZER_H_
#define BAQ_COMMON_BPE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace baq {
namespace tokenizer {
struct Pipeline;  // common/tokenizer/pipeline.h; kept out of this widely
                  // included header.
}  // namespace tokenizer

class BpeTokenizer {
 public:
  // Reads `tokenizer_json_path`, and `tokenizer_config.json` next to it if
  // present (for bos_token/eos_token). NotFound if the file cannot be read;
  // InvalidArgument (naming the file and field) if it is malformed;
  // Unimplemented (naming the component) if it uses something unsupported.
  static absl::StatusOr<BpeTokenizer> Load(
      const std::string& tokenizer_json_path);
  // Parses tokenizer.json text; `source` names it in errors.
  // `tokenizer_config_json`, if not empty, supplies bos_token/eos_token.
  static absl::StatusOr<BpeTokenizer> FromJson(
      absl::string_view tokenizer_json, absl::string_view source,
      absl::string_view tokenizer_config_json = "");

  BpeTokenizer(BpeTokenizer&&) noexcept;
  BpeTokenizer& operator=(BpeTokenizer&&) noexcept;
  ~BpeTokenizer();

  // Token ids of `text` (UTF-8; InvalidArgument naming the byte offset if
  // not). No special tokens are added.
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const;
  // The text of the ids, best effort (not the file's decoder): added tokens
  // verbatim, byte-level tokens back to their bytes, <0xXX> tokens to the
  // byte, other tokens verbatim. InvalidArgument on an id that names no token.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const;

  // 1 + the largest id of the vocabulary and the added tokens.
  int32_t vocab_size() const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  // Added tokens first, then the model vocabulary (as token_to_id).
  std::optional<int32_t> TokenToId(absl::string_view token) const;
  // The token string; empty if `id` names no token.
  absl::string_view IdToToken(int32_t id) const;

 private:
  explicit BpeTokenizer(std::unique_ptr<tokenizer::Pipeline> pipeline);

  std::unique_ptr<tokenizer::Pipeline>
      pipeline_;  // Never null (except moved-from).
};

}  // namespace baq

#endif  // BAQ_COMMON_BPE_TOKENIZER_H_
