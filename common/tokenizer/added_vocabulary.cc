#include "common/tokenizer/added_vocabulary.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/tokenizer/onig_regex.h"
#include "common/unicode.h"

namespace baq::tokenizer {
namespace {

// Rust regex's Unicode \w (Alphabetic, M, Nd, Pc, Join_Control), which
// added_vocabulary.rs tests single_word tokens with.
bool IsWordChar(absl::string_view ch) {
  static const OnigRegex* const kWord = [] {
    absl::StatusOr<OnigRegex> re = OnigRegex::Compile(
        R"(\A[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]\z)");
    return new OnigRegex(std::move(*re));  // Compiles: a constant pattern.
  }();
  std::vector<OnigRegex::Match> matches;
  return kWord->FindAll(ch, matches).ok() && !matches.empty();
}

// Start of the character that ends just before byte `pos` of valid UTF-8.
size_t CharStartBefore(absl::string_view text, size_t pos) {
  size_t start = pos - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80)
    --start;
  return start;
}

}  // namespace

absl::StatusOr<std::vector<AddedToken>> AddedVocabulary::Parse(
    const Json* added) {
  std::vector<AddedToken> tokens;
  if (added == nullptr) return tokens;
  if (!added->is_array())
    return JsonInvalid("added_tokens", "", "must be an array");
  for (size_t i = 0; i < added->size(); ++i) {
    const Json& a = (*added)[i];
    const std::string path = absl::StrCat("added_tokens[", i, "]");
    if (!a.is_object()) return JsonInvalid(path, "", "must be an object");
    AddedToken t;
    BAQ_ASSIGN_OR_RETURN(t.content, JsonRequiredString(a, "content", path));
    BAQ_ASSIGN_OR_RETURN(t.special, JsonBool(a, "special", false, path));
    BAQ_ASSIGN_OR_RETURN(t.single_word,
                         JsonBool(a, "single_word", false, path));
    BAQ_ASSIGN_OR_RETURN(t.lstrip, JsonBool(a, "lstrip", false, path));
    BAQ_ASSIGN_OR_RETURN(t.rstrip, JsonBool(a, "rstrip", false, path));
    BAQ_ASSIGN_OR_RETURN(t.normalized,
                         JsonBool(a, "normalized", !t.special, path));
    tokens.push_back(std::move(t));
  }
  return tokens;
}

void AddedVocabulary::AddPattern(Matcher& m, std::string text, int32_t id) {
  if (text.empty()) return;
  const unsigned char first = static_cast<unsigned char>(text[0]);
  m.patterns.push_back({std::move(text), id});
  std::vector<int32_t>& bucket = m.by_first_byte[first];
  bucket.push_back(static_cast<int32_t>(m.patterns.size() - 1));
  std::stable_sort(bucket.begin(), bucket.end(), [&m](int32_t a, int32_t b) {
    return m.patterns[a].text.size() > m.patterns[b].text.size();
  });
}

absl::StatusOr<AddedVocabulary> AddedVocabulary::Build(
    const std::vector<AddedToken>& tokens, const BpeModel& model,
    const Normalizer* normalizer) {
  AddedVocabulary v;
  // add_tokens(): ids, and the last token per id wins (added_tokens_map_r).
  int64_t next_id = static_cast<int64_t>(model.vocab().size());
  absl::flat_hash_map<int32_t, const AddedToken*> by_id;
  std::vector<int32_t> order;
  for (const AddedToken& t : tokens) {
    if (t.content.empty()) continue;
    int32_t id;
    if (auto it = v.ids_.find(t.content); it != v.ids_.end()) {
      id = it->second;
    } else if (std::optional<int32_t> model_id = model.TokenToId(t.content)) {
      id = *model_id;
    } else {
      if (next_id > INT32_MAX)
        return absl::InvalidArgumentError("too many added tokens");
      id = static_cast<int32_t>(next_id++);
    }
    v.ids_[t.content] = id;
    if (!by_id.contains(id)) order.push_back(id);
    by_id[id] = &t;
  }
  for (int32_t id : order) {
    const AddedToken& t = *by_id[id];
    v.flags_[id] = Flags{t.single_word, t.lstrip, t.rstrip};
    if (!t.normalized) {
      AddPattern(v.raw_, t.content, id);
      continue;
    }
    Piece p{t.content, /*at_start=*/true};
    if (normalizer != nullptr) BAQ_RETURN_IF_ERROR(normalizer->Normalize(p));
    AddPattern(v.normalized_, std::move(p.text), id);
  }
  return v;
}

std::vector<AddedVocabulary::Segment> AddedVocabulary::Split(
    absl::string_view text, bool normalized) const {
  const Matcher& m = normalized ? normalized_ : raw_;
  std::vector<Segment> out;
  size_t start_offset = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const Matcher::Pattern* match = nullptr;
    for (int32_t index :
         m.by_first_byte[static_cast<unsigned char>(text[pos])]) {
      const Matcher::Pattern& p = m.patterns[index];
      if (text.compare(pos, p.text.size(), p.text) == 0) {
        match = &p;  // Longest first: leftmost-longest.
        break;
      }
    }
    if (match == nullptr) {
      ++pos;
      continue;
    }
    size_t start = pos;
    size_t stop = pos + match->text.size();
    pos = stop;  // Matches never overlap, even a skipped one.
    const Flags& f = flags_.at(match->id);
    if (f.single_word) {
      const bool word_before =
          start > 0 &&
          IsWordChar(text.substr(CharStartBefore(text, start),
                                 start - CharStartBefore(text, start)));
      const bool word_after =
          stop < text.size() &&
          IsWordChar(text.substr(stop, DecodeUtf8(text, stop).length));
      if (word_before || word_after) continue;
    }
    if (f.lstrip) {
      size_t s = start;
      while (s > 0) {
        const size_t c = CharStartBefore(text, s);
        if (!IsUnicodeWhitespace(DecodeUtf8(text, c).code_point)) break;
        s = c;
      }
      start = std::max(s, start_offset);
    }
    if (f.rstrip) {
      while (stop < text.size()) {
        const Utf8Char c = DecodeUtf8(text, stop);
        if (!IsUnicodeWhitespace(c.code_point)) break;
        stop += c.length;
      }
    }
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, match->id});
    start_offset = stop;
  }
  if (start_offset != text.size())
    out.push_back({start_offset, text.size(), -1});
  return out;
}

}  // namespace baq::tokenizer
