#include "common/module_allocation.h"

#include <cmath>
#include <limits>
#include <random>

#include "gtest/gtest.h"

namespace baq {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// Losses are summed in different orders by the DP and the brute force.
constexpr double kLossRtol = 1e-12;

struct Brute {
  double loss = kInf;
  int64_t bits = -1;
};

// Every assignment; the minimum loss, and the most budget among equal minima.
Brute BruteForce(const std::vector<ModuleGroup>& groups,
                 const std::vector<int32_t>& cand, int64_t budget) {
  Brute best;
  std::vector<size_t> k(groups.size(), 0);
  while (true) {
    double loss = 0;
    int64_t bits = 0;
    for (size_t g = 0; g < groups.size(); ++g) {
      loss += groups[g].loss[k[g]];
      bits += groups[g].elements * cand[k[g]];
    }
    if (std::isfinite(loss) && bits <= budget &&
        (loss < best.loss || (loss == best.loss && bits > best.bits))) {
      best = {loss, bits};
    }
    size_t g = 0;
    while (g < groups.size() && ++k[g] == cand.size()) k[g++] = 0;
    if (g == groups.size()) break;
  }
  return best;
}

std::vector<ModuleGroup> RandomGroups(std::mt19937_64& rng, size_t n,
                                      size_t num_k) {
  std::uniform_int_distribution<int64_t> elements(1, 50);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<ModuleGroup> groups(n);
  for (size_t g = 0; g < n; ++g) {
    groups[g].name = "g" + std::to_string(g);
    groups[g].elements = elements(rng) * (u(rng) < 0.5 ? 64 : 1);
    // Decreasing in width, like GPTQ losses, with an occasional forbidden
    // width.
    double l = 1 + 10 * u(rng);
    for (size_t k = 0; k < num_k; ++k) {
      groups[g].loss.push_back(u(rng) < 0.1 && k > 0 ? kInf : l);
      l *= 0.1 + 0.6 * u(rng);
    }
  }
  return groups;
}

TEST(ModuleAllocationTest, MatchesBruteForceOnRandomInstances) {
  std::mt19937_64 rng(7);
  const std::vector<int32_t> cand = {2, 3, 4, 8};
  for (int trial = 0; trial < 300; ++trial) {
    const size_t n = 1 + trial % 7;
    std::vector<ModuleGroup> groups = RandomGroups(rng, n, cand.size());
    int64_t elements = 0;
    for (const ModuleGroup& g : groups) elements += g.elements;
    const double target =
        2.0 + 4.0 * std::uniform_real_distribution<double>(0, 1)(rng);
    const int64_t budget = ModuleBitBudget(target, elements);
    const Brute want = BruteForce(groups, cand, budget);
    absl::StatusOr<ModuleAllocation> got =
        SolveModuleAllocation(groups, cand, budget);
    if (!std::isfinite(want.loss)) {
      EXPECT_FALSE(got.ok()) << "trial " << trial;
      continue;
    }
    ASSERT_TRUE(got.ok()) << "trial " << trial << ": " << got.status();
    EXPECT_TRUE(got->exact);
    EXPECT_LE(got->bit_elements, budget);
    EXPECT_NEAR(got->loss, want.loss, kLossRtol * want.loss)
        << "trial " << trial;
    EXPECT_EQ(got->bit_elements, want.bits) << "trial " << trial;
    double loss = 0;
    for (size_t g = 0; g < n; ++g) loss += groups[g].loss[got->choice[g]];
    EXPECT_NEAR(loss, got->loss, kLossRtol * loss);
  }
}

TEST(ModuleAllocationTest, UniformTargetIsNeverBeaten) {
  // Uniform at a candidate width is feasible, so the optimum is at most its
  // loss.
  std::mt19937_64 rng(11);
  const std::vector<int32_t> cand = {2, 3, 4, 8};
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<ModuleGroup> groups = RandomGroups(rng, 40, cand.size());
    for (ModuleGroup& g : groups) {
      for (double& l : g.loss) l = std::isfinite(l) ? l : 1.0;  // All allowed.
    }
    for (size_t k = 0; k < 3; ++k) {
      int64_t elements = 0;
      double uniform = 0;
      for (const ModuleGroup& g : groups) {
        elements += g.elements;
        uniform += g.loss[k];
      }
      absl::StatusOr<ModuleAllocation> a = SolveModuleAllocation(
          groups, cand, ModuleBitBudget(cand[k], elements));
      ASSERT_TRUE(a.ok()) << a.status();
      EXPECT_LE(a->loss, uniform * (1 + kLossRtol));
      EXPECT_LE(a->bit_elements, int64_t{cand[k]} * elements);
    }
  }
}

TEST(ModuleAllocationTest, CoarsenedTableStaysFeasible) {
  std::mt19937_64 rng(3);
  std::vector<ModuleGroup> groups = RandomGroups(rng, 30, 4);
  int64_t elements = 0;
  for (ModuleGroup& g : groups) {
    g.elements = g.elements * 10 + 7;  // gcd 1: a large exact table.
    elements += g.elements;
  }
  const int64_t budget = ModuleBitBudget(3.3, elements);
  absl::StatusOr<ModuleAllocation> a = SolveModuleAllocation(
      groups, {2, 3, 4, 8}, budget, /*max_dp_cells=*/1000);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_FALSE(a->exact);
  EXPECT_GT(a->unit, 1);
  EXPECT_LE(a->bit_elements, budget);
  absl::StatusOr<ModuleAllocation> exact =
      SolveModuleAllocation(groups, {2, 3, 4, 8}, budget);
  ASSERT_TRUE(exact.ok());
  EXPECT_TRUE(exact->exact);
  EXPECT_LE(exact->loss, a->loss);
}

TEST(ModuleAllocationTest, BudgetHelperToleratesDecimalTargets) {
  EXPECT_EQ(ModuleBitBudget(2.3, 10),
            23);  // 2.3 * 10 = 22.999999999999996 in doubles.
  EXPECT_EQ(ModuleBitBudget(2.5, 3), 7);
  EXPECT_EQ(ModuleBitBudget(3, 0), 0);
}

TEST(ModuleAllocationTest, ReferenceLossIsTheLossAtTheTargetWidth) {
  // GPTQ-like losses at 2, 3, 4, 8 bits; the references are written out in
  // float64 here: the loss at a candidate target, the geometric
  // interpolation L_lo^(1-a) * L_hi^a between the neighbours otherwise.
  const std::vector<int32_t> cand = {2, 3, 4, 8};
  const std::vector<double> loss = {21.693, 3.998, 0.870, 0.003};
  EXPECT_EQ(ModuleReferenceLoss(loss, cand, 3), 3.998);
  EXPECT_EQ(ModuleReferenceLoss(loss, cand, 4), 0.870);
  EXPECT_NEAR(ModuleReferenceLoss(loss, cand, 2.5), std::sqrt(21.693 * 3.998),
              kLossRtol * 9.3);
  EXPECT_NEAR(ModuleReferenceLoss(loss, cand, 3.7),
              std::pow(3.998, 0.3) * std::pow(0.870, 0.7), kLossRtol * 1.4);
  EXPECT_NEAR(ModuleReferenceLoss(loss, cand, 5),
              std::pow(0.870, 0.75) * std::pow(0.003, 0.25), kLossRtol * 0.21);
  // Outside the candidates: the nearest one.
  EXPECT_EQ(ModuleReferenceLoss(loss, cand, 1.5), 21.693);
  EXPECT_EQ(ModuleReferenceLoss(loss, cand, 9), 0.003);
}

TEST(ModuleAllocationTest, ReferenceLossSkipsExcludedWidthsAndZeros) {
  const std::vector<int32_t> cand = {2, 3, 4, 8};
  // 3 bits excluded (a shape the gptq format cannot pack): between 2 and 4.
  EXPECT_NEAR(ModuleReferenceLoss({16, kInf, 1, 0.01}, cand, 3),
              std::sqrt(16.0 * 1.0), kLossRtol * 4);
  EXPECT_EQ(ModuleReferenceLoss({kInf, kInf, 1, 0.01}, cand, 3), 1);
  // A zero loss at 8 bits would make the reference at 6 bits zero: the
  // smallest positive loss stands in; a layer of zero losses keeps them.
  EXPECT_EQ(ModuleReferenceLoss({16, 4, 1, 0}, cand, 6), 1);
  EXPECT_EQ(ModuleReferenceLoss({0, 0, 0, 0}, cand, 3), 1);
}

TEST(ModuleAllocationTest, NormalizedLossesAreElementsTimesRelativeLoss) {
  const std::vector<int32_t> cand = {2, 3, 4, 8};
  const std::vector<double> loss = {105.498, 19.391, 4.214, kInf};
  const int64_t elements = 384 * 1536;
  const std::vector<double> at3 =
      NormalizeModuleLosses(loss, cand, 3, elements);
  ASSERT_EQ(at3.size(), 4u);
  for (size_t k = 0; k < 3; ++k) {
    const double want = static_cast<double>(elements) * loss[k] / 19.391;
    EXPECT_NEAR(at3[k], want, kLossRtol * want) << "k " << k;
  }
  // Exactly the element count at the target: uniform sums to the model's.
  EXPECT_EQ(at3[1], static_cast<double>(elements));
  EXPECT_EQ(at3[3], kInf);
  const std::vector<double> at25 =
      NormalizeModuleLosses(loss, cand, 2.5, elements);
  const double ref = std::sqrt(105.498 * 19.391);
  for (size_t k = 0; k < 3; ++k) {
    const double want = static_cast<double>(elements) * loss[k] / ref;
    EXPECT_NEAR(at25[k], want, kLossRtol * want) << "k " << k;
  }
}

TEST(ModuleAllocationTest, ObjectiveNamesRoundTrip) {
  for (ModuleObjective o :
       {ModuleObjective::kNormalized, ModuleObjective::kRaw}) {
    absl::StatusOr<ModuleObjective> parsed =
        ParseModuleObjective(ModuleObjectiveName(o));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, o);
  }
  EXPECT_EQ(ParseModuleObjective("geomean").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ModuleAllocationTest, RejectsBadInput) {
  ModuleGroup g{"q", 10, {1, 0.5}};
  EXPECT_EQ(SolveModuleAllocation({g}, {3, 2}, 100).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SolveModuleAllocation({g}, {2, 3, 4}, 100).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SolveModuleAllocation({g}, {2, 3}, 19).status().code(),
            absl::StatusCode::kOutOfRange);
  ModuleGroup nan{"k", 10, {std::nan(""), 1}};
  EXPECT_EQ(SolveModuleAllocation({nan}, {2, 3}, 100).status().code(),
            absl::StatusCode::kInvalidArgument);
  ModuleGroup none{"v", 10, {kInf, kInf}};
  EXPECT_EQ(SolveModuleAllocation({none}, {2, 3}, 100).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baq
