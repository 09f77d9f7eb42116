// Tests of coordinator::BitBudget: the whole-model average equals the target
// in both execution modes and all allocation scopes, whatever the block count
// and the spread of the losses; the gptq-format projection keeps the same
// average; uniform methods get no per-column levels; extreme (but finite)
// losses normalize without overflow or underflow; bad losses are errors.
//
// Workers are simulated: a block's measurement is a set of random per-column
// losses, its "quantized" report counts exactly the bits the allocation gave.
#include "coordinator/bit_budget.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/bit_allocation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baq::coordinator {
namespace {

// The job's contract: |achieved - target| <= 1e-3 bits over the whole model.
constexpr double kAverageBitsTolerance = 1e-3;

struct LayerShape {
  const char* name;
  int64_t rows;
  int64_t columns;
};

// One decoder block of a small OPT-like model (hidden 64, ffn 256).
const std::vector<LayerShape>& BlockShapes() {
  static const auto* shapes = new std::vector<LayerShape>{
      {"self_attn.q_proj", 64, 64},  {"self_attn.k_proj", 64, 64}, {"self_attn.v_proj", 64, 64},
      {"self_attn.out_proj", 64, 64}, {"fc1", 256, 64},            {"fc2", 64, 256}};
  return *shapes;
}

int64_t ModelElements(int64_t blocks) {
  int64_t per_block = 0;
  for (const LayerShape& s : BlockShapes()) per_block += s.rows * s.columns;
  return per_block * blocks;
}

// Log-normal losses with a per-layer scale spanning `decades` decades, the
// way real layers differ by orders of magnitude in absolute proxy loss.
BlockMeasurement RandomMeasurement(int64_t block, std::mt19937_64& rng, double decades) {
  std::normal_distribution<double> log_loss(0.0, 1.5);
  std::uniform_real_distribution<double> scale(-decades, decades);
  BlockMeasurement m;
  m.block = block;
  for (const LayerShape& s : BlockShapes()) {
    LayerMeasurement l;
    l.name = absl::StrCat("model.decoder.layers.", block, ".", s.name);
    l.rows = s.rows;
    const double layer_scale = std::pow(10.0, scale(rng));
    for (int64_t j = 0; j < s.columns; ++j) {
      l.column_loss.push_back(layer_scale * std::exp(log_loss(rng)));
    }
    m.layers.push_back(std::move(l));
  }
  return m;
}

// What a worker reports after quantizing with `alloc`: the exact bits.
BlockOutput Quantized(const BlockMeasurement& m, const std::vector<LayerAllocation>& alloc,
                      double uniform_bits) {
  BlockOutput out;
  out.block = m.block;
  for (size_t i = 0; i < m.layers.size(); ++i) {
    LayerReport r;
    r.name = m.layers[i].name;
    r.rows = m.layers[i].rows;
    r.columns = static_cast<int64_t>(m.layers[i].column_loss.size());
    r.bits_sum = alloc[i].levels.empty()
                     ? uniform_bits * static_cast<double>(r.rows * r.columns)
                     : LayerBitsSum(r.rows, alloc[i].levels);
    r.gptq_bits = alloc[i].gptq_bits;
    out.layers.push_back(r);
  }
  return out;
}

QuantizationConfig Baq(double bits, AllocationScope scope) {
  QuantizationConfig q;
  q.method = QuantMethod::kBaq;
  q.target_bits = bits;
  q.allocation_scope = scope;
  return q;
}

// Runs a whole model through the budget the way JobRunner does.
struct Simulation {
  double achieved = 0;
  double projected_gptq_bits = 0;  // Element-weighted average of gptq widths.
  std::vector<std::vector<LayerAllocation>> allocations;
};

Simulation Simulate(const QuantizationConfig& quant, ExecutionMode mode, int64_t blocks,
                    uint64_t seed, double decades = 3.0, bool project = false) {
  std::mt19937_64 rng(seed);
  std::vector<BlockMeasurement> measurements;
  for (int64_t b = 0; b < blocks; ++b) measurements.push_back(RandomMeasurement(b, rng, decades));
  BitBudget budget(quant, mode, ModelElements(blocks), project);
  Simulation sim;
  if (mode == ExecutionMode::kSequential) {
    for (const BlockMeasurement& m : measurements) {
      absl::StatusOr<std::vector<LayerAllocation>> a = budget.AllocateBlock(m);
      EXPECT_TRUE(a.ok()) << a.status();
      if (!a.ok()) return sim;
      budget.Record(Quantized(m, *a, quant.target_bits));
      sim.allocations.push_back(*std::move(a));
    }
  } else {
    absl::StatusOr<std::vector<std::vector<LayerAllocation>>> all =
        budget.AllocateAll(measurements);
    EXPECT_TRUE(all.ok()) << all.status();
    if (!all.ok()) return sim;
    for (size_t b = 0; b < measurements.size(); ++b) {
      budget.Record(Quantized(measurements[b], (*all)[b], quant.target_bits));
    }
    sim.allocations = *std::move(all);
  }
  sim.achieved = budget.achieved_bits();
  double weighted = 0;
  for (size_t b = 0; b < sim.allocations.size(); ++b) {
    for (size_t i = 0; i < sim.allocations[b].size(); ++i) {
      const LayerShape& s = BlockShapes()[i];
      weighted += sim.allocations[b][i].gptq_bits * static_cast<double>(s.rows * s.columns);
    }
  }
  sim.projected_gptq_bits = weighted / static_cast<double>(ModelElements(blocks));
  EXPECT_EQ(budget.elements_done(), ModelElements(blocks));
  return sim;
}

struct TargetCase {
  ExecutionMode mode;
  AllocationScope scope;
  double bits;
};

class BitBudgetTargetTest : public testing::TestWithParam<TargetCase> {};

TEST_P(BitBudgetTargetTest, WholeModelAverageEqualsTarget) {
  const TargetCase& c = GetParam();
  for (uint64_t seed : {1u, 2u, 3u}) {
    Simulation sim = Simulate(Baq(c.bits, c.scope), c.mode, /*blocks=*/12, seed);
    EXPECT_NEAR(sim.achieved, c.bits, kAverageBitsTolerance) << "seed " << seed;
  }
}

INSTANTIATE_TEST_SUITE_P(
    ModesScopesTargets, BitBudgetTargetTest,
    testing::Values(TargetCase{ExecutionMode::kSequential, AllocationScope::kGlobal, 3.0},
                    TargetCase{ExecutionMode::kSequential, AllocationScope::kGlobal, 2.5},
                    TargetCase{ExecutionMode::kSequential, AllocationScope::kGlobal, 2.0},
                    TargetCase{ExecutionMode::kSequential, AllocationScope::kGlobalRaw, 2.5},
                    TargetCase{ExecutionMode::kParallel, AllocationScope::kGlobal, 3.0},
                    TargetCase{ExecutionMode::kParallel, AllocationScope::kGlobal, 2.5},
                    TargetCase{ExecutionMode::kParallel, AllocationScope::kGlobalRaw, 4.0},
                    TargetCase{ExecutionMode::kParallel, AllocationScope::kGlobal, 1.5}),
    [](const testing::TestParamInfo<TargetCase>& info) {
      std::string name = absl::StrCat(ExecutionModeName(info.param.mode), "_",
                                      AllocationScopeName(info.param.scope), "_",
                                      static_cast<int>(info.param.bits * 10));
      for (char& ch : name) {
        if (ch == '-') ch = '_';
      }
      return name;
    });

TEST(BitBudgetTest, SublayerScopeTracksButDoesNotEnforceTheAverage) {
  // The paper's per-layer allocation: each layer lands near R on its own,
  // with no model-wide correction (what `global` adds).
  Simulation sim = Simulate(Baq(3.0, AllocationScope::kSublayer), ExecutionMode::kSequential,
                            /*blocks=*/6, /*seed=*/7);
  EXPECT_NEAR(sim.achieved, 3.0, 0.25);
}

TEST(BitBudgetTest, UniformMethodsGetNoLevelsAndCountTargetBits) {
  for (QuantMethod method : {QuantMethod::kGptq, QuantMethod::kRtn}) {
    QuantizationConfig q;
    q.method = method;
    q.target_bits = 4;
    Simulation sim = Simulate(q, ExecutionMode::kSequential, /*blocks=*/3, /*seed=*/1);
    for (const auto& block : sim.allocations) {
      for (const LayerAllocation& a : block) EXPECT_TRUE(a.levels.empty()) << a.name;
    }
    EXPECT_DOUBLE_EQ(sim.achieved, 4.0);
  }
}

TEST(BitBudgetTest, GptqProjectionKeepsTheAverageWithKernelWidths) {
  for (ExecutionMode mode : {ExecutionMode::kSequential, ExecutionMode::kParallel}) {
    Simulation sim = Simulate(Baq(2.5, AllocationScope::kGlobal), mode, /*blocks=*/12,
                              /*seed=*/5, /*decades=*/3.0, /*project=*/true);
    for (const auto& block : sim.allocations) {
      for (const LayerAllocation& a : block) {
        EXPECT_THAT(a.gptq_bits, testing::AnyOf(2, 3, 4, 8)) << a.name;
      }
    }
    // Error diffusion: the projected total never strays more than half of
    // the largest layer's elements (256x64 of 12 blocks x 81920) from exact.
    const double largest_layer_share = 256.0 * 64.0 / static_cast<double>(ModelElements(12));
    EXPECT_NEAR(sim.projected_gptq_bits, sim.achieved, 0.5 * 8 * largest_layer_share)
        << ExecutionModeName(mode);
    EXPECT_NEAR(sim.achieved, 2.5, kAverageBitsTolerance);
  }
}

TEST(BitBudgetTest, ExtremeFiniteLossesNormalizeWithoutOverflow) {
  // Layers whose losses sit near the ends of the double range: the per-layer
  // normalization must neither overflow nor lose them to denormals.
  for (double magnitude : {1e-300, 1e-320, 1e300}) {
    BlockMeasurement m;
    m.block = 0;
    LayerMeasurement l;
    l.name = "model.decoder.layers.0.fc1";
    l.rows = 8;
    for (int j = 0; j < 16; ++j) l.column_loss.push_back(magnitude * (1 + j % 4));
    m.layers.push_back(l);
    BitBudget budget(Baq(3.0, AllocationScope::kGlobal), ExecutionMode::kParallel, 8 * 16,
                     /*project_gptq_widths=*/false);
    absl::StatusOr<std::vector<std::vector<LayerAllocation>>> a = budget.AllocateAll({m});
    ASSERT_TRUE(a.ok()) << magnitude << ": " << a.status();
    budget.Record(Quantized(m, (*a)[0], 3.0));
    EXPECT_NEAR(budget.achieved_bits(), 3.0, 8.0 / (2 * 8 * 16) + 1e-12) << magnitude;
    // The relative spread (1..4x) decides the allocation, not the magnitude:
    // the largest losses get the most levels.
    const std::vector<int32_t>& levels = (*a)[0][0].levels;
    EXPECT_GE(levels[3], levels[0]) << magnitude;
  }
}

TEST(BitBudgetTest, NonFiniteOrNegativeLossesAreErrorsNamingTheLayer) {
  for (double bad : {std::numeric_limits<double>::quiet_NaN(),
                     std::numeric_limits<double>::infinity(), -1.0}) {
    BlockMeasurement m;
    LayerMeasurement l;
    l.name = "model.decoder.layers.0.self_attn.k_proj";
    l.rows = 4;
    l.column_loss = {1.0, bad, 2.0};
    m.layers.push_back(l);
    BitBudget budget(Baq(3.0, AllocationScope::kGlobal), ExecutionMode::kSequential, 12, false);
    absl::StatusOr<std::vector<LayerAllocation>> a = budget.AllocateBlock(m);
    ASSERT_FALSE(a.ok()) << bad;
    EXPECT_THAT(std::string(a.status().message()), testing::HasSubstr("k_proj")) << bad;
  }
}

}  // namespace
}  // namespace baq::coordinator
