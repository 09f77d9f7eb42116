#include "worker/engine/block_compute.h"

#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/layer_quantizer.h"
#include "worker/model/block_factory.h"
#include "worker/model/moe_mlp.h"
#include "worker/quant/hessian_accumulator.h"

namespace baq::worker {
namespace {

absl::Status CheckAllocation(int64_t block, const std::vector<LinearLayerSpec>& specs,
                             const std::vector<LayerAllocation>& allocation) {
  if (allocation.size() != specs.size()) {
    return absl::InvalidArgumentError(absl::StrCat("block ", block, ": allocation has ",
                                                   allocation.size(), " layers, block has ",
                                                   specs.size()));
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    if (allocation[i].name != specs[i].name) {
      return absl::InvalidArgumentError(absl::StrCat("block ", block, ": allocation entry ", i,
                                                     " names ", allocation[i].name,
                                                     ", expected ", specs[i].name));
    }
  }
  return absl::OkStatus();
}

// MoE: each expert layer's calibration tokens (routed, floor rule), summed
// over the replicas that calibrated (moe_mlp.h). Left -1 when the block did
// not calibrate here (e.g. a reused measurement).
void AddExpertTokenCounts(const std::vector<DecoderBlock*>& replicas,
                          const std::vector<LinearLayerSpec>& specs,
                          std::vector<std::optional<LayerQuantizer::Result>>& results) {
  for (size_t i = 0; i < specs.size(); ++i) {
    const int expert = ExpertIndexOf(specs[i].short_name);
    if (expert < 0) continue;
    int64_t routed = 0, top_up = 0;
    bool known = false;
    for (const DecoderBlock* r : replicas) {
      const MoeTokenCounts* c = r->moe_token_counts();
      if (c == nullptr || c->routed.size() <= static_cast<size_t>(expert)) continue;
      known = true;
      routed += c->routed[expert];
      top_up += c->top_up[expert];
    }
    if (!known) continue;
    results[i]->report.expert_tokens = routed;
    results[i]->report.expert_top_up_tokens = top_up;
  }
}

}  // namespace

absl::StatusOr<std::vector<std::unique_ptr<DecoderBlock>>> LoadReplicas(DeviceGroup& group,
                                                                        const EngineJob& job,
                                                                        int64_t block) {
  std::vector<std::unique_ptr<DecoderBlock>> replicas(group.world());
  BAQ_RETURN_IF_ERROR(group.OnRanks([&](int r) -> absl::Status {
    BlockOptions options = job.block_options;
    options.device = group.device(r);
    BAQ_ASSIGN_OR_RETURN(replicas[r], LoadDecoderBlock(job.model, *job.ckpt, block, options));
    return absl::OkStatus();
  }));
  return replicas;
}

absl::StatusOr<BlockState> AccumulateBlock(DeviceGroup& group, const EngineJob& job,
                                           int64_t block, const at::Tensor& x, at::Tensor next,
                                           const CancelCheck& check) {
  // replicas[r]: the block on device r (one per rank).
  BAQ_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<DecoderBlock>> replicas,
                       LoadReplicas(group, job, block));
  const std::vector<LinearLayerSpec>& specs = replicas[0]->linear_layers();
  const int world = group.world();
  const int num_partials = job.num_partials;
  // partials[p]: input group -> accumulator, on the device of rank p % world.
  std::vector<std::map<int, HessianAccumulator>> partials(num_partials);
  for (int p = 0; p < num_partials; ++p) {
    for (const LinearLayerSpec& s : specs) {
      if (partials[p].count(s.input_group) == 0) {
        partials[p].emplace(s.input_group,
                            HessianAccumulator(s.in_features, group.device(p % world)));
      }
    }
  }
  std::map<int, std::string> first_of_group;
  for (const LinearLayerSpec& s : specs) first_of_group.emplace(s.input_group, s.short_name);
  for (int r = 0; r < world; ++r) {
    replicas[r]->set_input_observer([&, r](const LinearLayerSpec& l, const at::Tensor& in) {
      BAQ_RETURN_IF_ERROR(check());  // Between the layers of a forward.
      if (first_of_group.at(l.input_group) != l.short_name) return absl::OkStatus();
      return partials[group.chunk_of_rank(r) % num_partials].at(l.input_group).Add(in);
    });
  }
  std::vector<DecoderBlock*> raw;
  for (auto& replica : replicas) raw.push_back(replica.get());
  absl::Status forward = group.Forward(raw, x, next, check);
  for (auto& replica : replicas) replica->set_input_observer(nullptr);
  BAQ_RETURN_IF_ERROR(forward);
  BAQ_RETURN_IF_ERROR(group.ReducePartials(partials));

  // Layer i is measured and quantized on rank i % world, with the Hessian
  // that rank's accumulator holds after the reduction.
  BlockState state;
  for (size_t i = 0; i < specs.size(); ++i) {
    const int owner = world == 1 ? 0 : static_cast<int>(i % world);
    BAQ_ASSIGN_OR_RETURN(
        at::Tensor h,
        Annotate(partials[owner].at(specs[i].input_group).Finalize(at::kFloat), specs[i].name));
    state.hessians.push_back(std::move(h));
  }
  partials.clear();
  state.block = std::move(replicas[0]);
  for (int r = 1; r < world; ++r) state.replicas.push_back(std::move(replicas[r]));
  return state;
}

absl::StatusOr<BlockMeasurement> MeasureLosses(DeviceGroup& group, const EngineJob& job,
                                               int64_t block, const BlockState& state,
                                               const CancelCheck& check) {
  const int world = group.world();
  const std::vector<LinearLayerSpec>& specs = state.block->linear_layers();
  std::vector<DecoderBlock*> replicas = state.AllReplicas();
  BlockMeasurement m;
  m.block = block;
  m.calibration_tokens = job.calibration_tokens;
  m.layers.resize(specs.size());
  LayerQuantizer quantizer(job.config.quant);
  BAQ_RETURN_IF_ERROR(group.OnRanks([&](int r) -> absl::Status {
    for (size_t i = r; i < specs.size(); i += world) {
      BAQ_RETURN_IF_ERROR(check());
      LayerMeasurement& lm = m.layers[i];
      lm.name = specs[i].name;
      lm.rows = specs[i].out_features;
      if (job.config.quant.module_allocation()) {
        BAQ_ASSIGN_OR_RETURN(at::Tensor w, replicas[r]->LinearWeight(specs[i].short_name));
        BAQ_ASSIGN_OR_RETURN(
            lm.candidate_loss,
            Annotate(quantizer.MeasureCandidateLosses(w, state.hessians[i]), specs[i].name));
      } else if (job.config.quant.method == QuantMethod::kBaq) {
        BAQ_ASSIGN_OR_RETURN(at::Tensor w, replicas[r]->LinearWeight(specs[i].short_name));
        BAQ_ASSIGN_OR_RETURN(
            lm.column_loss,
            Annotate(quantizer.MeasureColumnLoss(w, state.hessians[i]), specs[i].name));
      }
    }
    return absl::OkStatus();
  }));
  return m;
}

absl::StatusOr<BlockOutput> QuantizeBlock(DeviceGroup& group, const EngineJob& job, int64_t block,
                                          BlockState& state,
                                          const std::vector<LayerAllocation>& allocation,
                                          const CancelCheck& check) {
  const std::vector<LinearLayerSpec>& specs = state.block->linear_layers();
  BAQ_RETURN_IF_ERROR(CheckAllocation(block, specs, allocation));
  // Layer i on rank i % world (where Measure left its Hessian).
  const int world = group.world();
  std::vector<DecoderBlock*> replicas = state.AllReplicas();
  LayerQuantizer quantizer(job.config.quant);
  std::vector<std::optional<LayerQuantizer::Result>> results(specs.size());
  BAQ_RETURN_IF_ERROR(group.OnRanks([&](int rank) -> absl::Status {
    for (size_t i = rank; i < specs.size(); i += world) {
      BAQ_RETURN_IF_ERROR(check());
      const absl::Time start = absl::Now();
      BAQ_ASSIGN_OR_RETURN(at::Tensor w, replicas[rank]->LinearWeight(specs[i].short_name));
      BAQ_ASSIGN_OR_RETURN(
          results[i],
          Annotate(quantizer.Quantize(specs[i].name, w, state.hessians[i], allocation[i],
                                      job.config.formats, job.model.dtype),
                   specs[i].name));
      results[i]->report.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    }
    return absl::OkStatus();
  }));
  AddExpertTokenCounts(replicas, specs, results);
  BlockOutput output;
  output.block = block;
  for (size_t i = 0; i < specs.size(); ++i) {
    LayerQuantizer::Result& r = *results[i];
    // The next block must see what a loaded fake-quant checkpoint holds:
    // the dequantized weight rounded to the checkpoint dtype. (Parallel mode:
    // no later forward; the original weights stay for another target.)
    if (job.sequential()) {
      for (DecoderBlock* replica : replicas) {
        BAQ_RETURN_IF_ERROR(replica->SetLinearWeight(specs[i].short_name, r.stored_weight));
      }
    }
    for (size_t t = 0; t < r.tensors.size(); ++t) {
      output.tensors.push_back(std::move(r.tensors[t]));
      output.tensor_format.push_back(r.tensor_format[t]);
    }
    output.layers.push_back(std::move(r.report));
  }
  return output;
}

}  // namespace baq::worker
