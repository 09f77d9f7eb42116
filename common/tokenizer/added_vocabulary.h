// common/tokenizer/added_vocabulary.h
//
// AddedVocabulary: the "added_tokens" of tokenizer.json (special and normal
// tokens such as "<s>", "<|endoftext|>", Phi-2's runs of spaces), matched in
// the text before the model runs, as Hugging Face `tokenizers` does
// (tokenizer/added_vocabulary.rs):
//   - ids: a token already in the model vocabulary keeps that id; the others
//     get ids from the vocabulary size up, in file order (the "id" fields are
//     not trusted, as in the reference);
//   - tokens with normalized=false are matched in the raw text, those with
//     normalized=true in the normalized text (against their own normalized
//     content), each set leftmost-longest and non-overlapping;
//   - single_word: a match touching a word character (Rust regex \w) on
//     either side is skipped; lstrip/rstrip: the match absorbs the
//     White_Space before/after it.
//
// Immutable after Build(); thread-safe.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(AddedVocabulary added,
//                        AddedVocabulary::Build(specs, model,
//                        normalizer.get()));
//   for (const AddedVocabulary::Segment& s : added.Split(text,
//   /*normalized=*/false)) ...
#ifndef BAQ_COMMON_TOKENIZER_ADDED_VOCABULARY_H_
#define BAQ_COMMON_TOKENIZER_ADDED_VOCABULARY_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tokenizer/bpe_model.h"
#include "common/tokenizer/json_fields.h"
#include "common/tokenizer/normalizers.h"

namespace baq::tokenizer {

struct AddedToken {
  std::string content;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
};

class AddedVocabulary {
 public:
  // A part of a text: [start, end) bytes, an added token's id or -1 for text.
  struct Segment {
    size_t start;
    size_t end;
    int32_t id;
  };

  // Parses the "added_tokens" array (null: none). InvalidArgument naming the
  // entry if malformed.
  static absl::StatusOr<std::vector<AddedToken>> Parse(
      const Json* added_tokens);
  // Assigns ids and builds the two matchers; `normalizer` may be null.
  static absl::StatusOr<AddedVocabulary> Build(
      const std::vector<AddedToken>& tokens, const BpeModel& model,
      const Normalizer* normalizer);

  // Splits `text` on the tokens with normalized == `normalized`
  // (find_matches); text segments may be empty.
  std::vector<Segment> Split(absl::string_view text, bool normalized) const;

  // Content -> id of every added token.
  const absl::flat_hash_map<std::string, int32_t>& ids() const { return ids_; }

 private:
  // One leftmost-longest matcher over a set of patterns.
  struct Matcher {
    struct Pattern {
      std::string text;
      int32_t id;
    };
    std::vector<Pattern> patterns;
    // By first byte: indices into patterns, longest first.
    std::array<std::vector<int32_t>, 256> by_first_byte;
  };
  struct Flags {
    bool single_word, lstrip, rstrip;
  };

  static void AddPattern(Matcher& m, std::string text, int32_t id);

  absl::flat_hash_map<std::string, int32_t> ids_;
  absl::flat_hash_map<int32_t, Flags> flags_;  // By id.
  Matcher raw_;
  Matcher normalized_;
};

}  // namespace baq::tokenizer

#endif  // BAQ_COMMON_TOKENIZER_ADDED_VOCABULARY_H_
