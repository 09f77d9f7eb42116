// common/bit_allocation.h
//
// BAQ bit allocation (arXiv 2506.05664) on plain float64 vectors of
// per-column losses, so the coordinator can enforce ONE average bitwidth over
// a model whose layers are quantized by many workers, exchanging only losses.
//
// Pass 1 quantizes each linear layer at a uniform reference width R and
// records per column j: loss_j = sum_rows (w - q)^2 / [Hinv]_jj^2 / 2. Column j
// then gets an integer level count (bits_j = log2 L_j; 1 level zeroes it):
//
//   x_j = 2^R * (loss_j / Lref)^(1/theta),  L_j = clamp(floor(x_j + 1/2),
//                                                      min_levels, max_levels)
//
// theta = 1.95 is the authors' exponent (CSU-ModelCompression/BAQ
// gptq_baq.py); theta = 2 is the continuous equal-loss solution,
// bits_j = R + 1/2 log2(loss_j / Lref). Zero-loss columns get min_levels.
// Average bits of a set of layers = sum_l rows_l * sum_j log2 L_lj / sum_l
// rows_l * columns_l.
//
// All functions are stateless and thread-safe; inputs are not retained.
//
// Example (coordinator, one global budget of 2.5 bits):
//   AllocationOptions options;
//   options.reference_bits = 3;
//   BAQ_ASSIGN_OR_RETURN(GlobalAllocation a,
//                        SolveGlobalAllocation(layers, 2.5, options));
//   // a.levels[i][j]: level count of column j of layers[i].
#ifndef BAQ_COMMON_BIT_ALLOCATION_H_
#define BAQ_COMMON_BIT_ALLOCATION_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace baq {

// The authors' exponent, and the continuous equal-loss one.
inline constexpr double kPaperTheta = 1.95;
inline constexpr double kEqualLossTheta = 2.0;

struct AllocationOptions {
  // R: the uniform width of pass 1, in bits; may be fractional.
  double reference_bits = 4.0;
  // Exponent of the loss/level relation; kEqualLossTheta for the continuous
  // form.
  double theta = kPaperTheta;
  // Level counts are clamped to [min_levels, max_levels]; 1 <= min <= max <=
  // 65536.
  int32_t min_levels = 1;
  int32_t max_levels = 256;
};

// InvalidArgument unless R is finite and >= 0, theta finite and > 0, and
// 1 <= min_levels <= max_levels <= 65536.
absl::Status ValidateAllocationOptions(const AllocationOptions& options);

// Pass-1 losses of one linear layer: one entry per input column; each column
// holds `rows` weights (the output features).
struct LayerLosses {
  std::string name;
  std::vector<double> column_loss;
  int64_t rows = 0;
};

// InvalidArgument naming the layer (and column) unless rows > 0, there is at
// least one column, and every loss is finite and >= 0.
absl::Status ValidateLayerLosses(const LayerLosses& layer);

// The level count of every column for a given reference loss (formula above,
// evaluated as x = 2^(R + (log2 loss - log2 ref) / theta)).
// REQUIRES: reference_loss > 0 and options valid. Losses that are zero,
// negative or NaN get min_levels; +inf gets max_levels.
std::vector<int32_t> LevelsForReferenceLoss(
    absl::Span<const double> column_loss, double reference_loss,
    const AllocationOptions& options);

// The paper's per-sublayer allocation: Lref = ratio * mean(loss), ratio =
// geomean / arithmetic mean, i.e. Lref = the geometric mean of the positive
// losses; zero-loss columns get min_levels. If no loss is positive,
// reference_loss = 0, geo_arith_ratio = 1 and every column gets min_levels.
struct SublayerAllocationResult {
  std::vector<int32_t> levels;
  double reference_loss = 0;
  // geomean(positive losses) / mean(all losses): the paper's "gain" ratio.
  double geo_arith_ratio = 1;
};
absl::StatusOr<SublayerAllocationResult> SublayerAllocation(
    absl::Span<const double> column_loss, const AllocationOptions& options);

// Rows-weighted mean of log2(loss) over the positive-loss columns of
// `layers`: log2 of the reference at which the continuous (unrounded,
// unclamped) average width of those columns is exactly R. nullopt if no loss is
// positive. REQUIRES: layers valid.
std::optional<double> Log2GeometricMeanLoss(
    absl::Span<const LayerLosses> layers);

// rows * sum_j log2(levels[j]): the bit-elements of one layer.
double LayerBitsSum(int64_t rows, absl::Span<const int32_t> levels);

// Average bits over `layers`, levels[i] belonging to layers[i]. Sums exact
// per-level element counts, so the result does not depend on layer order.
// InvalidArgument on a count mismatch or a level outside [1, 65536].
absl::StatusOr<double> AverageBits(
    absl::Span<const LayerLosses> layers,
    absl::Span<const std::vector<int32_t>> levels);

// Layers quantized earlier (sequential mode): their bit-elements and elements.
struct FixedBits {
  double bit_elements = 0;
  int64_t elements = 0;
};

struct GlobalAllocation {
  // The common reference loss (and its log2, exact even where 2^x underflows).
  double reference_loss = 0;
  double log2_reference_loss = 0;
  // levels[i][j]: level count of column j of layers[i].
  std::vector<std::vector<int32_t>> levels;
  // (fixed.bit_elements + bits of `levels`) / (fixed.elements + elements).
  double achieved_bits = 0;
  // Bisection steps, and columns raised one level by the exact-hit step.
  int iterations = 0;
  int64_t bumped_columns = 0;
};

// Picks one reference loss for all `layers` so that the WHOLE average,
// fixed part included, hits `target_bits`. For sequential mode pass the blocks
// already quantized as `fixed`: hitting the target on "fixed + this block" is
// the same as hitting it on the whole model if later blocks hit it too.
//
// Method: the average is non-increasing in the reference loss; bisect
// u = log2(ref) to the discontinuity that brackets the target (up to adjacent
// doubles), start from the allocation just below the target and raise by one
// level, greedily, the columns that cross at that discontinuity ("boundary
// columns", ordered by closeness to their rounding threshold x_j = L_j + 1/2,
// then layer name, then column index) whenever that brings the average closer.
//
// Exact-hit guarantee: with E = fixed.elements + sum_l rows_l * columns_l,
//   |achieved_bits - target_bits| <= max_{c boundary} rows_c*log2((L_c+1)/L_c)
//   / (2E)
//                                 <= max_l rows_l / (2E),
// i.e. within half of one column step; <= 1e-3 whenever E >= 500 * max rows.
// levels equal LevelsForReferenceLoss(column_loss, reference_loss) except the
// `bumped_columns` boundary columns (one level more) and, only when the target
// needs every positive-loss column at max_levels, the zero-loss columns, which
// are then raised last (virtual loss far below every positive one).
//
// Deterministic: the same multiset of layers gives the same levels per layer,
// reference loss and achieved bits bitwise, whatever their order (sums go
// through exact per-level counts; ties break on name, so names must differ).
//
// Errors: InvalidArgument for invalid options or layers, empty `layers`,
// duplicate names, a target outside [log2 min_levels, log2 max_levels], or an
// invalid `fixed`; OutOfRange if `fixed` makes the target unreachable with the
// remaining layers at min_levels..max_levels.
absl::StatusOr<GlobalAllocation> SolveGlobalAllocation(
    absl::Span<const LayerLosses> layers, double target_bits,
    const AllocationOptions& options, const FixedBits& fixed = {});

}  // namespace baq

#endif  // BAQ_COMMON_BIT_ALLOCATION_H_
