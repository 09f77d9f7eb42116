// common/bit_allocation_internal.h
//
// Helpers shared by bit_allocation.cc (the formula, bit counting) and
// bit_allocation_solver.cc (SolveGlobalAllocation). Not part of the API:
// include common/bit_allocation.h. Stateless and thread-safe.
#ifndef BAQ_COMMON_BIT_ALLOCATION_INTERNAL_H_
#define BAQ_COMMON_BIT_ALLOCATION_INTERNAL_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/bit_allocation.h"

namespace baq::bit_allocation_internal {

inline constexpr int32_t kLevelsLimit = 65536;

// L = floor(x + 1/2) clamped to the options' range, x = 2^log2_x. NaN gives
// min_levels; huge values clamp without calling exp2.
int32_t LevelFromLog2X(double log2_x, const AllocationOptions& o);

// log2 of the continuous level count of a column with log2-loss `lg` at
// log2-reference `u`: R + (lg - u) / theta.
inline double Log2X(double lg, double u, const AllocationOptions& o) {
  return o.reference_bits + (lg - u) / o.theta;
}

// Sum over levels of counts[L] * log2(L), in level order: exact counts make
// the result independent of the order in which columns were counted.
double BitElementsFromCounts(const std::vector<int64_t>& counts);

struct BitsAndElements {
  double bit_elements = 0;
  int64_t elements = 0;
};

// Bit-elements of `levels` (levels[i] for layers[i]) through exact per-level
// counts. InvalidArgument on a count mismatch or a level outside
// [1, kLevelsLimit].
absl::StatusOr<BitsAndElements> SumBits(
    absl::Span<const LayerLosses> layers,
    absl::Span<const std::vector<int32_t>> levels);

}  // namespace baq::bit_allocation_internal

#endif  // BAQ_COMMON_BIT_ALLOCATION_INTERNAL_H_
