// BpeTokenizer loading: tokenizer.json (and tokenizer_config.json) parsing
// and validation. Encoding is in bpe_tokenizer.cc.
#include <algorithm>
#include <cstdint>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/bpe_tokenizer.h"
#include "common/file_contents.h"
#include "common/status_macros.h"
#include "common/unicode.h"
#include "nlohmann/json.hpp"

namespace baq {
namespace {

using Json = nlohmann::json;

absl::Status Invalid(absl::string_view source, absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": field \"", field, "\" ", what));
}

absl::Status Unsupported(absl::string_view source, absl::string_view what) {
  return absl::UnimplementedError(
      absl::StrCat(source, ": ", what, " is not supported (only byte-level BPE tokenizers)"));
}

// The value of `key` in object `j`, or nullptr if absent or null.
const Json* Find(const Json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

absl::StatusOr<bool> Bool(const Json& j, const char* key, bool dflt, absl::string_view source,
                          absl::string_view path) {
  const Json* v = Find(j, key);
  if (v == nullptr) return dflt;
  if (!v->is_boolean()) return Invalid(source, absl::StrCat(path, key), "must be a boolean");
  return v->get<bool>();
}

std::string TypeOf(const Json& j) {
  const Json* t = Find(j, "type");
  return t != nullptr && t->is_string() ? t->get<std::string>() : std::string("?");
}

// A merge as "a b" or ["a", "b"].
absl::StatusOr<std::pair<std::string, std::string>> ParseMerge(const Json& m, size_t i,
                                                               absl::string_view source) {
  if (m.is_string()) {
    const std::string s = m.get<std::string>();
    const size_t space = s.find(' ');
    if (space != std::string::npos && s.find(' ', space + 1) == std::string::npos) {
      return std::make_pair(s.substr(0, space), s.substr(space + 1));
    }
  } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
    return std::make_pair(m[0].get<std::string>(), m[1].get<std::string>());
  }
  return Invalid(source, absl::StrCat("model.merges[", i, "]"),
                 absl::StrCat("must be \"a b\" or [\"a\", \"b\"], got ", m.dump()));
}

// "bos_token": "<s>" or {"content": "<s>", ...} in tokenizer_config.json.
absl::StatusOr<std::optional<std::string>> SpecialTokenName(const Json& config, const char* key) {
  const Json* v = Find(config, key);
  if (v == nullptr) return std::optional<std::string>();
  if (v->is_string()) return std::optional<std::string>(v->get<std::string>());
  if (v->is_object()) {
    const Json* content = Find(*v, "content");
    if (content != nullptr && content->is_string()) {
      return std::optional<std::string>(content->get<std::string>());
    }
  }
  return Invalid("tokenizer_config.json", key, "must be a string or {\"content\": ...}");
}

}  // namespace

absl::StatusOr<BpeTokenizer> BpeTokenizer::Load(const std::string& tokenizer_json_path) {
  BAQ_ASSIGN_OR_RETURN(const std::string text, ReadFileContents(tokenizer_json_path));
  const size_t slash = tokenizer_json_path.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? std::string(".") : tokenizer_json_path.substr(0, slash);
  std::string config;
  if (std::ifstream(dir + "/tokenizer_config.json").good()) {
    BAQ_ASSIGN_OR_RETURN(config, ReadFileContents(dir + "/tokenizer_config.json"));
  }
  return FromJson(text, tokenizer_json_path, config);
}

absl::StatusOr<BpeTokenizer> BpeTokenizer::FromJson(absl::string_view tokenizer_json,
                                                    absl::string_view source,
                                                    absl::string_view tokenizer_config_json) {
  const Json j = Json::parse(tokenizer_json.begin(), tokenizer_json.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  }
  BpeTokenizer tok;

  // Model.
  const Json* model = Find(j, "model");
  if (model == nullptr || !model->is_object()) return Invalid(source, "model", "is missing");
  const std::string model_type = Find(*model, "type") != nullptr ? TypeOf(*model) : "BPE";
  if (model_type != "BPE") {
    return Unsupported(source, absl::StrCat("tokenizer model type \"", model_type, "\""));
  }
  if (const Json* d = Find(*model, "dropout"); d != nullptr && (!d->is_number() || *d != 0)) {
    return Unsupported(source, "BPE dropout");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const Json* v = Find(*model, key);
    if (v != nullptr && !(v->is_string() && v->get<std::string>().empty())) {
      return Unsupported(source, absl::StrCat("model.", key));
    }
  }
  BAQ_ASSIGN_OR_RETURN(tok.fuse_unk_, Bool(*model, "fuse_unk", false, source, "model."));
  BAQ_ASSIGN_OR_RETURN(tok.byte_fallback_, Bool(*model, "byte_fallback", false, source, "model."));
  BAQ_ASSIGN_OR_RETURN(tok.ignore_merges_, Bool(*model, "ignore_merges", false, source, "model."));

  const Json* vocab = Find(*model, "vocab");
  if (vocab == nullptr || !vocab->is_object()) {
    return Invalid(source, "model.vocab", "is missing or not an object");
  }
  int64_t max_id = -1;
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > INT32_MAX) {
      return Invalid(source, absl::StrCat("model.vocab[\"", it.key(), "\"]"),
                     "must be a non-negative 32-bit integer");
    }
    tok.token_to_id_[it.key()] = it->get<int32_t>();
    max_id = std::max<int64_t>(max_id, it->get<int64_t>());
  }

  // Added tokens (they may repeat vocabulary entries, as the fixture's "<s>").
  if (const Json* added = Find(j, "added_tokens"); added != nullptr) {
    if (!added->is_array()) return Invalid(source, "added_tokens", "must be an array");
    for (size_t i = 0; i < added->size(); ++i) {
      const Json& a = (*added)[i];
      const std::string field = absl::StrCat("added_tokens[", i, "]");
      const Json* id = a.is_object() ? Find(a, "id") : nullptr;
      const Json* content = a.is_object() ? Find(a, "content") : nullptr;
      if (id == nullptr || !id->is_number_integer() || id->get<int64_t>() < 0 ||
          id->get<int64_t>() > INT32_MAX || content == nullptr || !content->is_string() ||
          content->get<std::string>().empty()) {
        return Invalid(source, field, "needs a non-negative \"id\" and a non-empty \"content\"");
      }
      AddedToken t;
      t.id = id->get<int32_t>();
      t.content = content->get<std::string>();
      BAQ_ASSIGN_OR_RETURN(t.lstrip, Bool(a, "lstrip", false, source, field + "."));
      BAQ_ASSIGN_OR_RETURN(t.rstrip, Bool(a, "rstrip", false, source, field + "."));
      BAQ_ASSIGN_OR_RETURN(t.single_word, Bool(a, "single_word", false, source, field + "."));
      tok.token_to_id_[t.content] = t.id;
      max_id = std::max<int64_t>(max_id, t.id);
      tok.added_.push_back(std::move(t));
    }
  }
  tok.id_to_token_.resize(max_id + 1);
  tok.is_added_.assign(max_id + 1, false);
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    tok.id_to_token_[it->get<int32_t>()] = it.key();
  }
  for (int32_t i = 0; i < static_cast<int32_t>(tok.added_.size()); ++i) {
    const AddedToken& t = tok.added_[i];
    tok.id_to_token_[t.id] = t.content;
    tok.is_added_[t.id] = true;
    tok.added_by_first_byte_[static_cast<unsigned char>(t.content[0])].push_back(i);
  }
  for (std::vector<int32_t>& candidates : tok.added_by_first_byte_) {
    std::stable_sort(candidates.begin(), candidates.end(), [&tok](int32_t a, int32_t b) {
      return tok.added_[a].content.size() > tok.added_[b].content.size();
    });
  }
  if (const Json* unk = Find(*model, "unk_token"); unk != nullptr) {
    if (!unk->is_string() || !tok.TokenToId(unk->get<std::string>()).has_value()) {
      return Invalid(source, "model.unk_token", "must name a vocabulary token");
    }
    tok.unk_id_ = tok.TokenToId(unk->get<std::string>());
  }

  // Merges, ranked by position; the merged token must be in the vocabulary.
  const Json* merges = Find(*model, "merges");
  if (merges == nullptr || !merges->is_array()) {
    return Invalid(source, "model.merges", "is missing or not an array");
  }
  tok.merges_.reserve(merges->size());
  for (size_t i = 0; i < merges->size(); ++i) {
    BAQ_ASSIGN_OR_RETURN(auto pair, ParseMerge((*merges)[i], i, source));
    const std::optional<int32_t> a = tok.TokenToId(pair.first);
    const std::optional<int32_t> b = tok.TokenToId(pair.second);
    const std::optional<int32_t> ab = tok.TokenToId(pair.first + pair.second);
    if (!a.has_value() || !b.has_value() || !ab.has_value()) {
      return Invalid(source, absl::StrCat("model.merges[", i, "]"),
                     absl::StrCat("(\"", pair.first, "\", \"", pair.second,
                                  "\") uses or makes a token not in model.vocab"));
    }
    tok.merges_[PairKey(*a, *b)] = Merge{static_cast<int32_t>(i), *ab};
  }

  // Normalizer: none, or NFC (see the header).
  if (const Json* n = Find(j, "normalizer"); n != nullptr) {
    if (TypeOf(*n) != "NFC") {
      return Unsupported(source, absl::StrCat("normalizer \"", TypeOf(*n), "\""));
    }
    tok.nfc_ = true;
  }

  // Pre-tokenizer: ByteLevel, or Sequence[Split(regex),
  // ByteLevel(use_regex=false)].
  const Json* pre = Find(j, "pre_tokenizer");
  if (pre == nullptr) {
    return Unsupported(source, "a tokenizer without pre-tokenizer (SentencePiece-style BPE)");
  }
  const Json* byte_level = pre;
  if (TypeOf(*pre) == "Sequence") {
    const Json* seq = Find(*pre, "pretokenizers");
    if (seq == nullptr || !seq->is_array() || seq->size() != 2 || TypeOf((*seq)[0]) != "Split" ||
        TypeOf((*seq)[1]) != "ByteLevel") {
      return Unsupported(source, absl::StrCat("pre_tokenizer Sequence ",
                                              seq != nullptr ? seq->dump().substr(0, 200) : "",
                                              " (supported: [Split, ByteLevel])"));
    }
    const Json& split = (*seq)[0];
    const Json* pattern = Find(split, "pattern");
    const Json* regex =
        pattern != nullptr && pattern->is_object() ? Find(*pattern, "Regex") : nullptr;
    if (regex == nullptr || !regex->is_string()) {
      return Unsupported(source, "a Split pre-tokenizer without a Regex pattern");
    }
    const Json* behavior = Find(split, "behavior");
    BAQ_ASSIGN_OR_RETURN(bool invert, Bool(split, "invert", false, source, "Split."));
    if (behavior == nullptr || *behavior != "Isolated" || invert) {
      return Unsupported(source,
                         "a Split pre-tokenizer other than behavior Isolated, invert false");
    }
    BAQ_ASSIGN_OR_RETURN(SplitPattern p, SplitPatternFromRegex(regex->get<std::string>()));
    tok.pattern_ = p;
    byte_level = &(*seq)[1];
  } else if (TypeOf(*pre) != "ByteLevel") {
    return Unsupported(source, absl::StrCat("pre_tokenizer \"", TypeOf(*pre), "\""));
  }
  BAQ_ASSIGN_OR_RETURN(tok.add_prefix_space_,
                       Bool(*byte_level, "add_prefix_space", true, source, "ByteLevel."));
  BAQ_ASSIGN_OR_RETURN(bool use_regex, Bool(*byte_level, "use_regex", true, source, "ByteLevel."));
  if (use_regex && tok.pattern_.has_value()) {
    return Unsupported(source, "Split followed by ByteLevel(use_regex=true)");
  }
  if (use_regex) tok.pattern_ = SplitPattern::kGpt2;
  if (const Json* dec = Find(j, "decoder"); dec != nullptr && TypeOf(*dec) != "ByteLevel") {
    return Unsupported(source, absl::StrCat("decoder \"", TypeOf(*dec), "\""));
  }

  // Byte alphabet.
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    AppendUtf8(ByteToUnicode()[b], ch);
    tok.byte_ids_[b] = tok.TokenToId(ch).value_or(-1);
    for (unsigned char u : ch) {
      const std::optional<int32_t> id = tok.TokenToId(absl::StrFormat("<0x%02X>", u));
      if (!id.has_value()) {
        tok.byte_fallback_ids_[b].clear();
        break;
      }
      tok.byte_fallback_ids_[b].push_back(*id);
    }
  }

  // BOS/EOS from tokenizer_config.json.
  if (!tokenizer_config_json.empty()) {
    const Json config =
        Json::parse(tokenizer_config_json.begin(), tokenizer_config_json.end(), nullptr, false);
    if (config.is_discarded() || !config.is_object()) {
      return absl::InvalidArgumentError("tokenizer_config.json: not a JSON object");
    }
    for (auto [key, out] :
         {std::make_pair("bos_token", &tok.bos_id_), std::make_pair("eos_token", &tok.eos_id_)}) {
      BAQ_ASSIGN_OR_RETURN(std::optional<std::string> name, SpecialTokenName(config, key));
      if (!name.has_value()) continue;
      *out = tok.TokenToId(*name);
      if (!out->has_value()) {
        return Invalid("tokenizer_config.json", key,
                       absl::StrCat("\"", *name, "\" is not a token"));
      }
    }
  }
  return tok;
}

}  // namespace baq
