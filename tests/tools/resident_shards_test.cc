// The resident data path (coordinator/resident_shards.h) through the
// JobRunner with real TorchBlockEngines in process: calibration shards stay
// on their engines, only Hessian partials, merged sums, quantized weights and
// output tensors travel, one owner per layer, and the published bytes equal
// local mode (one engine holding every shard, no recovery). A worker lost
// after a shard checkpoint is recovered by restoring its shard on the
// survivor and replaying the blocks since, without moving activations.
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "common/engine_capabilities.h"
#include "common/status_macros.h"
#include "coordinator/job_runner.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"
#include "tests/testing/tiny_model.h"
#include "worker/engine/shard_checkpoint_writer.h"
#include "worker/torch_block_engine.h"

namespace baq {
namespace {

namespace fs = std::filesystem;

JobConfig Job(const std::string& out, int shards) {
  JobConfig c;
  c.model_dir = testing::TinyLlamaDir();
  c.output_dir = out;
  c.calibration.files = {testing::SourceDir() + "/examples/calibration.txt"};
  c.calibration.num_samples = 24;  // Three chunks of 8 windows.
  c.calibration.seqlen = 16;
  c.formats = {OutputFormat::kFakeQuant, OutputFormat::kPacked};
  c.quant.method = QuantMethod::kBaq;  // Measure, global budget, per-column widths.
  c.quant.target_bits = 3;
  c.mode = ExecutionMode::kSequential;
  c.calibration_shards = shards;
  return c;
}

std::unique_ptr<BlockEngine> MakeEngine() {
  worker::EngineOptions options;
  options.num_threads = 1;
  absl::StatusOr<std::unique_ptr<BlockEngine>> e = worker::MakeTorchBlockEngine(options);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *std::move(e) : nullptr;
}

// KNOWN BUG (not fixed yet): two TorchBlockEngines running CPU work at the
// same time in one process sometimes corrupt a result (an o_proj Hessian
// comes out not positive definite, in 10-30 % of runs of these tests; it
// reproduces at d34bf84 too, and never when the calls run one at a time).
// Workers are separate processes with one engine per device, so the service
// does not run engines side by side in one process on the CPU; these tests
// do, so their engines take turns until the cause is found.
std::mutex& InProcessEngines() {
  static std::mutex mu;
  return mu;
}

// Forwards every capability of the resident path to `inner`; from the
// first call that touches block `fail_block` on, every call fails as a lost
// worker's would.
class LosingEngine final : public BlockEngine, public ShardedCalibration, public LayerOwnership {
 public:
  LosingEngine(BlockEngine* inner, int64_t fail_block)
      : inner_(inner),
        shards_(CapabilityOf<ShardedCalibration>(*inner)),
        owner_(CapabilityOf<LayerOwnership>(*inner)),
        fail_block_(fail_block) {}
  std::string name() const override { return "worker lost device 0"; }
  ShardedCalibration* sharded_calibration() override { return this; }
  LayerOwnership* layer_ownership() override { return this; }
  absl::Status Start(const JobConfig& c) override {
    const std::lock_guard<std::mutex> one_at_a_time(InProcessEngines());
    return inner_->Start(c);
  }
  int64_t num_blocks() const override { return inner_->num_blocks(); }
  absl::StatusOr<BlockMeasurement> Measure(int64_t b) override {
    const std::lock_guard<std::mutex> one_at_a_time(InProcessEngines());
    BAQ_RETURN_IF_ERROR(Touch(b));
    return inner_->Measure(b);
  }
  absl::StatusOr<BlockOutput> Quantize(int64_t b, const std::vector<LayerAllocation>& a) override {
    const std::lock_guard<std::mutex> one_at_a_time(InProcessEngines());
    BAQ_RETURN_IF_ERROR(Touch(b));
    return inner_->Quantize(b, a);
  }
  void Reset() override { inner_->Reset(); }
  void Cancel() override { inner_->Cancel(); }
  absl::StatusOr<std::vector<HessianPartial>> AccumulateHessians(
      int64_t b, const std::vector<int32_t>& s) override {
    const std::lock_guard<std::mutex> one_at_a_time(InProcessEngines());
    BAQ_RETURN_IF_ERROR(Touch(b));
    return shards_->AccumulateHessians(b, s);
  }
  absl::Status ImportHessians(int64_t b, std::vector<HessianPartial> m) override {
    const std::lock_guard<std::mutex> one_at_a_time(InProcessEngines());
    BAQ_RETURN_IF_ERROR(Touch(b));
    return shards_->ImportHessians(b, std::move(m));
  }
  absl::StatusOr<std::string> ExportShardInputs(int64_t b, int32_t s) override {
    ++activation_moves;
    const std::lock_guard<std::mutex> one_at_a_time(InProcessEngines());
    BAQ_RETURN_IF_ERROR(Touch(b));
    return shards_->ExportShardInputs(b, s);
  }
  absl::Status ImportShardInputs(int64_t b, int32_t s, std::string x) override {
    ++activation_moves;
    const std::lock_guard<std::mutex> one_at_a_time(InProcessEngines());
    BAQ_RETURN_IF_ERROR(Touch(b));
    return shards_->ImportShardInputs(b, s, std::move(x));
  }
  absl::StatusOr<std::vector<LayerShape>> BlockLayers(int64_t b) override {
    const std::lock_guard<std::mutex> one_at_a_time(InProcessEngines());
    BAQ_RETURN_IF_ERROR(Touch(b));
    return owner_->BlockLayers(b);
  }
  absl::StatusOr<BlockMeasurement> MeasureLayers(int64_t b,
                                                 const std::vector<int32_t>& l) override {
    const std::lock_guard<std::mutex> one_at_a_time(InProcessEngines());
    BAQ_RETURN_IF_ERROR(Touch(b));
    return owner_->MeasureLayers(b, l);
  }
  absl::StatusOr<OwnedLayersOutput> QuantizeLayers(
      int64_t b, const std::vector<int32_t>& l,
      const std::vector<LayerAllocation>& a) override {
    const std::lock_guard<std::mutex> one_at_a_time(InProcessEngines());
    BAQ_RETURN_IF_ERROR(Touch(b));
    ++quantize_layer_calls;
    return owner_->QuantizeLayers(b, l, a);
  }
  absl::Status AdvanceShards(int64_t b, std::vector<TensorBytes> w) override {
    const std::lock_guard<std::mutex> one_at_a_time(InProcessEngines());
    BAQ_RETURN_IF_ERROR(Touch(b));
    return owner_->AdvanceShards(b, std::move(w));
  }
  absl::StatusOr<std::vector<int32_t>> CheckpointShards(int64_t b,
                                                        const std::string& dir) override {
    const std::lock_guard<std::mutex> one_at_a_time(InProcessEngines());
    BAQ_RETURN_IF_ERROR(Touch(b));
    absl::StatusOr<std::vector<int32_t>> written = owner_->CheckpointShards(b, dir);
    if (written.ok() && b == unfinished_checkpoint) {
      // As if an asynchronous write was still running when the worker died.
      for (int32_t k : *written) fs::remove(worker::ShardCheckpointWriter::Path(dir, k, b));
    }
    return written;
  }
  absl::Status RestoreShard(int64_t b, int32_t s, const std::string& dir) override {
    const std::lock_guard<std::mutex> one_at_a_time(InProcessEngines());
    BAQ_RETURN_IF_ERROR(Touch(b));
    return owner_->RestoreShard(b, s, dir);
  }

  int activation_moves = 0;
  int quantize_layer_calls = 0;
  // The shard checkpoint of this block never reaches the disk (-1: all do).
  int64_t unfinished_checkpoint = -1;

 private:
  absl::Status Touch(int64_t b) {
    if (b == fail_block_) lost_ = true;
    if (lost_) return absl::UnavailableError("worker lost: connection refused");
    return absl::OkStatus();
  }

  BlockEngine* const inner_;
  ShardedCalibration* const shards_;
  LayerOwnership* const owner_;
  const int64_t fail_block_;
  bool lost_ = false;
};

std::string ReadFile(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Runs the job on one engine, all shards, no recovery: the reference bytes.
coordinator::JobSummary Local(const std::string& out, int shards) {
  std::unique_ptr<BlockEngine> local = MakeEngine();
  coordinator::JobRunner run(Job(out, shards), {local.get()}, nullptr);
  absl::StatusOr<coordinator::JobSummary> s = run.Run();
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : coordinator::JobSummary{};
}

void ExpectSameOutput(const std::string& a, const std::string& b) {
  for (const char* file : {"model.safetensors", "packed/model.safetensors"}) {
    const std::string x = ReadFile(fs::path(a) / file);
    if (!fs::exists(fs::path(a) / file)) continue;
    ASSERT_FALSE(x.empty()) << file;
    EXPECT_TRUE(x == ReadFile(fs::path(b) / file)) << file << " differs from local mode";
  }
}

coordinator::JobRunnerOptions Recovery(const std::string& dir, int every) {
  coordinator::JobRunnerOptions options;
  options.checkpoint_dir = dir + "/checkpoint";
  options.max_worker_failures = 1;
  options.replacement_wait = absl::ZeroDuration();
  options.job_id = "resident";
  options.shard_checkpoint_every = every;
  return options;
}

TEST(ResidentShardsTest, TwoEnginesMatchLocalModeAndMoveNoActivations) {
  const std::string dir = testing::MakeScratchDir();
  const coordinator::JobSummary want = Local(dir + "/local", 3);
  std::unique_ptr<BlockEngine> a_inner = MakeEngine(), b_inner = MakeEngine();
  LosingEngine a(a_inner.get(), -1), b(b_inner.get(), -1);
  coordinator::JobRunner run(Job(dir + "/resident", 3), {&a, &b}, nullptr,
                             Recovery(dir, /*every=*/2));
  absl::StatusOr<coordinator::JobSummary> got = run.Run();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->achieved_bits, want.achieved_bits);
  EXPECT_EQ(got->total_proxy_loss, want.total_proxy_loss);
  ExpectSameOutput(dir + "/local", dir + "/resident");
  // Only partials, sums, weights and outputs travelled; both engines owned layers.
  EXPECT_EQ(got->wire.activations, 0);
  EXPECT_EQ(a.activation_moves + b.activation_moves, 0);
  EXPECT_GT(got->wire.hessian_partials, 0);
  EXPECT_GT(got->wire.hessian_merged, 0);
  EXPECT_GT(got->wire.weights, 0);
  EXPECT_GT(a.quantize_layer_calls, 0);
  EXPECT_GT(b.quantize_layer_calls, 0);
  EXPECT_EQ(got->replayed_blocks, 0);
}

TEST(ResidentShardsTest, OneEngineWithRecoveryMovesNoHessians) {
  const std::string dir = testing::MakeScratchDir();
  const coordinator::JobSummary want = Local(dir + "/local", 1);
  std::unique_ptr<BlockEngine> a_inner = MakeEngine();
  LosingEngine a(a_inner.get(), -1);
  coordinator::JobRunner run(Job(dir + "/resident", 1), {&a}, nullptr, Recovery(dir, 2));
  absl::StatusOr<coordinator::JobSummary> got = run.Run();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->total_proxy_loss, want.total_proxy_loss);
  ExpectSameOutput(dir + "/local", dir + "/resident");
  EXPECT_EQ(got->wire.activations, 0);
  EXPECT_EQ(got->wire.hessian_partials, 0);
  EXPECT_EQ(got->wire.hessian_merged, 0);
  EXPECT_EQ(a.activation_moves, 0);
}

TEST(ResidentShardsTest, LostWorkerIsReplayedFromTheShardCheckpoint) {
  const std::string dir = testing::MakeScratchDir();
  const coordinator::JobSummary want = Local(dir + "/local", 2);
  std::unique_ptr<BlockEngine> a_inner = MakeEngine(), b_inner = MakeEngine();
  // Shards are checkpointed at block 2 (K = 2); b is lost in block 3, so its
  // shard is restored at block 2 on a and block 2 is replayed.
  LosingEngine a(a_inner.get(), -1), b(b_inner.get(), /*fail_block=*/3);
  std::vector<std::string> messages;
  coordinator::JobRunner run(
      Job(dir + "/resident", 2), {&a, &b},
      [&](const coordinator::JobProgress& p) { messages.push_back(p.message); },
      Recovery(dir, 2));
  absl::StatusOr<coordinator::JobSummary> got = run.Run();
  ASSERT_TRUE(got.ok()) << got.status();
  bool saw_loss = false;
  for (const std::string& m : messages) saw_loss |= m.find("worker lost at block 3") == 0;
  EXPECT_TRUE(saw_loss) << "no 'worker lost at block 3' progress message";
  EXPECT_EQ(got->total_proxy_loss, want.total_proxy_loss);
  ExpectSameOutput(dir + "/local", dir + "/resident");
  EXPECT_EQ(got->replayed_blocks, 1);  // Block 2, for the restored shard.
  EXPECT_EQ(got->wire.activations, 0);
  EXPECT_EQ(a.activation_moves + b.activation_moves, 0);
  // The weights before the last shard checkpoint are not kept.
  EXPECT_FALSE(fs::exists(fs::path(dir) / "checkpoint" / "weights-0.bin"));
}

TEST(ResidentShardsTest, AnUnfinishedShardCheckpointFallsBackToTheOneBefore) {
  const std::string dir = testing::MakeScratchDir();
  const coordinator::JobSummary want = Local(dir + "/local", 2);
  std::unique_ptr<BlockEngine> a_inner = MakeEngine(), b_inner = MakeEngine();
  // Checkpoints after every block (K = 1); b's block-2 files never land
  // (an asynchronous write cut short) and b is lost at the block-3
  // checkpoint: its shard comes back from block 1 on a, and blocks 1 and 2
  // are replayed.
  LosingEngine a(a_inner.get(), -1), b(b_inner.get(), /*fail_block=*/3);
  b.unfinished_checkpoint = 2;
  coordinator::JobRunner run(Job(dir + "/resident", 2), {&a, &b}, nullptr, Recovery(dir, 1));
  absl::StatusOr<coordinator::JobSummary> got = run.Run();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->total_proxy_loss, want.total_proxy_loss);
  ExpectSameOutput(dir + "/local", dir + "/resident");
  EXPECT_EQ(got->replayed_blocks, 2);
  EXPECT_EQ(got->wire.activations, 0);
}

TEST(ResidentShardsTest, WithoutShardCheckpointsALostShardIsReplayedFromTheEmbeddings) {
  const std::string dir = testing::MakeScratchDir();
  const coordinator::JobSummary want = Local(dir + "/local", 2);
  std::unique_ptr<BlockEngine> a_inner = MakeEngine(), b_inner = MakeEngine();
  LosingEngine a(a_inner.get(), -1), b(b_inner.get(), /*fail_block=*/2);
  coordinator::JobRunner run(Job(dir + "/resident", 2), {&a, &b}, nullptr,
                             Recovery(dir, /*every=*/0));
  absl::StatusOr<coordinator::JobSummary> got = run.Run();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->total_proxy_loss, want.total_proxy_loss);
  ExpectSameOutput(dir + "/local", dir + "/resident");
  EXPECT_EQ(got->replayed_blocks, 2);  // Blocks 0 and 1.
}

}  // namespace
}  // namespace baq
