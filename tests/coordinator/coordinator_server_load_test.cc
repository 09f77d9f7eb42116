// Load on a real CoordinatorServer (localhost:0) over real gRPC: 200 small
// jobs submitted from 8 client threads, each followed to its end with Watch,
// plus idempotent resubmits racing from 2 threads. Every job must reach a
// terminal state exactly once: none lost, none duplicated, none run twice.
// The execution is the fake from tests/fakes (no LibTorch work).
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/barrier.h"
#include "absl/synchronization/mutex.h"
#include "baq/v1/job.grpc.pb.h"
#include "coordinator/coordinator_server.h"
#include "proto/convert.h"
#include "tests/fakes/fake_job_config.h"
#include "tests/fakes/fake_job_execution.h"
#include "tests/testing/test_paths.h"

namespace baq::coordinator {
namespace {

constexpr int kThreads = 8;
constexpr int kJobsPerThread = 25;  // 200 in all.
constexpr int kRacedRequests = 20;  // Each submitted by 2 threads at once.

JobConfig TestConfig(int n) {
  return baq::testing::FakeJobConfig(absl::StrCat("/tmp/out/job-", n));
}

class LoadClient {
 public:
  explicit LoadClient(int port)
      : stub_(v1::JobService::NewStub(grpc::CreateChannel(absl::StrCat("localhost:", port),
                                                          grpc::InsecureChannelCredentials()))) {}

  grpc::Status Submit(const std::string& request_id, int n, v1::Job* job) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::SubmitJobRequest req;
    req.set_request_id(request_id);
    ToProto(TestConfig(n), req.mutable_spec());
    return stub_->Submit(&ctx, req, job);
  }

  // Follows the job to the end; returns the last event's state.
  v1::JobState WatchToEnd(const std::string& id, grpc::Status* status) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(40));
    v1::WatchJobRequest req;
    req.set_id(id);
    auto reader = stub_->Watch(&ctx, req);
    v1::JobEvent event;
    v1::JobState last = v1::JOB_STATE_UNSPECIFIED;
    while (reader->Read(&event)) last = event.state();
    *status = reader->Finish();
    return last;
  }

  v1::JobService::Stub& stub() { return *stub_; }

 private:
  std::unique_ptr<v1::JobService::Stub> stub_;
};

TEST(CoordinatorServerLoadTest, TwoHundredJobsFromEightClientsNoneLostOrDuplicated) {
  testing::ExecutionGate gate;
  gate.Open(1'000'000);  // Jobs run through as fast as the manager schedules them.
  prometheus::Registry prometheus;
  CoordinatorMetrics metrics(prometheus);
  WorkerRegistry registry{WorkerRegistryOptions()};
  JobManagerDeps deps;
  deps.execution_factory = gate.Factory(/*num_blocks=*/3);
  deps.engine_provider = baq::testing::NoEngineProvider();
  deps.metrics = &metrics;
  JobManagerOptions job_options;
  job_options.max_concurrent_jobs = 4;
  job_options.data_dir = baq::testing::MakeScratchDir();  // Persist every transition.
  auto jobs = JobManager::Create(job_options, std::move(deps));
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  CoordinatorServerOptions options;
  options.listen_address = "localhost:0";
  auto server = CoordinatorServer::Start(options, {jobs->get(), &registry, &metrics, {}});
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();

  absl::Mutex mu;
  std::map<std::string, std::string> job_by_request;  // Guarded by mu.
  std::vector<std::string> errors;                     // Guarded by mu.
  auto fail = [&](std::string message) {
    absl::MutexLock lock(&mu);
    errors.push_back(std::move(message));
  };
  // Records request -> job; a request seen twice must map to the same job.
  auto record = [&](const std::string& request_id, const std::string& job_id) {
    absl::MutexLock lock(&mu);
    auto [it, inserted] = job_by_request.emplace(request_id, job_id);
    if (!inserted && it->second != job_id) {
      errors.push_back(absl::StrCat(request_id, " -> ", it->second, " and ", job_id));
    }
  };

  absl::Barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      LoadClient client(port);
      start.Block();
      std::vector<std::string> mine;
      for (int i = 0; i < kJobsPerThread; ++i) {
        const int n = t * kJobsPerThread + i;
        v1::Job job;
        grpc::Status s = client.Submit(absl::StrCat("load-", n), n, &job);
        if (!s.ok()) {
          fail(absl::StrCat("submit ", n, ": ", s.error_message()));
          continue;
        }
        record(absl::StrCat("load-", n), job.id());
        mine.push_back(job.id());
      }
      // Threads 2k and 2k+1 race on the same request ids.
      for (int r = 0; r < kRacedRequests / (kThreads / 2); ++r) {
        const int n = 1000 + (t / 2) * 100 + r;
        v1::Job job;
        grpc::Status s = client.Submit(absl::StrCat("race-", n), n, &job);
        if (!s.ok()) {
          fail(absl::StrCat("race submit ", n, ": ", s.error_message()));
          continue;
        }
        record(absl::StrCat("race-", n), job.id());
        mine.push_back(job.id());
      }
      for (const std::string& id : mine) {
        grpc::Status s;
        const v1::JobState state = client.WatchToEnd(id, &s);
        if (!s.ok() || state != v1::JOB_STATE_SUCCEEDED) {
          fail(absl::StrCat("watch ", id, ": state ", state, ", ", s.error_message()));
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_THAT(errors, ::testing::IsEmpty());

  constexpr size_t kExpectedJobs = kThreads * kJobsPerThread + kRacedRequests;
  std::set<std::string> ids;
  for (const auto& [request, id] : job_by_request) ids.insert(id);
  EXPECT_EQ(job_by_request.size(), kExpectedJobs);
  EXPECT_EQ(ids.size(), kExpectedJobs);  // No two requests share a job.

  // The server's view: exactly these jobs, each succeeded, each run once.
  LoadClient client(port);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ListJobsResponse listed;
  ASSERT_TRUE(client.stub().List(&ctx, v1::ListJobsRequest(), &listed).ok());
  std::set<std::string> listed_ids;
  for (const v1::Job& job : listed.jobs()) {
    listed_ids.insert(job.id());
    EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.id();
    EXPECT_EQ(job_by_request.at(job.request_id()), job.id());
  }
  EXPECT_EQ(listed_ids, ids);
  EXPECT_EQ(gate.runs(), static_cast<int>(kExpectedJobs));

  (*server)->Shutdown();
}

}  // namespace
}  // namespace baq::coordinator
