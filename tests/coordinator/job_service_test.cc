// JobService and the worker registry service on a real CoordinatorServer
// (localhost:0) with real stubs and deadlines; jobs run on a hand-driven
// fake execution.
#include "coordinator/job_service.h"

#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "baq/v1/job.grpc.pb.h"
#include "baq/v1/worker.grpc.pb.h"
#include "common/version.h"
#include "coordinator/coordinator_server.h"
#include "proto/convert.h"
#include "tests/fakes/fake_job_config.h"
#include "tests/fakes/fake_job_execution.h"

namespace baq::coordinator {
namespace {

using ::baq::testing::ExecutionGate;
using ::baq::testing::FakeJobConfig;
using ::testing::HasSubstr;

class JobServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    JobManagerDeps deps;
    deps.execution_factory = gate_.Factory(/*num_blocks=*/4);
    deps.engine_provider = baq::testing::NoEngineProvider();
    deps.metrics = &metrics_;
    auto jobs = JobManager::Create(JobManagerOptions(), std::move(deps));
    ASSERT_TRUE(jobs.ok());
    jobs_ = *std::move(jobs);
    CoordinatorServerOptions options;
    options.listen_address = "localhost:0";
    auto server = CoordinatorServer::Start(options, {jobs_.get(), &registry_, &metrics_});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("localhost:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    jobs_stub_ = v1::JobService::NewStub(channel_);
    registry_stub_ = v1::CoordinatorService::NewStub(channel_);
  }

  void TearDown() override {
    gate_.Open(100);
    server_.reset();  // Stop serving before the manager goes.
    jobs_.reset();
  }

  static void SetDeadline(grpc::ClientContext& ctx) {
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  }

  grpc::Status Submit(const std::string& request_id, const JobConfig& config, v1::Job* job) {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    v1::SubmitJobRequest req;
    req.set_request_id(request_id);
    ToProto(config, req.mutable_spec());
    return jobs_stub_->Submit(&ctx, req, job);
  }

  // Reads a Watch stream to its end.
  grpc::Status Watch(const std::string& id, std::vector<v1::JobEvent>* events) {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    v1::WatchJobRequest req;
    req.set_id(id);
    auto reader = jobs_stub_->Watch(&ctx, req);
    v1::JobEvent event;
    while (reader->Read(&event)) {
      events->push_back(event);
      // Let the job run once the watcher has seen where it starts.
      if (events->size() == 1) gate_.Open(4);
    }
    return reader->Finish();
  }

  ExecutionGate gate_;
  prometheus::Registry prometheus_;
  CoordinatorMetrics metrics_{prometheus_};
  WorkerRegistry registry_{WorkerRegistryOptions()};
  std::unique_ptr<JobManager> jobs_;
  std::unique_ptr<CoordinatorServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> jobs_stub_;
  std::unique_ptr<v1::CoordinatorService::Stub> registry_stub_;
};

TEST_F(JobServiceTest, SubmitWatchGetList) {
  v1::Job job;
  ASSERT_TRUE(Submit("req-1", FakeJobConfig(), &job).ok());
  EXPECT_FALSE(job.id().empty());
  EXPECT_EQ(job.spec().model_dir(), "/models/fake");
  EXPECT_GT(job.create_time_unix_ms(), 0);

  std::vector<v1::JobEvent> events;
  grpc::Status s = Watch(job.id(), &events);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.back().state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(events.back().percent(), 100);
  EXPECT_EQ(events.back().job_id(), job.id());

  grpc::ClientContext ctx;
  SetDeadline(ctx);
  v1::GetJobRequest get;
  get.set_id(job.id());
  v1::Job got;
  ASSERT_TRUE(jobs_stub_->Get(&ctx, get, &got).ok());
  EXPECT_EQ(got.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_DOUBLE_EQ(got.summary().achieved_bits(), 3.0);
  EXPECT_GT(got.end_time_unix_ms(), 0);

  grpc::ClientContext list_ctx;
  SetDeadline(list_ctx);
  v1::ListJobsResponse list;
  ASSERT_TRUE(jobs_stub_->List(&list_ctx, v1::ListJobsRequest(), &list).ok());
  ASSERT_EQ(list.jobs_size(), 1);
  EXPECT_EQ(list.jobs(0).id(), job.id());
}

TEST_F(JobServiceTest, SubmitIsIdempotentAndValidates) {
  v1::Job first, retry, other;
  ASSERT_TRUE(Submit("req-1", FakeJobConfig(), &first).ok());
  ASSERT_TRUE(Submit("req-1", FakeJobConfig(), &retry).ok());
  EXPECT_EQ(retry.id(), first.id());
  JobConfig changed = FakeJobConfig();
  changed.quant.target_bits = 4;
  EXPECT_EQ(Submit("req-1", changed, &other).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  JobConfig bad = FakeJobConfig();
  bad.calibration.files.clear();
  EXPECT_EQ(Submit("req-2", bad, &other).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(JobServiceTest, CancelAndUnknownIds) {
  v1::Job job;
  ASSERT_TRUE(Submit("", FakeJobConfig(), &job).ok());
  grpc::ClientContext ctx;
  SetDeadline(ctx);
  v1::CancelJobRequest cancel;
  cancel.set_id(job.id());
  v1::Job cancelled;
  ASSERT_TRUE(jobs_stub_->Cancel(&ctx, cancel, &cancelled).ok());
  std::vector<v1::JobEvent> events;
  ASSERT_TRUE(Watch(job.id(), &events).ok());
  EXPECT_EQ(events.back().state(), v1::JOB_STATE_CANCELLED);

  grpc::ClientContext get_ctx;
  SetDeadline(get_ctx);
  v1::GetJobRequest get;
  get.set_id("no-such-job");
  v1::Job got;
  EXPECT_EQ(jobs_stub_->Get(&get_ctx, get, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  std::vector<v1::JobEvent> none;
  EXPECT_EQ(Watch("no-such-job", &none).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(JobServiceTest, ClientMayAbandonAWatch) {
  v1::Job job;
  ASSERT_TRUE(Submit("", FakeJobConfig(), &job).ok());
  {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    v1::WatchJobRequest req;
    req.set_id(job.id());
    auto reader = jobs_stub_->Watch(&ctx, req);
    v1::JobEvent event;
    ASSERT_TRUE(reader->Read(&event));  // The snapshot.
    ctx.TryCancel();
    while (reader->Read(&event)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  // The abandoned watcher is gone: the job still runs to the end and
  // another watcher sees it.
  std::vector<v1::JobEvent> events;
  ASSERT_TRUE(Watch(job.id(), &events).ok());
  EXPECT_EQ(events.back().state(), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(JobServiceTest, WorkersRegisterAndHeartbeat) {
  v1::RegisterWorkerRequest reg;
  reg.set_address("localhost:7001");
  reg.add_devices("cpu");
  reg.set_protocol_version(kWorkerProtocolVersion);
  v1::RegisterWorkerResponse lease;
  {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    ASSERT_TRUE(registry_stub_->RegisterWorker(&ctx, reg, &lease).ok());
  }
  EXPECT_FALSE(lease.lease().worker_id().empty());
  EXPECT_GT(lease.lease().ttl_seconds(), 0);
  EXPECT_EQ(registry_.LiveWorkers().size(), 1u);
  EXPECT_EQ(metrics_.workers().Value(), 1);

  auto heartbeat = [&](int64_t epoch) {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    v1::HeartbeatRequest req;
    req.set_worker_id(lease.lease().worker_id());
    req.set_epoch(epoch);
    v1::HeartbeatResponse resp;
    EXPECT_TRUE(registry_stub_->Heartbeat(&ctx, req, &resp).ok());
    return resp;
  };
  EXPECT_TRUE(heartbeat(lease.lease().epoch()).ok());
  v1::HeartbeatResponse stale = heartbeat(lease.lease().epoch() - 1);
  EXPECT_FALSE(stale.ok());
  EXPECT_TRUE(stale.reregister());

  grpc::ClientContext ctx;
  SetDeadline(ctx);
  reg.clear_devices();
  EXPECT_EQ(registry_stub_->RegisterWorker(&ctx, reg, &lease).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(JobServiceTest, RefusesAWorkerOfAnotherProtocolNamingBothVersions) {
  v1::RegisterWorkerRequest reg;
  reg.set_address("localhost:7002");
  reg.add_devices("cpu");
  reg.set_version("9.9.9");
  reg.set_protocol_version(kWorkerProtocolVersion + 1);
  v1::RegisterWorkerResponse lease;
  grpc::ClientContext ctx;
  SetDeadline(ctx);
  const grpc::Status s = registry_stub_->RegisterWorker(&ctx, reg, &lease);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr(absl::StrCat("protocol ", kWorkerProtocolVersion + 1,
                                                        " (baq 9.9.9)")));
  EXPECT_THAT(s.error_message(),
              HasSubstr(absl::StrCat("protocol ", kWorkerProtocolVersion, " (baq ", BaqVersion())));
  EXPECT_THAT(s.error_message(), HasSubstr("localhost:7002"));
  EXPECT_TRUE(registry_.LiveWorkers().empty());

  // A worker from before the handshake sends no version at all.
  reg.clear_version();
  reg.clear_protocol_version();
  grpc::ClientContext ctx2;
  SetDeadline(ctx2);
  const grpc::Status old = registry_stub_->RegisterWorker(&ctx2, reg, &lease);
  EXPECT_EQ(old.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(old.error_message(), HasSubstr("older than the version handshake"));
}

TEST_F(JobServiceTest, ServesTheStandardHealthService) {
  // grpc.health.v1.Health/Check with an empty HealthCheckRequest; the reply
  // {status: SERVING} encodes as field 1 varint 1.
  grpc::GenericStub stub(channel_);
  grpc::ClientContext ctx;
  SetDeadline(ctx);
  grpc::ByteBuffer request, response;
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
}

}  // namespace
}  // namespace baq::coordinator
