// coordinator/eval_gate.h
//
// The evaluation gate of a job (JobConfig::EvalGate): after the last block
// the JobRunner stages the output (OutputAssembler::Stage), asks one engine
// to compute the perplexity of the staged fake-quant checkpoint — and, for a
// ratio limit, of the unquantized model — over the gate's text
// (CheckpointEvaluator::Evaluate, the protocol of `baq eval`), and publishes only if
// the gate passes. A failed gate is returned as GateFailedError(): a
// FailedPrecondition status carrying the numbers as a payload, which
// JobManager maps to JobState::kFailedGate and the metrics.
//
// The staged checkpoint lives next to the coordinator's --out, so in the
// service the worker evaluating it must see that path (a shared file
// system), as it sees the model and calibration files.
//
// Thread-compatible free functions; no state.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(EvalGateResult gate,
//       RunEvalGate(config.eval_gate, config.model_dir, staged_dir, engine));
//   report["eval_gate"] = EvalGateJson(gate);
//   if (!gate.passed) return GateFailedError(gate);
#ifndef BAQ_COORDINATOR_EVAL_GATE_H_
#define BAQ_COORDINATOR_EVAL_GATE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/block_engine.h"
#include "common/job_config.h"
#include "nlohmann/json.hpp"

namespace baq::coordinator {

struct EvalGateResult {
  std::string data;        // The gate's text file.
  int64_t seqlen = 0;
  double ppl = 0;          // Of the quantized (fake-quant) result.
  double base_ppl = 0;     // Of the unquantized model; 0: not measured (max_ppl gate).
  std::string limit_kind;  // "max_ppl" or "max_ppl_ratio".
  double limit = 0;        // The limit as given (a perplexity or a ratio).
  bool passed = false;
};

// The decision alone: passes iff ppl is finite and ppl <= max_ppl, or
// ppl <= max_ppl_ratio * base_ppl (base_ppl finite and > 0). REQUIRES:
// gate.Validate-d (exactly one limit > 0).
EvalGateResult DecideEvalGate(const EvalGate& gate, double ppl, double base_ppl);

// Evaluates `staged_dir` (and `model_dir` for a ratio limit) on `engine` and
// decides. Errors of the evaluation are returned annotated ("eval gate: ...");
// a gate that does not pass is an OK result with passed = false.
absl::StatusOr<EvalGateResult> RunEvalGate(const EvalGate& gate, const std::string& model_dir,
                                           const std::string& staged_dir, BlockEngine& engine);

// quant_report.json's "eval_gate": {data, seqlen, ppl, base_ppl, limit,
// limit_kind, passed} (base_ppl null when not measured).
nlohmann::json EvalGateJson(const EvalGateResult& result);

// FailedPrecondition "evaluation gate failed: perplexity P > limit L ..."
// with the result attached; EvalGateResultOf() reads it back (nullopt for
// any other status).
absl::Status GateFailedError(const EvalGateResult& result);
std::optional<EvalGateResult> EvalGateResultOf(const absl::Status& status);
// One line for logs and progress: "ppl 12.3 <= 15 (max_ppl): passed".
std::string EvalGateSummary(const EvalGateResult& result);

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_EVAL_GATE_H_
