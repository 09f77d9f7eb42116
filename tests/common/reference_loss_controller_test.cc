#include "common/reference_loss_controller.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/bit_allocation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baq {
namespace {

// A model of 200 layers whose loss scale drifts over 12 decades and whose
// spread, tail and dead-column share drift too: what a sequential pass sees
// from the first to the last transformer block.
std::vector<LayerLosses> DriftingStream(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0, 1);
  std::uniform_real_distribution<double> unit(0, 1);
  const int rows[] = {64, 128, 256, 192};
  const int columns[] = {128, 384, 512, 256};
  std::vector<LayerLosses> layers;
  double walk = 0;
  for (int k = 0; k < 200; ++k) {
    walk += 0.3 * normal(rng);
    const double mu = -25 + 0.14 * k + 4 * std::sin(k / 15.0) + walk;
    const double sigma = 0.3 + 2.5 * k / 200.0;
    const double zeros = 0.05 * unit(rng);
    LayerLosses l{absl::StrCat("layers.", k), {}, rows[k % 4]};
    for (int j = 0; j < columns[(k / 4) % 4]; ++j) {
      const double u = unit(rng);
      l.column_loss.push_back(u < zeros  ? 0.0
                              : u < 0.15 ? std::exp(mu) *
                                               std::pow(1 - unit(rng), -1 / 0.8)
                                         : std::exp(mu + sigma * normal(rng)));
    }
    layers.push_back(std::move(l));
  }
  return layers;
}

int64_t Elements(const std::vector<LayerLosses>& layers) {
  int64_t e = 0;
  for (const LayerLosses& l : layers) e += l.rows * l.column_loss.size();
  return e;
}

// Runs the controller alone, one layer at a time; returns the final average.
double RunControllerAlone(const std::vector<LayerLosses>& layers, double target,
                          const AllocationOptions& o, double gain) {
  ReferenceLossController c(target, Elements(layers), o, gain);
  double bits = 0;
  for (const LayerLosses& l : layers) {
    absl::StatusOr<double> ref = c.NextReferenceLoss({l});
    EXPECT_TRUE(ref.ok()) << ref.status();
    const double b =
        LayerBitsSum(l.rows, LevelsForReferenceLoss(l.column_loss, *ref, o));
    c.Record(b, l.rows * l.column_loss.size(), *ref);
    bits += b;
  }
  EXPECT_EQ(c.recorded_elements(), Elements(layers));
  EXPECT_NEAR(c.achieved_bits(), bits / Elements(layers), 1e-12);
  return bits / Elements(layers);
}

TEST(ReferenceLossControllerTest, ControllerAloneLandsWithin1e2) {
  const std::vector<LayerLosses> layers = DriftingStream(1);
  for (double theta : {kPaperTheta, kEqualLossTheta}) {
    for (double target : {2.0, 2.5, 3.0, 3.7}) {
      for (double gain : {1.0, 0.5}) {
        AllocationOptions o;
        o.theta = theta;
        o.reference_bits = 4;
        EXPECT_NEAR(RunControllerAlone(layers, target, o, gain), target, 1e-2)
            << "theta " << theta << " target " << target << " gain " << gain;
      }
    }
  }
}

TEST(ReferenceLossControllerTest, WithoutCorrectionThePaperFormDrifts) {
  // The per-sublayer geomean reference at R = target, uncorrected, misses
  // (rounding and clamping bias): the controller is what closes the gap.
  const std::vector<LayerLosses> layers = DriftingStream(1);
  AllocationOptions o;
  o.reference_bits = 2.5;
  double bits = 0;
  for (const LayerLosses& l : layers) {
    bits += LayerBitsSum(l.rows, SublayerAllocation(l.column_loss, o)->levels);
  }
  EXPECT_GT(std::abs(bits / Elements(layers) - 2.5), 1e-2);
}

TEST(ReferenceLossControllerTest, WithPerBlockExactSolvingLandsWithin1e3) {
  const std::vector<LayerLosses> layers = DriftingStream(2);
  AllocationOptions o;
  o.reference_bits = 4;
  for (double target : {2.0, 2.5, 3.7}) {
    ReferenceLossController c(target, Elements(layers), o);
    FixedBits fixed;
    std::vector<std::vector<int32_t>> all_levels;
    for (size_t start = 0; start < layers.size(); start += 4) {
      const std::vector<LayerLosses> block(layers.begin() + start,
                                           layers.begin() + start + 4);
      ASSERT_TRUE(c.NextReferenceLoss(block).ok());
      absl::StatusOr<GlobalAllocation> a =
          SolveGlobalAllocation(block, target, o, fixed);
      ASSERT_TRUE(a.ok()) << a.status();
      const int64_t block_elements = Elements(block);
      const double block_bits =
          a->achieved_bits * (fixed.elements + block_elements) -
          fixed.bit_elements;
      c.Record(block_bits, block_elements, a->reference_loss);
      fixed = {fixed.bit_elements + block_bits,
               fixed.elements + block_elements};
      all_levels.insert(all_levels.end(), a->levels.begin(), a->levels.end());
    }
    const double whole = *AverageBits(layers, all_levels);
    EXPECT_NEAR(whole, target, 1e-3);
    EXPECT_NEAR(c.achieved_bits(), whole, 1e-9);
  }
}

TEST(ReferenceLossControllerTest, FollowsTheDocumentedEquations) {
  AllocationOptions o;
  o.reference_bits = 4;
  o.theta = 2;
  const LayerLosses a{"a", {1e-4, 4e-4, 0.0}, 10};  // G = 2e-4
  ReferenceLossController c(3.0, 60, o);
  // s_0 = R - T = 1: Lref_0 = G * 2^(theta * 1).
  absl::StatusOr<double> ref = c.NextReferenceLoss({a});
  ASSERT_TRUE(ref.ok());
  EXPECT_NEAR(*ref, 2e-4 * 4, 1e-15);
  // Record 2.6 bits average over 30 elements with that reference:
  // d = 2.6 - (R - 1) = -0.4; T_0 = (3 * 60 - 78) / 30 = 3.4;
  // s_1 = R + d - T_0 = 0.2.
  c.Record(78, 30, *ref);
  EXPECT_NEAR(c.remaining_target_bits(), 3.4, 1e-12);
  EXPECT_NEAR(c.correction_bits(), 0.2, 1e-12);
  // An empty span reuses G.
  ref = c.NextReferenceLoss({});
  ASSERT_TRUE(ref.ok());
  EXPECT_NEAR(*ref, 2e-4 * std::exp2(2 * 0.2), 1e-15);
}

TEST(ReferenceLossControllerTest, RejectsBadInput) {
  ReferenceLossController c(2.5, 100, AllocationOptions());
  EXPECT_EQ(c.NextReferenceLoss({}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  const LayerLosses zeros{"z", {0.0, 0.0}, 4};
  EXPECT_EQ(c.NextReferenceLoss({zeros}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  const LayerLosses bad{"bad", {1.0, std::nan("")}, 4};
  absl::Status s = c.NextReferenceLoss({bad}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), ::testing::HasSubstr("layer 'bad' column 1"));
}

}  // namespace
}  // namespace baq
