#include "common/bit_allocation.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/bit_allocation_internal.h"

namespace baq {
namespace bit_allocation_internal {
namespace {

// x >= 2^40 is far above any max_levels.
constexpr double kLog2XCap = 40.0;

}  // namespace

int32_t LevelFromLog2X(double log2_x, const AllocationOptions& o) {
  if (std::isnan(log2_x)) return o.min_levels;
  if (log2_x >= kLog2XCap) return o.max_levels;
  const double rounded = std::floor(std::exp2(log2_x) + 0.5);
  if (rounded <= o.min_levels) return o.min_levels;
  if (rounded >= o.max_levels) return o.max_levels;
  return static_cast<int32_t>(rounded);
}

double BitElementsFromCounts(const std::vector<int64_t>& counts) {
  double sum = 0;
  for (size_t level = 2; level < counts.size(); ++level) {
    sum += static_cast<double>(counts[level]) *
           std::log2(static_cast<double>(level));
  }
  return sum;
}

absl::StatusOr<BitsAndElements> SumBits(
    absl::Span<const LayerLosses> layers,
    absl::Span<const std::vector<int32_t>> levels) {
  if (layers.size() != levels.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        layers.size(), " layers but ", levels.size(), " level vectors"));
  }
  std::vector<int64_t> counts(2, 0);
  BitsAndElements sum;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (levels[i].size() != layers[i].column_loss.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer '", layers[i].name, "': ", levels[i].size(), " levels for ",
          layers[i].column_loss.size(), " columns"));
    }
    for (int32_t l : levels[i]) {
      if (l < 1 || l > kLevelsLimit) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer '", layers[i].name, "': level count ", l));
      }
      if (static_cast<size_t>(l) >= counts.size()) counts.resize(l + 1, 0);
      counts[l] += layers[i].rows;
    }
    sum.elements +=
        layers[i].rows * static_cast<int64_t>(layers[i].column_loss.size());
  }
  sum.bit_elements = BitElementsFromCounts(counts);
  return sum;
}

}  // namespace bit_allocation_internal

namespace {

using bit_allocation_internal::kLevelsLimit;
using bit_allocation_internal::LevelFromLog2X;
using bit_allocation_internal::Log2X;

std::vector<int32_t> LevelsForLog2Reference(
    absl::Span<const double> column_loss, double u,
    const AllocationOptions& o) {
  std::vector<int32_t> levels(column_loss.size(), o.min_levels);
  for (size_t j = 0; j < column_loss.size(); ++j) {
    if (column_loss[j] > 0) {
      levels[j] = LevelFromLog2X(Log2X(std::log2(column_loss[j]), u, o), o);
    }
  }
  return levels;
}

absl::Status ValidateColumnLosses(absl::string_view name,
                                  absl::Span<const double> loss) {
  if (loss.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer '", name, "': no columns"));
  }
  for (size_t j = 0; j < loss.size(); ++j) {
    if (!std::isfinite(loss[j]) || loss[j] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer '", name, "' column ", j,
                       ": loss must be finite and >= 0, got ", loss[j]));
    }
  }
  return absl::OkStatus();
}

// Sum of the losses, and of log2 and count over the positive ones.
struct LogStats {
  double sum = 0, log2_sum = 0;
  int64_t positive = 0;
};
LogStats LogStatsOf(absl::Span<const double> loss) {
  LogStats stats;
  for (double v : loss) {
    stats.sum += v;
    if (v > 0) stats.log2_sum += std::log2(v), ++stats.positive;
  }
  return stats;
}

}  // namespace

absl::Status ValidateAllocationOptions(const AllocationOptions& o) {
  if (!std::isfinite(o.reference_bits) || o.reference_bits < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "reference_bits must be finite and >= 0, got ", o.reference_bits));
  }
  if (!std::isfinite(o.theta) || o.theta <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("theta must be finite and > 0, got ", o.theta));
  }
  if (o.min_levels < 1 || o.max_levels < o.min_levels ||
      o.max_levels > kLevelsLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("need 1 <= min_levels <= max_levels <= ", kLevelsLimit,
                     ", got [", o.min_levels, ", ", o.max_levels, "]"));
  }
  return absl::OkStatus();
}

absl::Status ValidateLayerLosses(const LayerLosses& layer) {
  if (layer.rows <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layer '", layer.name, "': rows must be > 0, got ", layer.rows));
  }
  return ValidateColumnLosses(layer.name, layer.column_loss);
}

std::vector<int32_t> LevelsForReferenceLoss(
    absl::Span<const double> column_loss, double reference_loss,
    const AllocationOptions& options) {
  return LevelsForLog2Reference(column_loss, std::log2(reference_loss),
                                options);
}

absl::StatusOr<SublayerAllocationResult> SublayerAllocation(
    absl::Span<const double> column_loss, const AllocationOptions& options) {
  if (absl::Status s = ValidateAllocationOptions(options); !s.ok()) return s;
  if (absl::Status s = ValidateColumnLosses("<sublayer>", column_loss);
      !s.ok()) {
    return s;
  }
  const LogStats stats = LogStatsOf(column_loss);
  SublayerAllocationResult result;
  if (stats.positive == 0) {
    result.levels.assign(column_loss.size(), options.min_levels);
    return result;
  }
  const double u = stats.log2_sum / static_cast<double>(stats.positive);
  result.reference_loss = std::exp2(u);
  result.geo_arith_ratio =
      result.reference_loss /
      (stats.sum / static_cast<double>(column_loss.size()));
  result.levels = LevelsForLog2Reference(column_loss, u, options);
  return result;
}

std::optional<double> Log2GeometricMeanLoss(
    absl::Span<const LayerLosses> layers) {
  double weighted = 0, weight = 0;
  for (const LayerLosses& l : layers) {
    const LogStats stats = LogStatsOf(l.column_loss);
    weighted += static_cast<double>(l.rows) * stats.log2_sum;
    weight += static_cast<double>(l.rows) * static_cast<double>(stats.positive);
  }
  if (weight == 0) return std::nullopt;
  return weighted / weight;
}

double LayerBitsSum(int64_t rows, absl::Span<const int32_t> levels) {
  double sum = 0;
  for (int32_t l : levels) sum += std::log2(static_cast<double>(l));
  return static_cast<double>(rows) * sum;
}

absl::StatusOr<double> AverageBits(
    absl::Span<const LayerLosses> layers,
    absl::Span<const std::vector<int32_t>> levels) {
  absl::StatusOr<bit_allocation_internal::BitsAndElements> sum =
      bit_allocation_internal::SumBits(layers, levels);
  if (!sum.ok()) return sum.status();
  if (sum->elements <= 0) {
    return absl::InvalidArgumentError("no weight elements");
  }
  return sum->bit_elements / static_cast<double>(sum->elements);
}

}  // namespace baq
