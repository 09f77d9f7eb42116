// WorkerPool over a WorkerRegistry on a fake clock and fake workers behind
// real gRPC servers (tests/fakes/fake_worker_service.h): engines per device
// in worker order, waiting for the first worker, replacements only from new
// incarnations, and a worker that disappears (its lease expires, or it
// restarts under a new epoch) has its calls in flight aborted and every
// later one fenced off, while its replacement works. AbortAll stops every
// job's calls. No sleeps: the held Measure is released by the fence, and
// the test waits on it (thread join) and on the fake's AwaitHanging.
#include "coordinator/worker_pool.h"

#include <grpcpp/grpcpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "tests/fakes/fake_job_config.h"
#include "tests/fakes/fake_worker_server.h"
#include "tests/fakes/fake_worker_service.h"

namespace baq::coordinator {
namespace {

using ::baq::testing::FakeEngineLog;
using ::baq::testing::FakeEngineOptions;
using ::baq::testing::FakeJobConfig;
using ::baq::testing::FakeWorker;
using ::baq::testing::FakeWorkerFaults;
using ::baq::testing::FakeWorkerService;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr absl::Duration kLeaseTtl = absl::Seconds(10);

class WorkerPoolTest : public ::testing::Test {
 protected:
  WorkerRegistryOptions RegistryOptions() {
    WorkerRegistryOptions options;
    options.lease_ttl = kLeaseTtl;
    options.now = [this] {
      absl::MutexLock lock(&clock_mu_);
      return now_;
    };
    return options;
  }
  WorkerPoolOptions PoolOptions() {
    WorkerPoolOptions options;
    options.worker_wait = absl::Seconds(20);
    // The watchdog notices an expired lease within this (real) interval.
    options.lease_check_interval = absl::Milliseconds(10);
    options.engine.block_timeout = absl::Seconds(60);
    return options;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&clock_mu_);
    now_ += d;
  }
  WorkerLease Register(const FakeWorker& w, std::vector<std::string> devices = {"cpu"}) {
    absl::StatusOr<WorkerLease> lease = registry_.Register(w.address(), std::move(devices), 1 << 30);
    EXPECT_TRUE(lease.ok()) << lease.status();
    return lease.value_or(WorkerLease());
  }
  // Starts Measure(0) on `engine` in a thread, with the worker holding it.
  std::thread HeldMeasure(FakeWorker& w, BlockEngine* engine, absl::Status* status) {
    FakeWorkerFaults faults;
    faults.hang_measure = true;
    w.service.set_faults(faults);
    std::thread caller([engine, status] { *status = engine->Measure(0).status(); });
    EXPECT_TRUE(w.service.AwaitHanging(1, absl::Seconds(20)));
    return caller;
  }

  absl::Mutex clock_mu_;
  absl::Time now_ ABSL_GUARDED_BY(clock_mu_) = absl::FromUnixSeconds(1000);
  FakeEngineLog log_;
  // Declared in dependency order: workers outlive the pool's channels' use.
  std::vector<std::unique_ptr<FakeWorker>> workers_;
  WorkerRegistry registry_{RegistryOptions()};
  WorkerPool pool_{&registry_, PoolOptions()};

  FakeWorker& AddWorker() {
    workers_.push_back(std::make_unique<FakeWorker>(&log_));
    return *workers_.back();
  }

  // Registers a new worker (held_worker_), starts job-1 on its engine
  // (held_engine_) and holds Measure(0) there in held_caller_ (HeldMeasure),
  // which writes its status to measured_. The test joins held_caller_.
  void StartHeldMeasure() {
    held_worker_ = &AddWorker();
    Register(*held_worker_);
    absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>> engines =
        pool_.EnginesForJob("job-1");
    ASSERT_TRUE(engines.ok());
    held_engines_ = *std::move(engines);
    held_engine_ = held_engines_.front().get();
    ASSERT_TRUE(held_engine_->Start(FakeJobConfig()).ok());
    held_caller_ = HeldMeasure(*held_worker_, held_engine_, &measured_);
  }
  // Set by StartHeldMeasure; declared after pool_, so destroyed before it.
  FakeWorker* held_worker_ = nullptr;
  std::vector<std::unique_ptr<BlockEngine>> held_engines_;
  BlockEngine* held_engine_ = nullptr;
  absl::Status measured_;
  std::thread held_caller_;
};

std::vector<std::string> Names(const std::vector<std::unique_ptr<BlockEngine>>& engines) {
  std::vector<std::string> names;
  for (const auto& e : engines) names.push_back(e->name());
  return names;
}

TEST_F(WorkerPoolTest, OneEnginePerDeviceOfEveryLiveWorkerInWorkerOrder) {
  FakeWorker& a = AddWorker();
  FakeWorker& b = AddWorker();
  const WorkerLease la = Register(a, {"cuda:0", "cuda:1"});
  const WorkerLease lb = Register(b);
  absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>> engines = pool_.EnginesForJob("job-1");
  ASSERT_TRUE(engines.ok()) << engines.status();
  EXPECT_THAT(Names(*engines),
              ElementsAre(absl::StrCat("worker ", la.worker_id, "@", a.address(), " epoch ",
                                       la.epoch, " device 0"),
                          absl::StrCat("worker ", la.worker_id, "@", a.address(), " epoch ",
                                       la.epoch, " device 1"),
                          absl::StrCat("worker ", lb.worker_id, "@", b.address(), " epoch ",
                                       lb.epoch, " device 0")));
  // They reach their workers: the job starts on each device.
  for (const auto& e : *engines) EXPECT_TRUE(e->Start(FakeJobConfig()).ok());
}

TEST_F(WorkerPoolTest, AJobWaitsForItsFirstWorkerThenGivesUp) {
  absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>> engines;
  std::thread job([&] { engines = pool_.EnginesForJob("job-1"); });
  Register(AddWorker());  // The registry wakes the waiting job.
  job.join();
  ASSERT_TRUE(engines.ok()) << engines.status();
  EXPECT_EQ(engines->size(), 1u);

  WorkerPoolOptions impatient = PoolOptions();
  impatient.min_workers = 2;
  impatient.worker_wait = absl::Milliseconds(1);
  WorkerPool pool(&registry_, impatient);
  const absl::Status s = pool.EnginesForJob("job-2").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(s.message()), HasSubstr("1 live worker(s)"));
}

TEST_F(WorkerPoolTest, ReplacementsAreOnlyIncarnationsTheJobHasNotHad) {
  FakeWorker& a = AddWorker();
  Register(a);
  ASSERT_TRUE(pool_.EnginesForJob("job-1").ok());
  MoreEnginesFn more = pool_.MoreEnginesFor("job-1");
  absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>> none = more();
  ASSERT_TRUE(none.ok());
  EXPECT_THAT(*none, IsEmpty());  // Nothing new; does not wait.

  FakeWorker& b = AddWorker();
  const WorkerLease lb = Register(b);
  const WorkerLease restarted = Register(a);  // Same id, next epoch.
  absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>> fresh = more();
  ASSERT_TRUE(fresh.ok());
  EXPECT_THAT(Names(*fresh),
              ElementsAre(absl::StrCat("worker ", restarted.worker_id, "@", a.address(),
                                       " epoch ", restarted.epoch, " device 0"),
                          absl::StrCat("worker ", lb.worker_id, "@", b.address(), " epoch ",
                                       lb.epoch, " device 0")));
  EXPECT_THAT(*more(), IsEmpty());  // Handed out once.
  // Another job is independent: it gets every live worker.
  EXPECT_EQ(pool_.EnginesForJob("job-2")->size(), 2u);
}

TEST_F(WorkerPoolTest, AWorkerWhoseLeaseExpiresIsFencedAndItsReplacementWorks) {
  ASSERT_NO_FATAL_FAILURE(StartHeldMeasure());
  FakeWorker& a = *held_worker_;
  BlockEngine* engine = held_engine_;

  Advance(kLeaseTtl + absl::Seconds(1));  // No heartbeats: the worker is gone.
  held_caller_.join();  // The watchdog revokes the fence, which aborts the call.
  EXPECT_EQ(measured_.code(), absl::StatusCode::kUnavailable) << measured_;
  EXPECT_THAT(std::string(measured_.message()), HasSubstr("lease expired"));
  a.service.set_faults(FakeWorkerFaults());
  const absl::Status later = engine->Measure(0).status();
  EXPECT_EQ(later.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(later.message()), HasSubstr("fenced off"));

  // It comes back (a new incarnation): the job's replacement engine works.
  Register(a);
  auto fresh = pool_.NewEnginesForJob("job-1");
  ASSERT_TRUE(fresh.ok());
  ASSERT_EQ(fresh->size(), 1u);
  EXPECT_TRUE(fresh->front()->Start(FakeJobConfig()).ok());
  EXPECT_TRUE(fresh->front()->Measure(0).ok());
}

TEST_F(WorkerPoolTest, AWorkerThatRestartedIsFencedAtItsNextEngines) {
  ASSERT_NO_FATAL_FAILURE(StartHeldMeasure());
  FakeWorker& a = *held_worker_;

  const WorkerLease second = Register(a);  // Restarted: the old epoch's work is lost.
  held_caller_.join();
  EXPECT_EQ(measured_.code(), absl::StatusCode::kUnavailable) << measured_;
  EXPECT_THAT(std::string(measured_.message()),
              HasSubstr(absl::StrCat("re-registered as epoch ", second.epoch)));
}

TEST_F(WorkerPoolTest, AbortAllStopsCallsInFlightAndLaterEngines) {
  ASSERT_NO_FATAL_FAILURE(StartHeldMeasure());
  FakeWorker& a = *held_worker_;
  BlockEngine* engine = held_engine_;
  pool_.AbortAll();
  held_caller_.join();
  EXPECT_EQ(measured_.code(), absl::StatusCode::kCancelled) << measured_;
  a.service.set_faults(FakeWorkerFaults());
  EXPECT_EQ(engine->Measure(0).status().code(), absl::StatusCode::kAborted);
  // A job that starts after the abort (shutting down) gets engines that fail.
  auto late = pool_.EnginesForJob("job-2");
  ASSERT_TRUE(late.ok());
  EXPECT_FALSE(late->front()->Start(FakeJobConfig()).ok());
}

}  // namespace
}  // namespace baq::coordinator
