// common/tokenizer/pipeline.h
//
// Internal to BpeTokenizer (common/bpe_tokenizer.{h,cc},
// bpe_tokenizer_json.cc): the loaded components and token tables behind its
// pointer, so that the widely included bpe_tokenizer.h does not pull in the
// component headers (and nlohmann/json) everywhere.
//
// Immutable after loading; thread-safe. Owned by its BpeTokenizer.
#ifndef BAQ_COMMON_TOKENIZER_PIPELINE_H_
#define BAQ_COMMON_TOKENIZER_PIPELINE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/tokenizer/added_vocabulary.h"
#include "common/tokenizer/bpe_model.h"
#include "common/tokenizer/normalizers.h"
#include "common/tokenizer/pre_tokenizers.h"

namespace baq::tokenizer {

struct Pipeline {
  Pipeline(BpeModel m, AddedVocabulary a)
      : model(std::move(m)), added(std::move(a)) {}

  std::unique_ptr<Normalizer> normalizer;       // Null: none.
  std::unique_ptr<PreTokenizer> pre_tokenizer;  // Null: none.
  BpeModel model;
  AddedVocabulary added;
  std::optional<int32_t> bos_id;
  std::optional<int32_t> eos_id;
  std::vector<std::string> id_to_token;  // Empty string: no token has the id.
  std::vector<bool> is_added;            // By id.
};

}  // namespace baq::tokenizer

#endif  // BAQ_COMMON_TOKENIZER_PIPELINE_H_
