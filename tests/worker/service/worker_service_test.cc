// In-process gRPC tests of WorkerService (STYLE R25a): a real WorkerServer
// on localhost:0 over fake engines, real stubs, a deadline on every call.
#include "worker/service/worker_service.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "baq/v1/worker.grpc.pb.h"
#include "proto/convert.h"
#include "tests/fakes/fake_block_engine.h"
#include "tests/fakes/fake_job_config.h"
#include "tests/testing/metric_value.h"
#include "worker/service/worker_metrics.h"
#include "worker/service/worker_server.h"

namespace baq::worker {
namespace {

using ::baq::testing::FakeBlockEngine;
using ::baq::testing::FakeEngineFactory;
using ::baq::testing::FakeEngineLog;
using ::baq::testing::FakeEngineOptions;
using ::baq::testing::FakeJobConfig;
using ::baq::testing::MetricValue;
using ::testing::ElementsAre;

constexpr auto kDeadline = std::chrono::seconds(10);

class WorkerServiceTest : public ::testing::Test {
 protected:
  void StartServer(FakeEngineOptions engine_options, std::vector<std::string> devices = {"cpu"}) {
    WorkerServerOptions options;
    options.listen_address = "localhost:0";
    options.devices = std::move(devices);
    WorkerDeps deps{FakeEngineFactory(engine_options, &log_), &metrics_};
    auto server = WorkerServer::Start(options, std::move(deps));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::WorkerService::NewStub(grpc::CreateChannel(
        absl::StrCat("localhost:", server_->port()), grpc::InsecureChannelCredentials()));
  }

  void SetDeadline(grpc::ClientContext& ctx) {
    ctx.set_deadline(std::chrono::system_clock::now() + kDeadline);
  }

  grpc::Status StartJob(const std::string& job, int device = 0,
                        JobConfig config = FakeJobConfig()) {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    v1::StartJobRequest req;
    req.set_job_id(job);
    req.set_device_index(device);
    ToProto(config, req.mutable_spec());
    v1::StartJobResponse resp;
    grpc::Status s = stub_->StartJob(&ctx, req, &resp);
    if (s.ok()) num_blocks_ = resp.num_blocks();
    return s;
  }

  grpc::Status Measure(const std::string& job, int64_t block, v1::BlockMeasurement* resp) {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    v1::MeasureRequest req;
    req.set_job_id(job);
    req.set_block(block);
    return stub_->Measure(&ctx, req, resp);
  }

  // Reads a whole Quantize stream; returns the chunks' kinds ('h', 'd', 'r').
  grpc::Status Quantize(const std::string& job, int64_t block, std::string* kinds,
                        std::string* data) {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    v1::QuantizeRequest req;
    req.set_job_id(job);
    req.set_block(block);
    auto reader = stub_->Quantize(&ctx, req);
    v1::QuantizeResponseChunk chunk;
    while (reader->Read(&chunk)) {
      if (chunk.has_tensor()) kinds->push_back('h');
      if (chunk.kind_case() == v1::QuantizeResponseChunk::kData) {
        kinds->push_back('d');
        EXPECT_LE(chunk.data().size(), kMaxChunkBytes);
        data->append(chunk.data());
      }
      if (chunk.has_report()) kinds->push_back('r');
    }
    return reader->Finish();
  }

  FakeEngineLog log_;
  prometheus::Registry registry_;
  WorkerMetrics metrics_{registry_};
  std::unique_ptr<WorkerServer> server_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  int64_t num_blocks_ = 0;
};

TEST_F(WorkerServiceTest, StartMeasureQuantizeRoundTrip) {
  FakeEngineOptions options;
  options.num_blocks = 3;
  StartServer(options);
  ASSERT_TRUE(StartJob("job-1").ok());
  EXPECT_EQ(num_blocks_, 3);

  v1::BlockMeasurement m;
  ASSERT_TRUE(Measure("job-1", 0, &m).ok());
  ASSERT_EQ(m.layers_size(), 2);
  EXPECT_EQ(m.layers(1).name(), FakeBlockEngine::LayerName(0, 1));
  EXPECT_DOUBLE_EQ(m.layers(1).column_loss(5), FakeBlockEngine::ColumnLoss(0, 1, 5));

  std::string kinds, data;
  ASSERT_TRUE(Quantize("job-1", 0, &kinds, &data).ok());
  EXPECT_EQ(kinds, "hdhdr");
  EXPECT_EQ(data, FakeBlockEngine::ExpectedTensorBytes(0, 0, 64) +
                      FakeBlockEngine::ExpectedTensorBytes(0, 1, 64));
  EXPECT_EQ(MetricValue(registry_, "baq_worker_blocks_measured_total", {}), 1);
  EXPECT_EQ(MetricValue(registry_, "baq_worker_blocks_quantized_total", {}), 1);
  EXPECT_EQ(
      MetricValue(registry_, "baq_worker_rpcs_total", {{"method", "Quantize"}, {"code", "OK"}}),
      1);
  EXPECT_EQ(MetricValue(registry_, "baq_worker_engines", {}), 1);
}

TEST_F(WorkerServiceTest, StreamsLargeTensorsInChunks) {
  FakeEngineOptions options;
  options.layers_per_block = 1;
  options.tensor_bytes = 5 * kMaxChunkBytes / 2;  // 2.5 chunks.
  StartServer(options);
  ASSERT_TRUE(StartJob("job-1").ok());
  v1::BlockMeasurement m;
  ASSERT_TRUE(Measure("job-1", 0, &m).ok());
  std::string kinds, data;
  ASSERT_TRUE(Quantize("job-1", 0, &kinds, &data).ok());
  EXPECT_EQ(kinds, "hdddr");
  EXPECT_EQ(data, FakeBlockEngine::ExpectedTensorBytes(0, 0, options.tensor_bytes));
}

TEST_F(WorkerServiceTest, ExportAndImportInputs) {
  FakeEngineOptions options;
  options.input_bytes = 3 * kMaxChunkBytes + 17;
  StartServer(options, {"cpu", "cpu"});
  ASSERT_TRUE(StartJob("job-1", 0).ok());
  ASSERT_TRUE(StartJob("job-1", 1).ok());

  std::string bytes;
  {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    v1::ExportInputsRequest req;
    req.set_job_id("job-1");
    req.set_block(0);
    auto reader = stub_->ExportInputs(&ctx, req);
    v1::Chunk chunk;
    int chunks = 0;
    while (reader->Read(&chunk)) {
      bytes += chunk.data();
      ++chunks;
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(chunks, 4);
  }
  EXPECT_EQ(bytes, FakeBlockEngine::ExpectedInputBytes(0, options.input_bytes));

  // Block 2's inputs, streamed to device 1 in chunks, make block 2
  // measurable there.
  const std::string block2 = FakeBlockEngine::ExpectedInputBytes(2, options.input_bytes);
  grpc::ClientContext ctx;
  SetDeadline(ctx);
  v1::ImportInputsResponse resp;
  auto writer = stub_->ImportInputs(&ctx, &resp);
  for (size_t offset = 0; offset < block2.size(); offset += kMaxChunkBytes) {
    v1::ImportInputsChunk chunk;
    if (offset == 0) {
      chunk.set_job_id("job-1");
      chunk.set_device_index(1);
      chunk.set_block(2);
    }
    chunk.set_data(block2.substr(offset, kMaxChunkBytes));
    ASSERT_TRUE(writer->Write(chunk));
  }
  ASSERT_TRUE(writer->WritesDone());
  grpc::Status s = writer->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.bytes_received(), block2.size());
  v1::BlockMeasurement m;
  grpc::ClientContext measure_ctx;
  SetDeadline(measure_ctx);
  v1::MeasureRequest req;
  req.set_job_id("job-1");
  req.set_device_index(1);
  req.set_block(2);
  EXPECT_TRUE(stub_->Measure(&measure_ctx, req, &m).ok());
}

TEST_F(WorkerServiceTest, MapsErrorsToCanonicalCodes) {
  FakeEngineOptions options;
  options.fail_block = 1;
  options.fail_status = absl::ResourceExhaustedError("out of device memory");
  StartServer(options);

  v1::BlockMeasurement m;
  EXPECT_EQ(Measure("unknown-job", 0, &m).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(StartJob("job-1", /*device=*/7).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  JobConfig bad = FakeJobConfig();
  bad.model_dir = "bad-model";
  EXPECT_EQ(StartJob("job-1", 0, bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  ASSERT_TRUE(StartJob("job-1").ok());
  std::string kinds, data;
  EXPECT_EQ(Quantize("job-1", 0, &kinds, &data).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);  // Not measured.
  ASSERT_TRUE(Measure("job-1", 0, &m).ok());
  ASSERT_TRUE(Quantize("job-1", 0, &kinds, &data).ok());
  grpc::Status s = Measure("job-1", 1, &m);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(s.error_message(), "out of device memory");
  EXPECT_EQ(MetricValue(registry_, "baq_worker_rpcs_total",
                  {{"method", "Measure"}, {"code", "RESOURCE_EXHAUSTED"}}),
            1);
}

TEST_F(WorkerServiceTest, EvaluatesOnTheJobsEngine) {
  FakeEngineOptions options;
  options.perplexity = 23.5;
  StartServer(options);
  auto evaluate = [&](const std::string& job, const std::string& dir, v1::EvaluateResponse* resp) {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    v1::EvaluateRequest req;
    req.set_job_id(job);
    req.set_model_dir(dir);
    req.set_text_file("/eval.txt");
    req.set_seqlen(64);
    return stub_->Evaluate(&ctx, req, resp);
  };
  v1::EvaluateResponse resp;
  EXPECT_EQ(evaluate("job-1", "/staged", &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(StartJob("job-1").ok());
  grpc::Status s = evaluate("job-1", "/staged", &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.perplexity(), 23.5);
  EXPECT_EQ(evaluate("job-1", "missing", &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(log_.entries(), ::testing::Contains("cpu: evaluate /staged /eval.txt 64"));
  EXPECT_EQ(
      MetricValue(registry_, "baq_worker_rpcs_total", {{"method", "Evaluate"}, {"code", "OK"}}),
      1);
}

TEST_F(WorkerServiceTest, ResetDropsTheEngineAndIsIdempotent) {
  StartServer(FakeEngineOptions());
  ASSERT_TRUE(StartJob("job-1").ok());
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    v1::ResetJobRequest req;
    req.set_job_id("job-1");
    v1::ResetJobResponse resp;
    EXPECT_TRUE(stub_->ResetJob(&ctx, req, &resp).ok());
  }
  v1::BlockMeasurement m;
  EXPECT_EQ(Measure("job-1", 0, &m).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(log_.entries(), ElementsAre("cpu: start", "cpu: reset"));
  EXPECT_EQ(MetricValue(registry_, "baq_worker_engines", {}), 0);
}

TEST_F(WorkerServiceTest, ShutdownFreesEnginesOnTheirDevice) {
  StartServer(FakeEngineOptions(), {"cpu", "cuda:0"});
  ASSERT_TRUE(StartJob("job-1", 1).ok());
  server_->Shutdown();
  EXPECT_THAT(log_.entries(), ElementsAre("cuda:0: start", "cuda:0: reset"));
  v1::BlockMeasurement m;
  EXPECT_EQ(Measure("job-1", 0, &m).error_code(), grpc::StatusCode::UNAVAILABLE);
}

// The fake engine offers neither target switching nor sharded calibration:
// the RPCs that need them answer FAILED_PRECONDITION naming the capability.
TEST_F(WorkerServiceTest, MissingCapabilityIsFailedPrecondition) {
  StartServer(FakeEngineOptions{});
  ASSERT_TRUE(StartJob("job-1").ok());
  {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    v1::MeasureRequest req;
    req.set_job_id("job-1");
    req.set_block(0);
    req.set_target_bits(3);
    v1::BlockMeasurement resp;
    grpc::Status s = stub_->Measure(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(s.error_message(), ::testing::HasSubstr("no bit-target switching capability"));
  }
  grpc::ClientContext ctx;
  SetDeadline(ctx);
  v1::ExportShardInputsRequest req;
  req.set_job_id("job-1");
  req.set_block(0);
  auto reader = stub_->ExportShardInputs(&ctx, req);
  v1::Chunk chunk;
  while (reader->Read(&chunk)) {
  }
  grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), ::testing::HasSubstr("no sharded calibration capability"));
}

}  // namespace
}  // namespace baq::worker
