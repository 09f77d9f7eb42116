// AllReduceHessian (worker/communicator.h) over the in-process communicators:
// partial Hessians of split calibration windows merge to the one-rank result.
#include "worker/communicator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <memory>
#include <thread>
#include <vector>

#include "worker/local_communicator.h"
#include "worker/quant/hessian_accumulator.h"

namespace baq::worker {
namespace {

constexpr absl::Duration kTimeout = absl::Seconds(30);
// float64 sums of the same products in another order (the single-rank
// accumulator adds window by window, the ranks add their partial sums).
constexpr double kSplitRtol = 1e-12;

constexpr int64_t kCols = 24;
constexpr int kWindows = 7;

std::vector<at::Tensor> Windows() {
  at::manual_seed(3);
  std::vector<at::Tensor> w;
  for (int i = 0; i < kWindows; ++i) w.push_back(at::randn({2, 9, kCols}, at::kFloat) * 3);
  return w;
}

// The window split of the engine: rank r takes windows r, r + world, ...
HessianAccumulator Partial(const std::vector<at::Tensor>& windows, int rank, int world) {
  HessianAccumulator acc(kCols);
  for (int i = rank; i < kWindows; i += world) EXPECT_TRUE(acc.Add(windows[i]).ok());
  return acc;
}

std::vector<HessianAccumulator> ReduceOnThreads(int world, HessianReduction reduction) {
  const std::vector<at::Tensor> windows = Windows();
  auto comms = MakeInProcessCommunicators(world);
  std::vector<HessianAccumulator> accs;
  for (int r = 0; r < world; ++r) accs.push_back(Partial(windows, r, world));
  std::vector<absl::Status> status(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back(
        [&, r] { status[r] = AllReduceHessian(accs[r], *comms[r], kTimeout, reduction); });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : status) EXPECT_TRUE(s.ok()) << s;
  return accs;
}

TEST(AllReduceHessianTest, SplitWindowsMergeToSingleRankResult) {
  const std::vector<at::Tensor> windows = Windows();
  HessianAccumulator single = Partial(windows, 0, 1);
  const at::Tensor expected = *single.Finalize(at::kDouble);
  for (int world : {2, 3, 4, 8}) {  // 8 > windows: one rank has no rows
    std::vector<HessianAccumulator> accs = ReduceOnThreads(world, HessianReduction::kBackend);
    for (int r = 0; r < world; ++r) {
      EXPECT_EQ(accs[r].rows(), single.rows()) << "world " << world;
      const at::Tensor h = *accs[r].Finalize(at::kDouble);
      EXPECT_LT(((h - expected).abs().max() / expected.abs().max()).item<double>(), kSplitRtol)
          << "world " << world << " rank " << r;
      EXPECT_TRUE(at::equal(h, *accs[0].Finalize(at::kDouble))) << "ranks disagree";
    }
  }
}

TEST(AllReduceHessianTest, RankOrderedEqualsMergeInRankOrderBitwise) {
  const std::vector<at::Tensor> windows = Windows();
  for (int world : {2, 3, 5}) {
    HessianAccumulator merged = Partial(windows, 0, world);
    for (int r = 1; r < world; ++r) ASSERT_TRUE(merged.Merge(Partial(windows, r, world)).ok());
    std::vector<HessianAccumulator> accs = ReduceOnThreads(world, HessianReduction::kRankOrdered);
    for (int r = 0; r < world; ++r) {
      EXPECT_EQ(accs[r].rows(), merged.rows());
      EXPECT_TRUE(at::equal(accs[r].sum(), merged.sum())) << "world " << world << " rank " << r;
    }
  }
}

TEST(AllReduceHessianTest, LocalCommunicatorIsIdentity) {
  const std::vector<at::Tensor> windows = Windows();
  HessianAccumulator acc = Partial(windows, 0, 1);
  const at::Tensor before = acc.sum().clone();
  LocalCommunicator comm;
  for (HessianReduction mode : {HessianReduction::kBackend, HessianReduction::kRankOrdered}) {
    ASSERT_TRUE(AllReduceHessian(acc, comm, kTimeout, mode).ok());
    EXPECT_EQ(acc.rows(), kWindows * 18);
    EXPECT_TRUE(at::equal(acc.sum(), before));
  }
}

TEST(AllReduceHessianTest, MissingPeerIsDeadlineExceeded) {
  auto comms = MakeInProcessCommunicators(2);
  HessianAccumulator acc = Partial(Windows(), 0, 2);
  EXPECT_EQ(AllReduceHessian(acc, *comms[0], absl::Milliseconds(50)).code(),
            absl::StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace baq::worker
