// worker/service/device_executor: FIFO order on one thread that is not the caller's,
// Stop() draining queued work and refusing later posts, the destructor as
// Stop(), and the queue/busy gauges. Synchronized with Notifications only:
// a task that blocks on a gate holds the executor where the test needs it.
#include "worker/service/device_executor.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "worker/service/worker_metrics.h"

namespace baq::worker {
namespace {

// What the tasks saw, written on the executor thread and read after Stop()
// (whose join orders them) or under the mutex.
struct Log {
  absl::Mutex mu;
  std::vector<int> order ABSL_GUARDED_BY(mu);
  std::vector<std::thread::id> threads ABSL_GUARDED_BY(mu);

  DeviceExecutor::Task Record(int i) {
    return [this, i] {
      absl::MutexLock lock(&mu);
      order.push_back(i);
      threads.push_back(std::this_thread::get_id());
    };
  }
};

// A task that says it started, then waits for the gate.
DeviceExecutor::Task Blocker(absl::Notification* started, absl::Notification* gate) {
  return [started, gate] {
    started->Notify();
    gate->WaitForNotification();
  };
}

TEST(DeviceExecutorTest, RunsTasksInPostOrderOnItsOwnThread) {
  Log log;
  DeviceExecutor executor("cpu", /*metrics=*/nullptr);
  EXPECT_EQ(executor.device(), "cpu");
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(executor.Post(log.Record(i)));
  executor.Stop();

  absl::MutexLock lock(&log.mu);
  ASSERT_EQ(log.order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(log.order[i], i);
  for (const std::thread::id& id : log.threads) {
    EXPECT_EQ(id, log.threads.front());  // One executor thread ...
    EXPECT_NE(id, std::this_thread::get_id());  // ... that is not the poster's.
  }
}

TEST(DeviceExecutorTest, PostsFromManyThreadsKeepEachThreadsOrder) {
  Log log;
  DeviceExecutor executor("cpu", nullptr);
  absl::Notification started;
  absl::Notification gate;
  ASSERT_TRUE(executor.Post(Blocker(&started, &gate)));
  started.WaitForNotification();
  std::vector<std::thread> posters;
  for (int t = 0; t < 4; ++t) {
    posters.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) ASSERT_TRUE(executor.Post(log.Record(t * 1000 + i)));
    });
  }
  for (std::thread& p : posters) p.join();
  gate.Notify();
  executor.Stop();

  absl::MutexLock lock(&log.mu);
  ASSERT_EQ(log.order.size(), 200u);
  std::vector<int> next(4, 0);
  for (int v : log.order) {
    const int t = v / 1000;
    EXPECT_EQ(v % 1000, next[t]) << "thread " << t << "'s tasks ran out of order";
    ++next[t];
  }
}

TEST(DeviceExecutorTest, StopRunsQueuedTasksThenRefusesNewOnes) {
  Log log;
  DeviceExecutor executor("cpu", nullptr);
  absl::Notification started;
  absl::Notification gate;
  ASSERT_TRUE(executor.Post(Blocker(&started, &gate)));
  started.WaitForNotification();  // The executor is busy; what follows queues.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(executor.Post(log.Record(i)));

  std::thread stopper([&] { executor.Stop(); });
  // Stop() has begun once Post() refuses; every post accepted before that
  // must still run. (Spins on Post, not on time: no sleep.)
  int accepted = 0;
  while (executor.Post(log.Record(100 + accepted))) ++accepted;
  gate.Notify();
  stopper.join();

  absl::MutexLock lock(&log.mu);
  ASSERT_EQ(log.order.size(), 3u + accepted);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(log.order[i], i);
  for (int i = 0; i < accepted; ++i) EXPECT_EQ(log.order[3 + i], 100 + i);
}

TEST(DeviceExecutorTest, PostAfterStopDropsTheTaskAndStopIsIdempotent) {
  DeviceExecutor executor("cpu", nullptr);
  executor.Stop();
  bool ran = false;
  EXPECT_FALSE(executor.Post([&ran] { ran = true; }));
  executor.Stop();  // Again: no second join, no crash.
  EXPECT_FALSE(ran);
}

TEST(DeviceExecutorTest, DestructorDrainsTheQueue) {
  Log log;
  absl::Notification started;
  absl::Notification gate;
  {
    DeviceExecutor executor("cpu", nullptr);
    ASSERT_TRUE(executor.Post(Blocker(&started, &gate)));
    started.WaitForNotification();
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(executor.Post(log.Record(i)));
    gate.Notify();
  }  // ~DeviceExecutor: Stop().
  absl::MutexLock lock(&log.mu);
  EXPECT_EQ(log.order, (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(DeviceExecutorTest, ReportsQueueLengthAndBusyPerDevice) {
  prometheus::Registry registry;
  WorkerMetrics metrics(registry);
  DeviceExecutor executor("cuda:1", &metrics);
  absl::Notification started;
  absl::Notification gate;
  ASSERT_TRUE(executor.Post(Blocker(&started, &gate)));
  started.WaitForNotification();
  EXPECT_EQ(metrics.busy("cuda:1").Value(), 1);
  EXPECT_EQ(metrics.queued_tasks("cuda:1").Value(), 0);
  ASSERT_TRUE(executor.Post([] {}));
  ASSERT_TRUE(executor.Post([] {}));
  EXPECT_EQ(metrics.queued_tasks("cuda:1").Value(), 2);  // Set by Post, under the lock.

  // Seen from inside the next task: one fewer queued, still busy.
  absl::Notification checked;
  double queued_inside = -1;
  double busy_inside = -1;
  ASSERT_TRUE(executor.Post([&] {
    queued_inside = metrics.queued_tasks("cuda:1").Value();
    busy_inside = metrics.busy("cuda:1").Value();
    checked.Notify();
  }));
  gate.Notify();
  checked.WaitForNotification();
  EXPECT_EQ(queued_inside, 0);
  EXPECT_EQ(busy_inside, 1);
  executor.Stop();
  EXPECT_EQ(metrics.busy("cuda:1").Value(), 0);
  EXPECT_EQ(metrics.queued_tasks("cuda:1").Value(), 0);
  EXPECT_EQ(metrics.busy("cuda:0").Value(), 0);  // Per device: another label.
}

}  // namespace
}  // namespace baq::worker
