// coordinator/output_assembler.h
//
// OutputAssembler builds a job's published output from the blocks' output
// tensors, in every requested format, and publishes it atomically:
//   - one format: `output_dir` is the checkpoint;
//   - several: `output_dir/<format>/` per format (fake-quant, packed, gptq,
//     compressed-tensors).
// Each checkpoint gets model.safetensors (the quantized layers' tensors in
// block order, then every other input tensor copied unchanged — embeddings,
// norms, biases, LM head; sharded with model.safetensors.index.json beyond
// JobConfig::max_shard_bytes: common/sharded_safetensors_writer.h),
// config.json (the input's, plus a `quantization_config` for
// packed/gptq/compressed-tensors: coordinator/export_metadata.h), the
// tokenizer files, quant_report.json (per-layer bits and proxy loss, the
// summary) and README.md (a model card; rewritten by Publish() with the
// evaluation gate's perplexity).
// Nothing is visible under `output_dir` until Commit() succeeds; destroying
// an uncommitted assembler removes everything it wrote.
// Commit() is Stage() then Publish(): Stage() completes every checkpoint in
// the hidden temp dir next to `output_dir` (AtomicOutputDir), where it can be
// evaluated (StagedDir(): the evaluation gate, coordinator/eval_gate.h);
// Publish() rewrites quant_report.json with the final report, fsyncs and
// renames into place. A staged output that is never published is removed
// with the assembler.
//
// Thread-compatible: one thread (the job runner) calls all methods.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(auto out, OutputAssembler::Create(config));
//   for (...) BAQ_RETURN_IF_ERROR(out->AddBlock(block_output));
//   BAQ_RETURN_IF_ERROR(out->Commit(report_json));
#ifndef BAQ_COORDINATOR_OUTPUT_ASSEMBLER_H_
#define BAQ_COORDINATOR_OUTPUT_ASSEMBLER_H_

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/atomic_output_dir.h"
#include "common/block_protocol.h"
#include "common/job_config.h"
#include "common/safetensors_checkpoint.h"
#include "common/sharded_safetensors_writer.h"
#include "nlohmann/json.hpp"

namespace baq::coordinator {

class OutputAssembler {
 public:
  static absl::StatusOr<std::unique_ptr<OutputAssembler>> Create(const JobConfig& config);

  // Appends one block's tensors. REQUIRES: blocks in increasing order.
  absl::Status AddBlock(const BlockOutput& output);
  // Copies the untouched input tensors, writes configs and `report`
  // (quant_report.json), fsyncs and renames into place.
  absl::Status Commit(const nlohmann::json& report);
  // The two halves of Commit(). Stage: FailedPrecondition if called twice.
  absl::Status Stage(const nlohmann::json& report);
  // The staged checkpoint of `format` (in the temp dir); empty if the format
  // was not requested or nothing is staged yet.
  std::string StagedDir(OutputFormat format) const;
  // Writes `report` as every format's quant_report.json and publishes.
  // REQUIRES: Stage() succeeded.
  absl::Status Publish(const nlohmann::json& report);

 private:
  struct FormatOutput {
    OutputFormat format;
    std::string dir;  // Inside the temp dir.
    std::unique_ptr<ShardedSafetensorsWriter> writer;
  };
  OutputAssembler(JobConfig config, std::unique_ptr<AtomicOutputDir> out,
                  std::unique_ptr<SafetensorsCheckpoint> input)
      : config_(std::move(config)), out_(std::move(out)), input_(std::move(input)) {}
  absl::Status CopyUntouchedTensors(FormatOutput& f);
  absl::Status WriteSideFiles(const FormatOutput& f, const nlohmann::json& report);
  absl::Status WriteReportAndCard(const FormatOutput& f, const nlohmann::json& report);

  const JobConfig config_;
  std::unique_ptr<AtomicOutputDir> out_;
  std::unique_ptr<SafetensorsCheckpoint> input_;
  std::vector<FormatOutput> formats_;
  // "<layer>.weight" of every quantized layer: not copied from the input.
  std::set<std::string> replaced_;
  int64_t last_block_ = -1;
  bool staged_ = false;
};

// The `quantization_config` entry written into config.json for `format`
// (null for fake-quant, which transformers loads as a plain checkpoint).
nlohmann::json QuantizationConfigJson(OutputFormat format, const JobConfig& config,
                                      const nlohmann::json& report);

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_OUTPUT_ASSEMBLER_H_
