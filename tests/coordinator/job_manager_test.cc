// JobManager, the coordinator's core, with a hand-driven fake execution:
// idempotent submit, cancel, watch events, failure, persistence and reload.
#include "coordinator/job_manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <optional>

#include "tests/fakes/fake_block_engine.h"
#include "tests/fakes/fake_job_execution.h"
#include "tests/testing/test_paths.h"

namespace baq::coordinator {
namespace {

using ::baq::testing::ExecutionGate;
using ::baq::testing::FakeBlockEngine;
using ::baq::testing::FakeEngineOptions;
using ::testing::ElementsAre;

constexpr absl::Duration kWait = absl::Seconds(20);

JobConfig TestConfig(const std::string& model = "/models/fake") {
  JobConfig config;
  config.model_dir = model;
  config.output_dir = "/tmp/out";
  config.calibration.files = {"calib.txt"};
  return config;
}

// Blocks until the job is in `state` (or terminal); returns its record.
JobRecord AwaitState(JobManager& jobs, const std::string& id, JobState state) {
  absl::Mutex mu;
  std::optional<JobRecord> last;
  absl::StatusOr<int64_t> handle = jobs.Watch(id, [&](const JobRecord& r) {
    absl::MutexLock lock(&mu);
    last = r;
  });
  EXPECT_TRUE(handle.ok());
  JobRecord result;
  {
    absl::MutexLock lock(&mu);
    auto done = [&]() {
      return last.has_value() && (last->state == state || IsTerminal(last->state));
    };
    mu.AwaitWithTimeout(absl::Condition(&done), kWait);
    result = *last;
  }
  if (handle.ok()) jobs.Unwatch(*handle);  // Not under mu: the watcher takes it.
  EXPECT_EQ(JobStateName(result.state), JobStateName(state)) << result.error;
  return result;
}

double Gauge(prometheus::Registry& registry, const std::string& name, const std::string& state) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      if (state.empty() || (!m.label.empty() && m.label[0].value == state)) {
        return m.gauge.value + m.counter.value;
      }
    }
  }
  return -1;
}

class JobManagerTest : public ::testing::Test {
 protected:
  std::unique_ptr<JobManager> Make(const std::string& data_dir = "",
                                   absl::Status provider_error = absl::OkStatus()) {
    JobManagerOptions options;
    options.data_dir = data_dir;
    JobManagerDeps deps;
    deps.execution_factory = gate_.Factory(/*num_blocks=*/3);
    deps.engine_provider =
        [this, provider_error](
            const std::string&) -> absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>> {
      if (!provider_error.ok()) return provider_error;
      std::vector<std::unique_ptr<BlockEngine>> engines;
      for (int i = 0; i < 2; ++i) {
        engines.push_back(std::make_unique<FakeBlockEngine>(FakeEngineOptions(), &log_));
      }
      return engines;
    };
    deps.metrics = &metrics_;
    auto jobs = JobManager::Create(options, std::move(deps));
    EXPECT_TRUE(jobs.ok()) << jobs.status();
    return jobs.ok() ? *std::move(jobs) : nullptr;
  }

  ExecutionGate gate_;
  baq::testing::FakeEngineLog log_;
  prometheus::Registry registry_;
  CoordinatorMetrics metrics_{registry_};
};

TEST_F(JobManagerTest, RunsAJobToSuccess) {
  auto jobs = Make();
  absl::StatusOr<JobRecord> job = jobs->Submit("req-1", TestConfig());
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_THAT(job->id, ::testing::StartsWith("job-"));
  gate_.Open(3);
  JobRecord done = AwaitState(*jobs, job->id, JobState::kSucceeded);
  ASSERT_TRUE(done.summary.has_value());
  EXPECT_EQ(done.summary->achieved_bits, 3.0);
  EXPECT_EQ(done.progress.percent, 100);
  EXPECT_EQ(gate_.last_engine_count(), 2u);
  EXPECT_EQ(Gauge(registry_, "baq_coordinator_jobs", "succeeded"), 1);
  EXPECT_EQ(Gauge(registry_, "baq_coordinator_jobs", "running"), 0);
  EXPECT_EQ(Gauge(registry_, "baq_coordinator_jobs_submitted_total", ""), 1);
}

TEST_F(JobManagerTest, SubmitIsIdempotentByRequestId) {
  auto jobs = Make();
  auto first = jobs->Submit("req-1", TestConfig());
  auto retry = jobs->Submit("req-1", TestConfig());
  ASSERT_TRUE(first.ok() && retry.ok());
  EXPECT_EQ(retry->id, first->id);
  EXPECT_EQ(jobs->Submit("req-1", TestConfig("/models/other")).status().code(),
            absl::StatusCode::kAlreadyExists);
  auto anon1 = jobs->Submit("", TestConfig());
  auto anon2 = jobs->Submit("", TestConfig());
  ASSERT_TRUE(anon1.ok() && anon2.ok());
  EXPECT_NE(anon1->id, anon2->id);
  EXPECT_EQ(jobs->List().size(), 3u);
  EXPECT_EQ(Gauge(registry_, "baq_coordinator_jobs_submitted_total", ""), 3);
}

TEST_F(JobManagerTest, RejectsInvalidConfigAndUnknownIds) {
  auto jobs = Make();
  JobConfig bad = TestConfig();
  bad.quant.target_bits = 11;
  EXPECT_EQ(jobs->Submit("r", bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(jobs->Get("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(jobs->Cancel("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(jobs->Watch("nope", [](const JobRecord&) {}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(JobManagerTest, CancelsQueuedAndRunningJobs) {
  auto jobs = Make();
  auto running = jobs->Submit("a", TestConfig());
  auto queued = jobs->Submit("b", TestConfig());
  ASSERT_TRUE(running.ok() && queued.ok());
  AwaitState(*jobs, running->id, JobState::kRunning);

  auto cancelled = jobs->Cancel(queued->id);
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state, JobState::kCancelled);                // At once.
  EXPECT_EQ(jobs->Cancel(running->id)->state, JobState::kRunning);  // At a block boundary.
  JobRecord r = AwaitState(*jobs, running->id, JobState::kCancelled);
  EXPECT_EQ(r.error.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(gate_.runs(), 1);  // The queued job never ran.
  // Cancelling a finished job changes nothing.
  EXPECT_EQ(jobs->Cancel(running->id)->state, JobState::kCancelled);
}

TEST_F(JobManagerTest, WatchSeesSnapshotThenProgressThenTheTerminalEvent) {
  auto jobs = Make();
  auto job = jobs->Submit("a", TestConfig());
  ASSERT_TRUE(job.ok());
  absl::Mutex mu;
  std::vector<std::pair<JobState, double>> events;
  auto handle = jobs->Watch(job->id, [&](const JobRecord& r) {
    absl::MutexLock lock(&mu);
    events.emplace_back(r.state, r.progress.percent);
  });
  ASSERT_TRUE(handle.ok());
  gate_.Open(3);
  AwaitState(*jobs, job->id, JobState::kSucceeded);
  absl::MutexLock lock(&mu);
  ASSERT_GE(events.size(), 5u);
  // The snapshot: queued, or running if a runner thread was quicker.
  EXPECT_THAT(events.front().first, ::testing::AnyOf(JobState::kQueued, JobState::kRunning));
  EXPECT_EQ(events.back().first, JobState::kSucceeded);
  for (size_t i = 1; i < events.size(); ++i) EXPECT_GE(events[i].second, events[i - 1].second);
}

TEST_F(JobManagerTest, ExecutionAndProviderFailuresFailTheJob) {
  auto jobs = Make();
  auto job = jobs->Submit("a", TestConfig("fail"));
  ASSERT_TRUE(job.ok());
  gate_.Open(3);
  JobRecord r = AwaitState(*jobs, job->id, JobState::kFailed);
  EXPECT_EQ(r.error.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(r.progress.message, "injected failure");

  auto no_workers = Make("", absl::UnavailableError("0 live workers"));
  auto job2 = no_workers->Submit("a", TestConfig());
  ASSERT_TRUE(job2.ok());
  EXPECT_EQ(AwaitState(*no_workers, job2->id, JobState::kFailed).error.code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(JobManagerTest, ResetsEveryEngineAfterTheRun) {
  auto jobs = Make();
  auto job = jobs->Submit("a", TestConfig());
  ASSERT_TRUE(job.ok());
  gate_.Open(3);
  AwaitState(*jobs, job->id, JobState::kSucceeded);
  // The fakes were never started by the fake execution, so Reset is the
  // only call they saw (and logs nothing); what matters is no crash and the
  // engines were handed out and freed.
  EXPECT_EQ(gate_.last_engine_count(), 2u);
}

TEST_F(JobManagerTest, RestartReloadsJobsFromTheDataDir) {
  const std::string dir = baq::testing::MakeScratchDir();
  std::string done_id, queued_id, running_id;
  {
    auto jobs = Make(dir);
    auto done = jobs->Submit("done", TestConfig());
    ASSERT_TRUE(done.ok());
    done_id = done->id;
    gate_.Open(3);
    AwaitState(*jobs, done_id, JobState::kSucceeded);
  }
  {
    // A job that was RUNNING when the coordinator died, written as it left it.
    JobRecord running;
    running.id = "job-crashed";
    running.request_id = "crashed";
    running.config = TestConfig();
    running.state = JobState::kRunning;
    running.create_time = absl::Now();
    ASSERT_TRUE(JobStore(dir).Save(running).ok());
    running_id = running.id;
  }
  ExecutionGate closed;
  {
    // A manager whose gate stays closed leaves its second job QUEUED.
    JobManagerOptions options;
    options.data_dir = dir;
    JobManagerDeps deps;
    deps.execution_factory = closed.Factory(3);
    deps.engine_provider = [](const std::string&) {
      return absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>>(
          std::vector<std::unique_ptr<BlockEngine>>());
    };
    auto jobs = JobManager::Create(options, std::move(deps));
    ASSERT_TRUE(jobs.ok());
    auto first = (*jobs)->Submit("busy", TestConfig());
    auto queued = (*jobs)->Submit("queued", TestConfig());
    ASSERT_TRUE(first.ok() && queued.ok());
    queued_id = queued->id;
    AwaitState(**jobs, first->id, JobState::kRunning);
  }  // Shutdown: "busy" is interrupted, "queued" stays queued on disk.

  auto jobs = Make(dir);
  std::vector<std::string> ids;
  for (const JobRecord& r : jobs->List()) ids.push_back(r.id);
  ASSERT_EQ(ids.size(), 4u);
  EXPECT_EQ(jobs->Get(done_id)->state, JobState::kSucceeded);
  EXPECT_TRUE(jobs->Get(done_id)->summary.has_value());
  EXPECT_EQ(jobs->Get(running_id)->state, JobState::kFailed);
  EXPECT_EQ(jobs->Get(running_id)->error.code(), absl::StatusCode::kAborted);
  // The request-id index survives the restart.
  EXPECT_EQ(jobs->Submit("done", TestConfig())->id, done_id);
  // The queued job runs on the new manager.
  AwaitState(*jobs, queued_id, JobState::kSucceeded);
}

}  // namespace
}  // namespace baq::coordinator
