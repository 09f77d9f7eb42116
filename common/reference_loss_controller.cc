#include "common/reference_loss_controller.h"

#include <algorithm>
#include <cmath>

namespace baq {

ReferenceLossController::ReferenceLossController(
    double target_bits, int64_t total_elements,
    const AllocationOptions& options, double gain)
    : target_bits_(std::clamp(
          target_bits, std::log2(static_cast<double>(options.min_levels)),
          std::log2(static_cast<double>(options.max_levels)))),
      total_elements_(total_elements),
      options_(options),
      gain_(gain),
      correction_bits_(options.reference_bits - target_bits_) {}

double ReferenceLossController::remaining_target_bits() const {
  const double lo = std::log2(static_cast<double>(options_.min_levels));
  const double hi = std::log2(static_cast<double>(options_.max_levels));
  const int64_t remaining = total_elements_ - recorded_elements_;
  if (remaining <= 0) return target_bits_;
  const double needed = target_bits_ * static_cast<double>(total_elements_) -
                        recorded_bit_elements_;
  return std::clamp(needed / static_cast<double>(remaining), lo, hi);
}

double ReferenceLossController::achieved_bits() const {
  if (recorded_elements_ == 0) return 0;
  return recorded_bit_elements_ / static_cast<double>(recorded_elements_);
}

absl::StatusOr<double> ReferenceLossController::NextReferenceLoss(
    absl::Span<const LayerLosses> upcoming) {
  for (const LayerLosses& layer : upcoming) {
    if (absl::Status s = ValidateLayerLosses(layer); !s.ok()) return s;
  }
  if (!upcoming.empty()) {
    // A block without positive losses keeps the previous G: its columns get
    // min_levels whatever the reference.
    if (std::optional<double> g = Log2GeometricMeanLoss(upcoming)) {
      last_log2_base_ = g;
    }
  }
  if (!last_log2_base_.has_value()) {
    return absl::FailedPreconditionError(
        "no positive loss seen yet: cannot estimate a reference loss");
  }
  pending_log2_base_ = last_log2_base_;
  return std::exp2(*last_log2_base_ + options_.theta * correction_bits_);
}

void ReferenceLossController::Record(double bit_elements, int64_t elements,
                                     double reference_loss_used) {
  if (elements <= 0) return;
  recorded_bit_elements_ += bit_elements;
  recorded_elements_ += elements;
  if (pending_log2_base_.has_value() && reference_loss_used > 0 &&
      std::isfinite(reference_loss_used)) {
    // The correction actually applied, and the bias it left.
    const double applied =
        (std::log2(reference_loss_used) - *pending_log2_base_) / options_.theta;
    const double achieved = bit_elements / static_cast<double>(elements);
    const double bias = achieved - (options_.reference_bits - applied);
    bias_bits_ += gain_ * (bias - bias_bits_);
  }
  pending_log2_base_.reset();
  correction_bits_ =
      options_.reference_bits + bias_bits_ - remaining_target_bits();
}

}  // namespace baq
