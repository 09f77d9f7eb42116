#include "coordinator/eval_gate.h"

#include <cmath>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/engine_capabilities.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace baq::coordinator {
namespace {

// The status payload that carries a failed gate's numbers (EvalGateJson).
constexpr char kGatePayloadUrl[] = "type.baq.dev/baq.EvalGateResult";

}  // namespace

EvalGateResult DecideEvalGate(const EvalGate& gate, double ppl, double base_ppl) {
  EvalGateResult r;
  r.data = gate.text_file;
  r.seqlen = gate.seqlen;
  r.ppl = ppl;
  r.base_ppl = base_ppl;
  if (gate.max_ppl > 0) {
    r.limit_kind = "max_ppl";
    r.limit = gate.max_ppl;
    r.passed = std::isfinite(ppl) && ppl <= gate.max_ppl;
  } else {
    r.limit_kind = "max_ppl_ratio";
    r.limit = gate.max_ppl_ratio;
    r.passed = std::isfinite(ppl) && std::isfinite(base_ppl) && base_ppl > 0 &&
               ppl <= gate.max_ppl_ratio * base_ppl;
  }
  return r;
}

absl::StatusOr<EvalGateResult> RunEvalGate(const EvalGate& gate, const std::string& model_dir,
                                           const std::string& staged_dir, BlockEngine& engine) {
  if (staged_dir.empty()) {
    return absl::FailedPreconditionError(
        "eval gate: no staged fake-quant checkpoint to evaluate (fake-quant must be a format)");
  }
  BAQ_ASSIGN_OR_RETURN(CheckpointEvaluator * evaluator,
                       Annotate(RequireCapability<CheckpointEvaluator>(engine), "eval gate"));
  BAQ_ASSIGN_OR_RETURN(const double ppl,
                       Annotate(evaluator->Evaluate(staged_dir, gate.text_file, gate.seqlen),
                                "eval gate: quantized result"));
  double base_ppl = 0;
  if (gate.max_ppl_ratio > 0) {
    BAQ_ASSIGN_OR_RETURN(base_ppl,
                         Annotate(evaluator->Evaluate(model_dir, gate.text_file, gate.seqlen),
                                  "eval gate: unquantized model"));
  }
  return DecideEvalGate(gate, ppl, base_ppl);
}

nlohmann::json EvalGateJson(const EvalGateResult& r) {
  nlohmann::json j = {{"data", r.data},       {"seqlen", r.seqlen},
                      {"ppl", r.ppl},         {"limit_kind", r.limit_kind},
                      {"limit", r.limit},     {"passed", r.passed}};
  j["base_ppl"] = r.base_ppl > 0 ? nlohmann::json(r.base_ppl) : nlohmann::json(nullptr);
  // JSON has no NaN/inf: nlohmann writes null for them, which is what we want.
  return j;
}

std::string EvalGateSummary(const EvalGateResult& r) {
  if (r.limit_kind == "max_ppl") {
    return absl::StrFormat("perplexity %.4f %s limit %.4f (max_ppl; %s, seqlen %d): %s", r.ppl,
                           r.passed ? "<=" : ">", r.limit, r.data, r.seqlen,
                           r.passed ? "passed" : "failed");
  }
  return absl::StrFormat(
      "perplexity %.4f vs unquantized %.4f: ratio %.4f %s limit %.4f (max_ppl_ratio; %s, "
      "seqlen %d): %s",
      r.ppl, r.base_ppl, r.base_ppl > 0 ? r.ppl / r.base_ppl : NAN, r.passed ? "<=" : ">",
      r.limit, r.data, r.seqlen, r.passed ? "passed" : "failed");
}

absl::Status GateFailedError(const EvalGateResult& r) {
  absl::Status s = absl::FailedPreconditionError(
      absl::StrCat("evaluation gate failed, nothing published: ", EvalGateSummary(r)));
  s.SetPayload(kGatePayloadUrl, absl::Cord(EvalGateJson(r).dump()));
  return s;
}

std::optional<EvalGateResult> EvalGateResultOf(const absl::Status& status) {
  const auto payload = status.GetPayload(kGatePayloadUrl);
  if (!payload.has_value()) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(std::string(*payload), nullptr, false);
  if (!j.is_object()) return std::nullopt;
  EvalGateResult r;
  r.data = j.value("data", "");
  r.seqlen = j.value("seqlen", int64_t{0});
  r.ppl = j["ppl"].is_number() ? j["ppl"].get<double>() : NAN;
  r.base_ppl = j["base_ppl"].is_number() ? j["base_ppl"].get<double>() : 0.0;
  r.limit_kind = j.value("limit_kind", "");
  r.limit = j.value("limit", 0.0);
  r.passed = j.value("passed", false);
  return r;
}

}  // namespace baq::coordinator
