// JobRecordWriter: the writes of one job are serialized and end with its
// newest snapshot, whatever the order in which threads flush; other jobs'
// writes do not wait for a slow one; a job's checkpoint is discarded before
// its record is saved. The slow disk is a HeldJobStore driven by hand.
#include "coordinator/job_record_writer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "tests/fakes/held_job_store.h"

namespace baq::coordinator {
namespace {

using ::baq::testing::HeldJobStore;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr absl::Duration kWait = absl::Seconds(20);

JobRecord Record(const std::string& id, JobState state) {
  JobRecord r;
  r.id = id;
  r.state = state;
  return r;
}

TEST(JobRecordWriterTest, FlushWritesTheStagedRecord) {
  HeldJobStore store;
  JobRecordWriter writer(&store, nullptr);
  writer.Flush("unknown");  // Nothing staged: no write.
  EXPECT_THAT(store.saves(), IsEmpty());
  writer.Stage(Record("a", JobState::kQueued), /*discard_checkpoint=*/false);
  EXPECT_THAT(store.saves(), IsEmpty());  // Staging does no I/O.
  writer.Flush("a");
  EXPECT_THAT(store.StatesOf("a"), ElementsAre(JobState::kQueued));
  writer.Flush("a");  // Already on disk: not written again.
  EXPECT_EQ(store.saves().size(), 1u);
}

TEST(JobRecordWriterTest, ALaterFlushWaitsForTheWriteInFlightAndWritesTheNewestLast) {
  HeldJobStore store;
  JobRecordWriter writer(&store, nullptr);
  store.Hold([](const JobRecord& r) { return r.id == "a"; });
  writer.Stage(Record("a", JobState::kQueued), false);
  absl::Notification first_done;
  std::thread first([&] {
    writer.Flush("a");
    first_done.Notify();
  });
  ASSERT_TRUE(store.AwaitHeldSaves(1));  // QUEUED is being written.

  // Newer states arrive while the disk is busy; a second thread flushes them.
  writer.Stage(Record("a", JobState::kRunning), false);
  writer.Stage(Record("a", JobState::kSucceeded), false);
  absl::Notification second_done;
  std::thread second([&] {
    writer.Flush("a");
    second_done.Notify();
  });
  // Another job is not held up by the slow write.
  writer.Stage(Record("b", JobState::kQueued), false);
  writer.Flush("b");
  EXPECT_THAT(store.StatesOf("b"), ElementsAre(JobState::kQueued));
  // Neither flush of "a" can have returned: its first write is still held,
  // and the second must not race it with a newer record.
  EXPECT_FALSE(first_done.HasBeenNotified());
  EXPECT_FALSE(second_done.HasBeenNotified());
  EXPECT_THAT(store.StatesOf("a"), IsEmpty());

  store.Release();
  ASSERT_TRUE(second_done.WaitForNotificationWithTimeout(kWait));
  first.join();
  second.join();
  // RUNNING was superseded before anyone wrote it; SUCCEEDED is last.
  EXPECT_THAT(store.StatesOf("a"), ElementsAre(JobState::kQueued, JobState::kSucceeded));
}

TEST(JobRecordWriterTest, DiscardsTheCheckpointOnceBeforeTheSave) {
  HeldJobStore store;
  absl::Mutex mu;
  std::vector<std::string> events;
  JobRecordWriter writer(&store, [&](const std::string& id) {
    absl::MutexLock lock(&mu);
    events.push_back(absl::StrCat("discard ", id, " after ", store.saves().size(), " saves"));
  });
  writer.Stage(Record("a", JobState::kRunning), false);
  writer.Flush("a");
  writer.Stage(Record("a", JobState::kSucceeded), /*discard_checkpoint=*/true);
  writer.Flush("a");
  writer.Stage(Record("a", JobState::kSucceeded), false);
  writer.Flush("a");
  absl::MutexLock lock(&mu);
  EXPECT_THAT(events, ElementsAre("discard a after 1 saves"));
  EXPECT_EQ(store.saves().size(), 3u);
}

TEST(JobRecordWriterTest, AFailedSaveIsLoggedAndTheNextOneWrites) {
  HeldJobStore store;
  JobRecordWriter writer(&store, nullptr);
  store.FailNextSave(absl::InternalError("disk full"));
  writer.Stage(Record("a", JobState::kQueued), false);
  writer.Flush("a");  // Returns: durability is lost, not the job.
  EXPECT_THAT(store.saves(), IsEmpty());
  writer.Stage(Record("a", JobState::kRunning), false);
  writer.Flush("a");
  EXPECT_THAT(store.StatesOf("a"), ElementsAre(JobState::kRunning));
}

}  // namespace
}  // namespace baq::coordinator
