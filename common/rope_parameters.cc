#include "common/rope_parameters.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace baq {
namespace {

using Json = nlohmann::json;

constexpr absl::string_view kSupportedRopeTypes = "default, linear, dynamic, yarn, longrope, llama3";

// A JSON null counts as absent (transformers writes "rope_scaling": null).
const Json* Find(const Json& object, absl::string_view key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(std::string(key));
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

class RopeFields {
 public:
  RopeFields(const Json& top, const Json& rope, std::string where)
      : top_(top), rope_(rope), where_(std::move(where)) {}

  absl::Status Error(absl::string_view key, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(where_, ": field \"", key, "\" ", what));
  }

  // The rope object's value of `key`, else (when `top_level`) the config's.
  const Json* Get(absl::string_view key, bool top_level) const {
    const Json* v = Find(rope_, key);
    if (v == nullptr && top_level) v = Find(top_, key);
    return v;
  }

  absl::StatusOr<std::optional<double>> Number(absl::string_view key, bool top_level = false) const {
    const Json* v = Get(key, top_level);
    if (v == nullptr) return std::optional<double>();
    if (!v->is_number()) return Error(key, absl::StrCat("must be a number, got ", v->dump()));
    return std::optional<double>(v->get<double>());
  }

  absl::StatusOr<double> Required(absl::string_view key, absl::string_view type) const {
    BAQ_ASSIGN_OR_RETURN(std::optional<double> v, Number(key));
    if (!v.has_value()) return Error(key, absl::StrCat("is required by rope type ", type));
    return *v;
  }

  absl::StatusOr<std::vector<double>> Factors(absl::string_view key, size_t expected) const {
    const Json* v = Get(key, false);
    if (v == nullptr || !v->is_array() || v->size() != expected) {
      return Error(key, absl::StrCat("must be a list of ", expected,
                                     " numbers (rotary_dim / 2) for rope type longrope"));
    }
    std::vector<double> out;
    for (const Json& x : *v) {
      if (!x.is_number()) return Error(key, "must hold numbers only");
      out.push_back(x.get<double>());
    }
    return out;
  }

 private:
  const Json& top_;
  const Json& rope_;
  const std::string where_;
};

// yarn's get_mscale.
double YarnMscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

}  // namespace

absl::StatusOr<RopeParameters> ParseRopeParameters(const Json& config,
                                                   absl::string_view model_type,
                                                   absl::string_view layer_type,
                                                   double default_theta, int64_t head_dim,
                                                   int64_t max_position_embeddings,
                                                   absl::string_view source) {
  static const Json kEmpty = Json::object();
  // transformers' convert_rope_params_to_dict: rope_scaling or rope_parameters.
  const char* key = Find(config, "rope_scaling") != nullptr ? "rope_scaling" : "rope_parameters";
  const Json* rope = Find(config, key);
  bool top_theta = true;  // Whether the top-level "rope_theta" applies.
  std::string where = absl::StrCat(source, ": ", key);
  if (!layer_type.empty()) {
    const Json* per_layer = Find(config, "rope_parameters");
    if (per_layer != nullptr && Find(*per_layer, layer_type) != nullptr) {
      rope = Find(*per_layer, layer_type);
      where = absl::StrCat(source, ": rope_parameters.", layer_type);
    } else if (layer_type == "sliding_attention") {
      // transformers 4.x Gemma-3: default RoPE at rope_local_base_freq.
      rope = nullptr;
      top_theta = false;
      const Json* local = Find(config, "rope_local_base_freq");
      if (local != nullptr && !local->is_number()) {
        return absl::InvalidArgumentError(
            absl::StrCat(source, ": field \"rope_local_base_freq\" must be a number"));
      }
      default_theta = local != nullptr ? local->get<double>() : 10000.0;
    }
  }
  if (rope != nullptr && !rope->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, " must be an object"));
  }
  const RopeFields f(config, rope != nullptr ? *rope : kEmpty, where);
  const bool is_phi3 = model_type == "phi3";

  RopeParameters p;
  p.max_position_embeddings = max_position_embeddings;
  BAQ_ASSIGN_OR_RETURN(std::optional<double> theta, f.Number("rope_theta", top_theta));
  p.theta = theta.value_or(default_theta);
  if (!(p.theta > 0)) return f.Error("rope_theta", "must be positive");
  const Json* type = f.Get("rope_type", false);
  if (type == nullptr) type = f.Get("type", false);
  if (type != nullptr && !type->is_string()) return f.Error("rope_type", "must be a string");
  p.type = type != nullptr ? type->get<std::string>() : "default";
  if (is_phi3 && (p.type == "su" || p.type == "yarn")) p.type = "longrope";  // Phi3Config.
  if (p.type != "default" && p.type != "linear" && p.type != "dynamic" && p.type != "yarn" &&
      p.type != "longrope" && p.type != "llama3") {
    return absl::UnimplementedError(absl::StrCat(where, ": rope_type \"", p.type,
                                                 "\" is not supported (supported: ",
                                                 kSupportedRopeTypes, ")"));
  }

  // A top-level partial_rotary_factor overrides the rope object's
  // (standardize_rope_params copies the config attribute in).
  BAQ_ASSIGN_OR_RETURN(std::optional<double> partial, f.Number("partial_rotary_factor", true));
  if (const Json* top = Find(config, "partial_rotary_factor"); top != nullptr && top->is_number()) {
    partial = top->get<double>();
  }
  const double partial_factor = partial.value_or(1.0);
  p.rotary_dim = static_cast<int64_t>(static_cast<double>(head_dim) * partial_factor);
  if (!(partial_factor > 0 && partial_factor <= 1) || p.rotary_dim < 2 || p.rotary_dim % 2 != 0) {
    return f.Error("partial_rotary_factor",
                   absl::StrCat("= ", partial_factor, " gives rotary_dim ", p.rotary_dim,
                                " of head_dim ", head_dim, " (must be even and positive)"));
  }

  const bool needs_original = p.type == "llama3" || p.type == "yarn" || p.type == "longrope";
  if (needs_original) {
    // Phi3Config always has the attribute (default 4096) and it takes
    // priority; other configs have it when config.json has the key.
    std::optional<double> original;
    if (const Json* top = Find(config, "original_max_position_embeddings"); top != nullptr) {
      if (!top->is_number()) return f.Error("original_max_position_embeddings", "must be a number");
      original = top->get<double>();
    } else if (is_phi3) {
      original = 4096;
    } else {
      BAQ_ASSIGN_OR_RETURN(original, f.Number("original_max_position_embeddings"));
    }
    p.original_max_position_embeddings =
        static_cast<int64_t>(original.value_or(static_cast<double>(max_position_embeddings)));
    if (p.original_max_position_embeddings <= 0) {
      return f.Error("original_max_position_embeddings", "must be positive");
    }
  }
  const double ratio = static_cast<double>(max_position_embeddings) /
                       static_cast<double>(std::max<int64_t>(1, p.original_max_position_embeddings));

  if (p.type == "linear" || p.type == "dynamic" || p.type == "llama3") {
    BAQ_ASSIGN_OR_RETURN(p.factor, f.Required("factor", p.type));
  } else if (p.type == "yarn" || p.type == "longrope") {
    BAQ_ASSIGN_OR_RETURN(std::optional<double> factor, f.Number("factor"));
    p.factor = factor.value_or(ratio);
  }
  if (!(p.factor > 0)) return f.Error("factor", "must be positive");

  if (p.type == "llama3") {
    BAQ_ASSIGN_OR_RETURN(p.low_freq_factor, f.Required("low_freq_factor", p.type));
    BAQ_ASSIGN_OR_RETURN(p.high_freq_factor, f.Required("high_freq_factor", p.type));
    if (!(p.high_freq_factor > p.low_freq_factor && p.low_freq_factor > 0)) {
      return f.Error("high_freq_factor", "must exceed low_freq_factor > 0");
    }
  } else if (p.type == "yarn") {
    BAQ_ASSIGN_OR_RETURN(std::optional<double> attention, f.Number("attention_factor"));
    BAQ_ASSIGN_OR_RETURN(std::optional<double> mscale, f.Number("mscale"));
    BAQ_ASSIGN_OR_RETURN(std::optional<double> mscale_all_dim, f.Number("mscale_all_dim"));
    if (attention.has_value()) {
      p.attention_factor = *attention;
    } else if (mscale.value_or(0) != 0 && mscale_all_dim.value_or(0) != 0) {
      p.attention_factor = YarnMscale(p.factor, *mscale) / YarnMscale(p.factor, *mscale_all_dim);
    } else {
      p.attention_factor = YarnMscale(p.factor, 1.0);
    }
    // `get("beta_fast") or 32`: absent, null and 0 all mean the default.
    BAQ_ASSIGN_OR_RETURN(std::optional<double> beta_fast, f.Number("beta_fast"));
    BAQ_ASSIGN_OR_RETURN(std::optional<double> beta_slow, f.Number("beta_slow"));
    p.beta_fast = beta_fast.value_or(0) != 0 ? *beta_fast : 32.0;
    p.beta_slow = beta_slow.value_or(0) != 0 ? *beta_slow : 1.0;
    if (const Json* truncate = f.Get("truncate", false); truncate != nullptr) {
      if (!truncate->is_boolean()) return f.Error("truncate", "must be a boolean");
      p.truncate = truncate->get<bool>();
    }
  } else if (p.type == "longrope") {
    const size_t n = static_cast<size_t>(p.rotary_dim / 2);
    BAQ_ASSIGN_OR_RETURN(p.short_factor, f.Factors("short_factor", n));
    BAQ_ASSIGN_OR_RETURN(p.long_factor, f.Factors("long_factor", n));
    BAQ_ASSIGN_OR_RETURN(std::optional<double> attention, f.Number("attention_factor"));
    if (attention.has_value()) {
      p.attention_factor = *attention;
    } else if (p.factor > 1.0) {
      p.attention_factor = std::sqrt(
          1 + std::log(p.factor) / std::log(static_cast<double>(p.original_max_position_embeddings)));
    }
  }
  return p;
}

}  // namespace baq
