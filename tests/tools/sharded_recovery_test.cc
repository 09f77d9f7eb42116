// Calibration shards through the JobRunner in recovery mode (the service's
// path: shard inputs exported and checkpointed after every block, imported by
// their owners before the next): two TorchBlockEngines with two shards, one
// of which is lost (UNAVAILABLE) in the middle of a block. The runner drops
// it, re-deals both shards to the survivor, redoes the block from the
// checkpointed shard inputs, and the published output is byte-identical to
// local mode (one engine holding both shards, no recovery).
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/engine_capabilities.h"
#include "coordinator/job_runner.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"
#include "tests/testing/tiny_model.h"
#include "worker/torch_block_engine.h"

namespace baq {
namespace {

namespace fs = std::filesystem;

JobConfig ShardedJob(const std::string& out) {
  JobConfig c;
  c.model_dir = testing::TinyLlamaDir();  // The subject is the recovery, not the model.
  c.output_dir = out;
  c.calibration.files = {testing::SourceDir() + "/examples/calibration.txt"};
  c.calibration.num_samples = 16;  // Two chunks of 8 windows: one per shard.
  c.calibration.seqlen = 16;
  c.formats = {OutputFormat::kFakeQuant};
  c.quant.method = QuantMethod::kGptq;  // Its bits depend on every Hessian.
  c.quant.target_bits = 3;
  c.mode = ExecutionMode::kSequential;
  c.calibration_shards = 2;
  return c;
}

std::unique_ptr<BlockEngine> MakeEngine() {
  worker::EngineOptions options;
  options.num_threads = 1;
  absl::StatusOr<std::unique_ptr<BlockEngine>> e = worker::MakeTorchBlockEngine(options);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *std::move(e) : nullptr;
}

// Forwards to `inner`, except that the first AccumulateHessians of
// `fail_block` fails as a lost worker would (and every later call too).
class LosingEngine final : public BlockEngine, public ShardedCalibration {
 public:
  LosingEngine(BlockEngine* inner, int64_t fail_block)
      : inner_(inner), shards_(CapabilityOf<ShardedCalibration>(*inner)), fail_block_(fail_block) {}
  std::string name() const override { return "worker lost device 0"; }
  ShardedCalibration* sharded_calibration() override { return this; }
  absl::Status Start(const JobConfig& c) override { return Check(inner_->Start(c)); }
  int64_t num_blocks() const override { return inner_->num_blocks(); }
  absl::StatusOr<BlockMeasurement> Measure(int64_t b) override {
    if (lost_) return Lost();
    return inner_->Measure(b);
  }
  absl::StatusOr<BlockOutput> Quantize(int64_t b, const std::vector<LayerAllocation>& a) override {
    if (lost_) return Lost();
    return inner_->Quantize(b, a);
  }
  void Reset() override { inner_->Reset(); }
  void Cancel() override { inner_->Cancel(); }
  absl::StatusOr<std::vector<HessianPartial>> AccumulateHessians(
      int64_t b, const std::vector<int32_t>& shards) override {
    if (b == fail_block_) lost_ = true;
    if (lost_) return Lost();
    return shards_->AccumulateHessians(b, shards);
  }
  absl::Status ImportHessians(int64_t b, std::vector<HessianPartial> merged) override {
    if (lost_) return Lost();
    return shards_->ImportHessians(b, std::move(merged));
  }
  absl::StatusOr<std::string> ExportShardInputs(int64_t b, int32_t shard) override {
    if (lost_) return Lost();
    return shards_->ExportShardInputs(b, shard);
  }
  absl::Status ImportShardInputs(int64_t b, int32_t shard, std::string x) override {
    if (lost_) return Lost();
    return shards_->ImportShardInputs(b, shard, std::move(x));
  }

 private:
  absl::Status Lost() const { return absl::UnavailableError("worker lost: connection refused"); }
  absl::Status Check(absl::Status s) const { return lost_ ? Lost() : s; }

  BlockEngine* const inner_;
  ShardedCalibration* const shards_;  // inner_'s.
  const int64_t fail_block_;
  bool lost_ = false;
};

std::string ReadFile(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

TEST(ShardedRecoveryTest, LostWorkerMidBlockGivesTheLocalModeBytes) {
  const std::string dir = testing::MakeScratchDir();
  // Local mode: one engine, both shards, no recovery.
  std::unique_ptr<BlockEngine> local = MakeEngine();
  ASSERT_NE(local, nullptr);
  coordinator::JobRunner local_run(ShardedJob(dir + "/local"), {local.get()}, nullptr);
  absl::StatusOr<coordinator::JobSummary> want = local_run.Run();
  ASSERT_TRUE(want.ok()) << want.status();

  // Recovery mode on two engines; the second is lost in block 2.
  std::unique_ptr<BlockEngine> a = MakeEngine();
  std::unique_ptr<BlockEngine> b_inner = MakeEngine();
  ASSERT_TRUE(a != nullptr && b_inner != nullptr);
  LosingEngine b(b_inner.get(), /*fail_block=*/2);
  coordinator::JobRunnerOptions options;
  options.checkpoint_dir = dir + "/checkpoint";
  options.max_worker_failures = 1;
  options.replacement_wait = absl::ZeroDuration();
  options.job_id = "sharded-recovery";
  std::vector<std::string> messages;
  coordinator::JobRunner run(
      ShardedJob(dir + "/recovered"), {a.get(), &b},
      [&](const coordinator::JobProgress& p) { messages.push_back(p.message); }, options);
  absl::StatusOr<coordinator::JobSummary> got = run.Run();
  ASSERT_TRUE(got.ok()) << got.status();
  bool saw_loss = false;
  for (const std::string& m : messages) saw_loss |= m.find("worker lost at block 2") == 0;
  EXPECT_TRUE(saw_loss) << "no 'worker lost at block 2' progress message";

  EXPECT_EQ(got->achieved_bits, want->achieved_bits);
  EXPECT_EQ(got->total_proxy_loss, want->total_proxy_loss);
  const std::string weights = "model.safetensors";
  const std::string x = ReadFile(fs::path(dir) / "local" / weights);
  ASSERT_FALSE(x.empty());
  EXPECT_TRUE(x == ReadFile(fs::path(dir) / "recovered" / weights))
      << weights << " differs from local mode";
}

}  // namespace
}  // namespace baq
