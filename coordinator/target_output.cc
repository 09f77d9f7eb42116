#include "coordinator/target_output.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/eval_gate.h"

namespace baq::coordinator {
namespace {

nlohmann::json LayerJson(const LayerReport& l) {
  const double elements = static_cast<double>(l.rows * l.columns);
  nlohmann::json j = {{"name", l.name},           {"rows", l.rows},
                      {"columns", l.columns},     {"bits", elements > 0 ? l.bits_sum / elements : 0.0},
                      {"proxy_loss", l.proxy_loss}, {"seconds", l.seconds},
                      {"gptq_bits", l.gptq_bits},   {"gptq_proxy_loss", l.gptq_proxy_loss}};
  if (l.expert_tokens >= 0) {  // MoE experts: the starved-expert report (docs/model-support.md).
    j["calibration_tokens"] = l.expert_tokens;
    j["top_up_tokens"] = l.expert_top_up_tokens;
  }
  return j;
}

}  // namespace

TargetOutput::TargetOutput(JobConfig config, const ModelConfig& model,
                           ModuleObjective module_objective)
    : config_(std::move(config)), model_(model), extra_(config_.quant) {
  // Both formats store one width per module (BitBudget projects them).
  const bool want_gptq = std::find_if(config_.formats.begin(), config_.formats.end(),
                                      [](OutputFormat f) {
                                        return f == OutputFormat::kGptq ||
                                               f == OutputFormat::kCompressedTensors;
                                      }) != config_.formats.end();
  budget_ = std::make_unique<BitBudget>(
      config_.quant, config_.mode, model.QuantizableElements(), want_gptq,
      [this](int64_t block) { return model_.BlockLinearLayers(block); }, module_objective);
}

std::vector<ModuleWidth> TargetOutput::ModuleWidths() const {
  std::map<std::string, int32_t> bits;
  for (const nlohmann::json& l : layers_) {
    bits[l.at("name").get<std::string>()] = l.value("gptq_bits", 0);
  }
  std::vector<ModuleWidth> out;
  for (int64_t b = 0; b < model_.num_layers; ++b) {
    std::map<int, size_t> index;  // tie group -> index into out
    for (const LinearLayerSpec& s : model_.BlockLinearLayers(b)) {
      auto it = bits.find(s.name);
      if (it == bits.end()) continue;
      auto [g, fresh] = index.emplace(s.tie_group, out.size());
      if (fresh) out.push_back(ModuleWidth{s.name, {}, it->second});
      out[g->second].layers.push_back(s.name);
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<TargetOutput>> TargetOutput::Create(
    JobConfig config, const ModelConfig& model, ModuleObjective module_objective) {
  std::unique_ptr<TargetOutput> target(
      new TargetOutput(std::move(config), model, module_objective));
  BAQ_ASSIGN_OR_RETURN(target->out_, OutputAssembler::Create(target->config_));
  return target;
}

absl::Status TargetOutput::AddBlock(const BlockOutput& output) {
  for (const LayerReport& l : output.layers) {
    layers_.push_back(LayerJson(l));
    if (l.gptq_bits > 0) gptq_module_bits_[l.name] = l.gptq_bits;
    total_proxy_loss_ += l.proxy_loss;
  }
  return out_->AddBlock(output);
}

nlohmann::json TargetOutput::ReportJson(const TargetSummary& summary,
                                        const std::string& measurement_dir) {
  const JobConfig& config = config_;
  nlohmann::json rep = {
      {"quantizer", "baq"},
      {"method", std::string(QuantMethodName(config.quant.method))},
      {"mode", std::string(ExecutionModeName(config.mode))},
      {"allocation", summary.allocation},
      {"target_bits", summary.target_bits},
      {"achieved_bits", summary.achieved_bits},
      {"quantized_elements", summary.quantized_elements},
      {"total_proxy_loss", summary.total_proxy_loss},
      {"calibration",
       {{"files", config.calibration.files},
        {"num_samples", config.calibration.num_samples},
        {"seqlen", config.calibration.seqlen},
        {"seed", config.calibration.seed}}},
      {"layers", layers_}};
  if (!measurement_dir.empty()) rep["measurement_dir"] = measurement_dir;
  if (!gptq_module_bits_.empty()) {
    rep["gptq_module_bits"] = gptq_module_bits_;
    rep["gptq_default_bits"] = static_cast<int>(std::lround(config.quant.target_bits));
  }
  for (const auto& [scope, loss] : budget_->reference_losses()) {
    extra_.AddReferenceLoss(scope, loss);
  }
  if (config.quant.module_allocation()) {
    nlohmann::json modules = nlohmann::json::array(), solves = nlohmann::json::array();
    for (const ModuleWidth& m : summary.modules) {
      modules.push_back({{"name", m.name}, {"layers", m.layers}, {"bits", m.bits}});
    }
    for (const BitBudget::ModuleSolve& s : budget_->module_solves()) {
      solves.push_back({{"scope", s.scope},
                        {"proxy_loss", s.loss},
                        {"relative_loss", s.relative_loss},
                        {"bits", s.elements > 0 ? static_cast<double>(s.bit_elements) /
                                                      static_cast<double>(s.elements)
                                                : 0.0},
                        {"unit_bit_elements", s.unit},
                        {"exact", s.exact}});
    }
    rep["module_allocation"] = {{"candidate_bits", config.quant.candidate_bits},
                                {"objective", ModuleObjectiveName(budget_->module_objective())},
                                {"achieved_bits", summary.achieved_bits},
                                {"solves", std::move(solves)},
                                {"modules", std::move(modules)}};
  }
  extra_.MergeInto(rep);
  return rep;
}

absl::StatusOr<TargetSummary> TargetOutput::Finish(const FinishContext& job) {
  const JobConfig& config = config_;
  const BitBudget& budget = *budget_;
  BAQ_RETURN_IF_ERROR(job.check_cancel());
  job.progress->Report(JobStage::kPublishing, -1, job.num_blocks, budget.achieved_bits(),
                       absl::StrCat("writing output ", config.output_dir));
  TargetSummary summary;
  summary.output_dir = config.output_dir;
  summary.target_bits = config.quant.target_bits;
  summary.achieved_bits = budget.achieved_bits();
  summary.allocation = budget.scope_name();
  summary.total_proxy_loss = total_proxy_loss_;
  summary.quantized_elements = budget.elements_done();
  if (config.quant.module_allocation()) summary.modules = ModuleWidths();
  nlohmann::json rep = ReportJson(summary, *job.measurement_dir);
  BAQ_RETURN_IF_ERROR(out_->Stage(rep));
  if (config.eval_gate.enabled()) {  // Evaluate the staged output (coordinator/eval_gate.h).
    job.progress->Report(JobStage::kPublishing, -1, job.num_blocks, budget.achieved_bits(),
                         absl::StrCat("evaluating the gate of ", config.output_dir));
    BAQ_ASSIGN_OR_RETURN(const EvalGateResult gate,
                         RunEvalGate(config.eval_gate, config.model_dir,
                                     out_->StagedDir(OutputFormat::kFakeQuant),
                                     *job.gate_engine));
    BAQ_RETURN_IF_ERROR(job.check_cancel());
    job.log(absl::StrCat(config.output_dir, ": ", EvalGateSummary(gate)));
    rep["eval_gate"] = EvalGateJson(gate);
    summary.eval_gate_ppl = gate.ppl;
    summary.eval_gate_base_ppl = gate.base_ppl;
    if (!gate.passed) {
      summary.gate_status = GateFailedError(gate);
      out_.reset();  // Removes the staged output.
      return summary;
    }
  }
  BAQ_RETURN_IF_ERROR(out_->Publish(rep));
  summary.published = true;
  return summary;
}

}  // namespace baq::coordinator
