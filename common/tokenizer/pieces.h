// common/tokenizer/pieces.h
//
// The text the tokenizer pipeline passes between its stages, and the
// splitting primitive every splitting stage shares: tokenizers'
// `NormalizedString::split(pattern, behavior)`.
//
// A Piece is one part of the input after normalization and (some)
// pre-tokenization. Offsets into the original text are not kept, except the
// one fact a stage depends on: whether the piece starts at the very beginning
// of the original input (Metaspace's prepend_scheme "first").
//
// Plain data and free functions; thread-safe.
//
// Example:
//   std::vector<Span> spans = ...;       // from OnigRegex matches
//   ApplyBehavior(SplitBehavior::kMergedWithNext, spans);
#ifndef BAQ_COMMON_TOKENIZER_PIECES_H_
#define BAQ_COMMON_TOKENIZER_PIECES_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tokenizer/onig_regex.h"

namespace baq::tokenizer {

struct Piece {
  std::string text;
  // True if the piece begins at byte 0 of the original input (tokenizers'
  // `offsets_original().0 == 0`).
  bool at_start = false;
};

// How a split treats the delimiters (tokenizers' SplitDelimiterBehavior).
enum class SplitBehavior {
  kRemoved,
  kIsolated,
  kMergedWithPrevious,
  kMergedWithNext,
  kContiguous
};
// Parses "Removed", "Isolated", ...; InvalidArgument otherwise.
absl::StatusOr<SplitBehavior> ParseSplitBehavior(absl::string_view name);

// A part of a text: a match of the pattern or the text between two matches.
struct Span {
  size_t start;
  size_t end;
  bool is_match;
};

// The spans of `text` for `matches` (Pattern::find_matches): the text between
// matches as non-matches, every match (empty ones too) as a match; an empty
// text gives one empty non-match. `invert` flips is_match (Invert(pattern)).
std::vector<Span> SpansOfMatches(absl::string_view text,
                                 const std::vector<OnigRegex::Match>& matches,
                                 bool invert);

// Applies `behavior` (NormalizedString::split): merges spans as it says and
// drops the removed ones. Returns the kept spans in order (possibly empty
// ones: the caller drops those, as PreTokenizedString::split does).
std::vector<Span> ApplyBehavior(SplitBehavior behavior,
                                const std::vector<Span>& spans);

// Splits every piece of `pieces` by `regex` with `behavior`, dropping empty
// results; the first part of a piece inherits its at_start.
absl::Status SplitPieces(const OnigRegex& regex, SplitBehavior behavior,
                         bool invert, std::vector<Piece>& pieces);

}  // namespace baq::tokenizer

#endif  // BAQ_COMMON_TOKENIZER_PIECES_H_
