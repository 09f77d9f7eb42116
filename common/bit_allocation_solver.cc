// SolveGlobalAllocation (declared in bit_allocation.h), in its own file to
// keep files small.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/bit_allocation.h"
#include "common/bit_allocation_internal.h"

namespace baq {
namespace {

using bit_allocation_internal::BitElementsFromCounts;
using bit_allocation_internal::BitsAndElements;
using bit_allocation_internal::LevelFromLog2X;
using bit_allocation_internal::Log2X;
using bit_allocation_internal::SumBits;

// Bisection steps; ~64 reach adjacent doubles unless the bracket sits at
// u ~ 0, and any bracket below 2^-150 of the range is already exact enough
// (no column can cross two rounding thresholds inside it).
constexpr int kMaxBisectionSteps = 200;

// Per layer, per column: log2 loss, zero losses replaced by a virtual log2
// loss below every positive one (see header).
using LogLosses = std::vector<std::vector<double>>;

std::vector<std::vector<int32_t>> LevelsAt(const LogLosses& lg, double u,
                                           const AllocationOptions& o) {
  std::vector<std::vector<int32_t>> levels(lg.size());
  for (size_t i = 0; i < lg.size(); ++i) {
    for (double v : lg[i]) {
      levels[i].push_back(LevelFromLog2X(Log2X(v, u, o), o));
    }
  }
  return levels;
}

// Bit-elements of all layers at log2-reference u; `counts` is scratch.
double BitElementsAt(const LogLosses& lg, absl::Span<const LayerLosses> layers,
                     double u, const AllocationOptions& o,
                     std::vector<int64_t>& counts) {
  counts.assign(o.max_levels + 1, 0);
  for (size_t i = 0; i < lg.size(); ++i) {
    for (double v : lg[i]) {
      counts[LevelFromLog2X(Log2X(v, u, o), o)] += layers[i].rows;
    }
  }
  return BitElementsFromCounts(counts);
}

// The exact-hit step. `levels` (at hi, holding `current` bit-elements, below
// the target) and `levels_lo` (at lo, at or above it) differ only in boundary
// columns; raises them one level each, closest to their rounding threshold
// x = L + 1/2 first (ties: name, then column), whenever that brings the sum
// closer to `target`. Returns the number of raised columns.
int64_t RaiseBoundaryColumns(const LogLosses& lg,
                             absl::Span<const LayerLosses> layers,
                             const std::vector<std::vector<int32_t>>& levels_lo,
                             double current, double target,
                             const AllocationOptions& o,
                             std::vector<std::vector<int32_t>>& levels) {
  struct Boundary {
    double priority;  // u below which the column gains its next level
    size_t layer, column;
  };
  std::vector<Boundary> boundary;
  for (size_t i = 0; i < lg.size(); ++i) {
    for (size_t j = 0; j < lg[i].size(); ++j) {
      if (levels_lo[i][j] <= levels[i][j]) continue;
      const double x_next = levels[i][j] + 0.5;
      boundary.push_back(
          {lg[i][j] + o.theta * (o.reference_bits - std::log2(x_next)), i, j});
    }
  }
  std::sort(boundary.begin(), boundary.end(),
            [&](const Boundary& a, const Boundary& b) {
              return std::forward_as_tuple(b.priority, layers[a.layer].name,
                                           a.column) <
                     std::forward_as_tuple(a.priority, layers[b.layer].name,
                                           b.column);
            });
  int64_t raised = 0;
  for (const Boundary& c : boundary) {
    int32_t& level = levels[c.layer][c.column];
    const double step = static_cast<double>(layers[c.layer].rows) *
                        std::log2((level + 1.0) / level);
    if (std::abs(current + step - target) < std::abs(current - target)) {
      ++level;
      current += step;
      ++raised;
    }
  }
  return raised;
}

// `levels` hold on [hi, first drop threshold lg + theta (R - log2(L - 1/2))):
// returns that plateau's midpoint, where LevelsForReferenceLoss reproduces
// them robustly.
double PlateauMidpoint(const LogLosses& lg,
                       const std::vector<std::vector<int32_t>>& levels,
                       double hi, const AllocationOptions& o) {
  double next_drop = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < lg.size(); ++i) {
    for (size_t j = 0; j < lg[i].size(); ++j) {
      if (levels[i][j] <= o.min_levels) continue;
      next_drop = std::min(
          next_drop, lg[i][j] + o.theta * (o.reference_bits -
                                           std::log2(levels[i][j] - 0.5)));
    }
  }
  if (!std::isfinite(next_drop)) return hi + o.theta;
  return next_drop > hi ? hi + (next_drop - hi) / 2 : hi;
}

absl::Status CheckDistinctNames(absl::Span<const LayerLosses> layers) {
  std::vector<absl::string_view> names;
  names.reserve(layers.size());
  for (const LayerLosses& l : layers) names.push_back(l.name);
  std::sort(names.begin(), names.end());
  auto dup = std::adjacent_find(names.begin(), names.end());
  if (dup != names.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("duplicate layer name '", *dup,
                     "': names order ties deterministically"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GlobalAllocation> SolveGlobalAllocation(
    absl::Span<const LayerLosses> layers, double target_bits,
    const AllocationOptions& o, const FixedBits& fixed) {
  if (absl::Status s = ValidateAllocationOptions(o); !s.ok()) return s;
  if (layers.empty()) {
    return absl::InvalidArgumentError("no layers to allocate");
  }
  for (const LayerLosses& l : layers) {
    if (absl::Status s = ValidateLayerLosses(l); !s.ok()) return s;
  }
  if (absl::Status s = CheckDistinctNames(layers); !s.ok()) return s;
  const double log2_min = std::log2(static_cast<double>(o.min_levels));
  const double log2_max = std::log2(static_cast<double>(o.max_levels));
  if (!std::isfinite(target_bits) || target_bits < log2_min - 1e-12 ||
      target_bits > log2_max + 1e-12) {
    return absl::InvalidArgumentError(absl::StrCat(
        "target_bits ", target_bits, " outside the feasible range [", log2_min,
        ", ", log2_max, "]"));
  }
  if (!std::isfinite(fixed.bit_elements) || fixed.bit_elements < 0 ||
      fixed.elements < 0 || (fixed.elements == 0 && fixed.bit_elements != 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid fixed part: ", fixed.bit_elements,
                     " bit-elements over ", fixed.elements, " elements"));
  }

  // Log2 losses; zero-loss columns get a virtual loss so low that they rise
  // above min_levels only once every positive-loss column is at max_levels.
  constexpr double kInf = std::numeric_limits<double>::infinity();
  double lg_lo = kInf, lg_hi = -kInf;
  int64_t rem_elements = 0;
  LogLosses lg(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    for (double v : layers[i].column_loss) {
      lg[i].push_back(v > 0 ? std::log2(v) : -kInf);
      if (v > 0) lg_lo = std::min(lg_lo, lg[i].back());
      lg_hi = std::max(lg_hi, lg[i].back());
    }
    rem_elements += layers[i].rows * static_cast<int64_t>(lg[i].size());
  }
  const double lg_zero =
      lg_lo < kInf ? lg_lo - o.theta * (std::log2(o.max_levels - 0.5) -
                                        std::log2(o.min_levels + 0.5) + 1)
                   : 0.0;
  for (std::vector<double>& layer : lg) {
    std::replace(layer.begin(), layer.end(), -kInf, lg_zero);
  }
  lg_lo = std::min(lg_lo, lg_zero);
  lg_hi = std::max(lg_hi, lg_zero);
  std::vector<int64_t> counts;

  // Everything below works on the remaining layers' bit-elements.
  const int64_t total_elements = fixed.elements + rem_elements;
  const double target_rem =
      target_bits * static_cast<double>(total_elements) - fixed.bit_elements;
  const double rem_min = static_cast<double>(rem_elements) * log2_min;
  const double rem_max = static_cast<double>(rem_elements) * log2_max;
  const double tolerance = 1e-9 * static_cast<double>(total_elements);
  if (target_rem < rem_min - tolerance || target_rem > rem_max + tolerance) {
    return absl::OutOfRangeError(absl::StrCat(
        "target ", target_bits, " bits unreachable: the fixed part (",
        fixed.bit_elements, " bit-elements over ", fixed.elements,
        ") needs the remaining ", rem_elements, " elements at ",
        target_rem / static_cast<double>(rem_elements), " bits"));
  }
  // u_all_max: every x >= 4 * max_levels; u_all_min: every x <= 1/4.
  const double u_all_max = lg_lo - o.theta * (log2_max + 2 - o.reference_bits);
  const double u_all_min = lg_hi + o.theta * (o.reference_bits + 2);

  GlobalAllocation result;
  double u_result;
  if (target_rem <= rem_min || target_rem >= rem_max) {
    u_result = target_rem <= rem_min ? u_all_min : u_all_max;
    result.levels = LevelsAt(lg, u_result, o);
  } else {
    // Invariant: bit-elements at lo >= target_rem > those at hi.
    double lo = u_all_max, hi = u_all_min;
    for (; result.iterations < kMaxBisectionSteps; ++result.iterations) {
      const double mid = lo + (hi - lo) / 2;
      if (!(mid > lo && mid < hi)) break;
      (BitElementsAt(lg, layers, mid, o, counts) >= target_rem ? lo : hi) = mid;
    }
    result.levels = LevelsAt(lg, hi, o);
    u_result = PlateauMidpoint(lg, result.levels, hi, o);
    result.bumped_columns = RaiseBoundaryColumns(
        lg, layers, LevelsAt(lg, lo, o),
        BitElementsAt(lg, layers, hi, o, counts), target_rem, o, result.levels);
  }
  result.log2_reference_loss = u_result;
  result.reference_loss = std::exp2(u_result);
  absl::StatusOr<BitsAndElements> rem = SumBits(layers, result.levels);
  if (!rem.ok()) return rem.status();
  result.achieved_bits = (fixed.bit_elements + rem->bit_elements) /
                         static_cast<double>(total_elements);
  return result;
}

}  // namespace baq
