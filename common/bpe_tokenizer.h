// common/bpe_tokenizer.h
//
// BpeTokenizer: a byte-level BPE tokenizer that reads a Hugging Face
// `tokenizer.json` and encodes exactly as the `tokenizers` library does for
// the models baq serves (GPT-2/OPT-style, Llama 3, Qwen2):
//   1. added/special tokens ("<s>", "<unk>", "<|im_start|>" ...) are matched
//      literally first (leftmost-longest; lstrip/rstrip/single_word honored);
//   2. the text between them is pre-tokenized: ByteLevel(use_regex) with the
//      GPT-2 regex, or Sequence[Split(Llama 3 / Qwen2 regex), ByteLevel];
//      every piece's bytes are mapped to GPT-2's printable byte alphabet;
//   3. each piece is BPE-merged by rank (HF's lowest-rank-leftmost order).
// Encode never adds special tokens (no BOS/EOS); callers prepend bos_id().
// Results per piece are cached within one Encode() call, so one call over a
// whole corpus is fast (WikiText-2 test, 1.3 MB: well under a second).
//
// Not supported (Unimplemented at load, naming the feature): WordPiece,
// Unigram and WordLevel models, SentencePiece-style BPE (Metaspace, no
// ByteLevel pre-tokenizer), other normalizers than NFC, BPE dropout,
// subword prefixes/suffixes, unknown split regexes. With an NFC normalizer,
// Encode() fails with Unimplemented on text NFC would change (it contains
// combining marks); NFC text needs no work.
//
// Immutable after loading; thread-safe. Cheap to move, expensive to copy.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(BpeTokenizer tok, BpeTokenizer::Load(dir +
//   "/tokenizer.json")); BAQ_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
//   tok.Encode("Hello world")); BAQ_ASSIGN_OR_RETURN(std::string text,
//   tok.Decode(ids));  // "Hello world"
#ifndef BAQ_COMMON_BPE_TOKENIZER_H_
#define BAQ_COMMON_BPE_TOKENIZER_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/bpe_pretokenizer.h"

namespace baq {

class BpeTokenizer {
 public:
  // Reads `tokenizer_json_path`, and `tokenizer_config.json` next to it if
  // present (for bos_token/eos_token). NotFound if the file cannot be read;
  // InvalidArgument (naming the file and field) if it is malformed.
  static absl::StatusOr<BpeTokenizer> Load(const std::string& tokenizer_json_path);
  // Parses tokenizer.json text; `source` names it in errors.
  // `tokenizer_config_json`, if not empty, supplies bos_token/eos_token.
  static absl::StatusOr<BpeTokenizer> FromJson(absl::string_view tokenizer_json,
                                               absl::string_view source,
                                               absl::string_view tokenizer_config_json = "");

  // Token ids of `text` (UTF-8; InvalidArgument naming the byte offset if not).
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const;
  // The bytes the ids stand for, special tokens included (so Decode(Encode(x))
  // == x). May end inside a UTF-8 sequence if `ids` cuts one. InvalidArgument
  // on an id that names no token.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const;

  // 1 + the largest id of the vocabulary and the added tokens.
  int32_t vocab_size() const { return static_cast<int32_t>(id_to_token_.size()); }
  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::optional<int32_t> eos_id() const { return eos_id_; }
  std::optional<int32_t> TokenToId(absl::string_view token) const;
  // The token string (byte-level alphabet for vocabulary tokens); empty if
  // `id` names no token.
  absl::string_view IdToToken(int32_t id) const;

 private:
  struct AddedToken {
    std::string content;
    int32_t id = 0;
    bool lstrip = false;
    bool rstrip = false;
    bool single_word = false;
  };
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  // A piece of the input: text to pre-tokenize, or an added token's id.
  struct Segment {
    absl::string_view text;
    int32_t added_id = -1;
  };

  BpeTokenizer() = default;

  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  std::vector<Segment> SplitOnAddedTokens(absl::string_view text) const;
  // Appends the ids of one pre-tokenized piece (raw bytes).
  void EncodePiece(absl::string_view piece, std::vector<int32_t>& out) const;

  // Configuration, from tokenizer.json.
  bool add_prefix_space_ = false;
  std::optional<SplitPattern> pattern_;  // None: ByteLevel(use_regex=false) alone.
  bool nfc_ = false;
  bool ignore_merges_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  std::optional<int32_t> unk_id_;
  std::optional<int32_t> bos_id_;
  std::optional<int32_t> eos_id_;

  // Vocabulary.
  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  std::vector<std::string> id_to_token_;         // Empty string: no token has the id.
  std::vector<bool> is_added_;                   // By id.
  absl::flat_hash_map<uint64_t, Merge> merges_;  // PairKey(left, right) -> merge.
  std::array<int32_t, 256> byte_ids_{};          // Id of each byte's one-char token, -1 if none.
  std::array<std::vector<int32_t>, 256> byte_fallback_ids_;  // "<0xAB>" tokens.
  std::vector<AddedToken> added_;
  std::array<std::vector<int32_t>, 256>
      added_by_first_byte_;  // Indices into added_, longest first.
};

}  // namespace baq

#endif  // BAQ_COMMON_BPE_TOKENIZER_H_
