// RemoteBlockEngine against a real gRPC server (a fake worker service on
// localhost:0): the full block protocol, reassembly of a > 4 MB tensor from
// 1 MiB chunks, deadlines, and status mapping.
#include "coordinator/remote_block_engine.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/trace_recorder.h"
#include "nlohmann/json.hpp"
#include "proto/convert.h"
#include "tests/fakes/fake_block_engine.h"
#include "tests/fakes/fake_job_config.h"
#include "tests/fakes/fake_worker_service.h"

namespace baq::coordinator {
namespace {

using ::baq::testing::FakeBlockEngine;
using ::baq::testing::FakeEngineLog;
using ::baq::testing::FakeEngineOptions;
using ::baq::testing::FakeJobConfig;
using ::baq::testing::FakeWorkerService;
using ::testing::HasSubstr;

class RemoteBlockEngineTest : public ::testing::Test {
 protected:
  void StartServer(FakeEngineOptions options) {
    service_ = std::make_unique<FakeWorkerService>(options, &log_);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("localhost:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = MakeWorkerChannel(absl::StrCat("localhost:", port_));
  }

  std::unique_ptr<RemoteBlockEngine> Engine(int device = 0, RemoteEngineOptions options = {}) {
    return std::make_unique<RemoteBlockEngine>(channel_, "w001@test", "job-1", device, options);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  }

  FakeEngineLog log_;
  std::unique_ptr<FakeWorkerService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(RemoteBlockEngineTest, RunsTheBlockProtocolOverGrpc) {
  FakeEngineOptions options;
  options.num_blocks = 2;
  StartServer(options);
  auto engine = Engine();
  ASSERT_TRUE(engine->Start(FakeJobConfig()).ok());
  EXPECT_EQ(engine->num_blocks(), 2);

  absl::StatusOr<BlockMeasurement> m = engine->Measure(0);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->layers.size(), 2u);
  EXPECT_EQ(m->layers[0].name, FakeBlockEngine::LayerName(0, 0));
  EXPECT_EQ(m->layers[0].column_loss.size(), 16u);
  EXPECT_DOUBLE_EQ(m->layers[1].column_loss[3], FakeBlockEngine::ColumnLoss(0, 1, 3));

  std::vector<LayerAllocation> alloc(2);
  alloc[0].name = m->layers[0].name;
  alloc[0].levels.assign(16, 4);  // 2 bits per column.
  alloc[0].gptq_bits = 2;
  absl::StatusOr<BlockOutput> out = engine->Quantize(0, alloc);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->block, 0);
  ASSERT_EQ(out->tensors.size(), 2u);
  EXPECT_EQ(out->tensors[1].name, FakeBlockEngine::LayerName(0, 1) + ".weight");
  EXPECT_EQ(out->tensors[1].dtype, DType::kU8);
  EXPECT_EQ(out->tensors[1].bytes, FakeBlockEngine::ExpectedTensorBytes(0, 1, 64));
  ASSERT_EQ(out->layers.size(), 2u);
  EXPECT_DOUBLE_EQ(out->layers[0].bits_sum, 2.0 * 16 * 8);  // levels 4 -> 2 bits.

  absl::StatusOr<std::string> inputs = engine->ExportInputs(1);
  ASSERT_TRUE(inputs.ok()) << inputs.status();
  EXPECT_EQ(*inputs, FakeBlockEngine::ExpectedInputBytes(1, 48));
  engine->Reset();
  EXPECT_EQ(engine->Measure(1).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RemoteBlockEngineTest, TracesEachCallWithItsBlockAndWorker) {
  // The coordinator's timeline (--trace_file): one span per call, the RPC
  // and the wait for the worker included.
  FakeEngineOptions options;
  options.num_blocks = 2;
  StartServer(options);
  auto engine = Engine();
  trace::TraceRecorder& recorder = trace::GlobalTraceRecorder();
  recorder.Start("coordinator");
  ASSERT_TRUE(engine->Start(FakeJobConfig()).ok());
  ASSERT_TRUE(engine->Measure(0).ok());
  EXPECT_FALSE(engine->Measure(5).ok());  // Failed calls are traced too.
  recorder.Stop();
  std::vector<std::string> spans;
  const nlohmann::json doc = nlohmann::json::parse(recorder.ToJson());
  for (const nlohmann::json& e : doc["traceEvents"]) {
    if (e["ph"] != "X") continue;
    EXPECT_EQ(e["cat"], "rpc_client");
    EXPECT_EQ(e["args"]["worker"], "w001@test");
    spans.push_back(absl::StrCat(e["name"].get<std::string>(), " ",
                                 e["args"].value("block", int64_t{-1})));
  }
  EXPECT_THAT(spans, ::testing::ElementsAre("StartJob -1", "Measure 0", "Measure 5"));
}

TEST_F(RemoteBlockEngineTest, EvaluatesACheckpointOnTheJobsEngine) {
  FakeEngineOptions options;
  options.perplexity = 17.25;
  StartServer(options);
  auto engine = Engine();
  // Before StartJob the worker has no engine for the job.
  EXPECT_EQ(engine->Evaluate("/staged", "/eval.txt", 128).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(engine->Start(FakeJobConfig()).ok());
  absl::StatusOr<double> ppl = engine->Evaluate("/staged", "/eval.txt", 128);
  ASSERT_TRUE(ppl.ok()) << ppl.status();
  EXPECT_EQ(*ppl, 17.25);
  EXPECT_THAT(log_.entries(), ::testing::Contains("evaluate /staged /eval.txt 128"));
  absl::Status missing = engine->Evaluate("missing", "/eval.txt", 128).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.message()), HasSubstr("missing"));
}

TEST_F(RemoteBlockEngineTest, ReassemblesTensorsLargerThanTheMessageLimit) {
  FakeEngineOptions options;
  options.layers_per_block = 2;
  options.tensor_bytes = 9 * (size_t{1} << 20) + 123;  // > 4 MB default limit, odd size.
  options.input_bytes = 6 * (size_t{1} << 20) + 5;
  StartServer(options);
  auto engine = Engine();
  ASSERT_TRUE(engine->Start(FakeJobConfig()).ok());
  ASSERT_TRUE(engine->Measure(0).ok());
  absl::StatusOr<BlockOutput> out = engine->Quantize(0, {});
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->tensors.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(out->tensors[i].shape,
              std::vector<int64_t>{static_cast<int64_t>(options.tensor_bytes)});
    EXPECT_TRUE(out->tensors[i].bytes ==
                FakeBlockEngine::ExpectedTensorBytes(0, i, options.tensor_bytes));
  }
  // Activations cross both ways in chunks too: export from one device,
  // import into another.
  absl::StatusOr<std::string> inputs = engine->ExportInputs(1);
  ASSERT_TRUE(inputs.ok()) << inputs.status();
  EXPECT_EQ(inputs->size(), options.input_bytes);
  auto other = Engine(/*device=*/1);
  ASSERT_TRUE(other->Start(FakeJobConfig()).ok());
  ASSERT_TRUE(other->ImportInputs(1, *inputs).ok());
  EXPECT_TRUE(other->Measure(1).ok());
}

TEST_F(RemoteBlockEngineTest, KeepsTheWorkersStatusCodeAndNamesTheWorker) {
  FakeEngineOptions options;
  options.fail_block = 0;
  options.fail_status = absl::ResourceExhaustedError("CUDA out of memory");
  StartServer(options);
  auto engine = Engine();
  ASSERT_TRUE(engine->Start(FakeJobConfig()).ok());
  absl::Status s = engine->Measure(0).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("worker w001@test device 0: CUDA out of memory"));

  JobConfig bad = FakeJobConfig();
  bad.model_dir = "bad-model";
  EXPECT_EQ(engine->Start(bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Quantize(7, {}).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RemoteBlockEngineTest, EveryCallHasADeadline) {
  StartServer(FakeEngineOptions());
  baq::testing::FakeWorkerFaults faults;
  faults.hang_measure = true;
  service_->set_faults(faults);
  RemoteEngineOptions options;
  options.block_timeout = absl::Milliseconds(200);
  auto engine = Engine(0, options);
  ASSERT_TRUE(engine->Start(FakeJobConfig()).ok());
  EXPECT_EQ(engine->Measure(0).status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(RemoteBlockEngineTest, CancellerAbortsCallsInFlightAndLaterOnes) {
  StartServer(FakeEngineOptions());
  auto canceller = std::make_shared<CallCanceller>();
  RemoteBlockEngine engine(channel_, "w001@test", "job-1", 0, RemoteEngineOptions(), canceller);
  ASSERT_TRUE(engine.Start(FakeJobConfig()).ok());
  baq::testing::FakeWorkerFaults faults;
  faults.hang_measure = true;
  service_->set_faults(faults);
  absl::Status measured;
  std::thread caller([&] { measured = engine.Measure(0).status(); });
  ASSERT_TRUE(service_->AwaitHanging(1, absl::Seconds(10)));
  canceller->CancelAll();  // The block timeout is an hour; this must not wait for it.
  caller.join();
  EXPECT_EQ(measured.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(engine.Measure(0).status().code(), absl::StatusCode::kAborted);
  engine.Reset();  // Still allowed: frees the worker's state.
}

TEST_F(RemoteBlockEngineTest, RevokedLeaseFencesCallsInFlightAndEveryLaterOne) {
  // A hung worker (its lease expired): WorkerPool revokes the fence; the
  // call in flight ends at once as UNAVAILABLE (a worker loss the job
  // survives), nothing from that incarnation is accepted afterwards, and
  // Reset() does not wait for the hung worker.
  StartServer(FakeEngineOptions());
  auto fence = std::make_shared<LeaseFence>("w001", 7);
  RemoteBlockEngine engine(channel_, "w001@test", "job-1", 0, RemoteEngineOptions(),
                           std::make_shared<CallCanceller>(), fence);
  ASSERT_TRUE(engine.Start(FakeJobConfig()).ok());
  baq::testing::FakeWorkerFaults faults;
  faults.hang_measure = true;
  service_->set_faults(faults);
  absl::Status measured;
  std::thread caller([&] { measured = engine.Measure(0).status(); });
  ASSERT_TRUE(service_->AwaitHanging(1, absl::Seconds(10)));
  const absl::Time revoked = absl::Now();
  fence->Revoke("lease expired");
  caller.join();
  EXPECT_LT(absl::Now() - revoked, absl::Seconds(5));
  EXPECT_EQ(measured.code(), absl::StatusCode::kUnavailable) << measured;
  EXPECT_THAT(measured.message(), HasSubstr("w001 epoch 7 lost its lease (lease expired)"));
  service_->set_faults(baq::testing::FakeWorkerFaults());
  const absl::Status later = engine.Measure(0).status();
  EXPECT_EQ(later.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(later.message(), HasSubstr("fenced off"));
  const absl::Time reset = absl::Now();
  engine.Reset();
  EXPECT_LT(absl::Now() - reset, absl::Seconds(1));
}

TEST_F(RemoteBlockEngineTest, RejectsATruncatedStream) {
  FakeEngineOptions options;
  options.tensor_bytes = 3 * (size_t{1} << 20);
  StartServer(options);
  baq::testing::FakeWorkerFaults faults;
  faults.truncate_quantize = true;
  service_->set_faults(faults);
  auto engine = Engine();
  ASSERT_TRUE(engine->Start(FakeJobConfig()).ok());
  ASSERT_TRUE(engine->Measure(0).ok());
  absl::Status s = engine->Quantize(0, {}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("bad Quantize stream"));
}

TEST_F(RemoteBlockEngineTest, UnreachableWorkerIsUnavailable) {
  // Nothing listens here (a port just released).
  StartServer(FakeEngineOptions());
  const int port = port_;
  server_->Shutdown();
  server_.reset();
  RemoteEngineOptions options;
  options.start_timeout = absl::Seconds(5);
  RemoteBlockEngine engine(MakeWorkerChannel(absl::StrCat("localhost:", port)), "gone", "job-1", 0,
                           options);
  EXPECT_EQ(engine.Start(FakeJobConfig()).code(), absl::StatusCode::kUnavailable);
  engine.Reset();  // Best effort: returns.
}

}  // namespace
}  // namespace baq::coordinator
