// WorkerService's LayerOwnership RPCs (worker/service/worker_service_ownership.cc
// and the layer subsets of Measure/Quantize) end to end: a real WorkerServer
// on localhost:0 over TorchBlockEngines, driven by the coordinator's
// RemoteBlockEngine. Two remote engines with one calibration shard each,
// driven through the resident protocol, give the bytes of one local engine
// holding both shards (Measure + Quantize): measurements, output tensors,
// quantized weights and next-block inputs. A shard checkpointed on the
// worker, restored on another remote engine and replayed reaches the same
// inputs. Engine errors keep their code over the wire; failpoints fire.
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/engine_capabilities.h"
#include "common/failpoint.h"
#include "coordinator/remote_block_engine.h"
#include "gtest/gtest.h"
#include "tests/testing/layer_ownership_driver.h"
#include "tests/testing/metric_value.h"
#include "tests/testing/test_paths.h"
#include "tests/testing/tiny_model.h"
#include "worker/service/worker_metrics.h"
#include "worker/service/worker_server.h"
#include "worker/torch_block_engine.h"

namespace baq::worker {
namespace {

using testing::BlockResult;
using testing::Owner;
using testing::Shards;
using testing::ThreeBits;

constexpr int64_t kBlocks = testing::kTinyLlamaBlocks;

// 16 windows of 16 tokens = 2 chunks of 8 windows: one per shard.
JobConfig SmallJob() {
  JobConfig c;
  c.model_dir = testing::TinyLlamaDir();  // The subject is the RPCs, not the model.
  c.output_dir = testing::MakeScratchDir() + "/unused";
  c.calibration.files = {testing::SourceDir() + "/examples/calibration.txt"};
  c.calibration.num_samples = 16;
  c.calibration.seqlen = 16;
  c.formats = {OutputFormat::kFakeQuant, OutputFormat::kPacked};
  c.quant.method = QuantMethod::kBaq;
  c.quant.target_bits = 3;
  c.mode = ExecutionMode::kSequential;
  c.calibration_shards = 2;
  return c;
}

absl::StatusOr<std::unique_ptr<BlockEngine>> MakeEngine(const std::string& device) {
  EngineOptions options;
  options.device = device;
  options.num_threads = 1;
  return MakeTorchBlockEngine(options);
}

class WorkerServiceOwnershipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(testing::TinyLlamaDir().empty()) << "make_random_model.py failed";
    WorkerServerOptions options;
    options.listen_address = "localhost:0";
    WorkerDeps deps{MakeEngine, &metrics_};
    absl::StatusOr<std::unique_ptr<WorkerServer>> server =
        WorkerServer::Start(options, std::move(deps));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  void TearDown() override {
    if (failpoint::Enabled()) {
      EXPECT_TRUE(failpoint::Configure("").ok());
    }
  }

  // A started remote engine of job `job` on the worker's device 0.
  std::unique_ptr<coordinator::RemoteBlockEngine> Remote(const std::string& job) {
    coordinator::RemoteEngineOptions remote;
    remote.block_timeout = absl::Seconds(120);
    remote.transfer_timeout = absl::Seconds(60);
    remote.start_timeout = absl::Seconds(60);
    auto engine = std::make_unique<coordinator::RemoteBlockEngine>(
        coordinator::MakeWorkerChannel(absl::StrCat("localhost:", server_->port())), "w1@test",
        job, 0, remote);
    absl::Status s = engine->Start(SmallJob());
    EXPECT_TRUE(s.ok()) << s;
    return engine;
  }

  double Rpcs(const std::string& method, const std::string& code) {
    return testing::MetricValue(registry_, "baq_worker_rpcs_total",
                                {{"method", method}, {"code", code}});
  }

  prometheus::Registry registry_;
  WorkerMetrics metrics_{registry_};
  std::unique_ptr<WorkerServer> server_;
};

TEST_F(WorkerServiceOwnershipTest, TwoRemoteOwnersMatchOneLocalEngine) {
  absl::StatusOr<std::unique_ptr<BlockEngine>> local = MakeEngine("cpu");
  ASSERT_TRUE(local.ok()) << local.status();
  ASSERT_TRUE((*local)->Start(SmallJob()).ok());
  std::vector<BlockResult> one = testing::RunPlain(local->get(), kBlocks);
  ASSERT_EQ(one.size(), static_cast<size_t>(kBlocks));
  ASSERT_FALSE(one[0].measurement.layers[0].column_loss.empty());

  std::unique_ptr<coordinator::RemoteBlockEngine> a = Remote("job-a");
  std::unique_ptr<coordinator::RemoteBlockEngine> b = Remote("job-b");
  const std::string ckpt = testing::MakeScratchDir();
  std::vector<BlockResult> two = testing::RunResident(a.get(), b.get(), kBlocks, ckpt, 2);
  testing::ExpectIdentical(one, two);
  EXPECT_GE(Rpcs("AdvanceShards", "OK"), 2 * kBlocks);
  EXPECT_GE(Rpcs("BlockLayers", "OK"), kBlocks);

  // Shard 1 lost: another engine restores it from the checkpoint of block 2
  // on the worker and replays blocks 2.. with every layer's weights.
  std::unique_ptr<coordinator::RemoteBlockEngine> c = Remote("job-c");
  ASSERT_TRUE(Shards(*c).ExportShardInputs(0, 0).ok());  // Drop what Start embedded.
  ASSERT_TRUE(Shards(*c).ExportShardInputs(0, 1).ok());
  absl::Status s = Owner(*c).RestoreShard(2, 1, ckpt);
  ASSERT_TRUE(s.ok()) << s;
  const std::string dir = testing::MakeScratchDir();
  for (int64_t blk = 2; blk < kBlocks; ++blk) {
    s = Owner(*c).AdvanceShards(blk, two[blk].weights);
    ASSERT_TRUE(s.ok()) << s;
    std::map<int32_t, std::string> next = testing::Checkpoint(*c, blk + 1, dir);
    ASSERT_EQ(next.size(), 1u);
    EXPECT_TRUE(next.at(1) == one[blk].next_inputs.at(1)) << "block " << blk + 1;
  }
}

TEST_F(WorkerServiceOwnershipTest, ErrorsKeepTheirCodeOverTheWire) {
  std::unique_ptr<coordinator::RemoteBlockEngine> e = Remote("job-e");
  absl::StatusOr<std::vector<LayerShape>> layers = Owner(*e).BlockLayers(0);
  ASSERT_TRUE(layers.ok()) << layers.status();
  ASSERT_EQ(layers->size(), static_cast<size_t>(testing::kTinyLlamaLinearLayers));
  EXPECT_EQ((*layers)[0].name, "model.layers.0.self_attn.q_proj");
  EXPECT_EQ(Owner(*e).BlockLayers(kBlocks).status().code(), absl::StatusCode::kInvalidArgument);

  // Not measured / no Hessians: FailedPrecondition naming the layer.
  ASSERT_TRUE(Shards(*e).AccumulateHessians(0, {0}).ok());
  ASSERT_TRUE(Shards(*e).ImportHessians(0, {}).ok());
  absl::StatusOr<BlockMeasurement> m = Owner(*e).MeasureLayers(0, {1});
  EXPECT_EQ(m.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(m.status().message().find((*layers)[1].name), std::string::npos) << m.status();
  EXPECT_NE(m.status().message().find("w1@test"), std::string::npos) << m.status();
  absl::Status s = Owner(*e).AdvanceShards(0, {});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find((*layers)[0].name), std::string::npos) << s;
  // A weight of the wrong size does not even reach the engine.
  TensorBytes w{(*layers)[0].name, DType::kF32, {(*layers)[0].rows, (*layers)[0].columns}, "x"};
  EXPECT_EQ(Owner(*e).AdvanceShards(0, {w}).code(), absl::StatusCode::kInvalidArgument);

  const std::string dir = testing::MakeScratchDir();
  EXPECT_EQ(Owner(*e).RestoreShard(1, 0, dir).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Owner(*e).RestoreShard(0, 7, dir).code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::vector<int32_t>> shards = Owner(*e).CheckpointShards(0, dir);
  ASSERT_TRUE(shards.ok()) << shards.status();
  EXPECT_EQ(*shards, std::vector<int32_t>{0});  // Shard 1 dropped by AccumulateHessians.
  EXPECT_TRUE(Owner(*e).RestoreShard(0, 0, dir).ok());

  if (failpoint::Enabled()) {
    ASSERT_TRUE(failpoint::Configure("worker.checkpoint_shards=error@1").ok());
    EXPECT_EQ(Owner(*e).CheckpointShards(0, dir).status().code(), absl::StatusCode::kInternal);
    EXPECT_EQ(Rpcs("CheckpointShards", "INTERNAL"), 1);
  }
}

}  // namespace
}  // namespace baq::worker
