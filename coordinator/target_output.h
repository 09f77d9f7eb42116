// coordinator/target_output.h
//
// TargetOutput: one bit target's output in the making (a job has one per
// JobConfig::AllTargets()): the job narrowed to the target
// (JobConfig::ForTarget), its bit budget, its OutputAssembler and the rows
// of its quant_report.json. The runs hand it every quantized block
// (AddBlock, after the budget recorded it); Finish() writes the report, runs
// the target's evaluation gate and publishes the output if it passes.
//
// Thread-compatible: the job's runner thread makes every call.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(auto target, TargetOutput::Create(config.ForTarget(3), model));
//   target->budget().Record(output);
//   BAQ_RETURN_IF_ERROR(target->AddBlock(output));
//   BAQ_ASSIGN_OR_RETURN(TargetSummary s, target->Finish(finish));
#ifndef BAQ_COORDINATOR_TARGET_OUTPUT_H_
#define BAQ_COORDINATOR_TARGET_OUTPUT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/block_engine.h"
#include "common/job_config.h"
#include "common/model_config.h"
#include "coordinator/bit_budget.h"
#include "coordinator/job_progress.h"
#include "coordinator/job_runner.h"
#include "coordinator/output_assembler.h"
#include "coordinator/quant_report.h"
#include "nlohmann/json.hpp"

namespace baq::coordinator {

class TargetOutput {
 public:
  // What Finish() needs from the job. Not owned; valid during the call.
  struct FinishContext {
    BlockEngine* gate_engine;         // Runs the evaluation gate.
    int64_t num_blocks;
    const std::string* measurement_dir;  // The job's (JobConfig::measurement_dir).
    ProgressReporter* progress;
    std::function<absl::Status()> check_cancel;
    std::function<void(const std::string&)> log;
  };

  // Creates the budget and the output (OutputAssembler::Create: an existing
  // output fails here, before any work). `module_objective`: what scope
  // module minimizes (BitBudget).
  static absl::StatusOr<std::unique_ptr<TargetOutput>> Create(
      JobConfig config, const ModelConfig& model,
      ModuleObjective module_objective = ModuleObjective::kNormalized);

  // Hands a quantized block to the report and the assembler (the budget has
  // recorded it already).
  absl::Status AddBlock(const BlockOutput& output);

  // Writes quant_report.json, runs the target's evaluation gate on
  // `gate_engine` and publishes the output if it passes. A failed gate is a
  // summary with gate_status set and nothing published (the staged output
  // is removed), not an error.
  absl::StatusOr<TargetSummary> Finish(const FinishContext& job);

  const JobConfig& config() const { return config_; }
  BitBudget& budget() { return *budget_; }
  QuantReport& report() { return extra_; }

 private:
  TargetOutput(JobConfig config, const ModelConfig& model, ModuleObjective module_objective);
  nlohmann::json ReportJson(const TargetSummary& summary, const std::string& measurement_dir);
  // Allocation module: every module (tie group) with its layers and width,
  // in model order, from the layers reported so far.
  std::vector<ModuleWidth> ModuleWidths() const;

  const JobConfig config_;  // The job narrowed to this target.
  const ModelConfig model_;
  std::unique_ptr<OutputAssembler> out_;
  std::unique_ptr<BitBudget> budget_;
  QuantReport extra_;  // Stage times, bit histograms, reference losses.
  nlohmann::json layers_ = nlohmann::json::array();
  nlohmann::json gptq_module_bits_ = nlohmann::json::object();
  double total_proxy_loss_ = 0;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_TARGET_OUTPUT_H_
