// common/tokenizer/bpe_model.h
//
// BpeModel: the "model" of a BPE tokenizer.json, encoding one pre-tokenized
// piece as Hugging Face `tokenizers` does (models/bpe/model.rs): one symbol
// per character (with continuing_subword_prefix / end_of_word_suffix),
// characters outside the vocabulary as <0xXX> byte tokens (byte_fallback) or
// the unk token (fused when fuse_unk), then merges applied lowest rank first,
// leftmost among equals (Word::merge_all); with ignore_merges a piece that is
// itself a token is not merged. Merges are read as "a b" strings or [a, b]
// pairs. Dropout is refused (it makes encoding random).
//
// Immutable after Parse(); thread-safe. A Cache belongs to one caller (one
// Encode() call): it remembers the ids of pieces already seen, which is what
// makes encoding a whole corpus fast (tokenizers keeps the same word cache).
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(BpeModel model, BpeModel::Parse(json["model"],
//   "model")); BpeModel::Cache cache;
//   BAQ_RETURN_IF_ERROR(model.Tokenize("Ġworld", cache, ids));
#ifndef BAQ_COMMON_TOKENIZER_BPE_MODEL_H_
#define BAQ_COMMON_TOKENIZER_BPE_MODEL_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tokenizer/json_fields.h"

namespace baq::tokenizer {

class BpeModel {
 public:
  class Cache {
   private:
    friend class BpeModel;
    // Piece -> [offset, offset + count) in ids.
    absl::flat_hash_map<std::string, std::pair<uint32_t, uint32_t>> index;
    std::vector<int32_t> ids;
  };

  // Reads the "model" object; `path` names it in errors. Unimplemented for
  // other model types (Unigram, WordPiece, WordLevel) and dropout;
  // InvalidArgument for malformed vocab or merges (a merge using or making a
  // token outside the vocabulary, as tokenizers refuses it too).
  static absl::StatusOr<BpeModel> Parse(const Json& model,
                                        absl::string_view path);

  // Appends the ids of `piece` (non-empty, valid UTF-8) to `out`.
  // InvalidArgument if a character needs the unk token and that is not in
  // the vocabulary.
  absl::Status Tokenize(absl::string_view piece, Cache& cache,
                        std::vector<int32_t>& out) const;

  std::optional<int32_t> TokenToId(absl::string_view token) const;
  const absl::flat_hash_map<std::string, int32_t>& vocab() const {
    return vocab_;
  }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  BpeModel() = default;
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) |
           static_cast<uint32_t>(b);
  }
  // merge_word + word_to_tokens, uncached.
  absl::Status MergeWord(absl::string_view word,
                         std::vector<int32_t>& out) const;

  absl::flat_hash_map<std::string, int32_t> vocab_;
  absl::flat_hash_map<uint64_t, Merge>
      merges_;  // PairKey(left, right) -> merge.
  std::optional<std::string> unk_token_;
  std::string prefix_;  // continuing_subword_prefix ("" if none).
  std::string suffix_;  // end_of_word_suffix.
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  std::array<int32_t, 256> byte_tokens_{};  // Id of "<0xAB>", -1 if absent.
};

}  // namespace baq::tokenizer

#endif  // BAQ_COMMON_TOKENIZER_BPE_MODEL_H_
