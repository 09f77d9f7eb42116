#include "common/job_config.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace baq {
namespace {

// Targets per job beyond the first (each is one more output).
constexpr size_t kMaxExtraTargets = 15;

template <typename E, size_t N>
absl::StatusOr<E> ParseEnum(absl::string_view what, absl::string_view name,
                            const std::pair<absl::string_view, E> (&table)[N]) {
  std::vector<std::string> names;
  for (const auto& [n, e] : table) {
    if (n == name) return e;
    names.emplace_back(n);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown ", what, " \"", name,
                                                 "\" (supported: ", absl::StrJoin(names, ", "), ")"));
}

template <typename E, size_t N>
absl::string_view EnumName(E e, const std::pair<absl::string_view, E> (&table)[N]) {
  for (const auto& [n, v] : table) {
    if (v == e) return n;
  }
  return "?";
}

constexpr std::pair<absl::string_view, QuantMethod> kMethods[] = {
    {"baq", QuantMethod::kBaq}, {"gptq", QuantMethod::kGptq}, {"rtn", QuantMethod::kRtn}};
constexpr std::pair<absl::string_view, OutputFormat> kFormats[] = {
    {"fake-quant", OutputFormat::kFakeQuant},
    {"packed", OutputFormat::kPacked},
    {"gptq", OutputFormat::kGptq},
    {"compressed-tensors", OutputFormat::kCompressedTensors}};
constexpr std::pair<absl::string_view, ExecutionMode> kModes[] = {
    {"sequential", ExecutionMode::kSequential}, {"parallel", ExecutionMode::kParallel}};
constexpr std::pair<absl::string_view, AllocationScope> kScopes[] = {
    {"global", AllocationScope::kGlobal},
    {"global-raw", AllocationScope::kGlobalRaw},
    {"sublayer", AllocationScope::kSublayer},
    {"module", AllocationScope::kModule}};
constexpr std::pair<absl::string_view, ForwardDtype> kForwardDtypes[] = {
    {"auto", ForwardDtype::kAuto},
    {"float32", ForwardDtype::kFloat32},
    {"bfloat16", ForwardDtype::kBFloat16},
    {"float16", ForwardDtype::kFloat16}};

}  // namespace

absl::string_view QuantMethodName(QuantMethod m) { return EnumName(m, kMethods); }
absl::StatusOr<QuantMethod> ParseQuantMethod(absl::string_view n) {
  return ParseEnum("method", n, kMethods);
}
absl::string_view OutputFormatName(OutputFormat f) { return EnumName(f, kFormats); }
absl::StatusOr<OutputFormat> ParseOutputFormat(absl::string_view n) {
  return ParseEnum("output format", n, kFormats);
}
absl::string_view ExecutionModeName(ExecutionMode m) { return EnumName(m, kModes); }
absl::StatusOr<ExecutionMode> ParseExecutionMode(absl::string_view n) {
  return ParseEnum("execution mode", n, kModes);
}
absl::string_view AllocationScopeName(AllocationScope s) { return EnumName(s, kScopes); }
absl::StatusOr<AllocationScope> ParseAllocationScope(absl::string_view n) {
  return ParseEnum("allocation scope", n, kScopes);
}
absl::string_view ForwardDtypeName(ForwardDtype d) { return EnumName(d, kForwardDtypes); }
absl::StatusOr<ForwardDtype> ParseForwardDtype(absl::string_view n) {
  return ParseEnum("forward dtype", n, kForwardDtypes);
}

absl::Status JobConfig::Validate() const {
  auto bad = [](absl::string_view field, auto value, absl::string_view want) {
    return absl::InvalidArgumentError(
        absl::StrCat("job config: ", field, " = ", value, " (", want, ")"));
  };
  if (model_dir.empty()) return absl::InvalidArgumentError("job config: model_dir is empty");
  if (output_dir.empty()) return absl::InvalidArgumentError("job config: output_dir is empty");
  if (formats.empty()) return absl::InvalidArgumentError("job config: no output format");
  if (max_shard_bytes < 1) return bad("max_shard_bytes", max_shard_bytes, ">= 1");
  if (calibration.files.empty()) {
    return absl::InvalidArgumentError("job config: no calibration files");
  }
  if (calibration.num_samples < 1) return bad("num_samples", calibration.num_samples, ">= 1");
  if (calibration.seqlen < 2) return bad("seqlen", calibration.seqlen, ">= 2");
  const QuantizationConfig& q = quant;
  if (!std::isfinite(q.target_bits) || q.target_bits < 1.0 || q.target_bits > 8.0) {
    return bad("target_bits", q.target_bits, "must be in [1, 8]");
  }
  // Module allocation mixes integer widths, so any target in range works.
  const bool fractional_ok = q.method == QuantMethod::kBaq || q.module_allocation();
  if (!fractional_ok && std::floor(q.target_bits) != q.target_bits) {
    return bad("target_bits", q.target_bits, "fractional widths need method baq");
  }
  BAQ_RETURN_IF_ERROR(ValidateModuleAllocation());
  if (extra_target_bits.size() > kMaxExtraTargets) {
    return bad("extra_target_bits", extra_target_bits.size(),
               absl::StrCat("at most ", kMaxExtraTargets, " more targets per job"));
  }
  const std::vector<double> all_targets = AllTargets();
  for (size_t i = 0; i < extra_target_bits.size(); ++i) {
    const double t = extra_target_bits[i];
    const std::string field = absl::StrCat("extra_target_bits[", i, "]");
    if (!std::isfinite(t) || t < 1.0 || t > 8.0) return bad(field, t, "must be in [1, 8]");
    if (!fractional_ok && std::floor(t) != t) {
      return bad(field, t, "fractional widths need method baq");
    }
    if (std::count(all_targets.begin(), all_targets.end(), t) > 1) {
      return bad(field, t, "every target must differ");
    }
  }
  if (!extra_target_bits.empty() && mode != ExecutionMode::kParallel) {
    return absl::InvalidArgumentError(
        "job config: several bit targets share one measurement only in parallel mode (in "
        "sequential mode each target's later blocks see different quantized inputs); use "
        "mode parallel or one job per target");
  }
  if (!measurement_dir.empty() && mode != ExecutionMode::kParallel) {
    return absl::InvalidArgumentError(
        "job config: measurement_dir (keeping or reusing a measurement) needs mode parallel");
  }
  if (quantize_projections) {
    return absl::UnimplementedError(
        "job config: quantize_projections (quantizing OPT's project_in/project_out) is not "
        "implemented; without it they are kept unquantized, like the embeddings and the LM head "
        "(docs/model-support.md, OPT)");
  }
  if (q.group_size == 0 || q.group_size < -1) return bad("group_size", q.group_size, "-1 or > 0");
  if (!(q.percdamp > 0.0) || q.percdamp > 1.0) return bad("percdamp", q.percdamp, "in (0, 1]");
  if (q.block_size < 1) return bad("block_size", q.block_size, ">= 1");
  if (!(q.theta > 0.0) || !std::isfinite(q.theta)) return bad("theta", q.theta, "> 0");
  if (q.max_levels < 2 || q.max_levels > 256) return bad("max_levels", q.max_levels, "in [2, 256]");
  if (q.method == QuantMethod::kBaq && !q.module_allocation() && q.group_size != -1) {
    return bad("group_size", q.group_size, "BAQ allocates per column; use -1");
  }
  if (calibration_shards < 0 || calibration_shards > 64) {
    return bad("calibration_shards", calibration_shards, "in [1, 64], or 0: one per worker");
  }
  if (calibration_shards > 1) {
    if (mode != ExecutionMode::kSequential) {
      return bad("calibration_shards", calibration_shards,
                 "splitting the calibration set needs mode sequential");
    }
    const int64_t chunks =
        (calibration.num_samples + kCalibrationWindowsPerChunk - 1) / kCalibrationWindowsPerChunk;
    if (calibration_shards > chunks) {
      return bad("calibration_shards", calibration_shards,
                 absl::StrCat("at most the ", chunks, " calibration chunk(s) of ",
                              kCalibrationWindowsPerChunk, " windows that num_samples = ",
                              calibration.num_samples, " makes"));
    }
  }
  const EvalGate& g = eval_gate;
  const bool any_limit = g.max_ppl != 0 || g.max_ppl_ratio != 0;
  if (!g.enabled()) {
    if (any_limit) {
      return absl::InvalidArgumentError("job config: eval_gate has a limit but no text_file");
    }
    return absl::OkStatus();
  }
  if (g.seqlen < 2) return bad("eval_gate.seqlen", g.seqlen, ">= 2");
  if (!std::isfinite(g.max_ppl) || g.max_ppl < 0) return bad("eval_gate.max_ppl", g.max_ppl, ">= 0");
  if (!std::isfinite(g.max_ppl_ratio) || g.max_ppl_ratio < 0) {
    return bad("eval_gate.max_ppl_ratio", g.max_ppl_ratio, ">= 0");
  }
  if ((g.max_ppl > 0) == (g.max_ppl_ratio > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "job config: eval_gate needs exactly one limit > 0 (max_ppl = ", g.max_ppl,
        ", max_ppl_ratio = ", g.max_ppl_ratio, ")"));
  }
  if (std::find(formats.begin(), formats.end(), OutputFormat::kFakeQuant) == formats.end()) {
    return absl::InvalidArgumentError(
        "job config: eval_gate evaluates the fake-quant output; add fake-quant to the formats");
  }
  return absl::OkStatus();
}

absl::Status JobConfig::ValidateModuleAllocation() const {
  const QuantizationConfig& q = quant;
  if (!q.module_allocation()) return absl::OkStatus();
  const std::string bits = absl::StrJoin(q.candidate_bits, ",");
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("job config: allocation module, candidate_bits = ", bits, ": ", why));
  };
  if (q.method == QuantMethod::kRtn) {
    return absl::InvalidArgumentError(
        "job config: allocation module measures GPTQ losses; use method baq or gptq, not rtn");
  }
  if (q.candidate_bits.empty()) return bad("empty");
  for (size_t i = 0; i < q.candidate_bits.size(); ++i) {
    if (q.candidate_bits[i] < 1 || q.candidate_bits[i] > 8) return bad("each must be in [1, 8]");
    if (i > 0 && q.candidate_bits[i] <= q.candidate_bits[i - 1]) {
      return bad("must be strictly increasing");
    }
  }
  for (double t : AllTargets()) {
    if (t < q.candidate_bits.front()) {
      return bad(absl::StrCat("target ", t, " is below the narrowest candidate"));
    }
  }
  if (std::find(formats.begin(), formats.end(), OutputFormat::kGptq) != formats.end()) {
    for (int32_t b : q.candidate_bits) {
      if (b != 2 && b != 3 && b != 4 && b != 8) {
        return bad("the gptq format packs only 2, 3, 4 or 8 bits");
      }
    }
  }
  return absl::OkStatus();
}

std::vector<double> JobConfig::AllTargets() const {
  std::vector<double> all = {quant.target_bits};
  all.insert(all.end(), extra_target_bits.begin(), extra_target_bits.end());
  return all;
}

std::string JobConfig::TargetOutputDir(double target_bits) const {
  if (extra_target_bits.empty()) return output_dir;
  return absl::StrFormat("%s/bits-%g", output_dir, target_bits);
}

JobConfig JobConfig::ForTarget(double target_bits) const {
  JobConfig c = *this;
  c.quant.target_bits = target_bits;
  c.output_dir = TargetOutputDir(target_bits);
  c.extra_target_bits.clear();
  return c;
}

int32_t ResolveCalibrationShards(const JobConfig& config, int64_t engines) {
  if (config.calibration_shards != 0) return config.calibration_shards;
  if (config.mode != ExecutionMode::kSequential) return 1;
  const int64_t chunks = (config.calibration.num_samples + kCalibrationWindowsPerChunk - 1) /
                         kCalibrationWindowsPerChunk;
  return static_cast<int32_t>(
      std::max<int64_t>(1, std::min<int64_t>({engines, chunks, int64_t{64}})));
}

}  // namespace baq
