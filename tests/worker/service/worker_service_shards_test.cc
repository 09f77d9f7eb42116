// WorkerService's calibration-shard RPCs (worker/service/worker_service_shards.cc)
// end to end over gRPC: a real WorkerServer on localhost:0 with a scripted
// engine, driven by the coordinator's RemoteBlockEngine. Hessian partials and
// shard inputs larger than one 1 MiB message (and empty ones) arrive intact,
// in order, with their labels; engine errors keep their code and name the
// worker; the calls are counted in the worker's metrics.
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/engine_capabilities.h"
#include "coordinator/remote_block_engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/metric_value.h"
#include "worker/service/worker_metrics.h"
#include "worker/service/worker_server.h"

namespace baq::worker {
namespace {

using ::testing::HasSubstr;

// Bytes of `n` with a pattern that depends on `seed` (catches reordering).
std::string Pattern(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 7) & 0xff);
  return s;
}

// What the scripted engines saw; shared with the test.
struct Seen {
  absl::Mutex mu;
  std::vector<HessianPartial> imported ABSL_GUARDED_BY(mu);
  std::vector<std::string> shard_inputs ABSL_GUARDED_BY(mu);
};

// Shard k's partials: input group 0 of 3 MiB + 17 bytes, group 1 empty.
class ScriptedShardEngine final : public BlockEngine, public ShardedCalibration {
 public:
  explicit ScriptedShardEngine(Seen* seen) : seen_(seen) {}
  std::string name() const override { return "scripted shard engine"; }
  ShardedCalibration* sharded_calibration() override { return this; }
  void Cancel() override {}
  absl::Status Start(const JobConfig&) override { return absl::OkStatus(); }
  int64_t num_blocks() const override { return 2; }
  absl::StatusOr<BlockMeasurement> Measure(int64_t) override { return BlockMeasurement{}; }
  absl::StatusOr<BlockOutput> Quantize(int64_t, const std::vector<LayerAllocation>&) override {
    return BlockOutput{};
  }
  void Reset() override {}

  absl::StatusOr<std::vector<HessianPartial>> AccumulateHessians(
      int64_t block, const std::vector<int32_t>& shards) override {
    if (block == 1) return absl::FailedPreconditionError("block 1: inputs of shard 0 not present");
    std::vector<HessianPartial> out;
    for (int32_t k : shards) {
      out.push_back(HessianPartial{k, 0, "fc1", Pattern((3 << 20) + 17, k)});
      out.push_back(HessianPartial{k, 1, "fc2", ""});
    }
    return out;
  }
  absl::Status ImportHessians(int64_t, std::vector<HessianPartial> merged) override {
    absl::MutexLock lock(&seen_->mu);
    seen_->imported = std::move(merged);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ExportShardInputs(int64_t, int32_t shard) override {
    return Pattern((5 << 19) + 3, shard);  // 2.5 MiB + 3 bytes.
  }
  absl::Status ImportShardInputs(int64_t, int32_t shard, std::string bytes) override {
    absl::MutexLock lock(&seen_->mu);
    seen_->shard_inputs.push_back(absl::StrCat(shard, ":", bytes.size()));
    if (bytes != Pattern(bytes.size(), shard)) return absl::DataLossError("bytes differ");
    return absl::OkStatus();
  }

 private:
  Seen* const seen_;
};

class WorkerServiceShardsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WorkerServerOptions options;
    options.listen_address = "localhost:0";
    WorkerDeps deps;
    deps.engine_factory = [this](const std::string&) -> absl::StatusOr<std::unique_ptr<BlockEngine>> {
      return std::make_unique<ScriptedShardEngine>(&seen_);
    };
    deps.metrics = &metrics_;
    absl::StatusOr<std::unique_ptr<WorkerServer>> server = WorkerServer::Start(options, std::move(deps));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    coordinator::RemoteEngineOptions remote;
    remote.block_timeout = absl::Seconds(20);
    remote.transfer_timeout = absl::Seconds(20);
    remote.start_timeout = absl::Seconds(20);
    engine_ = std::make_unique<coordinator::RemoteBlockEngine>(
        coordinator::MakeWorkerChannel(absl::StrCat("localhost:", server_->port())), "w1@test",
        "job-1", 0, remote);
    JobConfig config;
    config.model_dir = "/m";
    config.output_dir = "/o";
    config.calibration.files = {"/c.txt"};
    ASSERT_TRUE(engine_->Start(config).ok());
  }

  double Rpcs(const std::string& method, const std::string& code) {
    return testing::MetricValue(registry_, "baq_worker_rpcs_total",
                                {{"method", method}, {"code", code}});
  }

  Seen seen_;
  prometheus::Registry registry_;
  WorkerMetrics metrics_{registry_};
  std::unique_ptr<WorkerServer> server_;
  std::unique_ptr<coordinator::RemoteBlockEngine> engine_;
};

TEST_F(WorkerServiceShardsTest, PartialsLargerThanAMessageArriveIntactAndInOrder) {
  absl::StatusOr<std::vector<HessianPartial>> got = engine_->AccumulateHessians(0, {1, 4});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 4u);
  const int shards[] = {1, 1, 4, 4};
  for (size_t i = 0; i < got->size(); ++i) {
    const HessianPartial& p = (*got)[i];
    EXPECT_EQ(p.shard, shards[i]);
    EXPECT_EQ(p.input_group, static_cast<int>(i % 2));
    EXPECT_EQ(p.layer, i % 2 == 0 ? "fc1" : "fc2");
    EXPECT_TRUE(p.bytes == (i % 2 == 0 ? Pattern((3 << 20) + 17, shards[i]) : ""));
  }
  EXPECT_EQ(Rpcs("AccumulateHessians", "OK"), 1);
}

TEST_F(WorkerServiceShardsTest, ImportHessiansHandsTheEngineEveryPartial) {
  std::vector<HessianPartial> merged = {{-1, 0, "fc1", Pattern((1 << 20) * 2 + 5, 9)},
                                        {-1, 1, "fc2", ""},
                                        {-1, 2, "fc3", "x"}};
  ASSERT_TRUE(engine_->ImportHessians(0, merged).ok());
  {
    absl::MutexLock lock(&seen_.mu);
    ASSERT_EQ(seen_.imported.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(seen_.imported[i].shard, -1);
      EXPECT_EQ(seen_.imported[i].input_group, merged[i].input_group);
      EXPECT_EQ(seen_.imported[i].layer, merged[i].layer);
      EXPECT_TRUE(seen_.imported[i].bytes == merged[i].bytes) << i;
    }
  }
  // No partials at all: one message names the target.
  ASSERT_TRUE(engine_->ImportHessians(0, {}).ok());
  absl::MutexLock lock(&seen_.mu);
  EXPECT_TRUE(seen_.imported.empty());
}

TEST_F(WorkerServiceShardsTest, ShardInputsRoundTrip) {
  absl::StatusOr<std::string> x = engine_->ExportShardInputs(3, 2);
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_TRUE(*x == Pattern((5 << 19) + 3, 2));
  ASSERT_TRUE(engine_->ImportShardInputs(3, 2, *x).ok());
  absl::MutexLock lock(&seen_.mu);
  EXPECT_EQ(seen_.shard_inputs, std::vector<std::string>{absl::StrCat("2:", (5 << 19) + 3)});
}

TEST_F(WorkerServiceShardsTest, EngineErrorsKeepTheirCodeAndNameTheWorker) {
  EXPECT_EQ(engine_->name(), "worker w1@test device 0");
  absl::StatusOr<std::vector<HessianPartial>> got = engine_->AccumulateHessians(1, {0});
  EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(got.status().message(), HasSubstr("worker w1@test device 0"));
  EXPECT_THAT(got.status().message(), HasSubstr("inputs of shard 0 not present"));
  EXPECT_EQ(Rpcs("AccumulateHessians", "FAILED_PRECONDITION"), 1);
  // A job the worker does not know.
  coordinator::RemoteBlockEngine other(
      coordinator::MakeWorkerChannel(absl::StrCat("localhost:", server_->port())), "w1@test",
      "no-such-job", 0, coordinator::RemoteEngineOptions{});
  EXPECT_FALSE(other.AccumulateHessians(0, {0}).ok());
  EXPECT_FALSE(other.ImportHessians(0, {{-1, 0, "fc1", "x"}}).ok());
}

}  // namespace
}  // namespace baq::worker
