// common/config_fields.h
//
// Internal to common/model_config*.cc: typed access to the fields of one
// config.json (Fields), and the parser of the LLaMA/Gemma/MoE families that
// model_config_decoder.cc implements. Not for other callers.
#ifndef BAQ_COMMON_CONFIG_FIELDS_H_
#define BAQ_COMMON_CONFIG_FIELDS_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/model_config.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace baq::config_internal {

using Json = nlohmann::json;

// Typed access to the fields of one config.json. Every error names the file
// and the field. A JSON null counts as absent: transformers writes
// `"head_dim": null` or `"num_key_value_heads": null` for "use the default".
class Fields {
 public:
  Fields(const Json& json, absl::string_view source) : json_(json), source_(source) {}

  const Json* Find(absl::string_view key) const {
    auto it = json_.find(std::string(key));
    if (it == json_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  absl::Status Error(absl::string_view key, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": field \"", key, "\" ", what));
  }

  absl::StatusOr<int64_t> Int(absl::string_view key, std::optional<int64_t> dflt) const {
    const Json* v = Find(key);
    if (v == nullptr) {
      if (dflt.has_value()) return *dflt;
      return Error(key, "is missing");
    }
    if (v->is_number_unsigned()) {
      if (v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Error(key, "is out of range");
      }
      return static_cast<int64_t>(v->get<uint64_t>());
    }
    if (!v->is_number_integer())
      return Error(key, absl::StrCat("must be an integer, got ", v->dump()));
    return v->get<int64_t>();
  }

  absl::StatusOr<int64_t> PositiveInt(absl::string_view key,
                                      std::optional<int64_t> dflt = std::nullopt) const {
    BAQ_ASSIGN_OR_RETURN(int64_t value, Int(key, dflt));
    if (value <= 0) return Error(key, absl::StrCat("must be positive, got ", value));
    return value;
  }

  absl::StatusOr<double> Double(absl::string_view key, double dflt) const {
    const Json* v = Find(key);
    if (v == nullptr) return dflt;
    if (!v->is_number()) return Error(key, absl::StrCat("must be a number, got ", v->dump()));
    return v->get<double>();
  }

  absl::StatusOr<bool> Bool(absl::string_view key, bool dflt) const {
    const Json* v = Find(key);
    if (v == nullptr) return dflt;
    if (!v->is_boolean()) return Error(key, absl::StrCat("must be a boolean, got ", v->dump()));
    return v->get<bool>();
  }

  absl::StatusOr<std::string> String(absl::string_view key, std::optional<std::string> dflt) const {
    const Json* v = Find(key);
    if (v == nullptr) {
      if (dflt.has_value()) return *dflt;
      return Error(key, "is missing");
    }
    if (!v->is_string()) return Error(key, absl::StrCat("must be a string, got ", v->dump()));
    return v->get<std::string>();
  }

  absl::string_view source() const { return source_; }

 private:
  const Json& json_;
  const absl::string_view source_;
};

// Unimplemented: a valid config using a feature baq does not execute.
inline absl::Status Unsupported(const Fields& f, absl::string_view key, absl::string_view what) {
  return absl::UnimplementedError(
      absl::StrCat(f.source(), ": field \"", key, "\" ", what, " is not supported"));
}

// Parses the llama, mistral, qwen2/3, phi3, gemma2/3 and MoE families' fields
// into `c` (model_type and the common sizes already set).
absl::Status ParseDecoderFamily(const Fields& f, const Json& json, ModelConfig& c);

}  // namespace baq::config_internal

#endif  // BAQ_COMMON_CONFIG_FIELDS_H_
