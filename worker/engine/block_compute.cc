#include "worker/engine/block_compute.h"

#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "common/trace_recorder.h"
#include "worker/layer_quantizer.h"
#include "worker/model/block_factory.h"
#include "worker/model/moe_mlp.h"
#include "worker/model/tensor_convert.h"
#include "worker/quant/hessian_accumulator.h"

namespace baq::worker {
namespace {

// The indices of `layers`, or 0..n-1 when null.
std::vector<int32_t> Selected(LayerSubset layers, size_t n) {
  if (layers != nullptr) return *layers;
  std::vector<int32_t> all(n);
  for (size_t i = 0; i < n; ++i) all[i] = static_cast<int32_t>(i);
  return all;
}

absl::Status CheckAllocation(int64_t block, const std::vector<LinearLayerSpec>& specs,
                             const std::vector<int32_t>& selected,
                             const std::vector<LayerAllocation>& allocation) {
  if (allocation.size() != selected.size()) {
    return absl::InvalidArgumentError(absl::StrCat("block ", block, ": allocation has ",
                                                   allocation.size(), " layers, expected ",
                                                   selected.size()));
  }
  for (size_t j = 0; j < selected.size(); ++j) {
    const LinearLayerSpec& spec = specs[selected[j]];
    if (allocation[j].name != spec.name) {
      return absl::InvalidArgumentError(absl::StrCat("block ", block, ": allocation entry ", j,
                                                     " names ", allocation[j].name,
                                                     ", expected ", spec.name));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckHessian(int64_t block, const BlockState& state, size_t i) {
  if (state.hessians[i].defined()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("block ", block, ": no Hessian for ", state.block->linear_layers()[i].name,
                   " on this worker (its input group's merged sum was not imported)"));
}

// MoE: each expert layer's calibration tokens (routed, floor rule), summed
// over the replicas that calibrated (moe_mlp.h). Left -1 when the block did
// not calibrate here (e.g. a reused measurement).
void AddExpertTokenCounts(const std::vector<DecoderBlock*>& replicas,
                          const std::vector<LinearLayerSpec>& specs,
                          std::vector<std::optional<LayerQuantizer::Result>>& results) {
  for (size_t i = 0; i < specs.size(); ++i) {
    const int expert = ExpertIndexOf(specs[i].short_name);
    if (expert < 0 || !results[i].has_value()) continue;
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

absl::Status CheckLayerSubset(int64_t block, const std::vector<int32_t>& layers,
                              size_t num_layers) {
  for (size_t j = 0; j < layers.size(); ++j) {
    if (layers[j] < 0 || static_cast<size_t>(layers[j]) >= num_layers) {
      return absl::InvalidArgumentError(absl::StrCat("block ", block, ": layer ", layers[j],
                                                     " out of range [0, ", num_layers, ")"));
    }
    if (j > 0 && layers[j] <= layers[j - 1]) {
      return absl::InvalidArgumentError(
          absl::StrCat("block ", block, ": layers must be distinct and in increasing order"));
    }
  }
  return absl::OkStatus();
}

at::ScalarType ResolveForwardDtype(ForwardDtype requested, DType checkpoint,
                                   const at::Device& device) {
  switch (requested) {
    case ForwardDtype::kFloat32:
      return at::kFloat;
    case ForwardDtype::kBFloat16:
      return at::kBFloat16;
    case ForwardDtype::kFloat16:
      return at::kHalf;
    case ForwardDtype::kAuto:
      break;
  }
  if (!device.is_cuda()) return at::kFloat;
  const at::ScalarType stored = ToScalarType(checkpoint);
  return stored == at::kBFloat16 || stored == at::kHalf ? stored : at::kFloat;
}

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
                                           const CancelCheck& check,
                                           std::unique_ptr<DecoderBlock> preloaded) {
  // replicas[r]: the block on device r (one per rank).
  std::vector<std::unique_ptr<DecoderBlock>> replicas;
  if (preloaded != nullptr && group.world() == 1) {
    replicas.push_back(std::move(preloaded));
  } else {
    BAQ_ASSIGN_OR_RETURN(replicas, LoadReplicas(group, job, block));
  }
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
      BAQ_TRACE_SCOPE("engine", "hessian_add", {{"block", block}, {"layer", l.short_name}});
      return partials[group.chunk_of_rank(r) % num_partials].at(l.input_group).Add(in);
    });
  }
  std::vector<DecoderBlock*> raw;
  for (auto& replica : replicas) raw.push_back(replica.get());
  absl::Status forward = group.Forward(raw, x, next, check);
  for (auto& replica : replicas) replica->set_input_observer(nullptr);
  BAQ_RETURN_IF_ERROR(forward);
  BAQ_TRACE_SCOPE("engine", "hessian_reduce_finalize",
                  {{"block", block}, {"partials", num_partials}});
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
                                               const CancelCheck& check, LayerSubset layers) {
  const int world = group.world();
  BAQ_TRACE_SCOPE("engine", "measure_losses", {{"block", block}});
  const std::vector<LinearLayerSpec>& specs = state.block->linear_layers();
  const std::vector<int32_t> selected = Selected(layers, specs.size());
  BAQ_RETURN_IF_ERROR(CheckLayerSubset(block, selected, specs.size()));
  for (int32_t i : selected) BAQ_RETURN_IF_ERROR(CheckHessian(block, state, i));
  std::vector<DecoderBlock*> replicas = state.AllReplicas();
  BlockMeasurement m;
  m.block = block;
  m.calibration_tokens = job.calibration_tokens;
  m.layers.resize(selected.size());
  LayerQuantizer quantizer(job.config.quant);
  BAQ_RETURN_IF_ERROR(group.OnRanks([&](int r) -> absl::Status {
    for (size_t j = 0; j < selected.size(); ++j) {
      const size_t i = selected[j];
      if (static_cast<int>(i % world) != r) continue;
      BAQ_RETURN_IF_ERROR(check());
      LayerMeasurement& lm = m.layers[j];
      BAQ_TRACE_SCOPE("engine", "measure_layer",
                      {{"block", block}, {"layer", specs[i].short_name}});
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
                                          const CancelCheck& check, LayerSubset layers,
                                          QuantizedWeights* weights) {
  const std::vector<LinearLayerSpec>& specs = state.block->linear_layers();
  const std::vector<int32_t> selected = Selected(layers, specs.size());
  BAQ_RETURN_IF_ERROR(CheckLayerSubset(block, selected, specs.size()));
  BAQ_RETURN_IF_ERROR(CheckAllocation(block, specs, selected, allocation));
  if (state.quantized.empty()) state.quantized.assign(specs.size(), false);
  for (int32_t i : selected) {
    BAQ_RETURN_IF_ERROR(CheckHessian(block, state, i));
    if (state.quantized[i]) {
      return absl::FailedPreconditionError(
          absl::StrCat("block ", block, ": ", specs[i].name, " was quantized on this worker "
                       "already (its weight is the quantized one now)"));
    }
  }
  // Layer i on rank i % world (where Measure left its Hessian).
  const int world = group.world();
  std::vector<DecoderBlock*> replicas = state.AllReplicas();
  LayerQuantizer quantizer(job.config.quant);
  std::vector<std::optional<LayerQuantizer::Result>> results(specs.size());
  BAQ_RETURN_IF_ERROR(group.OnRanks([&](int rank) -> absl::Status {
    for (size_t j = 0; j < selected.size(); ++j) {
      const int32_t i = selected[j];
      if (static_cast<int>(i % world) != rank) continue;
      BAQ_RETURN_IF_ERROR(check());
      const absl::Time start = absl::Now();
      BAQ_TRACE_SCOPE("engine", "quantize_layer",
                      {{"block", block}, {"layer", specs[i].short_name}});
      BAQ_ASSIGN_OR_RETURN(at::Tensor w, replicas[rank]->LinearWeight(specs[i].short_name));
      BAQ_ASSIGN_OR_RETURN(
          results[i],
          Annotate(quantizer.Quantize(specs[i].name, w, state.hessians[i], allocation[j],
                                      job.config.formats, job.model.dtype,
                                      /*packed_weight=*/weights != nullptr),
                   specs[i].name));
      results[i]->report.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    }
    return absl::OkStatus();
  }));
  AddExpertTokenCounts(replicas, specs, results);
  BlockOutput output;
  output.block = block;
  for (int32_t i : selected) {
    LayerQuantizer::Result& r = *results[i];
    // The next block must see what a loaded fake-quant checkpoint holds:
    // the dequantized weight rounded to the checkpoint dtype. (Parallel mode:
    // no later forward; the original weights stay for another target.)
    if (job.sequential()) {
      for (DecoderBlock* replica : replicas) {
        BAQ_RETURN_IF_ERROR(replica->SetLinearWeight(specs[i].short_name, r.stored_weight));
      }
      state.quantized[i] = true;
    }
    if (weights != nullptr) {
      weights->stored_weights.push_back(r.stored_weight);
      weights->packed_weights.push_back(std::move(r.packed_weight));
      weights->tensors_per_layer.push_back(static_cast<int32_t>(r.tensors.size()));
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
