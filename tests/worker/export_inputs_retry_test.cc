// ExportInputs is idempotent (issue 15, item 4): a real WorkerServer over a
// TorchBlockEngine, a RemoteBlockEngine client, and the failpoint
// "worker.ExportInputs.lose_reply" that drops the first reply after the
// engine produced it (the worker ran the export; the coordinator saw
// UNAVAILABLE). The channel's declared retry re-asks, and the worker still
// has the inputs: the bytes equal those of an engine that lost nothing.
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/engine_capabilities.h"
#include "common/failpoint.h"
#include "coordinator/remote_block_engine.h"
#include "gtest/gtest.h"
#include "tests/testing/metric_value.h"
#include "tests/testing/test_paths.h"
#include "tests/testing/tiny_model.h"
#include "worker/torch_block_engine.h"
#include "worker/service/worker_metrics.h"
#include "worker/service/worker_server.h"

namespace baq::worker {
namespace {

JobConfig SmallJob() {
  JobConfig c;
  c.model_dir = testing::TinyLlamaDir();
  c.output_dir = testing::MakeScratchDir() + "/unused";
  c.calibration.files = {testing::SourceDir() + "/examples/calibration.txt"};
  c.calibration.num_samples = 8;
  c.calibration.seqlen = 16;
  c.formats = {OutputFormat::kFakeQuant};
  c.quant.method = QuantMethod::kGptq;
  c.quant.target_bits = 3;
  c.mode = ExecutionMode::kSequential;
  return c;
}

absl::StatusOr<std::unique_ptr<BlockEngine>> MakeEngine(const std::string& device) {
  EngineOptions options;
  options.device = device;
  options.num_threads = 1;
  return MakeTorchBlockEngine(options);
}

std::vector<LayerAllocation> Names(const BlockMeasurement& m) {
  std::vector<LayerAllocation> allocation;
  for (const LayerMeasurement& l : m.layers) allocation.push_back(LayerAllocation{l.name, {}, 0});
  return allocation;
}

// Runs block 0 on `engine`: afterwards it holds the inputs of block 1.
void RunBlock0(BlockEngine& engine) {
  ASSERT_TRUE(engine.Start(SmallJob()).ok());
  absl::StatusOr<BlockMeasurement> m = engine.Measure(0);
  ASSERT_TRUE(m.ok()) << m.status();
  absl::StatusOr<BlockOutput> out = engine.Quantize(0, Names(*m));
  ASSERT_TRUE(out.ok()) << out.status();
}

class ExportInputsRetryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!failpoint::Enabled()) GTEST_SKIP() << "built without failpoints";
    WorkerServerOptions options;
    options.listen_address = "localhost:0";
    WorkerDeps deps{MakeEngine, &metrics_};
    absl::StatusOr<std::unique_ptr<WorkerServer>> server =
        WorkerServer::Start(options, std::move(deps));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    remote_ = std::make_unique<coordinator::RemoteBlockEngine>(
        coordinator::MakeWorkerChannel(absl::StrCat("localhost:", server_->port())), "w1@test",
        "job-1", 0, coordinator::RemoteEngineOptions{});
  }
  void TearDown() override {
    if (failpoint::Enabled()) {
      EXPECT_TRUE(failpoint::Configure("").ok());
    }
  }

  double Rpcs(const std::string& method, const std::string& code) {
    return testing::MetricValue(registry_, "baq_worker_rpcs_total",
                                {{"method", method}, {"code", code}});
  }

  prometheus::Registry registry_;
  WorkerMetrics metrics_{registry_};
  std::unique_ptr<WorkerServer> server_;
  std::unique_ptr<coordinator::RemoteBlockEngine> remote_;
};

TEST_F(ExportInputsRetryTest, LostReplyIsRetriedWithIdenticalBytes) {
  absl::StatusOr<std::unique_ptr<BlockEngine>> local = MakeEngine("cpu");
  ASSERT_TRUE(local.ok()) << local.status();
  RunBlock0(**local);
  absl::StatusOr<std::string> want = CapabilityOf<ActivationTransfer>(**local)->ExportInputs(1);
  ASSERT_TRUE(want.ok()) << want.status();

  RunBlock0(*remote_);
  ASSERT_TRUE(failpoint::Configure("worker.ExportInputs.lose_reply=error@1").ok());
  absl::StatusOr<std::string> got = remote_->ExportInputs(1);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Rpcs("ExportInputs", "UNAVAILABLE"), 1);  // The lost reply...
  EXPECT_EQ(Rpcs("ExportInputs", "OK"), 1);           // ...and the retry.
  EXPECT_TRUE(*got == *want) << "retried export differs from a clean one";

  // A job-level retry gets the same bytes too, until the engine moves on.
  absl::StatusOr<std::string> again = remote_->ExportInputs(1);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(*again == *want);
  // Moving on (here: measuring the handed-over block) frees the copy.
  EXPECT_EQ(remote_->Measure(1).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(remote_->ExportInputs(1).status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace baq::worker
