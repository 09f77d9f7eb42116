#include "coordinator/quant_report.h"

#include <cmath>
#include <utility>

#include "absl/time/clock.h"

#ifndef BAQ_VERSION
#error "BAQ_VERSION must be defined by the build (coordinator/CMakeLists.txt)"
#endif

namespace baq::coordinator {

absl::string_view ToolVersion() { return BAQ_VERSION; }

void QuantReport::EnterStage(absl::string_view stage) {
  const absl::Time now = absl::Now();
  if (!stage_.empty()) stage_seconds_[stage_] += absl::ToDoubleSeconds(now - stage_start_);
  stage_ = std::string(stage);
  stage_start_ = now;
  if (stage_seconds_.emplace(stage_, 0.0).second) stage_order_.push_back(stage_);
}

void QuantReport::AddAllocation(const std::vector<LayerAllocation>& allocation) {
  for (const LayerAllocation& layer : allocation) {
    std::map<int32_t, int64_t>& h = histograms_[layer.name];
    h.clear();  // A re-allocated layer (retried block) counts once.
    for (int32_t levels : layer.levels) ++h[levels];
  }
}

void QuantReport::AddReferenceLoss(std::string scope, double reference_loss) {
  reference_losses_.emplace_back(std::move(scope), reference_loss);
}

nlohmann::json QuantReport::Histogram(const std::string& layer, int64_t columns,
                                     int32_t module_bits) const {
  std::map<int32_t, int64_t> h;
  auto it = histograms_.find(layer);
  if (quant_.module_allocation()) {
    if (module_bits <= 0) return nullptr;
    h[static_cast<int32_t>(1) << module_bits] = columns;  // One width per module.
  } else if (it != histograms_.end() && !it->second.empty()) {
    h = it->second;
  } else if (quant_.method != QuantMethod::kBaq) {
    h[static_cast<int32_t>(1) << std::lround(quant_.target_bits)] = columns;
  } else {
    return nullptr;  // A BAQ layer whose allocation this runner did not see (resumed job).
  }
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [levels, count] : h) {
    out.push_back({{"levels", levels},
                   {"bits", std::log2(static_cast<double>(levels))},
                   {"columns", count}});
  }
  return out;
}

void QuantReport::MergeInto(nlohmann::json& report) {
  if (!stage_.empty()) EnterStage(stage_);  // Charge the running stage up to now.
  report["tool_version"] = std::string(ToolVersion());
  nlohmann::json stages = nlohmann::json::object();
  for (const std::string& s : stage_order_) stages[s] = stage_seconds_.at(s);
  report["stage_seconds"] = stages;
  if (quant_.method == QuantMethod::kBaq && !quant_.module_allocation()) {
    nlohmann::json refs = nlohmann::json::array();
    for (const auto& [scope, loss] : reference_losses_) {
      refs.push_back({{"scope", scope}, {"loss", loss}});
    }
    report["reference_loss"] = refs;
  }
  if (report.contains("layers")) {
    for (nlohmann::json& layer : report["layers"]) {
      nlohmann::json h =
          Histogram(layer.value("name", std::string()), layer.value("columns", int64_t{0}),
                    layer.value("gptq_bits", int32_t{0}));
      if (!h.is_null()) layer["bits_histogram"] = std::move(h);
    }
  }
}

}  // namespace baq::coordinator
