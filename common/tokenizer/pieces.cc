#include "common/tokenizer/pieces.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace baq::tokenizer {

absl::StatusOr<SplitBehavior> ParseSplitBehavior(absl::string_view name) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown split behavior \"", name, "\""));
}

std::vector<Span> SpansOfMatches(absl::string_view text,
                                 const std::vector<OnigRegex::Match>& matches,
                                 bool invert) {
  std::vector<Span> spans;
  if (text.empty()) {
    spans.push_back({0, 0, invert});
    return spans;
  }
  spans.reserve(2 * matches.size() + 1);
  size_t prev = 0;
  for (const OnigRegex::Match& m : matches) {
    if (prev != m.start) spans.push_back({prev, m.start, invert});
    spans.push_back({m.start, m.end, !invert});
    prev = m.end;
  }
  if (prev != text.size()) spans.push_back({prev, text.size(), invert});
  return spans;
}

std::vector<Span> ApplyBehavior(SplitBehavior behavior,
                                const std::vector<Span>& spans) {
  std::vector<Span> out;
  out.reserve(spans.size());
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const Span& s : spans) {
        if (!s.is_match) out.push_back(s);
      }
      return out;
    case SplitBehavior::kIsolated:
      return spans;
    case SplitBehavior::kContiguous:
      for (const Span& s : spans) {
        if (s.is_match == previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back(s);
        }
        previous_match = s.is_match;
      }
      return out;
    case SplitBehavior::kMergedWithPrevious:
      for (const Span& s : spans) {
        if (s.is_match && !previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back(s);
        }
        previous_match = s.is_match;
      }
      return out;
    case SplitBehavior::kMergedWithNext:
      // Right to left, as tokenizers folds the reversed spans.
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) {
          out.back().start = it->start;
        } else {
          out.push_back(*it);
        }
        previous_match = it->is_match;
      }
      return std::vector<Span>(out.rbegin(), out.rend());
  }
  return out;
}

absl::Status SplitPieces(const OnigRegex& regex, SplitBehavior behavior,
                         bool invert, std::vector<Piece>& pieces) {
  std::vector<Piece> out;
  std::vector<OnigRegex::Match> matches;
  for (Piece& piece : pieces) {
    BAQ_RETURN_IF_ERROR(regex.FindAll(piece.text, matches));
    const std::vector<Span> kept =
        ApplyBehavior(behavior, SpansOfMatches(piece.text, matches, invert));
    if (out.capacity() - out.size() < kept.size()) {
      out.reserve(std::max(2 * out.capacity(), out.size() + kept.size()));
    }
    if (kept.size() == 1 && kept[0].start == 0 &&
        kept[0].end == piece.text.size()) {
      if (!piece.text.empty()) out.push_back(std::move(piece));
      continue;
    }
    for (const Span& s : kept) {
      if (s.end == s.start) continue;
      out.push_back({piece.text.substr(s.start, s.end - s.start),
                     piece.at_start && s.start == 0});
    }
  }
  pieces = std::move(out);
  return absl::OkStatus();
}

}  // namespace baq::tokenizer
