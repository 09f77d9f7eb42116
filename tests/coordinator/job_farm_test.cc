// The farm end to end inside one process: a JobManager with the real
// WorkerPool over three gRPC worker servers (fake engines,
// tests/fakes/fake_worker_service.h) registered in a WorkerRegistry. Six
// jobs from two tenants run in priority and round-robin order, every job
// runs on every live worker, and a worker that registers mid-run takes part
// in the jobs that start after it.
#include <grpcpp/grpcpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/job_manager.h"
#include "coordinator/worker_pool.h"
#include "coordinator/worker_registry.h"
#include "tests/fakes/fake_job_config.h"
#include "tests/fakes/fake_job_execution.h"
#include "tests/fakes/fake_worker_server.h"
#include "tests/fakes/fake_worker_service.h"
#include "tests/testing/await_job.h"

namespace baq::coordinator {
namespace {

using ::baq::testing::AwaitJobState;
using ::baq::testing::ExecutionGate;
using ::baq::testing::FakeEngineLog;
using ::baq::testing::FakeEngineOptions;
using ::baq::testing::FakeJobConfig;
using ::baq::testing::FakeWorker;
using ::baq::testing::FakeWorkerService;

// What each job saw when it started: its name and how many workers it got.
struct Start {
  std::string name;
  size_t engines = 0;
  bool operator==(const Start& o) const { return name == o.name && engines == o.engines; }
};

// An execution that really uses its engines over gRPC (Start and Measure of
// block 0 on every worker, so a job without live workers fails), then waits
// at the gate like the other fakes.
class FarmExecution final : public JobExecution {
 public:
  FarmExecution(std::vector<BlockEngine*> engines, std::unique_ptr<JobExecution> gated,
                JobConfig config)
      : engines_(std::move(engines)), gated_(std::move(gated)), config_(std::move(config)) {}

  absl::StatusOr<JobSummary> Run() override {
    for (BlockEngine* e : engines_) {
      if (absl::Status s = e->Start(config_); !s.ok()) return s;
      absl::StatusOr<BlockMeasurement> m = e->Measure(0);
      if (!m.ok()) return m.status();
    }
    return gated_->Run();
  }
  void Cancel() override { gated_->Cancel(); }

 private:
  std::vector<BlockEngine*> engines_;
  std::unique_ptr<JobExecution> gated_;
  const JobConfig config_;
};

class JobFarmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) AddWorker();
    JobManagerOptions options;
    options.max_concurrent_jobs = 1;
    JobManagerDeps deps;
    ExecutionFactory gated = gate_.Factory(/*num_blocks=*/1);
    deps.execution_factory = [this, gated](const JobConfig& config,
                                           std::vector<BlockEngine*> engines,
                                           JobRunner::ProgressFn progress) {
      {
        absl::MutexLock lock(&mu_);
        starts_.push_back({config.output_dir, engines.size()});
      }
      return std::make_unique<FarmExecution>(engines, gated(config, engines, std::move(progress)),
                                             config);
    };
    deps.engine_provider = pool_.AsProvider();
    deps.abort_in_flight = [this] { pool_.AbortAll(); };
    deps.memory_capacity = WorkerMemoryCapacity(&registry_, 0);
    auto jobs = JobManager::Create(options, std::move(deps));
    ASSERT_TRUE(jobs.ok()) << jobs.status();
    jobs_ = *std::move(jobs);
  }

  void TearDown() override {
    jobs_.reset();
    workers_.clear();
  }

  void AddWorker() {
    workers_.push_back(std::make_unique<FakeWorker>(&log_));
    ASSERT_TRUE(registry_.Register(workers_.back()->address(), {"cpu"}, int64_t{1} << 30).ok());
  }

  std::vector<Start> starts() {
    absl::MutexLock lock(&mu_);
    return starts_;
  }

  FakeEngineLog log_;
  std::vector<std::unique_ptr<FakeWorker>> workers_;
  WorkerRegistry registry_{WorkerRegistryOptions()};
  WorkerPool pool_{&registry_, WorkerPoolOptions()};
  ExecutionGate gate_;
  absl::Mutex mu_;
  std::vector<Start> starts_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<JobManager> jobs_;
};

TEST_F(JobFarmTest, SixJobsTwoTenantsThreeWorkersThenAFourthJoins) {
  auto first = jobs_->Submit("", FakeJobConfig("first"), SubmitOptions{"alice", 0, {}});
  ASSERT_TRUE(first.ok());
  AwaitJobState(*jobs_, first->id, JobState::kRunning);
  struct Spec {
    const char* name;
    const char* tenant;
    int priority;
  };
  const Spec specs[] = {{"a1", "alice", 0}, {"a2", "alice", 0}, {"b1", "bob", 0},
                        {"b2", "bob", 0},   {"a3", "alice", 2}, {"b3", "bob", 0}};
  std::map<std::string, std::string> ids;
  for (const Spec& s : specs) {
    auto job = jobs_->Submit(absl::StrCat("req-", s.name), FakeJobConfig(s.name),
                             SubmitOptions{s.tenant, s.priority, {}});
    ASSERT_TRUE(job.ok()) << job.status();
    ids[s.name] = job->id;
  }
  // alice was served last ("first"), so after the priority-2 job bob leads.
  EXPECT_EQ(jobs_->Get(ids["a3"])->queue_position, 0);
  EXPECT_EQ(jobs_->Get(ids["b1"])->queue_position, 1);
  EXPECT_EQ(jobs_->Get(ids["a1"])->queue_position, 2);
  // A worker joins while "first" runs: the queued jobs get it.
  AddWorker();
  gate_.Open(1);
  for (const auto& [name, id] : ids) {
    JobRecord r = AwaitJobState(*jobs_, id, JobState::kSucceeded);
    ASSERT_TRUE(r.summary.has_value());
    EXPECT_EQ(r.summary->output_dir, name);
  }
  const std::vector<Start> expected = {{"first", 3}, {"a3", 4}, {"b1", 4}, {"a1", 4},
                                       {"b2", 4},    {"a2", 4}, {"b3", 4}};
  // Positions shown while "first" ran predicted this order.
  EXPECT_EQ(jobs_->Get(ids["b3"])->queue_position, -1);
  EXPECT_EQ(starts(), expected);
  // Every job started and measured on every worker it was given.
  int starts_seen = 0;
  for (const std::string& e : log_.entries()) starts_seen += e == "start" || absl::EndsWith(e, ": start");
  EXPECT_EQ(starts_seen, 3 + 6 * 4);
}

}  // namespace
}  // namespace baq::coordinator
