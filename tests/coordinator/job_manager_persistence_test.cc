// JobManager persistence without the lock (issue 15 item 3): a job's record
// is written outside the manager's mutex, so while one job's save is stuck on
// a slow disk the manager still answers Get, List and Submit for others; the
// thread that changed the job returns only once its record is on disk; and a
// job's records reach the store in state order, the newest last. The slow
// disk is a HeldJobStore (tests/fakes/held_job_store.h) driven by hand.
// In its own file beside job_manager_test.cc, which is long enough.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "coordinator/job_manager.h"
#include "tests/fakes/fake_job_config.h"
#include "tests/fakes/fake_job_execution.h"
#include "tests/fakes/held_job_store.h"
#include "tests/testing/await_job.h"

namespace baq::coordinator {
namespace {

using ::baq::testing::AwaitJobState;
using ::baq::testing::ExecutionGate;
using ::baq::testing::FakeJobConfig;
using ::baq::testing::HeldJobStore;
using ::testing::ElementsAre;

constexpr absl::Duration kWait = absl::Seconds(20);

bool IsSlow(const JobRecord& r) { return r.config.output_dir == "/tmp/slow"; }

class JobManagerPersistenceTest : public ::testing::Test {
 protected:
  std::unique_ptr<JobManager> Make() {
    JobManagerDeps deps;
    deps.execution_factory = gate_.Factory(/*num_blocks=*/1);
    deps.engine_provider = baq::testing::NoEngineProvider();
    deps.store = &store_;
    auto jobs = JobManager::Create(JobManagerOptions(), std::move(deps));
    EXPECT_TRUE(jobs.ok()) << jobs.status();
    return jobs.ok() ? *std::move(jobs) : nullptr;
  }

  // Declared before the manager: it outlives it.
  HeldJobStore store_;
  ExecutionGate gate_;
};

TEST_F(JobManagerPersistenceTest, OtherCallsProceedWhileASaveIsStuck) {
  auto jobs = Make();
  store_.Hold(IsSlow);
  absl::StatusOr<JobRecord> slow;
  absl::Notification submitted;
  std::thread submitter([&] {
    slow = jobs->Submit("slow", FakeJobConfig("/tmp/slow"));
    submitted.Notify();
  });
  ASSERT_TRUE(store_.AwaitHeldSaves(1));  // The QUEUED record is on its way to disk.

  // The manager's lock is free: the in-memory state answers at once.
  std::vector<JobRecord> listed = jobs->List();
  ASSERT_EQ(listed.size(), 1u);
  const std::string slow_id = listed[0].id;
  EXPECT_TRUE(jobs->Get(slow_id).ok());
  absl::StatusOr<JobRecord> fast = jobs->Submit("fast", FakeJobConfig("/tmp/fast"));
  ASSERT_TRUE(fast.ok()) << fast.status();
  EXPECT_THAT(store_.StatesOf(fast->id), ElementsAre(JobState::kQueued));  // Not held.
  EXPECT_EQ(jobs->List().size(), 2u);
  // Submit acknowledges a job only once its record is durable.
  EXPECT_FALSE(submitted.HasBeenNotified());
  EXPECT_TRUE(store_.StatesOf(slow_id).empty());

  store_.Release();
  ASSERT_TRUE(submitted.WaitForNotificationWithTimeout(kWait));
  submitter.join();
  ASSERT_TRUE(slow.ok()) << slow.status();
  EXPECT_EQ(slow->id, slow_id);
  gate_.Open(1);
  AwaitJobState(*jobs, slow_id, JobState::kSucceeded);
  AwaitJobState(*jobs, fast->id, JobState::kSucceeded);
  jobs.reset();  // Joins the runners: their last writes are done.
  // In state order, the newest last, for both jobs. The runner may have
  // staged RUNNING before the submitter took QUEUED to disk; then the
  // submitter writes RUNNING instead (coalesced), never the older one last.
  const std::vector<JobState> slow_states = store_.StatesOf(slow_id);
  ASSERT_FALSE(slow_states.empty());
  EXPECT_TRUE(std::is_sorted(slow_states.begin(), slow_states.end()));  // Enum order = life order.
  EXPECT_EQ(slow_states.back(), JobState::kSucceeded);
  EXPECT_THAT(store_.StatesOf(fast->id),
              ElementsAre(JobState::kQueued, JobState::kRunning, JobState::kSucceeded));
}

TEST_F(JobManagerPersistenceTest, ALaterStateIsNotOverwrittenByAnEarlierSave) {
  // A queued job's QUEUED save is stuck when the job is cancelled. The cancel
  // waits for that save instead of racing it, so CANCELLED is written last.
  auto jobs = Make();
  auto blocker = jobs->Submit("blocker", FakeJobConfig("/tmp/blocker"));
  ASSERT_TRUE(blocker.ok()) << blocker.status();
  AwaitJobState(*jobs, blocker->id, JobState::kRunning);  // Holds the only runner.
  store_.Hold(IsSlow);
  absl::Notification submitted;
  std::thread submitter([&] {
    EXPECT_TRUE(jobs->Submit("slow", FakeJobConfig("/tmp/slow")).ok());
    submitted.Notify();
  });
  ASSERT_TRUE(store_.AwaitHeldSaves(1));
  std::string slow_id;
  for (const JobRecord& r : jobs->List()) {
    if (IsSlow(r)) slow_id = r.id;
  }
  ASSERT_FALSE(slow_id.empty());

  absl::Notification cancel_returned;
  std::thread canceller([&] {
    absl::StatusOr<JobRecord> r = jobs->Cancel(slow_id);
    EXPECT_TRUE(r.ok() && r->state == JobState::kCancelled) << r.status();
    cancel_returned.Notify();
  });
  // CANCELLED is visible at once, but neither call is done: QUEUED is still
  // on its way to disk, and CANCELLED must not overtake it.
  AwaitJobState(*jobs, slow_id, JobState::kCancelled);
  EXPECT_FALSE(submitted.HasBeenNotified());
  EXPECT_FALSE(cancel_returned.HasBeenNotified());
  EXPECT_TRUE(store_.StatesOf(slow_id).empty());

  store_.Release();
  ASSERT_TRUE(cancel_returned.WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(submitted.WaitForNotificationWithTimeout(kWait));
  canceller.join();
  submitter.join();
  EXPECT_THAT(store_.StatesOf(slow_id), ElementsAre(JobState::kQueued, JobState::kCancelled));
  gate_.Open(1);
  AwaitJobState(*jobs, blocker->id, JobState::kSucceeded);
}

}  // namespace
}  // namespace baq::coordinator
