// Tests of coordinator::BitBudget with allocation scope `module`: tie groups
// get one width, the average stays <= target in both execution modes (every
// prefix in sequential mode), the parallel solve is the brute-force optimum
// of its objective (normalized: each layer's loss relative to its loss at
// the target, weighted by elements; or raw) and never loses to uniform GPTQ
// in it, and widths the gptq format cannot pack are excluded.
//
// Workers are simulated: a block's measurement is a random, width-decreasing
// proxy loss per layer and candidate; its "quantized" report counts exactly
// the bits the allocation gave.
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/bit_budget.h"
#include "gtest/gtest.h"

namespace baq::coordinator {
namespace {

const std::vector<int32_t> kCandidates = {2, 3, 4, 8};
constexpr double kLossRtol = 1e-12;

// One OPT-like block (hidden 64, ffn 256): q/k/v tied, the rest alone.
std::vector<LinearLayerSpec> BlockLayers(int64_t block, int64_t ffn = 256) {
  auto layer = [&](const char* name, int64_t in, int64_t out, int group) {
    LinearLayerSpec s;
    s.short_name = name;
    s.name = absl::StrCat("model.decoder.layers.", block, ".", name);
    s.in_features = in;
    s.out_features = out;
    s.input_group = s.tie_group = group;
    return s;
  };
  return {layer("self_attn.q_proj", 64, 64, 0),
          layer("self_attn.k_proj", 64, 64, 0),
          layer("self_attn.v_proj", 64, 64, 0),
          layer("self_attn.out_proj", 64, 64, 1),
          layer("fc1", 64, ffn, 2),
          layer("fc2", ffn, 64, 3)};
}

int64_t Elements(int64_t blocks, int64_t ffn = 256) {
  int64_t e = 0;
  for (const LinearLayerSpec& s : BlockLayers(0, ffn))
    e += s.in_features * s.out_features;
  return e * blocks;
}

BlockMeasurement RandomMeasurement(int64_t block, std::mt19937_64& rng,
                                   int64_t ffn = 256) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  BlockMeasurement m;
  m.block = block;
  for (const LinearLayerSpec& s : BlockLayers(block, ffn)) {
    LayerMeasurement l;
    l.name = s.name;
    l.rows = s.out_features;
    double loss = std::pow(10.0, 3 * u(rng));
    for (size_t k = 0; k < kCandidates.size(); ++k) {
      l.candidate_loss.push_back(loss);
      loss *= 0.1 + 0.3 * u(rng);  // GPTQ: roughly /4 per bit.
    }
    m.layers.push_back(std::move(l));
  }
  return m;
}

// A layer's loss at `target` in float64, written out: at a candidate, or
// L_lo^(1-a) * L_hi^a between its neighbours (the targets used here lie
// inside the candidates).
double ReferenceLoss(const std::vector<double>& loss, double target) {
  for (size_t k = 0; k + 1 < kCandidates.size(); ++k) {
    const double lo = kCandidates[k], hi = kCandidates[k + 1];
    if (target == lo) return loss[k];
    if (target < hi) {
      const double a = (target - lo) / (hi - lo);
      return std::pow(loss[k], 1 - a) * std::pow(loss[k + 1], a);
    }
  }
  return loss.back();
}

// The cost of layer i of `m` at candidate k under `objective`.
double Cost(const BlockMeasurement& m, size_t i, size_t k, double target,
            ModuleObjective objective) {
  const std::vector<double>& loss = m.layers[i].candidate_loss;
  if (objective == ModuleObjective::kRaw) return loss[k];
  const LinearLayerSpec s = BlockLayers(m.block)[i];
  return static_cast<double>(s.in_features * s.out_features) * loss[k] /
         ReferenceLoss(loss, target);
}

QuantizationConfig ModuleConfig(double target) {
  QuantizationConfig q;
  q.allocation_scope = AllocationScope::kModule;
  q.target_bits = target;
  return q;
}

BlockOutput Quantized(const BlockMeasurement& m,
                      const std::vector<LayerAllocation>& a,
                      int64_t ffn = 256) {
  BlockOutput out;
  out.block = m.block;
  const std::vector<LinearLayerSpec> specs = BlockLayers(m.block, ffn);
  for (size_t i = 0; i < a.size(); ++i) {
    LayerReport r;
    r.name = a[i].name;
    r.rows = specs[i].out_features;
    r.columns = specs[i].in_features;
    r.bits_sum = static_cast<double>(a[i].gptq_bits * r.rows * r.columns);
    out.layers.push_back(r);
  }
  return out;
}

size_t Candidate(int32_t bits) {
  for (size_t k = 0; k < kCandidates.size(); ++k) {
    if (kCandidates[k] == bits) return k;
  }
  ADD_FAILURE() << "width " << bits << " is not a candidate";
  return 0;
}

// Summed cost of the allocation (raw loss by default); checks every tie
// group has one width.
double CheckedLoss(const std::vector<BlockMeasurement>& blocks,
                   const std::vector<std::vector<LayerAllocation>>& alloc,
                   double target = 0,
                   ModuleObjective objective = ModuleObjective::kRaw) {
  double loss = 0;
  for (size_t b = 0; b < blocks.size(); ++b) {
    const std::vector<LinearLayerSpec> specs = BlockLayers(blocks[b].block);
    std::map<int, int32_t> width;
    for (size_t i = 0; i < specs.size(); ++i) {
      EXPECT_TRUE(alloc[b][i].levels.empty());
      EXPECT_EQ(alloc[b][i].name, specs[i].name);
      auto [it, fresh] =
          width.emplace(specs[i].tie_group, alloc[b][i].gptq_bits);
      EXPECT_EQ(it->second, alloc[b][i].gptq_bits)
          << specs[i].name << ": tied layers differ";
      loss += Cost(blocks[b], i, Candidate(alloc[b][i].gptq_bits), target,
                   objective);
    }
  }
  return loss;
}

double AverageBits(const std::vector<std::vector<LayerAllocation>>& alloc) {
  double bits = 0;
  int64_t elements = 0;
  for (const auto& block : alloc) {
    const std::vector<LinearLayerSpec> specs = BlockLayers(0);
    for (size_t i = 0; i < block.size(); ++i) {
      bits += static_cast<double>(block[i].gptq_bits * specs[i].in_features *
                                  specs[i].out_features);
      elements += specs[i].in_features * specs[i].out_features;
    }
  }
  return bits / static_cast<double>(elements);
}

// Minimum cost over all 4^(4 * blocks) group choices with average <= target.
double BruteForce(const std::vector<BlockMeasurement>& blocks, double target,
                  ModuleObjective objective) {
  struct Group {
    int64_t elements;
    std::vector<double> loss;
  };
  std::vector<Group> groups;
  for (const BlockMeasurement& m : blocks) {
    const std::vector<LinearLayerSpec> specs = BlockLayers(m.block);
    std::map<int, size_t> index;
    for (size_t i = 0; i < specs.size(); ++i) {
      auto [it, fresh] = index.emplace(specs[i].tie_group, groups.size());
      if (fresh)
        groups.push_back({0, std::vector<double>(kCandidates.size(), 0.0)});
      groups[it->second].elements +=
          specs[i].in_features * specs[i].out_features;
      for (size_t k = 0; k < kCandidates.size(); ++k) {
        groups[it->second].loss[k] += Cost(m, i, k, target, objective);
      }
    }
  }
  const double budget = target * static_cast<double>(Elements(blocks.size()));
  double best = INFINITY;
  std::vector<size_t> k(groups.size(), 0);
  while (true) {
    double loss = 0, bits = 0;
    for (size_t g = 0; g < groups.size(); ++g) {
      loss += groups[g].loss[k[g]];
      bits += static_cast<double>(groups[g].elements * kCandidates[k[g]]);
    }
    if (bits <= budget && loss < best) best = loss;
    size_t g = 0;
    while (g < groups.size() && ++k[g] == kCandidates.size()) k[g++] = 0;
    if (g == groups.size()) break;
  }
  return best;
}

TEST(BitBudgetModuleTest, ParallelSolveIsTheBruteForceOptimumAndBeatsUniform) {
  for (ModuleObjective objective :
       {ModuleObjective::kNormalized, ModuleObjective::kRaw}) {
    SCOPED_TRACE(ModuleObjectiveName(objective));
    std::mt19937_64 rng(5);
    for (double target : {2.0, 2.5, 3.0, 3.7, 4.0}) {
      std::vector<BlockMeasurement> blocks = {RandomMeasurement(0, rng),
                                              RandomMeasurement(1, rng)};
      BitBudget budget(
          ModuleConfig(target), ExecutionMode::kParallel, Elements(2),
          /*project_gptq_widths=*/false,
          [](int64_t b) { return BlockLayers(b); }, objective);
      absl::StatusOr<std::vector<std::vector<LayerAllocation>>> alloc =
          budget.AllocateAll(blocks);
      ASSERT_TRUE(alloc.ok()) << alloc.status();
      const double cost = CheckedLoss(blocks, *alloc, target, objective);
      EXPECT_LE(AverageBits(*alloc), target);
      const double best = BruteForce(blocks, target, objective);
      EXPECT_NEAR(cost, best, kLossRtol * best) << "target " << target;
      // Uniform GPTQ's cost: the element count when normalized (every
      // layer's loss at the target is its reference).
      double uniform = 0;
      if (std::floor(target) == target) {
        const size_t k = Candidate(static_cast<int32_t>(target));
        for (const BlockMeasurement& m : blocks) {
          for (size_t i = 0; i < m.layers.size(); ++i) {
            uniform += Cost(m, i, k, target, objective);
          }
        }
        EXPECT_LE(cost, uniform * (1 + kLossRtol)) << "target " << target;
        if (objective == ModuleObjective::kNormalized) {
          EXPECT_EQ(uniform, static_cast<double>(Elements(2)));
        }
      }
      ASSERT_EQ(budget.module_solves().size(), 1u);
      const BitBudget::ModuleSolve& solve = budget.module_solves()[0];
      EXPECT_EQ(solve.scope, "model");
      EXPECT_TRUE(solve.exact);
      // The report's losses whichever objective was minimized: the raw sum
      // and the normalized cost per element.
      const double raw = CheckedLoss(blocks, *alloc);
      EXPECT_NEAR(solve.loss, raw, kLossRtol * raw);
      const double relative =
          CheckedLoss(blocks, *alloc, target, ModuleObjective::kNormalized) /
          static_cast<double>(Elements(2));
      EXPECT_NEAR(solve.relative_loss, relative, kLossRtol * relative);
      EXPECT_EQ(budget.scope_name(), "module");
      EXPECT_EQ(budget.module_objective(), objective);
    }
  }
}

TEST(BitBudgetModuleTest, NormalizedObjectiveIgnoresEachLayersLossScale) {
  // Layers whose losses differ only by a per-layer factor (same shape over
  // the widths): the normalized objective sees identical layers and keeps
  // every module at the integer target, while the raw one takes bits from
  // the layers with small absolute losses (out_proj here).
  const double scale[] = {30, 30, 30, 0.01, 100, 3};  // q, k, v, o, fc1, fc2
  std::vector<BlockMeasurement> blocks;
  for (int64_t b = 0; b < 2; ++b) {
    BlockMeasurement m;
    m.block = b;
    const std::vector<LinearLayerSpec> specs = BlockLayers(b);
    for (size_t i = 0; i < specs.size(); ++i) {
      LayerMeasurement l;
      l.name = specs[i].name;
      l.rows = specs[i].out_features;
      for (double x : {16.0, 4.0, 1.0, 0.004})
        l.candidate_loss.push_back(scale[i] * x);
      m.layers.push_back(std::move(l));
    }
    blocks.push_back(std::move(m));
  }
  for (ModuleObjective objective :
       {ModuleObjective::kNormalized, ModuleObjective::kRaw}) {
    BitBudget budget(
        ModuleConfig(3), ExecutionMode::kParallel, Elements(2), false,
        [](int64_t b) { return BlockLayers(b); }, objective);
    absl::StatusOr<std::vector<std::vector<LayerAllocation>>> alloc =
        budget.AllocateAll(blocks);
    ASSERT_TRUE(alloc.ok()) << alloc.status();
    const int32_t out_proj_bits = (*alloc)[0][3].gptq_bits;
    if (objective == ModuleObjective::kNormalized) {
      for (const auto& block : *alloc) {
        for (const LayerAllocation& a : block)
          EXPECT_EQ(a.gptq_bits, 3) << a.name;
      }
      EXPECT_EQ(budget.module_solves()[0].relative_loss, 1.0);
    } else {
      EXPECT_EQ(out_proj_bits, 2);
      EXPECT_GT(budget.module_solves()[0].relative_loss, 1.0);
    }
  }
}

TEST(BitBudgetModuleTest, SequentialKeepsEveryPrefixWithinTheTarget) {
  std::mt19937_64 rng(9);
  const double target = 2.6;
  const int64_t n = 6;
  BitBudget budget(
      ModuleConfig(target), ExecutionMode::kSequential, Elements(n),
      /*project_gptq_widths=*/false, [](int64_t b) { return BlockLayers(b); });
  for (int64_t b = 0; b < n; ++b) {
    const BlockMeasurement m = RandomMeasurement(b, rng);
    absl::StatusOr<std::vector<LayerAllocation>> a = budget.AllocateBlock(m);
    ASSERT_TRUE(a.ok()) << a.status();
    CheckedLoss({m}, {*a});
    budget.Record(Quantized(m, *a));
    EXPECT_LE(budget.achieved_bits(), target) << "after block " << b;
  }
  // Unused budget carries forward: the model ends within one module step.
  EXPECT_GT(budget.achieved_bits(), target - 0.2);
  EXPECT_EQ(budget.module_solves().size(), static_cast<size_t>(n));
}

TEST(BitBudgetModuleTest, GptqFormatExcludesWidthsTheShapeCannotPack) {
  // ffn 48: 48 * 3 bits is not a multiple of 32, so fc1/fc2 never take 3 bits.
  std::mt19937_64 rng(1);
  const int64_t ffn = 48;
  for (double target : {2.4, 3.0, 3.3}) {
    std::vector<BlockMeasurement> blocks = {RandomMeasurement(0, rng, ffn)};
    BitBudget budget(ModuleConfig(target), ExecutionMode::kParallel,
                     Elements(1, ffn),
                     /*project_gptq_widths=*/true,
                     [ffn](int64_t b) { return BlockLayers(b, ffn); });
    absl::StatusOr<std::vector<std::vector<LayerAllocation>>> alloc =
        budget.AllocateAll(blocks);
    ASSERT_TRUE(alloc.ok()) << alloc.status();
    EXPECT_NE((*alloc)[0][4].gptq_bits, 3);
    EXPECT_NE((*alloc)[0][5].gptq_bits, 3);
  }
}

TEST(BitBudgetModuleTest, MismatchedMeasurementIsInvalidArgument) {
  std::mt19937_64 rng(2);
  BlockMeasurement m = RandomMeasurement(0, rng);
  m.layers[2].candidate_loss.pop_back();
  BitBudget budget(ModuleConfig(3), ExecutionMode::kParallel, Elements(1),
                   false, [](int64_t b) { return BlockLayers(b); });
  EXPECT_EQ(budget.AllocateAll({m}).status().code(),
            absl::StatusCode::kInvalidArgument);
  BitBudget no_shapes(ModuleConfig(3), ExecutionMode::kParallel, Elements(1),
                      false);
  EXPECT_EQ(no_shapes.AllocateAll({RandomMeasurement(0, rng)}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace baq::coordinator
