// JobManager, the coordinator's core, with a hand-driven fake execution:
// idempotent submit, cancel, watch events, failure, persistence and reload.
#include "coordinator/job_manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/job_store.h"
#include "tests/fakes/fake_block_engine.h"
#include "tests/fakes/fake_job_config.h"
#include "tests/fakes/fake_job_execution.h"
#include "tests/testing/await_job.h"
#include "tests/testing/test_paths.h"

namespace baq::coordinator {
namespace {

using ::baq::testing::AwaitJobState;
using ::baq::testing::ExecutionGate;
using ::baq::testing::FakeBlockEngine;
using ::baq::testing::FakeEngineOptions;
using ::testing::ElementsAre;

JobConfig TestConfig(const std::string& model = "/models/fake") {
  return baq::testing::FakeJobConfig("/tmp/out", model);
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
  JobRecord done = AwaitJobState(*jobs, job->id, JobState::kSucceeded);
  ASSERT_TRUE(done.summary.has_value());
  EXPECT_EQ(done.summary->achieved_bits, 3.0);
  EXPECT_EQ(done.progress.percent, 100);
  EXPECT_EQ(gate_.last_engine_count(), 2u);
  EXPECT_EQ(Gauge(registry_, "baq_coordinator_jobs", "succeeded"), 1);
  EXPECT_EQ(Gauge(registry_, "baq_coordinator_jobs", "running"), 0);
  EXPECT_EQ(Gauge(registry_, "baq_coordinator_jobs_submitted_total", ""), 1);
  // The per-job series (job_id label) end at the finished job's totals.
  EXPECT_EQ(Gauge(registry_, "baq_coordinator_job_blocks_done", job->id), 3);
  EXPECT_EQ(Gauge(registry_, "baq_coordinator_job_blocks_total", job->id), 3);
  EXPECT_EQ(Gauge(registry_, "baq_coordinator_job_eta_seconds", job->id), 0);
  EXPECT_EQ(Gauge(registry_, "baq_coordinator_job_worker_losses_total", job->id), 0);
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
  AwaitJobState(*jobs, running->id, JobState::kRunning);

  auto cancelled = jobs->Cancel(queued->id);
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state, JobState::kCancelled);                // At once.
  EXPECT_EQ(jobs->Cancel(running->id)->state, JobState::kRunning);  // At a block boundary.
  JobRecord r = AwaitJobState(*jobs, running->id, JobState::kCancelled);
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
  AwaitJobState(*jobs, job->id, JobState::kSucceeded);
  absl::MutexLock lock(&mu);
  ASSERT_GE(events.size(), 5u);
  // The snapshot: queued, or running if a runner thread was quicker.
  EXPECT_THAT(events.front().first, ::testing::AnyOf(JobState::kQueued, JobState::kRunning));
  EXPECT_EQ(events.back().first, JobState::kSucceeded);
  for (size_t i = 1; i < events.size(); ++i) EXPECT_GE(events[i].second, events[i - 1].second);
}

TEST_F(JobManagerTest, MissedEvaluationGateEndsFailedGateWithTheNumbers) {
  auto jobs = Make();
  JobConfig config = TestConfig("fail_gate");
  config.eval_gate.text_file = "/data/eval.txt";
  config.eval_gate.max_ppl = 30.0;
  auto job = jobs->Submit("g", config);
  ASSERT_TRUE(job.ok()) << job.status();
  gate_.Open(3);
  JobRecord r = AwaitJobState(*jobs, job->id, JobState::kFailedGate);
  EXPECT_TRUE(IsTerminal(r.state));
  EXPECT_EQ(r.error.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(r.error.message()), ::testing::HasSubstr("perplexity 42.5000 > limit 30"));
  EXPECT_FALSE(r.summary.has_value());
  EXPECT_EQ(Gauge(registry_, "baq_coordinator_jobs", "failed_gate"), 1);
  EXPECT_EQ(Gauge(registry_, "baq_coordinator_eval_gates_total", "failed"), 1);
  EXPECT_EQ(Gauge(registry_, "baq_coordinator_eval_gates_total", "passed"), 0);
  EXPECT_EQ(Gauge(registry_, "baq_coordinator_eval_gate_ppl", ""), 42.5);
}

TEST_F(JobManagerTest, ExecutionAndProviderFailuresFailTheJob) {
  auto jobs = Make();
  auto job = jobs->Submit("a", TestConfig("fail"));
  ASSERT_TRUE(job.ok());
  gate_.Open(3);
  JobRecord r = AwaitJobState(*jobs, job->id, JobState::kFailed);
  EXPECT_EQ(r.error.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(r.progress.message, "injected failure");

  auto no_workers = Make("", absl::UnavailableError("0 live workers"));
  auto job2 = no_workers->Submit("a", TestConfig());
  ASSERT_TRUE(job2.ok());
  EXPECT_EQ(AwaitJobState(*no_workers, job2->id, JobState::kFailed).error.code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(JobManagerTest, ResetsEveryEngineAfterTheRun) {
  auto jobs = Make();
  auto job = jobs->Submit("a", TestConfig());
  ASSERT_TRUE(job.ok());
  gate_.Open(3);
  AwaitJobState(*jobs, job->id, JobState::kSucceeded);
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
    AwaitJobState(*jobs, done_id, JobState::kSucceeded);
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
    deps.engine_provider = baq::testing::NoEngineProvider();
    auto jobs = JobManager::Create(options, std::move(deps));
    ASSERT_TRUE(jobs.ok());
    auto first = (*jobs)->Submit("busy", TestConfig());
    auto queued = (*jobs)->Submit("queued", TestConfig());
    ASSERT_TRUE(first.ok() && queued.ok());
    queued_id = queued->id;
    AwaitJobState(**jobs, first->id, JobState::kRunning);
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
  AwaitJobState(*jobs, queued_id, JobState::kSucceeded);
}


// Records the order in which executions are created (= jobs start), by the
// job's output_dir, and hands out the gate's fake executions.
class StartLog {
 public:
  ExecutionFactory Wrap(ExecutionFactory inner) {
    return [this, inner](const JobConfig& config, std::vector<BlockEngine*> engines,
                         JobRunner::ProgressFn progress) {
      {
        absl::MutexLock lock(&mu_);
        started_.push_back(config.output_dir);
      }
      return inner(config, std::move(engines), std::move(progress));
    };
  }
  std::vector<std::string> started() {
    absl::MutexLock lock(&mu_);
    return started_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> started_ ABSL_GUARDED_BY(mu_);
};

TEST_F(JobManagerTest, SixJobsFromTwoTenantsRunByPriorityThenRoundRobin) {
  StartLog log;
  JobManagerOptions options;
  options.max_concurrent_jobs = 1;
  JobManagerDeps deps;
  deps.execution_factory = log.Wrap(gate_.Factory(/*num_blocks=*/1));
  deps.engine_provider = baq::testing::NoEngineProvider();
  auto jobs_or = JobManager::Create(options, std::move(deps));
  ASSERT_TRUE(jobs_or.ok());
  JobManager& jobs = **jobs_or;
  // A job holds the only slot (the gate is closed) while the six queue up.
  auto blocker = jobs.Submit("", TestConfig());
  ASSERT_TRUE(blocker.ok());
  AwaitJobState(jobs, blocker->id, JobState::kRunning);
  struct Spec {
    const char* name;
    const char* tenant;
    int priority;
  };
  const Spec specs[] = {{"a1", "alice", 0}, {"a2", "alice", 0}, {"a3", "alice", 0},
                        {"b1", "bob", 0},   {"b2", "bob", 5},   {"b3", "bob", 0}};
  std::map<std::string, std::string> id_of;
  for (const Spec& spec : specs) {
    JobConfig config = TestConfig();
    config.output_dir = spec.name;
    auto job = jobs.Submit("", config, SubmitOptions{spec.tenant, spec.priority, {}});
    ASSERT_TRUE(job.ok()) << job.status();
    EXPECT_EQ(job->tenant, spec.tenant);
    id_of[spec.name] = job->id;
  }
  // Queue positions as `baq list` shows them; no job has finished yet, so
  // no queued ETA is known.
  const std::vector<std::string> expected = {"b2", "a1", "b1", "a2", "b3", "a3"};
  for (size_t i = 0; i < expected.size(); ++i) {
    absl::StatusOr<JobRecord> r = jobs.Get(id_of[expected[i]]);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->queue_position, static_cast<int>(i)) << expected[i];
    EXPECT_EQ(r->progress.eta, absl::InfiniteDuration());
  }
  gate_.Open(1);
  for (const auto& [name, id] : id_of) AwaitJobState(jobs, id, JobState::kSucceeded);
  std::vector<std::string> started = log.started();
  ASSERT_EQ(started.size(), 7u);
  started.erase(started.begin());  // The blocker.
  EXPECT_EQ(started, expected);
  EXPECT_EQ(jobs.Get(id_of["a1"])->queue_position, -1);
}

TEST_F(JobManagerTest, QueuedEtaIsListSchedulingWithTheMeanWallTime) {
  const std::string dir = baq::testing::MakeScratchDir();
  const absl::Time t0 = absl::UnixEpoch() + absl::Hours(1000);
  const JobStore store(dir);
  ASSERT_TRUE(store.Init().ok());
  for (int i = 0; i < 2; ++i) {  // Earlier jobs took 100 s and 200 s.
    JobRecord done;
    done.id = absl::StrCat("job-old-", i);
    done.config = TestConfig();
    done.state = JobState::kSucceeded;
    done.create_time = done.start_time = t0;
    done.end_time = t0 + absl::Seconds(100 * (i + 1));
    ASSERT_TRUE(store.Save(done).ok());
  }
  JobManagerOptions options;
  options.data_dir = dir;
  options.max_concurrent_jobs = 1;
  JobManagerDeps deps;
  deps.execution_factory = gate_.Factory(/*num_blocks=*/2);
  deps.engine_provider = baq::testing::NoEngineProvider();
  auto jobs_or = JobManager::Create(options, std::move(deps));
  ASSERT_TRUE(jobs_or.ok());
  JobManager& jobs = **jobs_or;
  auto running = jobs.Submit("", TestConfig());
  ASSERT_TRUE(running.ok());
  AwaitJobState(jobs, running->id, JobState::kRunning);  // Its own ETA: unknown.
  auto second = jobs.Submit("", TestConfig());
  auto third = jobs.Submit("", TestConfig());
  ASSERT_TRUE(second.ok() && third.ok());
  // Slot free after the running job (unknown ETA: one mean, 150 s), then one
  // mean per queued job ahead.
  EXPECT_EQ(second->queue_position, 0);
  EXPECT_EQ(jobs.Get(second->id)->progress.eta, absl::Seconds(300));
  EXPECT_EQ(jobs.Get(third->id)->queue_position, 1);
  EXPECT_EQ(jobs.Get(third->id)->progress.eta, absl::Seconds(450));
  gate_.Open(2);
  AwaitJobState(jobs, third->id, JobState::kSucceeded);
}

TEST_F(JobManagerTest, RetentionRemovesFinishedJobsStateAfterAJob) {
  const std::string dir = baq::testing::MakeScratchDir();
  const JobStore store(dir);
  ASSERT_TRUE(store.Init().ok());
  JobRecord old;
  old.id = "job-old";
  old.config = TestConfig();
  old.state = JobState::kFailed;
  old.error = absl::InternalError("boom");
  old.create_time = old.start_time = old.end_time = absl::Now() - absl::Hours(1);
  ASSERT_TRUE(store.Save(old).ok());
  baq::testing::WriteFileOrDie(dir + "/jobs/job-old/block-0.ckpt", std::string(100, 'c'));
  JobManagerOptions options;
  options.data_dir = dir;
  options.retention.max_bytes = 10;
  JobManagerDeps deps;
  deps.execution_factory = gate_.Factory(/*num_blocks=*/1);
  deps.engine_provider = baq::testing::NoEngineProvider();
  auto jobs = JobManager::Create(options, std::move(deps));
  ASSERT_TRUE(jobs.ok());
  // Collected at start; the record stays.
  EXPECT_FALSE(std::filesystem::exists(dir + "/jobs/job-old"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/jobs/job-old.json"));
  EXPECT_EQ((*jobs)->Get("job-old")->state, JobState::kFailed);
}

TEST_F(JobManagerTest, SubmitRejectsAJobThatCanNeverFitAndAdmitsByMemory) {
  StartLog log;
  JobManagerOptions options;
  options.max_concurrent_jobs = 3;
  options.schedule_poll = absl::Milliseconds(20);
  JobManagerDeps deps;
  deps.execution_factory = log.Wrap(gate_.Factory(/*num_blocks=*/1));
  deps.engine_provider = baq::testing::NoEngineProvider();
  absl::Mutex capacity_mu;
  int64_t capacity = 1000;
  deps.memory_capacity = [&] {
    absl::MutexLock lock(&capacity_mu);
    return capacity;
  };
  // The estimate is the job's calibration sample count, in bytes x 100.
  deps.estimate_memory = [](const JobConfig& c) -> absl::StatusOr<MemoryEstimate> {
    MemoryEstimate e;
    e.activation_bytes = c.calibration.num_samples * 100;
    return e;
  };
  auto jobs_or = JobManager::Create(options, std::move(deps));
  ASSERT_TRUE(jobs_or.ok());
  JobManager& jobs = **jobs_or;
  auto with_memory = [](const char* name, int64_t hundreds) {
    JobConfig c = TestConfig();
    c.output_dir = name;
    c.calibration.num_samples = hundreds;
    return c;
  };
  absl::StatusOr<JobRecord> too_big = jobs.Submit("", with_memory("huge", 11));
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(too_big.status().message(), ::testing::HasSubstr("1.1 KiB"));
  EXPECT_THAT(too_big.status().message(), ::testing::HasSubstr("1000 bytes"));

  auto a = jobs.Submit("req-a", with_memory("a", 6));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->memory_estimate_bytes, 600);
  AwaitJobState(jobs, a->id, JobState::kRunning);
  auto b = jobs.Submit("", with_memory("b", 5));  // 600 + 500 > 1000: waits.
  auto c = jobs.Submit("", with_memory("c", 1));  // Would fit, but must not overtake b.
  ASSERT_TRUE(b.ok() && c.ok());
  EXPECT_EQ(jobs.Get(b->id)->state, JobState::kQueued);
  EXPECT_EQ(jobs.Get(c->id)->state, JobState::kQueued);
  {
    absl::MutexLock lock(&capacity_mu);
    capacity = 1200;  // A bigger worker joined: b starts beside a, then c.
  }
  AwaitJobState(jobs, b->id, JobState::kRunning);
  AwaitJobState(jobs, c->id, JobState::kRunning);
  EXPECT_EQ(jobs.Get(a->id)->state, JobState::kRunning);  // Never preempted.
  gate_.Open(1);
  for (const auto* job : {&*a, &*b, &*c}) AwaitJobState(jobs, job->id, JobState::kSucceeded);
  // A job is RUNNING (with its start time) before its thread reaches the
  // execution factory, so on a loaded machine b's or c's thread can get there
  // before a's: the scheduler's order is the start time.
  EXPECT_THAT(log.started(), ::testing::UnorderedElementsAre("a", "b", "c"));
  EXPECT_LT(jobs.Get(a->id)->start_time, jobs.Get(b->id)->start_time);
  EXPECT_LE(jobs.Get(b->id)->start_time, jobs.Get(c->id)->start_time);
  {
    absl::MutexLock lock(&capacity_mu);
    capacity = 100;  // The big workers left: a retry still returns its job.
  }
  absl::StatusOr<JobRecord> retry = jobs.Submit("req-a", with_memory("a", 6));
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->id, a->id);
  EXPECT_EQ(jobs.Submit("", with_memory("d", 6)).status().code(),
            absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace baq::coordinator

namespace baq::coordinator {
namespace {

// Issue 21: labels and request ids survive a restart; Delete removes the
// record, the checkpoint and (on request) the published output.
TEST_F(JobManagerTest, DeleteRemovesRecordCheckpointAndOutputs) {
  const std::string dir = ::testing::TempDir() + "/job-manager-delete";
  std::filesystem::remove_all(dir);
  const std::string out = dir + "/out";
  std::string id;
  {
    auto jobs = Make(dir);
    SubmitOptions submit;
    submit.tenant = "alpha";
    submit.labels = {{"run", "nightly-7"}};
    auto job = jobs->Submit("req-del", baq::testing::FakeJobConfig(out), submit);
    ASSERT_TRUE(job.ok()) << job.status();
    id = job->id;
    EXPECT_EQ(jobs->Delete(id, true).status().code(), absl::StatusCode::kFailedPrecondition);
    gate_.Open(3);
    AwaitJobState(*jobs, id, JobState::kSucceeded);
  }
  // A restarted manager: the same tenant's retry is the same job, labels kept.
  auto jobs = Make(dir);
  SubmitOptions submit;
  submit.tenant = "alpha";
  submit.labels = {{"run", "nightly-7"}};
  auto retry = jobs->Submit("req-del", baq::testing::FakeJobConfig(out), submit);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->id, id);
  EXPECT_EQ(retry->labels.at("run"), "nightly-7");
  ListFilter nightly;
  nightly.labels = {{"run", "nightly-7"}};
  auto listed = jobs->List(nightly);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->jobs.size(), 1u);

  // What the job left: its output, and a checkpoint dir as a resumable run keeps.
  std::filesystem::create_directories(out);
  std::ofstream(out + "/model.safetensors") << "x";
  std::filesystem::create_directories(JobCheckpointDir(dir, id));
  auto deleted = jobs->Delete(id, /*delete_outputs=*/true);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_THAT(deleted->removed_paths,
              ::testing::UnorderedElementsAre(dir + "/jobs/" + id + ".json",
                                              JobCheckpointDir(dir, id), out));
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_EQ(jobs->Get(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(jobs->List().empty());
  // Gone for good: a restart does not bring it back.
  jobs.reset();
  EXPECT_TRUE(Make(dir)->List().empty());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace baq::coordinator
