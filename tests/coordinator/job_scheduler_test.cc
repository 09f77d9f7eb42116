// JobScheduler: priorities, per-tenant round-robin among equal priority,
// admission by memory without overtaking, queue order, no preemption.
#include "coordinator/job_scheduler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace baq::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::Optional;

SchedulableJob J(std::string id, std::string tenant, int priority = 0, int64_t memory = 0) {
  return SchedulableJob{std::move(id), std::move(tenant), priority, memory};
}

// Starts jobs one at a time (each finishing before the next starts) and
// returns the start order.
std::vector<std::string> DrainOneAtATime(JobScheduler& s) {
  std::vector<std::string> order;
  while (std::optional<std::string> id = s.Next(/*memory_capacity=*/0)) {
    s.Start(*id);
    order.push_back(*id);
    s.Finish(*id);
  }
  return order;
}

TEST(JobSchedulerTest, SixJobsTwoTenantsPriorityThenRoundRobin) {
  JobScheduler s(/*max_running=*/1);
  s.Enqueue(J("a1", "alice"));
  s.Enqueue(J("a2", "alice"));
  s.Enqueue(J("a3", "alice"));
  s.Enqueue(J("b1", "bob"));
  s.Enqueue(J("b2", "bob", /*priority=*/5));
  s.Enqueue(J("b3", "bob"));
  // b2 first (priority); then alice (never served) and bob alternate.
  const std::vector<std::string> expected = {"b2", "a1", "b1", "a2", "b3", "a3"};
  EXPECT_EQ(s.QueueOrder(), expected);
  EXPECT_EQ(DrainOneAtATime(s), expected);
}

TEST(JobSchedulerTest, TenantWithFewerRunningJobsGoesFirst) {
  JobScheduler s(/*max_running=*/3);
  s.Enqueue(J("a1", "alice"));
  s.Enqueue(J("a2", "alice"));
  s.Enqueue(J("a3", "alice"));
  s.Enqueue(J("b1", "bob"));
  ASSERT_THAT(s.Next(0), Optional(std::string("a1")));
  s.Start("a1");
  ASSERT_THAT(s.Next(0), Optional(std::string("b1")));
  s.Start("b1");
  s.Finish("b1");
  // alice runs one, bob none: bob would go first, but bob has nothing queued.
  ASSERT_THAT(s.Next(0), Optional(std::string("a2")));
  s.Start("a2");
  s.Enqueue(J("b2", "bob"));
  // alice runs two, bob none: bob's later job overtakes alice's older one.
  EXPECT_THAT(s.Next(0), Optional(std::string("b2")));
  EXPECT_THAT(s.QueueOrder(), ElementsAre("b2", "a3"));
}

TEST(JobSchedulerTest, HigherPriorityAlwaysFirstButNeverPreempts) {
  JobScheduler s(/*max_running=*/1);
  s.Enqueue(J("low", "alice", 0));
  s.Start(*s.Next(0));
  s.Enqueue(J("high", "bob", 9));
  // The slot is taken by "low": nothing starts, and "low" keeps running.
  EXPECT_EQ(s.Next(0), std::nullopt);
  EXPECT_EQ(s.running(), 1u);
  s.Finish("low");
  EXPECT_THAT(s.Next(0), Optional(std::string("high")));
}

TEST(JobSchedulerTest, AdmitsByMemoryWithoutOvertaking) {
  constexpr int64_t kGiB = int64_t{1} << 30;
  JobScheduler s(/*max_running=*/4);
  s.Enqueue(J("small1", "alice", 0, 3 * kGiB));
  s.Enqueue(J("big", "bob", 0, 6 * kGiB));
  s.Enqueue(J("small2", "carol", 0, 1 * kGiB));
  ASSERT_THAT(s.Next(8 * kGiB), Optional(std::string("small1")));
  s.Start("small1");
  // big (next in line) needs 3 + 6 > 8 GiB: nothing starts, not even small2,
  // which would fit: the big job must not be starved by small ones.
  EXPECT_EQ(s.Next(8 * kGiB), std::nullopt);
  EXPECT_EQ(s.running_memory_bytes(), 3 * kGiB);
  // With more memory (a worker joined) it starts alongside.
  EXPECT_THAT(s.Next(9 * kGiB), Optional(std::string("big")));
  s.Finish("small1");
  ASSERT_THAT(s.Next(8 * kGiB), Optional(std::string("big")));
  s.Start("big");
  EXPECT_THAT(s.Next(8 * kGiB), Optional(std::string("small2")));
}

TEST(JobSchedulerTest, AJobStartsWhenNothingRunsEvenIfOverCapacity) {
  JobScheduler s(/*max_running=*/1);
  s.Enqueue(J("huge", "alice", 0, 100));
  EXPECT_THAT(s.Next(/*memory_capacity=*/10), Optional(std::string("huge")));
}

TEST(JobSchedulerTest, UnknownEstimateOrCapacitySkipsTheMemoryCheck) {
  JobScheduler s(/*max_running=*/3);
  s.Enqueue(J("a", "t", 0, 100));
  s.Start("a");
  s.Enqueue(J("unknown", "t", 0, 0));
  EXPECT_THAT(s.Next(/*memory_capacity=*/10), Optional(std::string("unknown")));
  s.Start("unknown");
  s.Enqueue(J("b", "t", 0, 100));
  EXPECT_THAT(s.Next(/*memory_capacity=*/0), Optional(std::string("b")));
}

TEST(JobSchedulerTest, DequeueAndRunningJobsFromARestart) {
  JobScheduler s(/*max_running=*/2);
  s.Enqueue(J("a1", "alice"));
  s.Enqueue(J("b1", "bob"));
  EXPECT_TRUE(s.Dequeue("a1"));
  EXPECT_FALSE(s.Dequeue("a1"));
  s.AddRunning(J("resumed", "bob"));
  s.Enqueue(J("a2", "alice"));
  // bob already runs one (the resumed job): alice goes first.
  EXPECT_THAT(s.QueueOrder(), ElementsAre("a2", "b1"));
  EXPECT_EQ(s.queued(), 2u);
  EXPECT_EQ(s.running(), 1u);
}

}  // namespace
}  // namespace baq::coordinator
