// coordinator/bit_budget.h
//
// BitBudget turns the workers' per-column loss measurements into per-column
// level counts so that the whole model's average bitwidth (weighted by
// element count) equals the job's target. It sees only small float64
// vectors; the math lives in common/bit_allocation.h.
//
//   - Uniform methods (GPTQ, RTN): no allocation; every layer at target bits.
//   - BAQ, scope `sublayer`: the paper's per-layer reference (geometric mean of
//     the layer's losses); the average is tracked, not enforced.
//   - BAQ, scope `global`: each layer's losses are divided by their geometric
//     mean (the paper's per-layer reference), then one reference over those
//     is solved so the model average hits the target: the paper's
//     exponential self-correction factor, made exact. `global-raw` solves one
//     reference over the raw losses instead (bits move between layers by
//     absolute proxy loss; it can starve whole layers).
//   - Parallel mode: all losses are known up front; one solve for the model.
//   - Sequential mode: later blocks' losses are unknown
//     when a block is allocated, so each block's layers share one reference
//     loss solved against the whole-model budget with the blocks already
//     quantized as fixed bits: every prefix of the model, and so the finished
//     model, averages the target (this supersedes the paper's exponential
//     self-correction, which only steers towards it; see docs/numerics.md).
//   - Scope `module` (either method): one width per tie group of layers
//     (common/model_config.h LinearLayerSpec::tie_group) from the candidate
//     set, minimizing the summed measured GPTQ proxy loss at average <=
//     target (common/module_allocation.h, exact), each layer's losses
//     relative to its own loss at the target (ModuleObjective::kNormalized,
//     the default; the analogue of `global`) or raw (kRaw, as `global-raw`). Parallel mode: one solve
//     over the whole model. Sequential mode: one exact solve per block as it
//     arrives, with budget target * (elements so far incl. this block) minus
//     the bits already spent, so every prefix, and the model, averages <=
//     target and a block's unused budget carries to later blocks (later
//     blocks' losses do not exist yet: their inputs depend on this block's
//     quantization, so no whole-model solve is possible there). The width
//     goes into LayerAllocation::gptq_bits (levels empty); with the gptq
//     format, widths the layer's shape cannot pack are excluded.
//   - `gptq` output format: each layer's allocation is projected to one
//     integer width with error diffusion across layers, so the projected
//     widths average the same as the per-column allocation.
//
// Thread-compatible: the job runner's thread calls all methods.
#ifndef BAQ_COORDINATOR_BIT_BUDGET_H_
#define BAQ_COORDINATOR_BIT_BUDGET_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/bit_allocation.h"
#include "common/block_protocol.h"
#include "common/job_config.h"
#include "common/model_config.h"
#include "common/module_allocation.h"

namespace baq::coordinator {

// The quantizable layers of a block, in the order its measurement lists them
// (ModelConfig::BlockLinearLayers): shapes and tie groups for scope module.
using BlockLayersFn = std::function<std::vector<LinearLayerSpec>(int64_t block)>;

class BitBudget {
 public:
  // `total_elements`: weight elements of all quantizable layers of the model.
  // `block_layers`: required for scope module (FailedPrecondition without).
  // `module_objective`: what scope module minimizes.
  BitBudget(const QuantizationConfig& quant, ExecutionMode mode, int64_t total_elements,
            bool project_gptq_widths, BlockLayersFn block_layers = nullptr,
            ModuleObjective module_objective = ModuleObjective::kNormalized);

  // Sequential mode: levels for one block's layers.
  absl::StatusOr<std::vector<LayerAllocation>> AllocateBlock(const BlockMeasurement& m);
  // Parallel mode: levels for every block at once (exact global solve).
  absl::StatusOr<std::vector<std::vector<LayerAllocation>>> AllocateAll(
      const std::vector<BlockMeasurement>& blocks);

  // Accounts a quantized block's achieved bits.
  void Record(const BlockOutput& output);

  // Everything AllocateBlock() and Record() carry from one block to the
  // next: a job checkpoint saves it after each block, so a resumed job
  // allocates the remaining blocks exactly as an uninterrupted one.
  struct State {
    double bits_done = 0;
    int64_t elements_done = 0;
    double projection_exact = 0;
    double projection_assigned = 0;
    std::vector<std::pair<std::string, double>> reference_losses;
  };
  State state() const {
    return State{bits_done_, elements_done_, projection_exact_, projection_assigned_,
                 reference_losses_};
  }
  void Restore(const State& s) {
    bits_done_ = s.bits_done;
    elements_done_ = s.elements_done;
    projection_exact_ = s.projection_exact;
    projection_assigned_ = s.projection_assigned;
    reference_losses_ = s.reference_losses;
  }
  double achieved_bits() const;
  int64_t elements_done() const { return elements_done_; }
  // "global", "sublayer" or "uniform": what was used.
  std::string scope_name() const;
  ModuleObjective module_objective() const { return module_objective_; }
  // The reference losses L* the BAQ allocations so far solved for, in order,
  // each with what it covered: "model" (parallel, global), "block N"
  // (sequential, global; over per-layer normalized losses for scope global)
  // or a layer name (sublayer scope). Empty for uniform methods.
  const std::vector<std::pair<std::string, double>>& reference_losses() const {
    return reference_losses_;
  }
  // Scope module: each knapsack solve of this run ("model", or "block N" in
  // sequential mode; a resumed job lists only its own), for the report.
  struct ModuleSolve {
    std::string scope;
    double loss = 0;  // Summed measured proxy loss of the choice.
    // Element-weighted mean of each layer's loss relative to its loss at the
    // target (the normalized objective over the elements): 1 for uniform
    // GPTQ at a candidate target, whichever objective was minimized.
    double relative_loss = 0;
    int64_t bit_elements = 0;
    int64_t elements = 0;
    int64_t unit = 1;  // DP unit, bit-elements.
    bool exact = true;
  };
  const std::vector<ModuleSolve>& module_solves() const { return module_solves_; }

 private:
  AllocationOptions Options() const;
  // Whether losses are normalized per layer (scope kGlobal).
  bool Normalize() const;

  const QuantizationConfig quant_;
  const ExecutionMode mode_;
  const int64_t total_elements_;
  const bool project_gptq_widths_;
  const ModuleObjective module_objective_;
  double bits_done_ = 0;
  int64_t elements_done_ = 0;
  // Error diffusion state of the gptq-format projection: exact and
  // projected bit-elements of the layers allocated so far.
  double projection_exact_ = 0;
  double projection_assigned_ = 0;
  std::vector<std::pair<std::string, double>> reference_losses_;
  const BlockLayersFn block_layers_;
  std::vector<ModuleSolve> module_solves_;

  // Scope module: the width of every layer of `blocks` from one exact solve
  // with `budget_bit_elements` (bit-elements) for all of them.
  absl::StatusOr<std::vector<std::vector<LayerAllocation>>> AllocateModules(
      const std::vector<BlockMeasurement>& blocks, int64_t budget_bit_elements,
      const std::string& scope);
  std::vector<LayerAllocation> Project(std::vector<LayerAllocation> layers,
                                        const std::vector<LayerLosses>& losses);
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_BIT_BUDGET_H_
