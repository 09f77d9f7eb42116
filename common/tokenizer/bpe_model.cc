#include "common/tokenizer/bpe_model.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "common/unicode.h"

namespace baq::tokenizer {
namespace {

// Pieces this long or longer are not cached (tokenizers' MAX_LENGTH), and the
// cache stops growing at kMaxCacheEntries, so no input grows it unboundedly.
constexpr size_t kMaxCachedPieceBytes = 256;
constexpr size_t kMaxCacheEntries = 1 << 20;

// A merge as "a b" (exactly one space) or ["a", "b"].
absl::StatusOr<std::pair<std::string, std::string>> ParseMerge(
    const Json& m, absl::string_view field) {
  if (m.is_string()) {
    std::vector<std::string> parts = absl::StrSplit(m.get<std::string>(), ' ');
    if (parts.size() == 2) return std::make_pair(parts[0], parts[1]);
  } else if (m.is_array() && m.size() == 2 && m[0].is_string() &&
             m[1].is_string()) {
    return std::make_pair(m[0].get<std::string>(), m[1].get<std::string>());
  }
  return absl::InvalidArgumentError(
      absl::StrCat(field, " must be \"a b\" or [\"a\", \"b\"], got ",
                   m.dump().substr(0, 80)));
}

}  // namespace

absl::StatusOr<BpeModel> BpeModel::Parse(const Json& j,
                                         absl::string_view path) {
  if (!j.is_object()) return JsonInvalid(path, "", "must be an object");
  const std::string type = JsonType(j);
  if (!type.empty() && type != "BPE") {
    return absl::UnimplementedError(absl::StrCat(
        "model \"", type, "\" is not supported (only BPE models)"));
  }
  if (type.empty() && JsonFind(j, "merges") ==
                          nullptr) {  // Untyped: tokenizers tries BPE first.
    return absl::UnimplementedError(
        "model without \"type\" and without merges (not BPE) is not supported");
  }
  if (const Json* d = JsonFind(j, "dropout");
      d != nullptr && (!d->is_number() || *d != 0)) {
    return absl::UnimplementedError(
        "BPE dropout is not supported (it makes encoding random)");
  }
  BpeModel m;
  BAQ_ASSIGN_OR_RETURN(m.fuse_unk_, JsonBool(j, "fuse_unk", false, path));
  BAQ_ASSIGN_OR_RETURN(m.byte_fallback_,
                       JsonBool(j, "byte_fallback", false, path));
  BAQ_ASSIGN_OR_RETURN(m.ignore_merges_,
                       JsonBool(j, "ignore_merges", false, path));
  BAQ_ASSIGN_OR_RETURN(m.prefix_,
                       JsonString(j, "continuing_subword_prefix", "", path));
  BAQ_ASSIGN_OR_RETURN(m.suffix_,
                       JsonString(j, "end_of_word_suffix", "", path));
  if (JsonFind(j, "unk_token") != nullptr) {
    BAQ_ASSIGN_OR_RETURN(m.unk_token_, JsonString(j, "unk_token", "", path));
  }

  const Json* vocab = JsonFind(j, "vocab");
  if (vocab == nullptr || !vocab->is_object()) {
    return JsonInvalid(path, "vocab", "is missing or not an object");
  }
  m.vocab_.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 ||
        it->get<int64_t>() > INT32_MAX) {
      return JsonInvalid(path, absl::StrCat("vocab[\"", it.key(), "\"]"),
                         "must be a non-negative 32-bit integer");
    }
    m.vocab_[it.key()] = it->get<int32_t>();
  }
  for (int b = 0; b < 256; ++b) {
    m.byte_tokens_[b] =
        m.TokenToId(absl::StrFormat("<0x%02X>", b)).value_or(-1);
  }

  const Json* merges = JsonFind(j, "merges");
  if (merges == nullptr || !merges->is_array()) {
    return JsonInvalid(path, "merges", "is missing or not an array");
  }
  m.merges_.reserve(merges->size());
  int32_t rank = 0;
  for (size_t i = 0; i < merges->size(); ++i) {
    const Json& entry = (*merges)[i];
    if (entry.is_string() &&
        absl::StartsWith(entry.get<std::string>(), "#version"))
      continue;
    const std::string field = absl::StrCat(path, ".merges[", i, "]");
    BAQ_ASSIGN_OR_RETURN(auto pair, ParseMerge(entry, field));
    if (pair.second.size() < m.prefix_.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": \"", pair.second, "\" is shorter than the subword prefix"));
    }
    const std::string merged =
        pair.first + pair.second.substr(m.prefix_.size());
    const std::optional<int32_t> a = m.TokenToId(pair.first);
    const std::optional<int32_t> b = m.TokenToId(pair.second);
    const std::optional<int32_t> ab = m.TokenToId(merged);
    if (!a.has_value() || !b.has_value() || !ab.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " (\"", pair.first, "\", \"", pair.second,
                       "\") uses or makes a token not "
                       "in the vocabulary"));
    }
    m.merges_[PairKey(*a, *b)] = Merge{rank++, *ab};
  }
  return m;
}

std::optional<int32_t> BpeModel::TokenToId(absl::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

absl::Status BpeModel::Tokenize(absl::string_view piece, Cache& cache,
                                std::vector<int32_t>& out) const {
  if (piece.empty()) return absl::OkStatus();
  if (ignore_merges_) {
    if (std::optional<int32_t> id = TokenToId(piece)) {
      out.push_back(*id);
      return absl::OkStatus();
    }
  }
  if (piece.size() >= kMaxCachedPieceBytes) return MergeWord(piece, out);
  auto it = cache.index.find(piece);
  if (it == cache.index.end()) {
    const size_t offset = cache.ids.size();
    BAQ_RETURN_IF_ERROR(MergeWord(piece, cache.ids));
    const auto entry =
        std::make_pair(static_cast<uint32_t>(offset),
                       static_cast<uint32_t>(cache.ids.size() - offset));
    if (cache.index.size() >= kMaxCacheEntries) {
      out.insert(out.end(), cache.ids.begin() + offset, cache.ids.end());
      cache.ids.resize(offset);
      return absl::OkStatus();
    }
    it = cache.index.emplace(std::string(piece), entry).first;
  }
  const auto [offset, count] = it->second;
  out.insert(out.end(), cache.ids.begin() + offset,
             cache.ids.begin() + offset + count);
  return absl::OkStatus();
}

absl::Status BpeModel::MergeWord(absl::string_view word,
                                 std::vector<int32_t>& out) const {
  // One symbol per character, in a linked list, as tokenizers' `Word`.
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  const auto add = [&symbols](int32_t id) {
    const int32_t n = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, n - 1, n + 1, true});
  };
  int32_t pending_unk = -1;  // merge_word's `unk` (-1: none).
  std::string s;
  for (size_t pos = 0; pos < word.size();) {
    const int len = DecodeUtf8(word, pos).length;
    const bool first = pos == 0;
    const bool last = pos + len == word.size();
    s.clear();
    if (!first) s += prefix_;
    s.append(word.data() + pos, len);
    if (last) s += suffix_;
    pos += len;
    if (std::optional<int32_t> id = TokenToId(s)) {
      if (pending_unk >= 0) add(pending_unk);
      pending_unk = -1;
      add(*id);
      continue;
    }
    if (byte_fallback_ && std::all_of(s.begin(), s.end(), [this](char c) {
          return byte_tokens_[static_cast<unsigned char>(c)] >= 0;
        })) {
      // As tokenizers: the pending unk is not flushed here.
      for (char c : s) add(byte_tokens_[static_cast<unsigned char>(c)]);
      continue;
    }
    if (!unk_token_.has_value()) continue;  // The character is dropped.
    const std::optional<int32_t> unk = TokenToId(*unk_token_);
    if (!unk.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unk_token \"", *unk_token_, "\" is not in the vocabulary"));
    }
    if (pending_unk >= 0 && fuse_unk_) continue;  // Fused into the pending one.
    if (pending_unk >= 0) add(pending_unk);
    pending_unk = *unk;
  }
  if (pending_unk >= 0) add(pending_unk);
  if (symbols.empty()) return absl::OkStatus();
  symbols.back().next = -1;

  // Merge the lowest-rank adjacent pair first, leftmost among equal ranks
  // (Word::merge_all); stale heap entries are detected and skipped.
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
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i)
    push(i);
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
  for (const Symbol& sym : symbols) {
    if (sym.alive) out.push_back(sym.id);
  }
  return absl::OkStatus();
}

}  // namespace baq::tokenizer
