// coordinator/export_metadata.h
//
// The metadata a published checkpoint carries for the runtimes that load it
// (docs/output-formats.md):
//   - GptqConfigJson: config.json's `quantization_config` of the gptq format
//     (transformers/optimum/GPTQModel/vLLM GPTQ). `bits` is the most common
//     module width; modules of another width get GPTQModel `dynamic`
//     overrides ("+:<regex>": {"bits": b}), matched with re.match on the
//     module name, including vLLM's fused name (qkv_proj, gate_up_proj) when
//     every member of the fused group has that width.
//   - CompressedTensorsConfigJson: the compressed-tensors `pack-quantized`
//     config (vLLM, transformers): one config group per distinct module
//     width, whose `targets` are the exact module names; lm_head ignored.
//   - ModelCardMarkdown: README.md stating method, bits, allocation,
//     calibration and the evaluation gate's perplexity when one ran.
// All read the job and its quant_report.json (`gptq_module_bits`: module
// name -> width, present when the gptq or compressed-tensors format was
// requested).
//
// Pure functions; thread-safe.
#ifndef BAQ_COORDINATOR_EXPORT_METADATA_H_
#define BAQ_COORDINATOR_EXPORT_METADATA_H_

#include <string>

#include "common/job_config.h"
#include "nlohmann/json.hpp"

namespace baq::coordinator {

nlohmann::json GptqConfigJson(const JobConfig& config, const nlohmann::json& report);
nlohmann::json CompressedTensorsConfigJson(const JobConfig& config, const nlohmann::json& report);
std::string ModelCardMarkdown(OutputFormat format, const JobConfig& config,
                              const nlohmann::json& report);

// The compressed-tensors release whose pack-quantized layout we write and
// test against. Its 3-bit packing (32 codes in 3 words) differs from older
// releases, which packed floor(32/3) = 10 codes per word.
inline constexpr char kCompressedTensorsVersion[] = "0.20.1";

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_EXPORT_METADATA_H_
