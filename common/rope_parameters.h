// common/rope_parameters.h
//
// RopeParameters: the rotary position embedding of a decoder-only LM as
// transformers 5.x standardizes it (modeling_rope_utils.py,
// RotaryEmbeddingConfigMixin.standardize_rope_params), parsed from any of the
// key layouts config.json files use:
//  * transformers 5: "rope_parameters": {"rope_type", "rope_theta", ...};
//  * transformers 4.4x: top-level "rope_theta" and an optional
//    "rope_scaling": {"rope_type" | "type", "factor", ...} (rope_scaling wins
//    over rope_parameters when both are present, as in
//    convert_rope_params_to_dict);
//  * Gemma-3 (5.x): "rope_parameters" keyed by layer type
//    ({"full_attention": {...}, "sliding_attention": {...}}); 4.x Gemma-3:
//    "rope_scaling" for full attention and "rope_local_base_freq" for the
//    sliding layers.
// Supported types: default, linear, dynamic, yarn, longrope, llama3 (Phi-3's
// legacy "su"/"yarn" mean longrope). Others are Unimplemented, naming the type.
//
// Numbers only: the tensors (inv_freq, cos/sin) are computed by
// worker/model/rope.h. Plain value type; thread-compatible.
#ifndef BAQ_COMMON_ROPE_PARAMETERS_H_
#define BAQ_COMMON_ROPE_PARAMETERS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json_fwd.hpp"

namespace baq {

struct RopeParameters {
  std::string type = "default";  // default|linear|dynamic|yarn|longrope|llama3.
  double theta = 10000.0;
  // Rotated dimensions: int(head_dim * partial_rotary_factor), even.
  int64_t rotary_dim = 0;
  // linear, dynamic, yarn, llama3 (and longrope's default attention factor).
  double factor = 1.0;
  // The model's max_position_embeddings (dynamic NTK's threshold, yarn's and
  // longrope's default factor).
  int64_t max_position_embeddings = 0;
  // yarn, longrope, llama3: the pretraining length.
  int64_t original_max_position_embeddings = 0;
  // Multiplies cos and sin (yarn's mscale, longrope's scaling); 1 otherwise.
  double attention_factor = 1.0;
  // yarn.
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  bool truncate = true;
  // llama3.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  // longrope: rotary_dim / 2 factors each; long ones apply to sequences longer
  // than original_max_position_embeddings.
  std::vector<double> short_factor;
  std::vector<double> long_factor;
};

// Parses the rope of one config.json object. `layer_type` selects the entry
// of a per-layer-type "rope_parameters" (Gemma-3); empty for the usual single
// one. `default_theta` is the family's default; `head_dim` the attention head
// width. Phi-3 reads "original_max_position_embeddings" from the top level
// (default 4096) as transformers does. `source` names the file in errors:
// InvalidArgument for a malformed or missing field, Unimplemented for an
// unsupported rope type.
absl::StatusOr<RopeParameters> ParseRopeParameters(const nlohmann::json& config,
                                                   absl::string_view model_type,
                                                   absl::string_view layer_type,
                                                   double default_theta, int64_t head_dim,
                                                   int64_t max_position_embeddings,
                                                   absl::string_view source);

}  // namespace baq

#endif  // BAQ_COMMON_ROPE_PARAMETERS_H_
