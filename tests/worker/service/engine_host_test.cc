// EngineHost cancellation: ResetJob/CancelJob reach an engine that is busy
// on its executor thread, the call in progress returns Cancelled, and the
// engine is reset and destroyed on the executor.
#include "worker/service/engine_host.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace baq::worker {
namespace {

// Bounds how long a test waits for something that should happen at once.
constexpr absl::Duration kWait = absl::Seconds(10);

// What the engines of one test did; shared with the executor thread.
struct EngineEvents {
  std::atomic<int> alive{0};
  std::atomic<int> resets{0};
  absl::Notification measuring;   // A Measure() is running.
  absl::Notification starting;    // A Start() is running.
};

// Start() and Measure() block until Cancel() (or 60 s), like a long block.
class BusyEngine final : public BlockEngine {
 public:
  BusyEngine(EngineEvents* events, bool block_in_start)
      : events_(events), block_in_start_(block_in_start) {
    ++events_->alive;
  }
  ~BusyEngine() override { --events_->alive; }

  absl::Status Start(const JobConfig&) override {
    if (!block_in_start_) return absl::OkStatus();
    if (!events_->starting.HasBeenNotified()) events_->starting.Notify();
    return Spin();
  }
  int64_t num_blocks() const override { return 2; }
  absl::StatusOr<BlockMeasurement> Measure(int64_t block) override {
    if (!events_->measuring.HasBeenNotified()) events_->measuring.Notify();
    BAQ_RETURN_IF_ERROR(Spin());
    return BlockMeasurement{};
  }
  absl::StatusOr<BlockOutput> Quantize(int64_t, const std::vector<LayerAllocation>&) override {
    return BlockOutput{};
  }
  std::string name() const override { return "busy engine"; }
  void Reset() override { ++events_->resets; }
  // Any thread, any number of times.
  void Cancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }

 private:
  // Blocks until Cancel(), like a block that checks for cancellation.
  absl::Status Spin() {
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&cancelled_), absl::Seconds(60))) {
      return absl::CancelledError("cancelled");
    }
    return absl::DeadlineExceededError("never cancelled");
  }

  EngineEvents* const events_;
  const bool block_in_start_;
  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

EngineFactory Factory(EngineEvents* events, bool block_in_start) {
  return [events, block_in_start](
             const std::string&) -> absl::StatusOr<std::unique_ptr<BlockEngine>> {
    return std::make_unique<BusyEngine>(events, block_in_start);
  };
}

// Runs StartJob and waits for its callback.
absl::StatusOr<int64_t> StartJobSync(EngineHost& host, const std::string& job) {
  absl::Notification done;
  absl::StatusOr<int64_t> result;
  host.StartJob(job, 0, JobConfig(), [&](absl::StatusOr<int64_t> n) {
    result = std::move(n);
    done.Notify();
  });
  if (!done.WaitForNotificationWithTimeout(kWait)) return absl::DeadlineExceededError("StartJob");
  return result;
}

TEST(EngineHostTest, ResetJobStopsTheBlockInProgressAndFreesTheEngine) {
  EngineEvents events;
  EngineHost host({"cpu"}, Factory(&events, /*block_in_start=*/false), nullptr);
  ASSERT_TRUE(StartJobSync(host, "job-1").ok());
  EXPECT_EQ(host.num_engines(), 1u);

  absl::Notification measured;
  absl::Status measure_status;
  host.WithEngine("job-1", 0, [&](absl::StatusOr<BlockEngine*> e) {
    measure_status = e.ok() ? (*e)->Measure(0).status() : e.status();
    measured.Notify();
  });
  ASSERT_TRUE(events.measuring.WaitForNotificationWithTimeout(kWait));

  const absl::Time cancel_time = absl::Now();
  absl::Notification reset;
  host.ResetJob("job-1", 0, [&](absl::Status s) {
    EXPECT_TRUE(s.ok()) << s;
    reset.Notify();
  });
  ASSERT_TRUE(measured.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(measure_status.code(), absl::StatusCode::kCancelled) << measure_status;
  ASSERT_TRUE(reset.WaitForNotificationWithTimeout(kWait));
  EXPECT_LT(absl::Now() - cancel_time, absl::Seconds(5));
  EXPECT_EQ(events.alive.load(), 0);
  EXPECT_EQ(events.resets.load(), 1);
  EXPECT_EQ(host.num_engines(), 0u);

  // The job can be started again after the reset.
  EXPECT_TRUE(StartJobSync(host, "job-1").ok());
  EXPECT_EQ(host.num_engines(), 1u);
}

TEST(EngineHostTest, ResetJobInterruptsStart) {
  EngineEvents events;
  EngineHost host({"cpu"}, Factory(&events, /*block_in_start=*/true), nullptr);
  absl::Notification started;
  absl::StatusOr<int64_t> start_result;
  host.StartJob("job-1", 0, JobConfig(), [&](absl::StatusOr<int64_t> n) {
    start_result = std::move(n);
    started.Notify();
  });
  ASSERT_TRUE(events.starting.WaitForNotificationWithTimeout(kWait));
  absl::Notification reset;
  host.ResetJob("job-1", 0, [&](absl::Status) { reset.Notify(); });
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(start_result.status().code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(reset.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(events.alive.load(), 0);
  EXPECT_EQ(host.num_engines(), 0u);
}

TEST(EngineHostTest, StartQueuedBeforeAResetDoesNotCreateAnEngine) {
  EngineEvents events;
  EngineHost host({"cpu"}, Factory(&events, /*block_in_start=*/false), nullptr);
  ASSERT_TRUE(StartJobSync(host, "busy").ok());
  // Occupy the executor with another job's block, queue job-2's start behind
  // it, then reset job-2: its start must not build an engine.
  host.WithEngine("busy", 0, [](absl::StatusOr<BlockEngine*> e) { (void)(*e)->Measure(0); });
  ASSERT_TRUE(events.measuring.WaitForNotificationWithTimeout(kWait));
  absl::Notification started;
  absl::StatusOr<int64_t> start_result;
  host.StartJob("job-2", 0, JobConfig(), [&](absl::StatusOr<int64_t> n) {
    start_result = std::move(n);
    started.Notify();
  });
  host.ResetJob("job-2", 0, [](absl::Status) {});
  host.CancelJob("busy", 0);  // Frees the executor.
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(start_result.status().code(), absl::StatusCode::kCancelled) << start_result.status();
  absl::Notification reset;
  host.ResetJob("busy", 0, [&](absl::Status) { reset.Notify(); });
  ASSERT_TRUE(reset.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(host.num_engines(), 0u);
  EXPECT_EQ(events.alive.load(), 0);
}

TEST(EngineHostTest, CancelOfUnknownJobOrDeviceIsANoOp) {
  EngineEvents events;
  EngineHost host({"cpu"}, Factory(&events, /*block_in_start=*/false), nullptr);
  host.CancelJob("nope", 0);
  host.CancelJob("nope", 7);
  host.CancelJob("nope", -1);
  absl::Notification reset;
  host.ResetJob("nope", 0, [&](absl::Status s) {
    EXPECT_TRUE(s.ok());
    reset.Notify();
  });
  ASSERT_TRUE(reset.WaitForNotificationWithTimeout(kWait));
  EXPECT_TRUE(StartJobSync(host, "nope").ok());
}

}  // namespace
}  // namespace baq::worker
