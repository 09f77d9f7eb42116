#include "common/bit_allocation.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baq {
namespace {

using ::testing::HasSubstr;

constexpr double kExactHit = 1e-3;  // bits, the solver's contract here

// The paper formula, evaluated directly in float64.
double DirectX(double loss, double ref, const AllocationOptions& o) {
  return std::exp2(o.reference_bits) * std::pow(loss / ref, 1.0 / o.theta);
}
int32_t DirectLevel(double x, const AllocationOptions& o) {
  const double r = std::floor(x + 0.5);
  return static_cast<int32_t>(
      std::clamp<double>(r, o.min_levels, o.max_levels));
}
// True when x is so close to a rounding threshold that the log-space and the
// direct evaluation may legitimately round differently.
bool NearThreshold(double x) {
  return std::abs(x - std::floor(x) - 0.5) < 1e-9 * std::max(1.0, x);
}

// Heavy-tailed losses: log-normal with a wide sigma, a Pareto tail, and a few
// exact zeros (dead columns).
std::vector<double> RandomLosses(std::mt19937_64& rng, int columns,
                                 double zero_fraction) {
  std::normal_distribution<double> normal(0, 1);
  std::uniform_real_distribution<double> unit(0, 1);
  const double mu = -20 + 25 * unit(rng), sigma = 0.5 + 3.5 * unit(rng);
  std::vector<double> loss(columns);
  for (double& v : loss) {
    const double u = unit(rng);
    if (u < zero_fraction) {
      v = 0;
    } else if (u < 0.2) {
      v = std::exp(mu) * std::pow(1 - unit(rng), -1 / 0.7);  // Pareto(0.7)
    } else {
      v = std::exp(mu + sigma * normal(rng));
    }
  }
  return loss;
}

std::vector<LayerLosses> RandomModel(uint64_t seed, double zero_fraction) {
  std::mt19937_64 rng(seed);
  const int shapes[][2] = {{64, 512},  {128, 384}, {256, 512},
                           {32, 1024}, {256, 256}, {96, 640}};
  std::vector<LayerLosses> layers;
  for (const auto& s : shapes) {
    layers.push_back({absl::StrCat("blocks.", layers.size(), ".proj"),
                      RandomLosses(rng, s[1], zero_fraction), s[0]});
  }
  return layers;
}

int64_t Elements(const std::vector<LayerLosses>& layers) {
  int64_t e = 0;
  for (const LayerLosses& l : layers) e += l.rows * l.column_loss.size();
  return e;
}

// Reference average: sum rows * log2 L / elements, straight from the header.
double DirectAverage(const std::vector<LayerLosses>& layers,
                     const std::vector<std::vector<int32_t>>& levels) {
  double bits = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    for (int32_t l : levels[i]) bits += layers[i].rows * std::log2(l);
  }
  return bits / Elements(layers);
}

TEST(BitAllocationTest, LevelsMatchDirectFormula) {
  std::mt19937_64 rng(1);
  for (double theta : {kPaperTheta, kEqualLossTheta}) {
    AllocationOptions o;
    o.reference_bits = 2.5;
    o.theta = theta;
    const std::vector<double> loss = RandomLosses(rng, 4000, 0.03);
    for (double ref : {1e-9, 3e-6, 0.02, 7.0}) {
      const std::vector<int32_t> levels = LevelsForReferenceLoss(loss, ref, o);
      for (size_t j = 0; j < loss.size(); ++j) {
        if (loss[j] == 0) {
          EXPECT_EQ(levels[j], 1);
          continue;
        }
        const double x = DirectX(loss[j], ref, o);
        if (!NearThreshold(x)) {
          EXPECT_EQ(levels[j], DirectLevel(x, o)) << j;
        }
      }
    }
  }
}

TEST(BitAllocationTest, SublayerAllocationIsThePaperFormula) {
  std::mt19937_64 rng(2);
  AllocationOptions o;
  o.reference_bits = 3;
  const std::vector<double> loss = RandomLosses(rng, 3000, 0.05);
  // Authors' form: Lref = (geomean / mean) * mean, theta = 1.95,
  // L = round(max(x, 1)); geomean over the positive losses.
  double log_sum = 0, sum = 0;
  int positive = 0;
  for (double v : loss) {
    sum += v;
    if (v > 0) log_sum += std::log(v), ++positive;
  }
  const double mean = sum / loss.size();
  const double ratio = std::exp(log_sum / positive) / mean;
  const double ref = ratio * mean;

  absl::StatusOr<SublayerAllocationResult> r = SublayerAllocation(loss, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NEAR(r->geo_arith_ratio, ratio, 1e-12 * ratio);
  EXPECT_NEAR(r->reference_loss, ref, 1e-12 * ref);
  for (size_t j = 0; j < loss.size(); ++j) {
    if (loss[j] == 0) {
      EXPECT_EQ(r->levels[j], 1);
      continue;
    }
    const double x = DirectX(loss[j], ref, o);
    if (NearThreshold(x)) continue;
    const int32_t authors = static_cast<int32_t>(
        std::min(256.0, std::floor(std::max(x, 1.0) + 0.5)));
    EXPECT_EQ(r->levels[j], authors) << j;
  }
}

TEST(BitAllocationTest, SublayerAllocationWithoutPositiveLoss) {
  absl::StatusOr<SublayerAllocationResult> r =
      SublayerAllocation(std::vector<double>{0, 0, 0}, AllocationOptions());
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->levels, ::testing::ElementsAre(1, 1, 1));
  EXPECT_EQ(r->reference_loss, 0);
}

TEST(BitAllocationTest, AverageBitsIsTheDirectSum) {
  const std::vector<LayerLosses> layers = RandomModel(3, 0.02);
  AllocationOptions o;
  std::vector<std::vector<int32_t>> levels;
  for (const LayerLosses& l : layers) {
    levels.push_back(LevelsForReferenceLoss(l.column_loss, 1e-6, o));
  }
  absl::StatusOr<double> avg = AverageBits(layers, levels);
  ASSERT_TRUE(avg.ok());
  EXPECT_NEAR(*avg, DirectAverage(layers, levels), 1e-12);
  EXPECT_NEAR(LayerBitsSum(3, std::vector<int32_t>{1, 2, 5}),
              3 * (1 + std::log2(5.0)), 1e-12);
  levels.pop_back();
  EXPECT_EQ(AverageBits(layers, levels).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(BitAllocationTest, AverageIsMonotoneInReferenceLoss) {
  const std::vector<LayerLosses> layers = RandomModel(4, 0.02);
  AllocationOptions o;
  double previous = 1e9;
  for (double log_ref = -80; log_ref <= 20; log_ref += 0.37) {
    std::vector<std::vector<int32_t>> levels;
    for (const LayerLosses& l : layers) {
      levels.push_back(
          LevelsForReferenceLoss(l.column_loss, std::exp2(log_ref), o));
    }
    const double avg = *AverageBits(layers, levels);
    EXPECT_LE(avg, previous) << log_ref;
    previous = avg;
  }
}

// Checks every promise of SolveGlobalAllocation for one solve.
void ExpectExactHit(const std::vector<LayerLosses>& layers, double target,
                    const AllocationOptions& o, const GlobalAllocation& a) {
  const int64_t e = Elements(layers);
  int64_t max_rows = 0;
  for (const LayerLosses& l : layers) max_rows = std::max(max_rows, l.rows);
  EXPECT_LE(std::abs(a.achieved_bits - target), kExactHit);
  EXPECT_LE(std::abs(a.achieved_bits - target), max_rows / (2.0 * e) + 1e-12);
  EXPECT_NEAR(a.achieved_bits, DirectAverage(layers, a.levels), 1e-12);
  EXPECT_EQ(a.achieved_bits, *AverageBits(layers, a.levels));
  int64_t zero_elements = 0;
  for (const LayerLosses& l : layers) {
    zero_elements +=
        l.rows * std::count(l.column_loss.begin(), l.column_loss.end(), 0.0);
  }
  const bool saturated =
      target > std::log2(o.max_levels) * (e - zero_elements) / e + 1e-12;
  int64_t raised = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::vector<int32_t> formula =
        LevelsForReferenceLoss(layers[i].column_loss, a.reference_loss, o);
    for (size_t j = 0; j < formula.size(); ++j) {
      const int32_t l = a.levels[i][j];
      ASSERT_GE(l, o.min_levels);
      ASSERT_LE(l, o.max_levels);
      if (layers[i].column_loss[j] == 0) {
        if (!saturated) {
          EXPECT_EQ(l, o.min_levels);
        }
        continue;
      }
      ASSERT_TRUE(l == formula[j] || l == formula[j] + 1) << i << "," << j;
      raised += l - formula[j];
    }
  }
  EXPECT_LE(raised, a.bumped_columns);
}

TEST(BitAllocationTest, GlobalSolverHitsEveryTarget) {
  for (uint64_t seed : {10, 11, 12}) {
    for (double zero_fraction : {0.0, 0.03}) {
      const std::vector<LayerLosses> layers = RandomModel(seed, zero_fraction);
      for (double theta : {kPaperTheta, kEqualLossTheta}) {
        for (double r : {2.0, 3.5}) {
          AllocationOptions o;
          o.theta = theta;
          o.reference_bits = r;
          for (double target : {1.0, 2.0, 2.5, 3.0, 3.7, 4.0, 8.0}) {
            SCOPED_TRACE(absl::StrCat("seed ", seed, " zeros ", zero_fraction,
                                      " theta ", theta, " R ", r, " target ",
                                      target));
            absl::StatusOr<GlobalAllocation> a =
                SolveGlobalAllocation(layers, target, o);
            ASSERT_TRUE(a.ok()) << a.status();
            ExpectExactHit(layers, target, o, *a);
          }
        }
      }
    }
  }
}

TEST(BitAllocationTest, HonoursANarrowerLevelRange) {
  const std::vector<LayerLosses> layers = RandomModel(50, 0.03);
  AllocationOptions o;
  o.min_levels = 2;
  o.max_levels = 16;
  for (double target : {1.0, 2.2, 3.5, 4.0}) {
    absl::StatusOr<GlobalAllocation> a =
        SolveGlobalAllocation(layers, target, o);
    ASSERT_TRUE(a.ok()) << a.status();
    ExpectExactHit(layers, target, o, *a);
  }
  EXPECT_EQ(SolveGlobalAllocation(layers, 0.9, o).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SolveGlobalAllocation(layers, 4.1, o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(BitAllocationTest, TiedLossesAreSplitByTheExactHitStep) {
  // Every column of a layer has the same loss: the average jumps by whole
  // bits at each discontinuity, so only the bump step can hit 2.5.
  std::vector<LayerLosses> layers;
  for (int i = 0; i < 4; ++i) {
    layers.push_back({absl::StrCat("l", i),
                      std::vector<double>(300, std::pow(10.0, -i)), 128});
  }
  AllocationOptions o;
  for (double target : {1.0, 2.5, 3.7, 7.99}) {
    absl::StatusOr<GlobalAllocation> a =
        SolveGlobalAllocation(layers, target, o);
    ASSERT_TRUE(a.ok()) << a.status();
    ExpectExactHit(layers, target, o, *a);
  }
}

TEST(BitAllocationTest, ErrorIsBoundedByHalfAColumnStepOnTinyModels) {
  const std::vector<LayerLosses> layers = {{"tiny", {1.0, 2.0, 4.0}, 4}};
  AllocationOptions o;
  for (double target = 0.1; target < 8; target += 0.37) {
    absl::StatusOr<GlobalAllocation> a =
        SolveGlobalAllocation(layers, target, o);
    ASSERT_TRUE(a.ok()) << a.status();
    // One column of 4 rows out of 12 elements, step log2((L+1)/L) <= 1.
    EXPECT_LE(std::abs(a->achieved_bits - target), 4.0 / (2 * 12) + 1e-12);
  }
}

TEST(BitAllocationTest, HigherTargetNeverRaisesTheReference) {
  const std::vector<LayerLosses> layers = RandomModel(20, 0.02);
  double previous = std::numeric_limits<double>::infinity();
  for (double target = 1.0; target <= 7.5; target += 0.25) {
    absl::StatusOr<GlobalAllocation> a =
        SolveGlobalAllocation(layers, target, AllocationOptions());
    ASSERT_TRUE(a.ok());
    EXPECT_LE(a->log2_reference_loss, previous) << target;
    previous = a->log2_reference_loss;
  }
}

TEST(BitAllocationTest, DeterministicUnderLayerPermutation) {
  const std::vector<LayerLosses> layers = RandomModel(30, 0.03);
  AllocationOptions o;
  absl::StatusOr<GlobalAllocation> base = SolveGlobalAllocation(layers, 2.5, o);
  ASSERT_TRUE(base.ok());
  std::vector<size_t> order(layers.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(31);
  for (int trial = 0; trial < 5; ++trial) {
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<LayerLosses> permuted;
    for (size_t i : order) permuted.push_back(layers[i]);
    absl::StatusOr<GlobalAllocation> a =
        SolveGlobalAllocation(permuted, 2.5, o);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->achieved_bits, base->achieved_bits);
    EXPECT_EQ(a->log2_reference_loss, base->log2_reference_loss);
    EXPECT_EQ(a->bumped_columns, base->bumped_columns);
    for (size_t k = 0; k < order.size(); ++k) {
      EXPECT_EQ(a->levels[k], base->levels[order[k]]);
    }
  }
}

TEST(BitAllocationTest, FixedPartMakesTheWholeModelHitTheTarget) {
  const std::vector<LayerLosses> done = RandomModel(40, 0.0);
  const std::vector<LayerLosses> rest = RandomModel(41, 0.02);
  AllocationOptions o;
  // The first half was quantized overspending: 3.1 bits against 2.5.
  absl::StatusOr<GlobalAllocation> first = SolveGlobalAllocation(done, 3.1, o);
  ASSERT_TRUE(first.ok());
  const FixedBits fixed{first->achieved_bits * Elements(done), Elements(done)};
  absl::StatusOr<GlobalAllocation> second =
      SolveGlobalAllocation(rest, 2.5, o, fixed);
  ASSERT_TRUE(second.ok()) << second.status();
  std::vector<LayerLosses> all = done;
  all.insert(all.end(), rest.begin(), rest.end());
  std::vector<std::vector<int32_t>> levels = first->levels;
  levels.insert(levels.end(), second->levels.begin(), second->levels.end());
  EXPECT_NEAR(second->achieved_bits, DirectAverage(all, levels), 1e-12);
  EXPECT_LE(std::abs(second->achieved_bits - 2.5), kExactHit);
  // Unreachable: the rest would need more than 8 bits.
  const FixedBits starved{0.0, 10 * Elements(rest)};
  EXPECT_EQ(SolveGlobalAllocation(rest, 7.0, o, starved).status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST(BitAllocationTest, RejectsBadInput) {
  AllocationOptions o;
  std::vector<LayerLosses> layers = {{"a", {1, 2, 3}, 8}, {"b", {1, 2}, 8}};
  auto code = [&](double target) {
    return SolveGlobalAllocation(layers, target, o).status().code();
  };
  EXPECT_EQ(code(0.5), absl::StatusCode::kOk);
  EXPECT_EQ(code(-0.1), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(8.01), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(std::nan("")), absl::StatusCode::kInvalidArgument);

  layers[1].column_loss[1] = std::nan("");
  absl::Status s = SolveGlobalAllocation(layers, 2, o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("layer 'b' column 1"));
  layers[1].column_loss[1] = -1;
  EXPECT_EQ(code(2), absl::StatusCode::kInvalidArgument);
  layers[1].column_loss[1] = std::numeric_limits<double>::infinity();
  EXPECT_EQ(code(2), absl::StatusCode::kInvalidArgument);
  layers[1].column_loss[1] = 1;
  layers[0].rows = 0;
  EXPECT_THAT(SolveGlobalAllocation(layers, 2, o).status().message(),
              HasSubstr("layer 'a'"));
  layers[0].rows = 8;
  layers[1].name = "a";
  EXPECT_EQ(code(2), absl::StatusCode::kInvalidArgument);
  layers[1].name = "b";
  EXPECT_EQ(SolveGlobalAllocation({}, 2, o).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      SolveGlobalAllocation(layers, 2, o, FixedBits{-1, 10}).status().code(),
      absl::StatusCode::kInvalidArgument);
  o.max_levels = 0;
  EXPECT_EQ(code(0), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SublayerAllocation(std::vector<double>{1, -2}, AllocationOptions())
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baq
