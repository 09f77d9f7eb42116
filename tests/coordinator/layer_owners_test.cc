// coordinator/layer_owners: every layer gets one owner, the LPT rule
// balances the cost, the placement is deterministic, one engine owns all.
#include "coordinator/layer_owners.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace baq::coordinator {
namespace {

LayerShape Layer(int64_t rows, int64_t columns) { return LayerShape{"l", 0, rows, columns}; }

// A LLaMA-7B block: q, k, v, o (4096 x 4096), gate, up (11008 x 4096),
// down (4096 x 11008).
std::vector<LayerShape> Llama7bBlock() {
  return {Layer(4096, 4096),  Layer(4096, 4096),  Layer(4096, 4096), Layer(4096, 4096),
          Layer(11008, 4096), Layer(11008, 4096), Layer(4096, 11008)};
}

TEST(LayerOwnersTest, OneEngineOwnsEverything) {
  const std::vector<int> owners = AssignLayerOwners(Llama7bBlock(), 1);
  EXPECT_EQ(owners, std::vector<int>(7, 0));
  EXPECT_EQ(LayersOf(owners, 0).size(), 7u);
}

TEST(LayerOwnersTest, LargestLayerFirstThenLeastLoaded) {
  const std::vector<LayerShape> layers = Llama7bBlock();
  const std::vector<int> owners = AssignLayerOwners(layers, 2);
  // down_proj (11008 columns) dominates: it goes to engine 0 alone first,
  // then the others fill engine 1 until it catches up.
  EXPECT_EQ(owners[6], 0);
  std::vector<double> load(2, 0.0);
  for (size_t i = 0; i < layers.size(); ++i) load[owners[i]] += QuantizeCost(layers[i]);
  const double total = load[0] + load[1];
  // LPT bound: the makespan is within 4/3 of the ideal (and the largest job).
  const double ideal = std::max(total / 2, QuantizeCost(layers[6]));
  EXPECT_LE(std::max(load[0], load[1]), ideal * 4 / 3);
}

TEST(LayerOwnersTest, EveryLayerOwnedOnceAndDeterministic) {
  std::vector<LayerShape> layers;
  for (int i = 0; i < 23; ++i) layers.push_back(Layer(100 + 37 * (i % 5), 64 + 16 * (i % 7)));
  for (int engines : {2, 3, 8, 40}) {
    const std::vector<int> a = AssignLayerOwners(layers, engines);
    EXPECT_EQ(a, AssignLayerOwners(layers, engines));
    size_t owned = 0;
    for (int e = 0; e < engines; ++e) owned += LayersOf(a, e).size();
    EXPECT_EQ(owned, layers.size());
    for (int o : a) {
      EXPECT_GE(o, 0);
      EXPECT_LT(o, engines);
    }
  }
}

TEST(LayerOwnersTest, EqualLayersSpreadRoundRobin) {
  const std::vector<LayerShape> layers(6, Layer(64, 64));
  EXPECT_EQ(AssignLayerOwners(layers, 3), (std::vector<int>{0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(LayersOf(AssignLayerOwners(layers, 3), 1), (std::vector<int32_t>{1, 4}));
}

}  // namespace
}  // namespace baq::coordinator
