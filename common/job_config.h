// common/job_config.h
//
// JobConfig: everything a quantization job needs, as a plain value type that
// the CLI, the coordinator and the workers share (the service layer converts
// it to and from baq.v1 protos). Validate() checks ranges and names the
// offending field. Thread-compatible value type.
#ifndef BAQ_COMMON_JOB_CONFIG_H_
#define BAQ_COMMON_JOB_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace baq {

enum class QuantMethod { kBaq, kGptq, kRtn };
// kGlobal: each layer's losses relative to their geometric mean (the paper's
//   per-layer reference), times one model-wide correction solved so that the
//   average bits == target exactly (the paper's self-correction, made exact).
// kGlobalRaw: one reference loss over the raw losses of all layers (bits
//   flow between layers by absolute proxy loss; may starve whole layers).
// kSublayer: the BAQ paper's per-layer reference; average tracked, not held.
// kModule: one width per module (tie groups of fused layers share it) from
//   QuantizationConfig::candidate_bits, chosen by an exact knapsack over the
//   GPTQ proxy losses measured at every candidate (common/module_allocation.h);
//   each layer is then quantized with GPTQ at its width, whatever the method
//   (baq or gptq).
enum class AllocationScope { kGlobal, kGlobalRaw, kSublayer, kModule };
// kSequential: exact GPTQ protocol (block l sees the quantized blocks < l).
// kParallel: every block sees the unquantized model's activations, so all
// losses are known before any bits are chosen (exact global allocation,
// blocks independent, measurement reusable).
enum class ExecutionMode { kSequential, kParallel };
enum class OutputFormat { kFakeQuant, kPacked, kGptq, kCompressedTensors };
// The dtype of the calibration forward (weights, matmuls, the activations
// between blocks; norms and softmax run in float32 in every case, as in
// transformers). kAuto: the checkpoint's dtype on CUDA (bf16/fp16 on tensor
// cores, as transformers and the reference codes run it), float32 on CPU
// (half-precision matmuls are slow there). A dtype narrower than the
// checkpoint's rounds the weights the forward and the quantizer see.
enum class ForwardDtype { kAuto, kFloat32, kBFloat16, kFloat16 };

struct QuantizationConfig {
  QuantMethod method = QuantMethod::kBaq;
  double target_bits = 3.0;  // Average bits per quantized weight, [1, 8].
  bool symmetric = false;    // GPTQ/RTN grids only (BAQ pass 2 is asymmetric).
  int32_t group_size = -1;   // -1: one grid per row.
  bool act_order = false;
  bool static_groups = false;
  double percdamp = 0.01;    // Damping as a fraction of mean(diag(H)).
  int32_t block_size = 128;  // GPTQ lazy-batch block.
  AllocationScope allocation_scope = AllocationScope::kGlobal;
  double theta = 1.95;       // Allocation exponent; 2 = continuous equal-loss form.
  int32_t max_levels = 256;  // Cap on levels per column.
  // Allocation kModule: the widths a module may take, strictly increasing,
  // each in [1, 8].
  std::vector<int32_t> candidate_bits = {2, 3, 4, 8};

  bool module_allocation() const { return allocation_scope == AllocationScope::kModule; }
};

// Calibration windows per forward call on a worker, and the unit by which
// windows are dealt to devices, Hessian partials and calibration shards.
inline constexpr int64_t kCalibrationWindowsPerChunk = 8;

struct CalibrationConfig {
  std::vector<std::string> files;  // Text files, encoded separately, concatenated.
  int64_t num_samples = 128;
  int64_t seqlen = 2048;
  uint64_t seed = 0;
};

// An evaluation gate: after the last block the job computes the perplexity
// of its fake-quant result over non-overlapping `seqlen` windows of
// `text_file` (the protocol of `baq eval`) and publishes the output only if
// it is at most `max_ppl`, or at most `max_ppl_ratio` times the perplexity
// of the unquantized model on the same windows. Exactly one limit is > 0.
// Disabled while text_file is empty.
struct EvalGate {
  std::string text_file;  // On the workers' file system.
  int64_t seqlen = 2048;
  double max_ppl = 0;
  double max_ppl_ratio = 0;

  bool enabled() const { return !text_file.empty(); }
};

struct JobConfig;
// calibration_shards = 0 resolved for a job starting on `engines` engines:
// min(engines, calibration chunks, 64) in sequential mode, else 1. Other
// values unchanged.
int32_t ResolveCalibrationShards(const JobConfig& config, int64_t engines);

struct JobConfig {
  std::string model_dir;
  std::string output_dir;
  std::vector<OutputFormat> formats = {OutputFormat::kFakeQuant};
  CalibrationConfig calibration;
  QuantizationConfig quant;
  ExecutionMode mode = ExecutionMode::kSequential;
  // Evaluation text (optional): perplexity of the result over non-overlapping
  // `calibration.seqlen` windows is computed and reported.
  std::string eval_file;
  // Publish only if the result passes this gate (requires the fake-quant
  // format, which is what the gate evaluates).
  EvalGate eval_gate;
  // Sequential mode: the calibration windows are split into this many
  // shards (chunk c of kCalibrationWindowsPerChunk windows belongs to shard
  // c mod S), each shard's fp64 Hessian partial sums are accumulated on its
  // own engine (several workers, or one engine holding them all) and merged
  // in shard order. The output depends on S, never on how many workers held
  // the shards. 1: no split. 1 <= S <= 64, at most the number of
  // calibration chunks. 0: one shard per engine the job starts on
  // (sequential mode; the coordinator resolves it before the engines start,
  // ResolveCalibrationShards): the default shape of a multi-worker job.
  int32_t calibration_shards = 1;
  // Further bit targets sharing this job's measurement (parallel mode): the
  // calibration forwards and Hessians are computed once, and every target in
  // AllTargets() gets its own output in TargetOutputDir(t). Empty: one
  // target, written to output_dir itself.
  std::vector<double> extra_target_bits;
  // Keep the measurement (every layer's Hessian) in this directory, or reuse
  // the one kept there when its fingerprint matches this job's model and
  // calibration (common/measurement_store.h). Parallel mode. Empty: none.
  std::string measurement_dir;
  // Also quantize OPT's project_in/project_out (opt-350m: the linears
  // between the 512-wide embeddings and the 1024-wide blocks), which by
  // default stay in the checkpoint dtype like the embeddings and the LM head
  // and are not counted in the bit budget. Not implemented yet (they would
  // need Hessians from the embedding and head stages): Validate() returns
  // Unimplemented when set. See docs/model-support.md, "OPT".
  bool quantize_projections = false;
  // Each output checkpoint's safetensors files hold at most this many bytes
  // of tensor data (one tensor larger than that gets a file of its own);
  // beyond one file they are model-0000i-of-0000N.safetensors with
  // model.safetensors.index.json, as transformers writes them. >= 1.
  int64_t max_shard_bytes = 5'000'000'000;
  // The calibration forward's dtype (see ForwardDtype).
  ForwardDtype forward_dtype = ForwardDtype::kAuto;

  absl::Status Validate() const;
  // The kModule part of Validate() (OK for other scopes).
  absl::Status ValidateModuleAllocation() const;
  // quant.target_bits, then extra_target_bits.
  std::vector<double> AllTargets() const;
  // output_dir for a single-target job; "<output_dir>/bits-<t>" (e.g.
  // bits-2.5) for each target of a multi-target job.
  std::string TargetOutputDir(double target_bits) const;
  // This job narrowed to one of its targets: that target, its output dir,
  // no extra targets.
  JobConfig ForTarget(double target_bits) const;
};

absl::string_view QuantMethodName(QuantMethod m);
absl::StatusOr<QuantMethod> ParseQuantMethod(absl::string_view name);
absl::string_view OutputFormatName(OutputFormat f);
absl::StatusOr<OutputFormat> ParseOutputFormat(absl::string_view name);
absl::string_view ExecutionModeName(ExecutionMode m);
absl::StatusOr<ExecutionMode> ParseExecutionMode(absl::string_view name);
absl::string_view AllocationScopeName(AllocationScope s);
absl::StatusOr<AllocationScope> ParseAllocationScope(absl::string_view name);
// "auto", "float32", "bfloat16", "float16".
absl::string_view ForwardDtypeName(ForwardDtype d);
absl::StatusOr<ForwardDtype> ParseForwardDtype(absl::string_view name);

}  // namespace baq

#endif  // BAQ_COMMON_JOB_CONFIG_H_
