#include "worker/local_communicator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace baq::worker {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kTimeout = absl::Seconds(30);

// Runs fn(rank) on one thread per rank and returns each rank's status.
template <typename Fn>
std::vector<absl::Status> OnEveryRank(int world_size, Fn fn) {
  std::vector<absl::Status> status(world_size);
  std::vector<std::thread> threads;
  for (int r = 0; r < world_size; ++r) {
    threads.emplace_back([&, r] { status[r] = fn(r); });
  }
  for (std::thread& t : threads) t.join();
  return status;
}

TEST(LocalCommunicatorTest, SingleRankLeavesTensorAsIs) {
  LocalCommunicator comm;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.world_size(), 1);
  at::Tensor t = at::arange(6, at::kDouble);
  const at::Tensor before = t.clone();
  ASSERT_TRUE(comm.AllReduceSum(t, kTimeout).ok());
  EXPECT_TRUE(at::equal(t, before));
  at::Tensor undefined;
  EXPECT_EQ(comm.AllReduceSum(undefined, kTimeout).code(), absl::StatusCode::kInvalidArgument);
}

TEST(InProcessCommunicatorTest, SumsInRankOrderOnEveryRank) {
  constexpr int kWorld = 4;
  auto comms = MakeInProcessCommunicators(kWorld);
  ASSERT_EQ(comms.size(), kWorld);
  at::manual_seed(0);
  std::vector<at::Tensor> inputs, tensors;
  for (int r = 0; r < kWorld; ++r) {
    inputs.push_back(at::randn({5, 7}, at::kDouble) * (r + 1));
    tensors.push_back(inputs.back().clone());
    EXPECT_EQ(comms[r]->rank(), r);
    EXPECT_EQ(comms[r]->world_size(), kWorld);
  }
  at::Tensor expected = inputs[0].clone();
  for (int r = 1; r < kWorld; ++r) expected.add_(inputs[r]);  // the same order: bitwise
  for (int round = 0; round < 3; ++round) {  // rounds reuse the rendezvous
    for (int r = 0; r < kWorld; ++r) tensors[r].copy_(inputs[r]);
    auto status = OnEveryRank(kWorld, [&](int r) {
      return comms[r]->AllReduceSum(tensors[r], kTimeout);
    });
    for (int r = 0; r < kWorld; ++r) {
      ASSERT_TRUE(status[r].ok()) << status[r];
      EXPECT_TRUE(at::equal(tensors[r], expected)) << "rank " << r << " round " << round;
    }
  }
}

TEST(InProcessCommunicatorTest, WorldOfOneIsIdentity) {
  auto comms = MakeInProcessCommunicators(1);
  at::Tensor t = at::ones({3}, at::kFloat);
  ASSERT_TRUE(comms[0]->AllReduceSum(t, kTimeout).ok());
  EXPECT_TRUE(at::equal(t, at::ones({3}, at::kFloat)));
}

TEST(InProcessCommunicatorTest, MissingPeerTimesOutThenGroupIsAborted) {
  auto comms = MakeInProcessCommunicators(2);
  at::Tensor t = at::ones({3}, at::kFloat);
  const absl::Status s = comms[0]->AllReduceSum(t, absl::Milliseconds(50));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(s.message()), HasSubstr("1 of 2 ranks"));
  EXPECT_EQ(comms[0]->Health().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(comms[1]->Health().code(), absl::StatusCode::kDeadlineExceeded);
  // The late peer and every later call fail fast.
  at::Tensor u = at::ones({3}, at::kFloat);
  EXPECT_EQ(comms[1]->AllReduceSum(u, kTimeout).code(), absl::StatusCode::kAborted);
  EXPECT_EQ(comms[0]->AllReduceSum(t, kTimeout).code(), absl::StatusCode::kAborted);
  EXPECT_TRUE(at::equal(u, at::ones({3}, at::kFloat)));
}

TEST(InProcessCommunicatorTest, MismatchedShapesAbortEveryRank) {
  auto comms = MakeInProcessCommunicators(2);
  std::vector<at::Tensor> tensors = {at::ones({3}, at::kFloat), at::ones({4}, at::kFloat)};
  auto status = OnEveryRank(2, [&](int r) { return comms[r]->AllReduceSum(tensors[r], kTimeout); });
  for (const absl::Status& s : status) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  }
  EXPECT_EQ(comms[0]->AllReduceSum(tensors[0], kTimeout).code(), absl::StatusCode::kAborted);
}

TEST(InProcessCommunicatorTest, WaitingRankSeesAbortFromPeerTimeout) {
  auto comms = MakeInProcessCommunicators(3);
  std::vector<at::Tensor> tensors(3, at::ones({2}, at::kFloat));
  for (at::Tensor& t : tensors) t = t.clone();
  // Rank 0 waits long, rank 1 gives up quickly, rank 2 never comes.
  auto status = OnEveryRank(2, [&](int r) {
    return comms[r]->AllReduceSum(tensors[r], r == 0 ? kTimeout : absl::Milliseconds(50));
  });
  EXPECT_EQ(status[0].code(), absl::StatusCode::kAborted) << status[0];
  EXPECT_EQ(status[1].code(), absl::StatusCode::kDeadlineExceeded) << status[1];
}

}  // namespace
}  // namespace baq::worker
