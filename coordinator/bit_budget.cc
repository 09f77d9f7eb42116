#include "coordinator/bit_budget.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/module_allocation.h"
#include "common/status_macros.h"
#include "common/trace_recorder.h"
#include "common/status_util.h"

namespace baq::coordinator {
namespace {

// A candidate width a module group may not take (SolveModuleAllocation).
constexpr double kModuleExcluded = std::numeric_limits<double>::infinity();

// With `normalize`, each layer's losses are divided by their geometric mean
// (over positive losses): one reference loss over normalized losses is the
// paper's per-layer reference times one model-wide factor.
std::vector<LayerLosses> ToLosses(const BlockMeasurement& m, bool normalize) {
  std::vector<LayerLosses> out;
  out.reserve(m.layers.size());
  for (const LayerMeasurement& l : m.layers) {
    LayerLosses layer{l.name, l.column_loss, l.rows};
    if (normalize) {
      std::optional<double> log2_geomean = Log2GeometricMeanLoss({layer});
      if (log2_geomean.has_value()) {
        // In the log domain: dividing by exp2(geomean) would lose losses near
        // the ends of the double range (denormal or infinite divisor).
        for (double& x : layer.column_loss) {
          if (x > 0 && std::isfinite(x)) x = std::exp2(std::log2(x) - *log2_geomean);
        }
      }
    }
    out.push_back(std::move(layer));
  }
  return out;
}

}  // namespace

BitBudget::BitBudget(const QuantizationConfig& quant, ExecutionMode mode, int64_t total_elements,
                     bool project_gptq_widths, BlockLayersFn block_layers,
                     ModuleObjective module_objective)
    : quant_(quant),
      mode_(mode),
      total_elements_(total_elements),
      project_gptq_widths_(project_gptq_widths),
      module_objective_(module_objective),
      block_layers_(std::move(block_layers)) {}

absl::StatusOr<std::vector<std::vector<LayerAllocation>>> BitBudget::AllocateModules(
    const std::vector<BlockMeasurement>& blocks, int64_t budget_bit_elements,
    const std::string& scope) {
  if (!block_layers_) {
    return absl::FailedPreconditionError("allocation module needs the model's layer shapes");
  }
  const std::vector<int32_t>& cand = quant_.candidate_bits;
  // Pass 1: tie groups, their elements and the widths they cannot take.
  std::vector<ModuleGroup> groups;
  std::vector<std::vector<bool>> excluded;  // [group][k]
  // group_of[b][i]: the group of layer i of blocks[b]; specs[b]: its shapes.
  std::vector<std::vector<size_t>> group_of(blocks.size());
  std::vector<std::vector<LinearLayerSpec>> specs(blocks.size());
  for (size_t b = 0; b < blocks.size(); ++b) {
    const BlockMeasurement& m = blocks[b];
    specs[b] = block_layers_(m.block);
    if (specs[b].size() != m.layers.size()) {
      return absl::InvalidArgumentError(absl::StrCat("block ", m.block, ": measurement has ",
                                                     m.layers.size(), " layers, model has ",
                                                     specs[b].size()));
    }
    std::map<int, size_t> group_index;  // tie group -> index into groups
    for (size_t i = 0; i < specs[b].size(); ++i) {
      const LayerMeasurement& l = m.layers[i];
      const LinearLayerSpec& s = specs[b][i];
      if (l.name != s.name || l.candidate_loss.size() != cand.size()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "block ", m.block, ": measured layer ", i, " (", l.name, ", ",
            l.candidate_loss.size(), " candidate losses) does not match ", s.name, " and ",
            cand.size(), " candidate widths"));
      }
      for (double x : l.candidate_loss) {
        if (std::isnan(x) || x < 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("layer ", l.name, ": candidate loss ", x));
        }
      }
      auto [it, fresh] = group_index.emplace(s.tie_group, groups.size());
      if (fresh) {
        groups.push_back(ModuleGroup{s.name, 0, std::vector<double>(cand.size(), 0.0)});
        excluded.emplace_back(cand.size(), false);
      }
      groups[it->second].elements += s.in_features * s.out_features;
      for (size_t k = 0; k < cand.size(); ++k) {
        // Widths the gptq format cannot pack for this shape (32-bit words
        // along both dimensions) are excluded for the whole group.
        const bool packs = (s.in_features * cand[k]) % 32 == 0 &&
                           (s.out_features * cand[k]) % 32 == 0;
        if (project_gptq_widths_ && !packs) excluded[it->second][k] = true;
      }
      group_of[b].push_back(it->second);
    }
  }
  // Pass 2: each group's cost per width, raw and normalized (the layer's
  // reference skips the widths its group cannot take).
  std::vector<std::vector<double>> raw(groups.size(), std::vector<double>(cand.size(), 0.0));
  std::vector<std::vector<double>> normalized = raw;
  for (size_t b = 0; b < blocks.size(); ++b) {
    for (size_t i = 0; i < blocks[b].layers.size(); ++i) {
      const size_t g = group_of[b][i];
      std::vector<double> loss = blocks[b].layers[i].candidate_loss;
      for (size_t k = 0; k < cand.size(); ++k) {
        if (excluded[g][k]) loss[k] = kModuleExcluded;
      }
      if (std::none_of(loss.begin(), loss.end(), [](double x) { return std::isfinite(x); })) {
        continue;  // No width for the group: SolveModuleAllocation says so.
      }
      const std::vector<double> norm = NormalizeModuleLosses(
          loss, cand, quant_.target_bits, specs[b][i].in_features * specs[b][i].out_features);
      for (size_t k = 0; k < cand.size(); ++k) {
        raw[g][k] += loss[k];
        normalized[g][k] += norm[k];
      }
    }
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t k = 0; k < cand.size(); ++k) {
      if (excluded[g][k]) raw[g][k] = normalized[g][k] = kModuleExcluded;
    }
    groups[g].loss = module_objective_ == ModuleObjective::kRaw ? raw[g] : normalized[g];
  }
  BAQ_ASSIGN_OR_RETURN(ModuleAllocation a,
                       Annotate(SolveModuleAllocation(groups, cand, budget_bit_elements),
                                absl::StrCat("allocation module (", scope, ")")));
  ModuleSolve solve{scope, 0, 0, a.bit_elements, a.elements, a.unit, a.exact};
  for (size_t g = 0; g < groups.size(); ++g) {
    const size_t k = static_cast<size_t>(a.choice[g]);
    solve.loss += raw[g][k];
    solve.relative_loss += normalized[g][k];
  }
  solve.relative_loss /= static_cast<double>(a.elements);
  module_solves_.push_back(std::move(solve));
  std::vector<std::vector<LayerAllocation>> out(blocks.size());
  for (size_t b = 0; b < blocks.size(); ++b) {
    for (size_t i = 0; i < blocks[b].layers.size(); ++i) {
      const int32_t bits = cand[static_cast<size_t>(a.choice[group_of[b][i]])];
      out[b].push_back(LayerAllocation{blocks[b].layers[i].name, {}, bits});
    }
  }
  return out;
}

AllocationOptions BitBudget::Options() const {
  AllocationOptions o;
  o.reference_bits = quant_.target_bits;
  o.theta = quant_.theta;
  o.min_levels = 1;
  o.max_levels = quant_.max_levels;
  return o;
}

bool BitBudget::Normalize() const {
  return quant_.allocation_scope == AllocationScope::kGlobal;
}

std::string BitBudget::scope_name() const {
  if (quant_.module_allocation()) return "module";
  if (quant_.method != QuantMethod::kBaq) return "uniform";
  return std::string(AllocationScopeName(quant_.allocation_scope));
}

std::vector<LayerAllocation> BitBudget::Project(std::vector<LayerAllocation> layers,
                                                const std::vector<LayerLosses>& losses) {
  if (!project_gptq_widths_) return layers;
  for (size_t i = 0; i < layers.size(); ++i) {
    const double elements =
        static_cast<double>(losses[i].rows) * static_cast<double>(losses[i].column_loss.size());
    const double exact = layers[i].levels.empty()
                             ? quant_.target_bits * elements
                             : LayerBitsSum(losses[i].rows, layers[i].levels);
    projection_exact_ += exact;
    // The width that brings the projected total closest to the exact total.
    const double want = (projection_exact_ - projection_assigned_) / elements;
    // GPTQ kernels take 2, 3, 4 or 8 bits, packed into 32-bit words along
    // both dimensions (qweight along in, qzeros along out): widths the
    // layer's shape cannot pack are skipped (3 bits for LLaMA's
    // intermediate size 688, say). If none fits, the nearest one is kept and
    // the gptq writer reports the shape.
    const int64_t in = static_cast<int64_t>(losses[i].column_loss.size());
    const int64_t out = losses[i].rows;
    int32_t bits = 0;
    for (bool packable_only : {true, false}) {
      for (int32_t c : {2, 3, 4, 8}) {
        if (packable_only && ((in * c) % 32 != 0 || (out * c) % 32 != 0)) continue;
        if (bits == 0 || std::abs(c - want) < std::abs(bits - want)) bits = c;
      }
      if (bits != 0) break;
    }
    layers[i].gptq_bits = bits;
    projection_assigned_ += bits * elements;
  }
  return layers;
}

absl::StatusOr<std::vector<LayerAllocation>> BitBudget::AllocateBlock(
    const BlockMeasurement& m) {
  BAQ_TRACE_SCOPE("budget", "allocate_block", {{"block", m.block}});
  if (quant_.module_allocation()) {
    // Everything so far plus this block averages <= target (see the header).
    int64_t block_elements = 0;
    if (block_layers_) {
      for (const LinearLayerSpec& s : block_layers_(m.block)) {
        block_elements += s.in_features * s.out_features;
      }
    }
    const int64_t budget = ModuleBitBudget(quant_.target_bits, elements_done_ + block_elements) -
                           static_cast<int64_t>(std::llround(bits_done_));
    BAQ_ASSIGN_OR_RETURN(auto a, AllocateModules({m}, budget, absl::StrCat("block ", m.block)));
    return std::move(a.front());
  }
  std::vector<LayerLosses> losses = ToLosses(m, Normalize());
  std::vector<LayerAllocation> out(losses.size());
  for (size_t i = 0; i < losses.size(); ++i) out[i].name = losses[i].name;
  if (quant_.method != QuantMethod::kBaq) return Project(std::move(out), losses);
  const AllocationOptions options = Options();
  if (quant_.allocation_scope == AllocationScope::kSublayer) {
    for (size_t i = 0; i < losses.size(); ++i) {
      BAQ_RETURN_IF_ERROR(ValidateLayerLosses(losses[i]));
      BAQ_ASSIGN_OR_RETURN(SublayerAllocationResult r,
                           SublayerAllocation(losses[i].column_loss, options));
      reference_losses_.emplace_back(losses[i].name, r.reference_loss);
      out[i].levels = std::move(r.levels);
    }
    return Project(std::move(out), losses);
  }
  FixedBits fixed{bits_done_, elements_done_};
  BAQ_ASSIGN_OR_RETURN(GlobalAllocation g,
                       SolveGlobalAllocation(losses, quant_.target_bits, options, fixed));
  reference_losses_.emplace_back(absl::StrCat("block ", m.block), g.reference_loss);
  for (size_t i = 0; i < losses.size(); ++i) out[i].levels = std::move(g.levels[i]);
  return Project(std::move(out), losses);
}

absl::StatusOr<std::vector<std::vector<LayerAllocation>>> BitBudget::AllocateAll(
    const std::vector<BlockMeasurement>& blocks) {
  BAQ_TRACE_SCOPE("budget", "allocate_all", {{"blocks", blocks.size()}});
  if (quant_.module_allocation()) {
    return AllocateModules(blocks, ModuleBitBudget(quant_.target_bits, total_elements_), "model");
  }
  const bool global_baq = quant_.method == QuantMethod::kBaq &&
                          quant_.allocation_scope != AllocationScope::kSublayer;
  if (!global_baq) {
    std::vector<std::vector<LayerAllocation>> out;
    for (const BlockMeasurement& m : blocks) {
      BAQ_ASSIGN_OR_RETURN(std::vector<LayerAllocation> a, AllocateBlock(m));
      out.push_back(std::move(a));
    }
    return out;
  }
  std::vector<LayerLosses> all;
  for (const BlockMeasurement& m : blocks) {
    std::vector<LayerLosses> l = ToLosses(m, Normalize());
    all.insert(all.end(), std::make_move_iterator(l.begin()), std::make_move_iterator(l.end()));
  }
  BAQ_ASSIGN_OR_RETURN(GlobalAllocation g,
                       SolveGlobalAllocation(all, quant_.target_bits, Options()));
  reference_losses_.emplace_back("model", g.reference_loss);
  std::vector<std::vector<LayerAllocation>> out;
  size_t k = 0;
  for (const BlockMeasurement& m : blocks) {
    std::vector<LayerAllocation> block;
    std::vector<LayerLosses> losses(all.begin() + static_cast<std::ptrdiff_t>(k),
                                    all.begin() + static_cast<std::ptrdiff_t>(k + m.layers.size()));
    for (size_t i = 0; i < m.layers.size(); ++i, ++k) {
      block.push_back(LayerAllocation{all[k].name, std::move(g.levels[k]), 0});
    }
    out.push_back(Project(std::move(block), losses));
  }
  return out;
}

void BitBudget::Record(const BlockOutput& output) {
  for (const LayerReport& l : output.layers) {
    bits_done_ += l.bits_sum;
    elements_done_ += l.rows * l.columns;
  }
}

double BitBudget::achieved_bits() const {
  return elements_done_ == 0 ? 0.0 : bits_done_ / static_cast<double>(elements_done_);
}

}  // namespace baq::coordinator
