// WorkerRegistry: leases, expiry on a fake clock, epoch fencing.
#include "coordinator/worker_registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace baq::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class WorkerRegistryTest : public ::testing::Test {
 protected:
  WorkerRegistryOptions Options() {
    WorkerRegistryOptions options;
    options.lease_ttl = absl::Seconds(10);
    options.now = [this] { return now_; };
    return options;
  }

  std::vector<std::string> LiveIds() {
    std::vector<std::string> ids;
    for (const WorkerInfo& w : registry_.LiveWorkers()) ids.push_back(w.worker_id);
    return ids;
  }

  absl::Time now_ = absl::FromUnixSeconds(1000);
  WorkerRegistry registry_{Options()};
};

TEST_F(WorkerRegistryTest, RegisterGivesALeaseAndListsTheWorker) {
  absl::StatusOr<WorkerLease> lease = registry_.Register("host-a:7001", {"cuda:0", "cuda:1"}, 64);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->ttl, absl::Seconds(10));
  std::vector<WorkerInfo> live = registry_.LiveWorkers();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].worker_id, lease->worker_id);
  EXPECT_EQ(live[0].address, "host-a:7001");
  EXPECT_THAT(live[0].devices, ElementsAre("cuda:0", "cuda:1"));
  EXPECT_EQ(live[0].memory_bytes, 64);
}

TEST_F(WorkerRegistryTest, RejectsEmptyAddressOrDevices) {
  EXPECT_EQ(registry_.Register("", {"cpu"}, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_.Register("h:1", {}, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(WorkerRegistryTest, LeaseExpiresWithoutHeartbeats) {
  auto a = registry_.Register("a:1", {"cpu"}, 0);
  auto b = registry_.Register("b:1", {"cpu"}, 0);
  ASSERT_TRUE(a.ok() && b.ok());
  now_ += absl::Seconds(6);
  EXPECT_TRUE(registry_.Heartbeat(b->worker_id, b->epoch).ok());
  now_ += absl::Seconds(6);  // a: 12 s since registering; b: 6 s since its heartbeat.
  EXPECT_THAT(LiveIds(), ElementsAre(b->worker_id));
  EXPECT_EQ(registry_.Heartbeat(a->worker_id, a->epoch).code(), absl::StatusCode::kNotFound);
  now_ += absl::Seconds(10);
  EXPECT_THAT(LiveIds(), IsEmpty());
}

TEST_F(WorkerRegistryTest, ReRegistrationKeepsTheIdAndFencesTheOldEpoch) {
  auto first = registry_.Register("a:1", {"cpu"}, 0);
  ASSERT_TRUE(first.ok());
  // The worker restarts (or a partition heals) and registers again.
  auto second = registry_.Register("a:1", {"cpu", "cpu"}, 0);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->worker_id, first->worker_id);
  EXPECT_GT(second->epoch, first->epoch);
  EXPECT_EQ(registry_.Heartbeat(first->worker_id, first->epoch).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(registry_.Heartbeat(second->worker_id, second->epoch).ok());
  ASSERT_EQ(registry_.LiveWorkers().size(), 1u);
  EXPECT_EQ(registry_.LiveWorkers()[0].devices.size(), 2u);
}

TEST_F(WorkerRegistryTest, ExpiredWorkerRegistersAgainUnderItsOldId) {
  auto first = registry_.Register("a:1", {"cpu"}, 0);
  ASSERT_TRUE(first.ok());
  now_ += absl::Seconds(11);
  EXPECT_THAT(LiveIds(), IsEmpty());
  auto again = registry_.Register("a:1", {"cpu"}, 0);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->worker_id, first->worker_id);
  EXPECT_NE(again->epoch, first->epoch);
}

TEST_F(WorkerRegistryTest, LeasesOfAnEarlierCoordinatorAreFenced) {
  // Worker B held w001 under the previous coordinator; after a restart
  // worker A is the first to register and becomes w001. B's heartbeat must
  // not pass as A's.
  auto old_lease = registry_.Register("b:1", {"cpu"}, 0);
  ASSERT_TRUE(old_lease.ok());
  now_ += absl::Seconds(30);
  WorkerRegistry restarted(Options());
  auto a = restarted.Register("a:1", {"cpu"}, 0);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->worker_id, old_lease->worker_id);
  EXPECT_EQ(restarted.Heartbeat(old_lease->worker_id, old_lease->epoch).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(WorkerRegistryTest, ReportsLiveCountChanges) {
  std::vector<size_t> counts;
  registry_.SetOnChange([&counts](size_t n) { counts.push_back(n); });
  ASSERT_TRUE(registry_.Register("a:1", {"cpu"}, 0).ok());
  ASSERT_TRUE(registry_.Register("b:1", {"cpu"}, 0).ok());
  now_ += absl::Seconds(11);
  registry_.LiveWorkers();
  EXPECT_THAT(counts, ElementsAre(1, 2, 0));
}

TEST_F(WorkerRegistryTest, AwaitWorkersReturnsOnceEnoughAreLive) {
  ASSERT_TRUE(registry_.Register("a:1", {"cpu"}, 0).ok());
  EXPECT_EQ(registry_.AwaitWorkers(1, absl::Seconds(5)).size(), 1u);
  // Not enough: returns what there is after the (short) timeout.
  EXPECT_EQ(registry_.AwaitWorkers(2, absl::Milliseconds(10)).size(), 1u);
}

}  // namespace
}  // namespace baq::coordinator
