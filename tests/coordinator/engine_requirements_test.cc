// engine_requirements: what a job needs of its engines, and the
// FailedPrecondition that names the engine and the missing capability.
#include "coordinator/engine_requirements.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "common/engine_capabilities.h"
#include "coordinator/engine_set.h"

namespace baq::coordinator {
namespace {

// An engine that offers only what it is told to; Start() counts calls.
class PartialEngine : public BlockEngine, public ActivationTransfer, public TargetSwitching {
 public:
  PartialEngine(bool transfer, bool targets) : transfer_(transfer), targets_(targets) {}
  std::string name() const override { return "engine e1"; }
  absl::Status Start(const JobConfig&) override {
    ++starts;
    return absl::OkStatus();
  }
  int64_t num_blocks() const override { return 2; }
  absl::StatusOr<BlockMeasurement> Measure(int64_t) override { return BlockMeasurement(); }
  absl::StatusOr<BlockOutput> Quantize(int64_t, const std::vector<LayerAllocation>&) override {
    return BlockOutput();
  }
  void Reset() override {}
  void Cancel() override {}
  ActivationTransfer* activation_transfer() override { return transfer_ ? this : nullptr; }
  TargetSwitching* target_switching() override { return targets_ ? this : nullptr; }
  absl::StatusOr<std::string> ExportInputs(int64_t) override { return std::string(); }
  absl::Status ImportInputs(int64_t, std::string) override { return absl::OkStatus(); }
  absl::Status SetTarget(double, bool) override { return absl::OkStatus(); }

  int starts = 0;

 private:
  const bool transfer_;
  const bool targets_;
};

TEST(EngineRequirementsTest, NeedsFollowTheJob) {
  JobConfig config;
  EngineNeeds one = NeedsOf(config, /*recovery=*/false, 1);
  EXPECT_TRUE(one.activation_transfer.empty());
  EXPECT_TRUE(one.sharded_calibration.empty());
  EXPECT_TRUE(one.target_switching.empty());
  EXPECT_TRUE(one.checkpoint_evaluator.empty());
  EXPECT_FALSE(NeedsOf(config, /*recovery=*/false, 2).activation_transfer.empty());
  EXPECT_FALSE(NeedsOf(config, /*recovery=*/true, 1).activation_transfer.empty());

  config.calibration_shards = 4;
  EngineNeeds sharded = NeedsOf(config, /*recovery=*/true, 2);
  EXPECT_EQ(sharded.sharded_calibration, "calibration_shards = 4");
  EXPECT_TRUE(sharded.activation_transfer.empty());  // Shards move by ShardedCalibration.

  config = JobConfig();
  config.extra_target_bits = {3.0};
  config.eval_gate.text_file = "/eval.txt";
  EngineNeeds more = NeedsOf(config, /*recovery=*/false, 1);
  EXPECT_FALSE(more.target_switching.empty());
  EXPECT_FALSE(more.checkpoint_evaluator.empty());
}

TEST(EngineRequirementsTest, MissingCapabilityNamesEngineAndCapability) {
  PartialEngine engine(/*transfer=*/true, /*targets=*/false);
  EngineNeeds needs;
  needs.activation_transfer = "two engines";
  EXPECT_TRUE(CheckCapabilities(engine, needs).ok());
  needs.sharded_calibration = "calibration_shards = 4";
  const absl::Status s = CheckCapabilities(engine, needs);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            "engine e1 has no sharded calibration capability, which the job needs "
            "(calibration_shards = 4)");

  absl::StatusOr<TargetSwitching*> t = RequireCapability<TargetSwitching>(engine);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(t.status().message(), "engine e1 has no bit-target switching capability");
  absl::StatusOr<ActivationTransfer*> a = RequireCapability<ActivationTransfer>(engine);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, static_cast<ActivationTransfer*>(&engine));
}

TEST(EngineRequirementsTest, EngineSetChecksBeforeStartingAnyEngine) {
  PartialEngine good(/*transfer=*/true, /*targets=*/true);
  PartialEngine lacking(/*transfer=*/true, /*targets=*/false);
  EngineSet::Options options;
  options.needs.target_switching = "2 bit targets";
  std::atomic<bool> cancelled{false};
  EngineSet set({&good, &lacking}, options, &cancelled);
  const absl::Status s = set.StartAll(JobConfig());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("bit-target switching"), std::string::npos) << s;
  EXPECT_EQ(good.starts, 0);
  EXPECT_EQ(lacking.starts, 0);
}

}  // namespace
}  // namespace baq::coordinator
