// Memory estimates from config.json and the worker capacity they are
// compared with.
#include "coordinator/memory_estimate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/test_paths.h"

namespace baq::coordinator {
namespace {

TEST(MemoryEstimateTest, LlamaFixtureByHand) {
  if (!baq::testing::HaveSharedData()) GTEST_SKIP() << "no shared data";
  JobConfig config;
  config.model_dir = baq::testing::SharedDataDir() + "/models/llama-fixture";
  config.calibration.num_samples = 4;
  config.calibration.seqlen = 128;
  absl::StatusOr<MemoryEstimate> e = EstimateJobMemory(config);
  ASSERT_TRUE(e.ok()) << e.status();
  // hidden 256, intermediate 688, 4 heads x 64, 2 kv heads, bf16, no biases.
  const int64_t weights = (256 * 256 + 2 * 256 * 128 + 256 * 256 + 2 * 256 * 688 + 688 * 256) * 2;
  // One Hessian per input: qkv, o, gate/up (256 each) and down (688).
  const int64_t hessians = (3 * 256 * 256 + 688 * 688) * 8;
  const int64_t activations = 4 * 128 * 256 * 4 * 2;
  EXPECT_EQ(e->block_weight_bytes, weights);
  EXPECT_EQ(e->hessian_bytes, hessians);
  EXPECT_EQ(e->activation_bytes, activations);
  EXPECT_EQ(e->total(), weights + hessians + activations);
  EXPECT_THAT(e->ToString(), ::testing::HasSubstr("Hessians"));
}

TEST(MemoryEstimateTest, MissingConfigIsAnError) {
  JobConfig config;
  config.model_dir = baq::testing::MakeScratchDir();
  EXPECT_FALSE(EstimateJobMemory(config).ok());
}

TEST(MemoryEstimateTest, CapacityIsTheFlagOrTheSmallestWorker) {
  absl::Time now = absl::UnixEpoch() + absl::Hours(1);
  WorkerRegistryOptions options;
  options.now = [&now] { return now; };
  WorkerRegistry registry(options);
  EXPECT_EQ(WorkerMemoryCapacity(&registry, 0)(), 0);  // Unknown: no workers.
  ASSERT_TRUE(registry.Register("w1:1", {"cpu"}, 8000).ok());
  ASSERT_TRUE(registry.Register("w2:1", {"cpu"}, 5000).ok());
  ASSERT_TRUE(registry.Register("w3:1", {"cpu"}, 0).ok());  // Reports none.
  EXPECT_EQ(WorkerMemoryCapacity(&registry, 0)(), 5000);
  EXPECT_EQ(WorkerMemoryCapacity(&registry, 123)(), 123);
}

TEST(MemoryEstimateTest, FormatBytes) {
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(3 << 20), "3.0 MiB");
  EXPECT_EQ(FormatBytes(int64_t{3} << 30), "3.00 GiB");
}

}  // namespace
}  // namespace baq::coordinator
