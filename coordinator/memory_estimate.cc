#include "coordinator/memory_estimate.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace baq::coordinator {

std::string FormatBytes(int64_t bytes) {
  constexpr double kKiB = 1024.0;
  const double b = static_cast<double>(bytes);
  if (b >= kKiB * kKiB * kKiB) return absl::StrFormat("%.2f GiB", b / (kKiB * kKiB * kKiB));
  if (b >= kKiB * kKiB) return absl::StrFormat("%.1f MiB", b / (kKiB * kKiB));
  if (b >= kKiB) return absl::StrFormat("%.1f KiB", b / kKiB);
  return absl::StrCat(bytes, " B");
}

std::string MemoryEstimate::ToString() const {
  return absl::StrCat(FormatBytes(total()), " (block weights ", FormatBytes(block_weight_bytes),
                      " + Hessians ", FormatBytes(hessian_bytes), " + calibration activations ",
                      FormatBytes(activation_bytes), ")");
}

MemoryEstimate EstimateJobMemory(const ModelConfig& model, const JobConfig& config) {
  MemoryEstimate e;
  const int64_t dtype_bytes = static_cast<int64_t>(DTypeSize(model.dtype));
  for (int64_t b = 0; b < std::max<int64_t>(model.num_layers, 1); ++b) {
    int64_t weights = 0;
    int64_t hessians = 0;
    std::set<int> groups;
    for (const LinearLayerSpec& l : model.BlockLinearLayers(b)) {
      weights += l.in_features * l.out_features * dtype_bytes;
      if (l.has_bias) weights += l.out_features * dtype_bytes;
      // One Hessian per distinct input (q/k/v share one; gate/up share one).
      if (groups.insert(l.input_group).second) hessians += l.in_features * l.in_features * 8;
    }
    e.block_weight_bytes = std::max(e.block_weight_bytes, weights);
    e.hessian_bytes = std::max(e.hessian_bytes, hessians);
    if (model.num_layers == 0) break;
  }
  e.activation_bytes = config.calibration.num_samples * config.calibration.seqlen *
                       model.hidden_size * 4 * 2;
  return e;
}

absl::StatusOr<MemoryEstimate> EstimateJobMemory(const JobConfig& config) {
  absl::StatusOr<ModelConfig> model = LoadModelConfig(config.model_dir);
  if (!model.ok()) return model.status();
  return EstimateJobMemory(*model, config);
}

std::function<int64_t()> WorkerMemoryCapacity(WorkerRegistry* registry, int64_t max_job_memory) {
  return [registry, max_job_memory]() -> int64_t {
    if (max_job_memory > 0) return max_job_memory;
    int64_t smallest = 0;
    for (const WorkerInfo& w : registry->LiveWorkers()) {
      if (w.memory_bytes <= 0) continue;
      smallest = smallest == 0 ? w.memory_bytes : std::min(smallest, w.memory_bytes);
    }
    return smallest;
  };
}

}  // namespace baq::coordinator
