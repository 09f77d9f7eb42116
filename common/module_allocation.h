// common/module_allocation.h
//
// Module-level bit allocation (`--allocation module`): every tie group of
// linear layers (the layers a serving engine fuses into one kernel, which
// must share one width: q/k/v, gate/up, all routed experts of a MoE block)
// gets one width from a candidate set, so that the summed cost of the
// model is minimal while the parameter-weighted average width stays <= the
// target.
//
// The cost (ModuleObjective) is built from each layer's measured proxy loss
// tr((W - Q) H (W - Q)^T) at every candidate. Raw losses of different layers
// are not on one scale (an out_proj with small outputs has a small absolute
// loss however much it matters), so by default each layer's losses are
// divided by its own loss at the target width and weighted by its element
// count (NormalizeModuleLosses): the cost of a width is the layer's loss
// relative to uniform GPTQ at the target. This is what `--allocation global`
// does for BAQ's per-column losses (each layer relative to its own geometric
// mean). The raw sum moves bits by absolute loss, as `global-raw`; on the
// OPT fixture it loses to uniform GPTQ in perplexity at 3 and 4 bits, where
// the normalized objective picks uniform (docs/module-allocation.md).
//
// This is a multiple-choice knapsack: group g with e_g weight elements picks
// candidate k at weight e_g * bits_k (bit-elements) and cost loss_gk (the
// proxy loss the worker measured by running GPTQ at bits_k on the group's
// layers). SolveModuleAllocation solves it exactly by dynamic programming
// over the budget in units of u = gcd of all weight increments over each
// group's narrowest candidate: the increments are integers, so every
// feasible choice is a DP state and the minimum is the true optimum (no
// rounding of weights or budget). Only when the table would exceed
// `max_dp_cells` are the increments rounded up to a coarser unit (still
// feasible, no longer proven optimal: `exact` false).
//
// Ties: among equal-loss optima the one using the most budget wins (as close
// to the target as the candidates allow); within the DP a group prefers the
// narrower candidate on equal partial loss. Same inputs in the same order give
// the same choice bitwise (sequential float sums in group order).
//
// Functions only; stateless and thread-safe.
//
// Example (a 2.5-bit target over three groups):
//   std::vector<ModuleGroup> groups = ...;   // loss[k] for candidate_bits[k]
//   BAQ_ASSIGN_OR_RETURN(ModuleAllocation a,
//       SolveModuleAllocation(groups, {2, 3, 4, 8},
//                             ModuleBitBudget(2.5, TotalElements(groups))));
//   // a.choice[g]: index into candidate_bits for groups[g].
#ifndef BAQ_COMMON_MODULE_ALLOCATION_H_
#define BAQ_COMMON_MODULE_ALLOCATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace baq {

// The default candidate widths: those GPTQ kernels (and vLLM's GPTQ and
// compressed-tensors WNA16 paths) pack.
inline const std::vector<int32_t>& DefaultCandidateBits() {
  static const std::vector<int32_t>* const kBits =
      new std::vector<int32_t>{2, 3, 4, 8};
  return *kBits;
}

// One tie group: layers that share one width.
struct ModuleGroup {
  std::string name;      // For messages (e.g. the group's first layer).
  int64_t elements = 0;  // Weight elements of all its layers; > 0.
  // Proxy loss of the group at each candidate width (parallel to
  // candidate_bits); +infinity marks a width the group cannot take.
  std::vector<double> loss;
};

struct ModuleAllocation {
  std::vector<int32_t> choice;  // Index into candidate_bits, per group.
  double loss = 0;              // Summed loss of the choice.
  int64_t bit_elements = 0;     // Sum of elements * bits of the choice.
  int64_t elements = 0;         // Sum of elements.
  // The DP's budget unit in bit-elements, and whether the result is proven
  // optimal (false only after coarsening, see above).
  int64_t unit = 1;
  bool exact = true;
};

// What a module allocation minimizes.
enum class ModuleObjective {
  // Sum over layers of elements * loss / (the layer's loss at the target):
  // uniform GPTQ at a candidate target scores exactly the element count.
  kNormalized,
  // Sum of the raw proxy losses.
  kRaw,
};

// "normalized" | "raw".
absl::string_view ModuleObjectiveName(ModuleObjective objective);
// InvalidArgument for any other name.
absl::StatusOr<ModuleObjective> ParseModuleObjective(absl::string_view name);

// A layer's proxy loss at `target_bits`: its loss at that candidate if
// allowed, else log-linearly interpolated between the nearest allowed
// candidates below and above (exact for GPTQ's loss ~ c * 4^-bits), or the
// nearest allowed one when the target lies outside them. If that is 0 (a
// zero-loss end of the interpolation), the smallest positive allowed loss;
// if the layer has none (all zero), 1. `loss` is parallel to
// `candidate_bits`, +infinity marks a width the layer cannot take.
// REQUIRES: losses >= 0 or +infinity, at least one finite; candidate_bits
// strictly increasing.
double ModuleReferenceLoss(absl::Span<const double> loss,
                           absl::Span<const int32_t> candidate_bits,
                           double target_bits);

// elements * loss[k] / ModuleReferenceLoss(loss, candidate_bits,
// target_bits) for every k; +infinity stays +infinity. Same REQUIRES.
std::vector<double> NormalizeModuleLosses(
    absl::Span<const double> loss, absl::Span<const int32_t> candidate_bits,
    double target_bits, int64_t elements);

// Default bound on the DP table (groups x budget states, one byte each).
inline constexpr int64_t kDefaultMaxDpCells = int64_t{1} << 26;

// floor(target_bits * elements), with a relative slack of 1e-12 so that a
// target like 2.3 (not a double) over elements whose product is an integer
// is not one bit-element short. REQUIRES: target_bits >= 0, elements >= 0.
int64_t ModuleBitBudget(double target_bits, int64_t elements);

// The minimum-loss choice with sum elements * bits <= budget_bit_elements.
// InvalidArgument for an empty or unsorted/duplicate candidate set, widths
// outside [1, 16], a group with elements <= 0, a loss vector of the wrong
// size, a NaN or negative loss, or no allowed candidate; OutOfRange when the
// budget is below every group at its narrowest allowed width.
absl::StatusOr<ModuleAllocation> SolveModuleAllocation(
    absl::Span<const ModuleGroup> groups,
    absl::Span<const int32_t> candidate_bits, int64_t budget_bit_elements,
    int64_t max_dp_cells = kDefaultMaxDpCells);

}  // namespace baq

#endif  // BAQ_COMMON_MODULE_ALLOCATION_H_
