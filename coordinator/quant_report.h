// coordinator/quant_report.h
//
// QuantReport collects what quant_report.json carries beyond the runner's
// summary: the wall time of each job stage, each layer's bit histogram (how
// many input columns got each level count), the reference loss(es) the bit
// allocation used, and the tool version. JobRunner feeds it as the job runs
// and merges it into the report it publishes (docs/service.md lists the
// fields).
//
// Thread-compatible: the job runner's thread calls all methods.
//
// Example:
//   QuantReport extra(config.quant);
//   extra.EnterStage("measuring");               // at every stage change
//   extra.AddAllocation(allocation);             // per block, BAQ levels
//   extra.AddReferenceLoss("block 3", 1.7e-4);
//   extra.MergeInto(report_json);                // before publishing
#ifndef BAQ_COORDINATOR_QUANT_REPORT_H_
#define BAQ_COORDINATOR_QUANT_REPORT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/block_protocol.h"
#include "common/job_config.h"
#include "nlohmann/json.hpp"

namespace baq::coordinator {

// The version quant_report.json names (the CMake project version).
absl::string_view ToolVersion();

class QuantReport {
 public:
  explicit QuantReport(const QuantizationConfig& quant) : quant_(quant) {}

  // Charges the time since the previous call to the stage entered then, and
  // starts timing `stage`. Re-entering a stage accumulates (sequential mode
  // alternates measuring and quantizing).
  void EnterStage(absl::string_view stage);
  // Level counts per column of each layer (BAQ); layers with empty levels
  // used the uniform width round(target_bits).
  void AddAllocation(const std::vector<LayerAllocation>& allocation);
  // A reference loss L* the allocation solved for, and what it covered
  // ("model", "block 3", or a layer name for the per-sublayer allocation).
  void AddReferenceLoss(std::string scope, double reference_loss);

  // Adds to `report`: "tool_version", "stage_seconds" {stage: seconds}
  // (the current stage charged up to now), "reference_loss" [{scope, loss}]
  // (BAQ only), and to each entry of report["layers"] (matched by "name") a
  // "bits_histogram" [{levels, bits, columns}] in increasing levels (left
  // out for a BAQ layer whose allocation was not added, e.g. one restored
  // from a job checkpoint).
  void MergeInto(nlohmann::json& report);

 private:
  // `module_bits`: the layer's width under allocation module (its report's
  // gptq_bits), else unused.
  nlohmann::json Histogram(const std::string& layer, int64_t columns, int32_t module_bits) const;

  const QuantizationConfig quant_;
  std::string stage_;  // Empty before the first EnterStage().
  absl::Time stage_start_;
  std::map<std::string, double> stage_seconds_;
  std::vector<std::string> stage_order_;
  // Layer name -> level count -> columns.
  std::map<std::string, std::map<int32_t, int64_t>> histograms_;
  std::vector<std::pair<std::string, double>> reference_losses_;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_QUANT_REPORT_H_
