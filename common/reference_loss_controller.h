// common/reference_loss_controller.h
//
// ReferenceLossController picks the BAQ reference loss block by block in
// sequential mode, where a block's pass-1 losses are known when it is
// allocated but later blocks' are not, so that the model-wide average width
// approaches a target. It implements the paper's reference-loss estimate with
// exponential self-correction (arXiv 2506.05664; authors' code
// CSU-ModelCompression/BAQ: Lref = (geomean / mean) * mean(loss) per
// sublayer, rescaled by alpha = 2^(2 (R_achieved - R_target)) after a run).
//
// Equations, for block k with column losses l_kj, theta and R from the options:
//   G_k     = 2^(rows-weighted mean over positive l_kj of log2 l_kj)
//             (the paper's per-sublayer Lref; with it the continuous,
//             unrounded average width of the block is exactly R)
//   Lref_k  = G_k * 2^(theta * s_k)           (continuous average: R - s_k)
//   a_k     = bits of block k / elements of block k         (measured)
//   d_k     = a_k - (R - s'_k),  s'_k = log2(Lref used / G_k) / theta
//             (rounding and clamping bias of block k)
//   d^_k    = d^_{k-1} + gain * (d_k - d^_{k-1}),  d^_{-1} = 0
//   T_k     = (T N - B_k) / (N - E_k)    (what the rest must average; B_k, E_k
//             recorded bit-elements and elements, N total; clamped to
//             [log2 min_levels, log2 max_levels])
//   s_{k+1} = R + d^_k - T_k,  s_0 = R - T.
// With gain = 1 this is log2 Lref_{k+1}/G_{k+1} = log2 Lref_k/G_k
// + theta (a_k - T_k): the exponential correction Lref <- Lref *
// 2^(theta (achieved - target)), applied after every block instead of after a
// whole run, against the target the remaining blocks must meet (so past
// errors are paid back: integral action).
//
// Combine with SolveGlobalAllocation(block, T, options, fixed) to hit the
// target exactly per block; Record() then takes the reference it returned.
//
// Thread-compatible: one thread (the coordinator's job loop) calls all methods.
//
// Example:
//   ReferenceLossController c(/*target_bits=*/2.5, total_elements, options);
//   for (const std::vector<LayerLosses>& block : blocks) {
//     BAQ_ASSIGN_OR_RETURN(double ref, c.NextReferenceLoss(block));
//     ... levels = LevelsForReferenceLoss(layer.column_loss, ref, options) ...
//     c.Record(bit_elements_of_block, elements_of_block, ref);
//   }
#ifndef BAQ_COMMON_REFERENCE_LOSS_CONTROLLER_H_
#define BAQ_COMMON_REFERENCE_LOSS_CONTROLLER_H_

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/bit_allocation.h"

namespace baq {

class ReferenceLossController {
 public:
  // REQUIRES: total_elements > 0, options valid, gain in (0, 1]; target_bits
  // in [log2 min_levels, log2 max_levels] (clamped otherwise).
  ReferenceLossController(double target_bits, int64_t total_elements,
                          const AllocationOptions& options, double gain = 1.0);

  // Lref for the next block, from its pass-1 losses. An empty span reuses the
  // last block's G (losses not known yet): the loss-scale change between
  // blocks then adds to the bias, paid back by later blocks but not after the
  // last one. InvalidArgument for invalid layers; FailedPrecondition for an
  // empty span before any block, or when no loss seen so far is positive.
  absl::StatusOr<double> NextReferenceLoss(
      absl::Span<const LayerLosses> upcoming);

  // Records a quantized block: its bit-elements (sum rows * log2 L), element
  // count and the reference loss actually used (which may differ from the
  // suggestion, e.g. after SolveGlobalAllocation). A reference <= 0, or no
  // preceding NextReferenceLoss, leaves the bias estimate unchanged.
  void Record(double bit_elements, int64_t elements,
              double reference_loss_used);

  // T_k: the average the unrecorded elements must reach.
  double remaining_target_bits() const;
  // B_k / E_k (0 before any Record).
  double achieved_bits() const;
  int64_t recorded_elements() const { return recorded_elements_; }
  // s_{k+1}, in bits.
  double correction_bits() const { return correction_bits_; }

 private:
  // Constant after construction.
  const double target_bits_;
  const int64_t total_elements_;
  const AllocationOptions options_;
  const double gain_;

  double recorded_bit_elements_ = 0;
  int64_t recorded_elements_ = 0;
  double correction_bits_;                   // s for the next block
  double bias_bits_ = 0;                     // d^
  std::optional<double> last_log2_base_;     // log2 G of the latest block
  std::optional<double> pending_log2_base_;  // set by Next, used by Record
};

}  // namespace baq

#endif  // BAQ_COMMON_REFERENCE_LOSS_CONTROLLER_H_
