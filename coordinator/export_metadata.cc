#include "coordinator/export_metadata.h"

#include <cmath>
#include <map>
#include <set>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace baq::coordinator {
namespace {

// Module name -> width from the report (empty if absent).
std::map<std::string, int> ModuleBits(const nlohmann::json& report) {
  std::map<std::string, int> bits;
  if (!report.contains("gptq_module_bits")) return bits;
  for (const auto& [module, b] : report["gptq_module_bits"].items()) bits[module] = b.get<int>();
  return bits;
}

// The width most modules have (the smallest on ties); `fallback` if none.
int MostCommonBits(const std::map<std::string, int>& bits, int fallback) {
  std::map<int, int> count;
  for (const auto& [module, b] : bits) ++count[b];
  int best = fallback, best_count = 0;
  for (const auto& [b, n] : count) {
    if (n > best_count) {
      best = b;
      best_count = n;
    }
  }
  return best;
}

std::string RegexEscape(absl::string_view s) {
  std::string out;
  for (char c : s) {
    if (std::string_view(".^$*+?()[]{}|\\").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

// vLLM loads these projections as one fused linear layer named after the
// group (vllm/model_executor/models/*: packed_modules_mapping).
struct FusedGroup {
  const char* fused;
  std::vector<const char*> members;
};
const FusedGroup kFusedGroups[] = {{"qkv_proj", {"q_proj", "k_proj", "v_proj"}},
                                   {"gate_up_proj", {"gate_proj", "up_proj"}}};

// The names a module is loaded under: itself, plus its fused group's name
// when every member present in `bits` has the module's width.
std::vector<std::string> LoadedNames(const std::string& module,
                                     const std::map<std::string, int>& bits) {
  std::vector<std::string> names = {module};
  const size_t dot = module.rfind('.');
  if (dot == std::string::npos) return names;
  const std::string prefix = module.substr(0, dot + 1), leaf = module.substr(dot + 1);
  for (const FusedGroup& g : kFusedGroups) {
    bool member = false, same = true;
    for (const char* m : g.members) member = member || leaf == m;
    if (!member) continue;
    for (const char* m : g.members) {
      auto it = bits.find(prefix + m);
      if (it != bits.end() && it->second != bits.at(module)) same = false;
    }
    if (same) names.push_back(prefix + g.fused);
  }
  return names;
}

}  // namespace

nlohmann::json GptqConfigJson(const JobConfig& config, const nlohmann::json& report) {
  const QuantizationConfig& q = config.quant;
  const std::map<std::string, int> bits = ModuleBits(report);
  const int default_bits =
      MostCommonBits(bits, report.value("gptq_default_bits",
                                        static_cast<int>(std::lround(q.target_bits))));
  nlohmann::json cfg = {{"quant_method", "gptq"},
                        {"checkpoint_format", "gptq"},
                        {"bits", default_bits},
                        {"group_size", q.group_size},
                        {"desc_act", q.act_order},
                        {"sym", q.symmetric},
                        {"static_groups", q.static_groups},
                        {"true_sequential", false},
                        {"lm_head", false},
                        {"damp_percent", q.percdamp}};
  nlohmann::json dynamic = nlohmann::json::object();
  std::set<std::string> done;
  for (const auto& [module, b] : bits) {
    if (b == default_bits) continue;
    std::vector<std::string> alternatives;
    for (const std::string& name : LoadedNames(module, bits)) {
      if (done.insert(name).second) alternatives.push_back(RegexEscape(name));
    }
    if (alternatives.empty()) continue;
    const std::string body = alternatives.size() == 1
                                 ? alternatives[0]
                                 : absl::StrCat("(?:", absl::StrJoin(alternatives, "|"), ")");
    dynamic[absl::StrCat("+:^", body, "$")] = {{"bits", b}};
  }
  if (!dynamic.empty()) cfg["dynamic"] = dynamic;
  return cfg;
}

nlohmann::json CompressedTensorsConfigJson(const JobConfig& config, const nlohmann::json& report) {
  const QuantizationConfig& q = config.quant;
  std::map<int, std::vector<std::string>> by_bits;
  for (const auto& [module, b] : ModuleBits(report)) by_bits[b].push_back(module);
  nlohmann::json groups = nlohmann::json::object();
  int index = 0;
  for (const auto& [b, modules] : by_bits) {
    nlohmann::json weights = {{"num_bits", b},
                              {"type", "int"},
                              {"symmetric", q.symmetric},
                              {"dynamic", false},
                              {"actorder", q.act_order ? nlohmann::json("weight") : nullptr}};
    if (q.group_size > 0) {
      weights["strategy"] = "group";
      weights["group_size"] = q.group_size;
    } else {
      weights["strategy"] = "channel";
      weights["group_size"] = nullptr;
    }
    groups[absl::StrCat("group_", index++)] = {{"targets", modules},
                                               {"weights", weights},
                                               {"input_activations", nullptr},
                                               {"output_activations", nullptr},
                                               {"format", "pack-quantized"}};
  }
  return {{"quant_method", "compressed-tensors"},
          {"format", "pack-quantized"},
          {"quantization_status", "compressed"},
          {"config_groups", groups},
          {"ignore", nlohmann::json::array({"lm_head"})},
          {"kv_cache_scheme", nullptr},
          {"version", kCompressedTensorsVersion}};
}

std::string ModelCardMarkdown(OutputFormat format, const JobConfig& config,
                              const nlohmann::json& report) {
  const QuantizationConfig& q = config.quant;
  std::string md = "---\nlibrary_name: transformers\ntags:\n- baq\n- quantized\n";
  if (format == OutputFormat::kGptq) md += "- gptq\n";
  if (format == OutputFormat::kCompressedTensors) md += "- compressed-tensors\n";
  md += "---\n\n";
  std::string base = config.model_dir;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  base = base.substr(base.rfind('/') == std::string::npos ? 0 : base.rfind('/') + 1);
  absl::StrAppend(&md, "# ", base, " quantized with baq (", OutputFormatName(format), ")\n\n");
  absl::StrAppend(&md, "| | |\n|---|---|\n");
  absl::StrAppend(&md, "| base model | ", config.model_dir, " |\n");
  absl::StrAppend(&md, "| method | ", QuantMethodName(q.method), " (", ExecutionModeName(config.mode),
                  " mode) |\n");
  absl::StrAppend(&md, "| format | ", OutputFormatName(format), " |\n");
  absl::StrAppend(&md, absl::StrFormat("| target bits | %g |\n", q.target_bits));
  absl::StrAppend(&md, absl::StrFormat("| achieved bits (codes, per weight) | %.4f |\n",
                                       report.value("achieved_bits", 0.0)));
  if (report.contains("allocation")) {
    absl::StrAppend(&md, "| allocation | ", report["allocation"].get<std::string>(), " |\n");
  }
  const std::map<std::string, int> bits = ModuleBits(report);
  if (!bits.empty() && format != OutputFormat::kFakeQuant && format != OutputFormat::kPacked) {
    std::map<int, int> count;
    for (const auto& [module, b] : bits) ++count[b];
    std::vector<std::string> parts;
    for (const auto& [b, n] : count) parts.push_back(absl::StrCat(n, " × ", b, "-bit"));
    absl::StrAppend(&md, "| module widths | ", absl::StrJoin(parts, ", "), " |\n");
  }
  absl::StrAppend(&md, "| grid | ", q.symmetric ? "symmetric" : "asymmetric", ", ",
                  q.group_size > 0 ? absl::StrCat("group size ", q.group_size) : "per row",
                  q.act_order ? ", act_order" : "", " |\n");
  absl::StrAppend(&md, "| calibration | ", absl::StrJoin(config.calibration.files, ", "), ": ",
                  config.calibration.num_samples, " windows × ", config.calibration.seqlen,
                  " tokens, seed ", config.calibration.seed, " |\n");
  absl::StrAppend(&md, absl::StrFormat("| total proxy loss | %.6g |\n",
                                       report.value("total_proxy_loss", 0.0)));
  if (report.contains("eval_gate")) {
    const nlohmann::json& g = report["eval_gate"];
    absl::StrAppend(&md, absl::StrFormat("| perplexity (fake-quant, %s, seqlen %d) | %.4f |\n",
                                         g.value("data", ""), g.value("seqlen", 0),
                                         g["ppl"].is_number() ? g["ppl"].get<double>() : NAN));
    if (g.contains("base_ppl") && g["base_ppl"].is_number()) {
      absl::StrAppend(&md, absl::StrFormat("| perplexity of the unquantized model | %.4f |\n",
                                           g.value("base_ppl", 0.0)));
    }
  } else {
    md += "| perplexity | not measured (no evaluation gate ran) |\n";
  }
  md += "\nPer-layer bits and proxy losses: `quant_report.json`. ";
  switch (format) {
    case OutputFormat::kFakeQuant:
      md += "Dense dequantized weights: loads as the original architecture.\n";
      break;
    case OutputFormat::kPacked:
      md += "baq-packed-v1: read by `baq eval` (per-column widths).\n";
      break;
    case OutputFormat::kGptq:
      md += "GPTQ v1 checkpoint (qweight/qzeros/scales/g_idx); per-module widths as GPTQModel "
            "`dynamic` overrides.\n";
      break;
    case OutputFormat::kCompressedTensors:
      md += "compressed-tensors pack-quantized (vLLM, transformers); one config group per "
            "module width.\n";
      break;
  }
  return md;
}

}  // namespace baq::coordinator
