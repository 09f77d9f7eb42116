#include "common/bpe_tokenizer.h"

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/tokenizer/pipeline.h"
#include "common/unicode.h"

namespace baq {

using tokenizer::AddedVocabulary;
using tokenizer::Piece;

BpeTokenizer::BpeTokenizer(std::unique_ptr<tokenizer::Pipeline> pipeline)
    : pipeline_(std::move(pipeline)) {}
BpeTokenizer::BpeTokenizer(BpeTokenizer&&) noexcept = default;
BpeTokenizer& BpeTokenizer::operator=(BpeTokenizer&&) noexcept = default;
BpeTokenizer::~BpeTokenizer() = default;

int32_t BpeTokenizer::vocab_size() const {
  return static_cast<int32_t>(pipeline_->id_to_token.size());
}
std::optional<int32_t> BpeTokenizer::bos_id() const {
  return pipeline_->bos_id;
}
std::optional<int32_t> BpeTokenizer::eos_id() const {
  return pipeline_->eos_id;
}

std::optional<int32_t> BpeTokenizer::TokenToId(absl::string_view token) const {
  const tokenizer::Pipeline& p = *pipeline_;
  if (auto it = p.added.ids().find(token); it != p.added.ids().end())
    return it->second;
  return p.model.TokenToId(token);
}

absl::string_view BpeTokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return pipeline_->id_to_token[id];
}

absl::StatusOr<std::vector<int32_t>> BpeTokenizer::Encode(
    absl::string_view text) const {
  if (const size_t bad = FindInvalidUtf8(text);
      bad != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("text is not valid UTF-8 at byte ", bad));
  }
  const tokenizer::Pipeline& p = *pipeline_;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3);
  tokenizer::BpeModel::Cache cache;
  std::vector<Piece> pieces;
  // AddedVocabulary::extract_and_normalize, then pre-tokenization and the
  // model, part by part in order.
  for (const AddedVocabulary::Segment& raw :
       p.added.Split(text, /*normalized=*/false)) {
    if (raw.id >= 0) {
      ids.push_back(raw.id);
      continue;
    }
    if (raw.start == raw.end) continue;
    Piece normalized{std::string(text.substr(raw.start, raw.end - raw.start)),
                     raw.start == 0};
    if (p.normalizer != nullptr)
      BAQ_RETURN_IF_ERROR(p.normalizer->Normalize(normalized));
    for (const AddedVocabulary::Segment& seg :
         p.added.Split(normalized.text, /*normalized=*/true)) {
      if (seg.id >= 0) {
        ids.push_back(seg.id);
        continue;
      }
      if (seg.start == seg.end) continue;
      pieces.clear();
      pieces.push_back({normalized.text.substr(seg.start, seg.end - seg.start),
                        normalized.at_start && seg.start == 0});
      if (p.pre_tokenizer != nullptr)
        BAQ_RETURN_IF_ERROR(p.pre_tokenizer->PreTokenize(pieces));
      for (const Piece& piece : pieces) {
        BAQ_RETURN_IF_ERROR(p.model.Tokenize(piece.text, cache, ids));
      }
    }
  }
  return ids;
}

absl::StatusOr<std::string> BpeTokenizer::Decode(
    absl::Span<const int32_t> ids) const {
  const tokenizer::Pipeline& p = *pipeline_;
  const bool byte_level =
      p.pre_tokenizer != nullptr && p.pre_tokenizer->IsByteLevel();
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= vocab_size() || p.id_to_token[id].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " at position ", i,
                       " is not in the vocabulary (size ", vocab_size(), ")"));
    }
    const std::string& token = p.id_to_token[id];
    if (p.is_added[id]) {
      out += token;
      continue;
    }
    unsigned int byte = 0;
    if (!byte_level && token.size() == 6 && token.compare(0, 3, "<0x") == 0 &&
        token[5] == '>' && std::sscanf(token.c_str() + 3, "%2X", &byte) == 1) {
      out.push_back(static_cast<char>(byte));
      continue;
    }
    if (!byte_level) {
      out += token;
      continue;
    }
    // ByteLevel: each character back to its byte; a token with a character
    // outside the byte alphabet is taken verbatim (as tokenizers does).
    const size_t mark = out.size();
    for (size_t pos = 0; pos < token.size();) {
      const Utf8Char c = DecodeUtf8(token, pos);
      const int b = tokenizer::UnicodeToByte(c.code_point);
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
