// BpeTokenizer loading: tokenizer.json (and tokenizer_config.json) parsing.
// Encoding is in bpe_tokenizer.cc; the components in common/tokenizer/.
#include <algorithm>
#include <cstdint>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/bpe_tokenizer.h"
#include "common/file_contents.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "common/tokenizer/pipeline.h"
#include "nlohmann/json.hpp"

namespace baq {
namespace {

using tokenizer::Json;
using tokenizer::JsonFind;

// "bos_token": "<s>" or {"content": "<s>", ...} in tokenizer_config.json.
absl::StatusOr<std::optional<std::string>> SpecialTokenName(const Json& config,
                                                            const char* key) {
  const Json* v = JsonFind(config, key);
  if (v == nullptr) return std::optional<std::string>();
  if (v->is_string()) return std::optional<std::string>(v->get<std::string>());
  if (const Json* content = JsonFind(*v, "content");
      content != nullptr && content->is_string()) {
    return std::optional<std::string>(content->get<std::string>());
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tokenizer_config.json: field \"", key,
                   "\" must be a string or {\"content\": ...}"));
}

// The id -> token tables, from the model and the added tokens.
void IndexTokens(tokenizer::Pipeline& p) {
  int64_t max_id = -1;
  for (const auto& [token, id] : p.model.vocab())
    max_id = std::max<int64_t>(max_id, id);
  for (const auto& [token, id] : p.added.ids())
    max_id = std::max<int64_t>(max_id, id);
  p.id_to_token.assign(max_id + 1, std::string());
  p.is_added.assign(max_id + 1, false);
  for (const auto& [token, id] : p.model.vocab()) p.id_to_token[id] = token;
  for (const auto& [token, id] : p.added.ids()) {
    p.id_to_token[id] = token;
    p.is_added[id] = true;
  }
}

std::optional<int32_t> LookUpToken(const tokenizer::Pipeline& p,
                                   const std::string& token) {
  if (auto it = p.added.ids().find(token); it != p.added.ids().end())
    return it->second;
  return p.model.TokenToId(token);
}

}  // namespace

absl::StatusOr<BpeTokenizer> BpeTokenizer::Load(
    const std::string& tokenizer_json_path) {
  BAQ_ASSIGN_OR_RETURN(const std::string text,
                       ReadFileContents(tokenizer_json_path));
  const size_t slash = tokenizer_json_path.find_last_of('/');
  const std::string dir = slash == std::string::npos
                              ? std::string(".")
                              : tokenizer_json_path.substr(0, slash);
  std::string config;
  if (std::ifstream(dir + "/tokenizer_config.json").good()) {
    BAQ_ASSIGN_OR_RETURN(config,
                         ReadFileContents(dir + "/tokenizer_config.json"));
  }
  return FromJson(text, tokenizer_json_path, config);
}

absl::StatusOr<BpeTokenizer> BpeTokenizer::FromJson(
    absl::string_view tokenizer_json, absl::string_view source,
    absl::string_view tokenizer_config_json) {
  const Json j =
      Json::parse(tokenizer_json.begin(), tokenizer_json.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not a JSON object"));
  }
  const Json* model_json = JsonFind(j, "model");
  if (model_json == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": field \"model\" is missing"));
  }
  BAQ_ASSIGN_OR_RETURN(
      tokenizer::BpeModel model,
      Annotate(tokenizer::BpeModel::Parse(*model_json, "model"), source));
  std::unique_ptr<tokenizer::Normalizer> normalizer;
  if (const Json* n = JsonFind(j, "normalizer"); n != nullptr) {
    BAQ_ASSIGN_OR_RETURN(
        normalizer,
        Annotate(tokenizer::ParseNormalizer(*n, "normalizer"), source));
  }
  std::unique_ptr<tokenizer::PreTokenizer> pre_tokenizer;
  if (const Json* p = JsonFind(j, "pre_tokenizer"); p != nullptr) {
    BAQ_ASSIGN_OR_RETURN(
        pre_tokenizer,
        Annotate(tokenizer::ParsePreTokenizer(*p, "pre_tokenizer"), source));
  }
  BAQ_ASSIGN_OR_RETURN(
      std::vector<tokenizer::AddedToken> added_tokens,
      Annotate(tokenizer::AddedVocabulary::Parse(JsonFind(j, "added_tokens")),
               source));
  BAQ_ASSIGN_OR_RETURN(tokenizer::AddedVocabulary added,
                       Annotate(tokenizer::AddedVocabulary::Build(
                                    added_tokens, model, normalizer.get()),
                                source));

  auto p =
      std::make_unique<tokenizer::Pipeline>(std::move(model), std::move(added));
  p->normalizer = std::move(normalizer);
  p->pre_tokenizer = std::move(pre_tokenizer);
  IndexTokens(*p);

  // BOS/EOS from tokenizer_config.json.
  if (!tokenizer_config_json.empty()) {
    const Json config =
        Json::parse(tokenizer_config_json.begin(), tokenizer_config_json.end(),
                    nullptr, false);
    if (config.is_discarded() || !config.is_object()) {
      return absl::InvalidArgumentError(
          "tokenizer_config.json: not a JSON object");
    }
    for (auto [key, out] : {std::make_pair("bos_token", &p->bos_id),
                            std::make_pair("eos_token", &p->eos_id)}) {
      BAQ_ASSIGN_OR_RETURN(std::optional<std::string> name,
                           SpecialTokenName(config, key));
      if (!name.has_value()) continue;
      *out = LookUpToken(*p, *name);
      if (!out->has_value()) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokenizer_config.json: field \"", key, "\": \"",
                         *name, "\" is not a token"));
      }
    }
  }
  return BpeTokenizer(std::move(p));
}

}  // namespace baq
