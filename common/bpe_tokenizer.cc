#include "common/bpe_tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/unicode.h"

namespace baq {
namespace {

// Pieces longer than this are not cached (as HF's BPE cache), so a
// pathological input cannot grow the cache without bound.
constexpr size_t kMaxCachedPieceBytes = 256;

// Per-Encode() cache: piece bytes -> [offset, offset + count) in `ids`.
struct PieceCache {
  absl::flat_hash_map<std::string, std::pair<uint32_t, uint32_t>> index;
  std::vector<int32_t> ids;
};

// "Word character" for single_word added tokens, as HF's added_vocabulary.
bool IsWordChar(char32_t cp) { return cp == '_' || IsUnicodeLetter(cp) || IsUnicodeNumber(cp); }

// Code point ending just before byte `pos` of valid UTF-8 `text`.
Utf8Char CharBefore(absl::string_view text, size_t pos) {
  size_t start = pos - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return DecodeUtf8(text, start);
}

}  // namespace

std::optional<int32_t> BpeTokenizer::TokenToId(absl::string_view token) const {
  auto it = token_to_id_.find(token);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

absl::string_view BpeTokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return id_to_token_[id];
}

std::vector<BpeTokenizer::Segment> BpeTokenizer::SplitOnAddedTokens(absl::string_view text) const {
  std::vector<Segment> segments;
  size_t segment_start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const AddedToken* match = nullptr;
    for (int32_t index : added_by_first_byte_[static_cast<unsigned char>(text[pos])]) {
      const AddedToken& t = added_[index];
      if (text.compare(pos, t.content.size(), t.content) != 0) continue;
      if (t.single_word) {
        const size_t end = pos + t.content.size();
        if ((pos > 0 && IsWordChar(CharBefore(text, pos).code_point)) ||
            (end < text.size() && IsWordChar(DecodeUtf8(text, end).code_point))) {
          continue;
        }
      }
      match = &t;  // Candidates are sorted longest first: leftmost-longest.
      break;
    }
    if (match == nullptr) {
      ++pos;
      continue;
    }
    size_t start = pos;
    size_t end = pos + match->content.size();
    if (match->lstrip) {
      while (start > segment_start) {
        const Utf8Char c = CharBefore(text, start);
        if (!IsUnicodeWhitespace(c.code_point)) break;
        start -= c.length;
      }
    }
    if (match->rstrip) {
      while (end < text.size()) {
        const Utf8Char c = DecodeUtf8(text, end);
        if (!IsUnicodeWhitespace(c.code_point)) break;
        end += c.length;
      }
    }
    if (start > segment_start)
      segments.push_back({text.substr(segment_start, start - segment_start)});
    segments.push_back({absl::string_view(), match->id});
    pos = segment_start = end;
  }
  if (segment_start < text.size()) segments.push_back({text.substr(segment_start)});
  return segments;
}

void BpeTokenizer::EncodePiece(absl::string_view piece, std::vector<int32_t>& out) const {
  const std::array<char32_t, 256>& byte_to_unicode = ByteToUnicode();
  if (ignore_merges_) {  // Llama 3: a piece that is a token is not merged.
    std::string mapped;
    for (char b : piece) AppendUtf8(byte_to_unicode[static_cast<unsigned char>(b)], mapped);
    if (std::optional<int32_t> id = TokenToId(mapped)) {
      out.push_back(*id);
      return;
    }
  }
  // One symbol per byte (its printable character), in a linked list, as
  // HF tokenizers' `Word`.
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  bool last_is_unk = false;
  const auto add = [&symbols](int32_t id) {
    const int32_t n = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, n - 1, n + 1, true});
  };
  for (char ch : piece) {
    const unsigned char b = static_cast<unsigned char>(ch);
    if (byte_ids_[b] >= 0) {
      add(byte_ids_[b]);
      last_is_unk = false;
    } else if (byte_fallback_ && !byte_fallback_ids_[b].empty()) {
      for (int32_t id : byte_fallback_ids_[b]) add(id);
      last_is_unk = false;
    } else if (unk_id_.has_value() && !(fuse_unk_ && last_is_unk)) {
      add(*unk_id_);
      last_is_unk = true;
    }
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  // Merge the lowest-rank adjacent pair first, leftmost among equal ranks
  // (HF `Word::merge_all`); stale heap entries are detected and skipped.
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator<(const Candidate& o) const {  // Max-heap on (-rank, -pos).
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::vector<Candidate> heap;
  const auto push = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    auto it = merges_.find(PairKey(symbols[left].id, symbols[right].id));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, left, it->second.new_id});
    std::push_heap(heap.begin(), heap.end());
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    const Symbol right = symbols[left.next];
    auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;
    symbols[left.next].alive = false;
    left.id = top.new_id;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) push(left.prev);
    push(top.pos);
  }
  for (const Symbol& s : symbols) {
    if (s.alive) out.push_back(s.id);
  }
}

absl::StatusOr<std::vector<int32_t>> BpeTokenizer::Encode(absl::string_view text) const {
  if (const size_t bad = FindInvalidUtf8(text); bad != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("text is not valid UTF-8 at byte ", bad));
  }
  if (nfc_) {
    for (size_t pos = 0; pos < text.size();) {
      const Utf8Char c = DecodeUtf8(text, pos);
      if (MayChangeUnderNfc(c.code_point)) {
        return absl::UnimplementedError(
            absl::StrFormat("the tokenizer NFC-normalizes and the text has "
                            "U+%04X at byte %d, which NFC may "
                            "change; NFC normalization is not implemented",
                            static_cast<uint32_t>(c.code_point), pos));
      }
      pos += c.length;
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3);
  PieceCache cache;
  std::vector<absl::string_view> pieces;
  std::string prefixed;
  for (const Segment& segment : SplitOnAddedTokens(text)) {
    if (segment.added_id >= 0) {
      ids.push_back(segment.added_id);
      continue;
    }
    absl::string_view t = segment.text;
    if (add_prefix_space_ && t[0] != ' ') {
      prefixed = absl::StrCat(" ", t);
      t = prefixed;
    }
    pieces.clear();
    if (pattern_.has_value()) {
      SplitByPattern(*pattern_, t, pieces);
    } else {
      pieces.push_back(t);
    }
    for (absl::string_view piece : pieces) {
      if (piece.size() > kMaxCachedPieceBytes) {
        EncodePiece(piece, ids);
        continue;
      }
      auto it = cache.index.find(piece);
      if (it == cache.index.end()) {
        const uint32_t offset = static_cast<uint32_t>(cache.ids.size());
        EncodePiece(piece, cache.ids);
        it = cache.index
                 .emplace(std::string(piece),
                          std::make_pair(offset, static_cast<uint32_t>(cache.ids.size()) - offset))
                 .first;
      }
      const auto [offset, count] = it->second;
      ids.insert(ids.end(), cache.ids.begin() + offset, cache.ids.begin() + offset + count);
    }
  }
  return ids;
}

absl::StatusOr<std::string> BpeTokenizer::Decode(absl::Span<const int32_t> ids) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= vocab_size() || id_to_token_[id].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " at position ", i,
                                                     " is not in the vocabulary (size ",
                                                     vocab_size(), ")"));
    }
    const std::string& token = id_to_token_[id];
    if (is_added_[id]) {  // Added tokens are raw text.
      out += token;
      continue;
    }
    // ByteLevel decoder: each character back to its byte; a token with a
    // character outside the byte alphabet is taken verbatim (as HF does).
    const size_t mark = out.size();
    for (size_t pos = 0; pos < token.size();) {
      const Utf8Char c = DecodeUtf8(token, pos);
      const int b = UnicodeToByte(c.code_point);
      if (b < 0) {
        out.resize(mark);
        out += token;
        break;
      }
      out.push_back(static_cast<char>(b));
      pos += c.length;
    }
  }
  return out;
}

}  // namespace baq
