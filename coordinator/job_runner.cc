#include "coordinator/job_runner.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/model_config.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "coordinator/bit_budget.h"
#include "coordinator/output_assembler.h"
#include "nlohmann/json.hpp"

namespace baq::coordinator {

absl::string_view JobStageName(JobStage stage) {
  switch (stage) {
    case JobStage::kQueued: return "queued";
    case JobStage::kStarting: return "starting";
    case JobStage::kMeasuring: return "measuring";
    case JobStage::kQuantizing: return "quantizing";
    case JobStage::kPublishing: return "publishing";
    case JobStage::kDone: return "done";
  }
  return "?";
}

namespace {

// Work units for progress: measuring and quantizing a block count one each.
struct ProgressClock {
  absl::Time start = absl::Now();
  int64_t units_total = 1;
  int64_t units_done = 0;

  void Fill(JobProgress& p) const {
    p.elapsed = absl::Now() - start;
    p.percent = 100.0 * static_cast<double>(units_done) / static_cast<double>(units_total);
    p.eta = units_done == 0
                ? absl::InfiniteDuration()
                : p.elapsed * (static_cast<double>(units_total - units_done) /
                               static_cast<double>(units_done));
  }
};

nlohmann::json LayerJson(const LayerReport& l) {
  const double elements = static_cast<double>(l.rows * l.columns);
  return {{"name", l.name},           {"rows", l.rows},
          {"columns", l.columns},     {"bits", elements > 0 ? l.bits_sum / elements : 0.0},
          {"proxy_loss", l.proxy_loss}, {"seconds", l.seconds},
          {"gptq_bits", l.gptq_bits},   {"gptq_proxy_loss", l.gptq_proxy_loss}};
}

}  // namespace

JobRunner::JobRunner(JobConfig config, std::vector<BlockEngine*> engines, ProgressFn progress)
    : config_(std::move(config)), engines_(std::move(engines)), progress_(std::move(progress)) {}

absl::StatusOr<JobSummary> JobRunner::Run() {
  BAQ_RETURN_IF_ERROR(config_.Validate());
  if (engines_.empty()) return absl::FailedPreconditionError("no workers to run the job on");
  BAQ_ASSIGN_OR_RETURN(ModelConfig model, LoadModelConfig(config_.model_dir));
  ProgressClock clock;
  JobProgress p;
  auto report = [&](JobStage stage, int64_t block, int64_t blocks_done, double bits,
                    std::string message) {
    p.stage = stage;
    p.block = block;
    p.blocks_done = blocks_done;
    p.achieved_bits = bits;
    p.message = std::move(message);
    clock.Fill(p);
    if (progress_) progress_(p);
  };
  auto check_cancel = [&]() -> absl::Status {
    if (cancelled_.load()) return absl::CancelledError("job cancelled");
    return absl::OkStatus();
  };

  report(JobStage::kStarting, -1, 0, 0, "loading model and calibration data");
  for (size_t i = 0; i < engines_.size(); ++i) {
    BAQ_RETURN_IF_ERROR(Annotate(engines_[i]->Start(config_), absl::StrCat("worker ", i)));
  }
  const int64_t n = engines_[0]->num_blocks();
  p.num_blocks = n;
  clock.units_total = 2 * n;
  // Contiguous ranges of blocks per worker keep activation hand-offs to
  // (workers - 1) per pass.
  auto engine_of = [&](int64_t b) {
    return engines_[static_cast<size_t>(b * static_cast<int64_t>(engines_.size()) / n)];
  };
  auto ensure_inputs = [&](int64_t b) -> absl::Status {
    if (b == 0 || engine_of(b - 1) == engine_of(b)) return absl::OkStatus();
    BAQ_ASSIGN_OR_RETURN(std::string bytes, engine_of(b - 1)->ExportInputs(b));
    return engine_of(b)->ImportInputs(b, std::move(bytes));
  };

  BAQ_ASSIGN_OR_RETURN(std::unique_ptr<OutputAssembler> out, OutputAssembler::Create(config_));
  const bool want_gptq = std::find(config_.formats.begin(), config_.formats.end(),
                                   OutputFormat::kGptq) != config_.formats.end();
  BitBudget budget(config_.quant, config_.mode, model.QuantizableElements(), want_gptq);
  nlohmann::json layers = nlohmann::json::array();
  nlohmann::json gptq_module_bits = nlohmann::json::object();
  double total_proxy_loss = 0;
  auto finish_block = [&](BlockOutput output) -> absl::Status {
    budget.Record(output);
    for (const LayerReport& l : output.layers) {
      layers.push_back(LayerJson(l));
      if (l.gptq_bits > 0) gptq_module_bits[l.name] = l.gptq_bits;
      total_proxy_loss += l.proxy_loss;
    }
    return out->AddBlock(output);
  };

  if (config_.mode == ExecutionMode::kSequential) {
    for (int64_t b = 0; b < n; ++b) {
      BAQ_RETURN_IF_ERROR(check_cancel());
      BAQ_RETURN_IF_ERROR(ensure_inputs(b));
      report(JobStage::kMeasuring, b, b, budget.achieved_bits(), absl::StrCat("block ", b));
      BAQ_ASSIGN_OR_RETURN(BlockMeasurement m, engine_of(b)->Measure(b));
      ++clock.units_done;
      BAQ_ASSIGN_OR_RETURN(std::vector<LayerAllocation> alloc, budget.AllocateBlock(m));
      report(JobStage::kQuantizing, b, b, budget.achieved_bits(), absl::StrCat("block ", b));
      BAQ_ASSIGN_OR_RETURN(BlockOutput output, engine_of(b)->Quantize(b, alloc));
      ++clock.units_done;
      BAQ_RETURN_IF_ERROR(finish_block(std::move(output)));
    }
  } else {
    std::vector<BlockMeasurement> measurements;
    for (int64_t b = 0; b < n; ++b) {
      BAQ_RETURN_IF_ERROR(check_cancel());
      BAQ_RETURN_IF_ERROR(ensure_inputs(b));
      report(JobStage::kMeasuring, b, 0, 0, absl::StrCat("block ", b));
      BAQ_ASSIGN_OR_RETURN(BlockMeasurement m, engine_of(b)->Measure(b));
      measurements.push_back(std::move(m));
      ++clock.units_done;
    }
    BAQ_ASSIGN_OR_RETURN(auto allocs, budget.AllocateAll(measurements));
    for (int64_t b = 0; b < n; ++b) {
      BAQ_RETURN_IF_ERROR(check_cancel());
      report(JobStage::kQuantizing, b, b, budget.achieved_bits(), absl::StrCat("block ", b));
      BAQ_ASSIGN_OR_RETURN(BlockOutput output, engine_of(b)->Quantize(b, allocs[b]));
      ++clock.units_done;
      BAQ_RETURN_IF_ERROR(finish_block(std::move(output)));
    }
  }

  BAQ_RETURN_IF_ERROR(check_cancel());
  report(JobStage::kPublishing, -1, n, budget.achieved_bits(), "writing output");
  JobSummary summary;
  summary.output_dir = config_.output_dir;
  summary.target_bits = config_.quant.target_bits;
  summary.achieved_bits = budget.achieved_bits();
  summary.allocation = budget.scope_name();
  summary.total_proxy_loss = total_proxy_loss;
  summary.quantized_elements = budget.elements_done();
  nlohmann::json rep = {
      {"quantizer", "baq"},
      {"method", std::string(QuantMethodName(config_.quant.method))},
      {"mode", std::string(ExecutionModeName(config_.mode))},
      {"allocation", summary.allocation},
      {"target_bits", summary.target_bits},
      {"achieved_bits", summary.achieved_bits},
      {"quantized_elements", summary.quantized_elements},
      {"total_proxy_loss", total_proxy_loss},
      {"calibration",
       {{"files", config_.calibration.files},
        {"num_samples", config_.calibration.num_samples},
        {"seqlen", config_.calibration.seqlen},
        {"seed", config_.calibration.seed}}},
      {"layers", layers}};
  if (!gptq_module_bits.empty()) {
    rep["gptq_module_bits"] = gptq_module_bits;
    rep["gptq_default_bits"] = static_cast<int>(std::lround(config_.quant.target_bits));
  }
  BAQ_RETURN_IF_ERROR(out->Commit(rep));
  for (BlockEngine* e : engines_) e->Reset();
  summary.wall_time = absl::Now() - clock.start;
  report(JobStage::kDone, -1, n, summary.achieved_bits,
         absl::StrFormat("achieved %.4f bits (target %.4f)", summary.achieved_bits,
                         summary.target_bits));
  return summary;
}

}  // namespace baq::coordinator
