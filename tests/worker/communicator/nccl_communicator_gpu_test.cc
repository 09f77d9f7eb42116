// The NCCL communicator on real GPUs, through the factory (so this file builds
// without NCCL too, and skips). CTest label: gpu.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "worker/communicator.h"
#include "worker/nccl/communicator_factory.h"
#include "worker/quant/hessian_accumulator.h"

namespace baq::worker {
namespace {

constexpr absl::Duration kTimeout = absl::Seconds(60);

#define BAQ_SKIP_UNLESS_GPUS(n)                                                      \
  do {                                                                               \
    if (!HasNcclBackend()) GTEST_SKIP() << "built without NCCL (BAQ_WITH_NCCL=OFF)";  \
    if (!at::hasCUDA() || NcclDeviceCount() < (n)) {                                 \
      GTEST_SKIP() << "needs " << (n) << " CUDA devices, have " << NcclDeviceCount(); \
    }                                                                                \
  } while (0)

std::vector<c10::Device> Gpus(int n) {
  std::vector<c10::Device> d;
  for (int i = 0; i < n; ++i) d.emplace_back(c10::kCUDA, static_cast<c10::DeviceIndex>(i));
  return d;
}

template <typename Fn>
std::vector<absl::Status> OnEveryRank(int world, Fn fn) {
  std::vector<absl::Status> status(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) threads.emplace_back([&, r] { status[r] = fn(r); });
  for (std::thread& t : threads) t.join();
  return status;
}

TEST(NcclCommunicatorGpuTest, SingleGpuCommunicatorIsIdentity) {
  BAQ_SKIP_UNLESS_GPUS(1);
  CommunicatorOptions options;
  options.nccl_for_single_device = true;
  auto comms = MakeDeviceCommunicators(Gpus(1), options);
  ASSERT_TRUE(comms.ok()) << comms.status();
  std::cout << "NCCL " << NcclBackendVersion() << "\n";
  at::Tensor t = at::randn({1000}, at::TensorOptions(at::kDouble).device(Gpus(1)[0]));
  const at::Tensor before = t.clone();
  ASSERT_TRUE((*comms)[0]->AllReduceSum(t, kTimeout).ok());
  EXPECT_TRUE(at::equal(t, before));
  at::Tensor cpu = at::ones({4});
  EXPECT_EQ((*comms)[0]->AllReduceSum(cpu, kTimeout).code(), absl::StatusCode::kInvalidArgument);
}

TEST(NcclCommunicatorGpuTest, InitTimesOutWhenPeerNeverJoins) {
  BAQ_SKIP_UNLESS_GPUS(1);
  auto id = NewCommunicatorId();
  ASSERT_TRUE(id.ok()) << id.status();
  CommunicatorOptions options;
  options.init_timeout = absl::Seconds(3);
  const absl::Time start = absl::Now();
  auto comm = MakeCommunicatorRank(Gpus(1)[0], 0, 2, *id, options);
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kDeadlineExceeded) << comm.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
}

TEST(NcclCommunicatorGpuTest, TwoGpusSumEveryDtype) {
  BAQ_SKIP_UNLESS_GPUS(2);
  auto comms = MakeDeviceCommunicators(Gpus(2), CommunicatorOptions{});
  ASSERT_TRUE(comms.ok()) << comms.status();
  for (at::ScalarType type : {at::kDouble, at::kFloat, at::kLong, at::kBFloat16}) {
    std::vector<at::Tensor> in, t;
    for (int r = 0; r < 2; ++r) {
      in.push_back((at::arange(4096, at::kDouble) * (r + 1)).to(type));
      t.push_back(in.back().to(Gpus(2)[r]));
    }
    auto status = OnEveryRank(2, [&](int r) { return (*comms)[r]->AllReduceSum(t[r], kTimeout); });
    const at::Tensor expected = in[0] + in[1];
    for (int r = 0; r < 2; ++r) {
      ASSERT_TRUE(status[r].ok()) << status[r];
      EXPECT_TRUE(at::equal(t[r].cpu(), expected)) << at::toString(type) << " rank " << r;
    }
  }
}

TEST(NcclCommunicatorGpuTest, HessianOfSplitWindowsMatchesMergeBitwise) {
  BAQ_SKIP_UNLESS_GPUS(2);
  auto comms = MakeDeviceCommunicators(Gpus(2), CommunicatorOptions{});
  ASSERT_TRUE(comms.ok()) << comms.status();
  constexpr int64_t kCols = 512;
  at::manual_seed(5);
  std::vector<at::Tensor> windows;
  for (int i = 0; i < 6; ++i) windows.push_back(at::randn({1, 256, kCols}) * 2);
  for (HessianReduction mode : {HessianReduction::kBackend, HessianReduction::kRankOrdered}) {
    std::vector<HessianAccumulator> accs;
    for (int r = 0; r < 2; ++r) {
      accs.emplace_back(kCols, Gpus(2)[r]);
      for (size_t i = r; i < windows.size(); i += 2) ASSERT_TRUE(accs[r].Add(windows[i]).ok());
    }
    // What one GPU gets by merging the two partials in rank order.
    HessianAccumulator merged(kCols, Gpus(2)[0]);
    ASSERT_TRUE(merged.Merge(accs[0]).ok());
    ASSERT_TRUE(merged.Merge(accs[1]).ok());
    auto status = OnEveryRank(2, [&](int r) {
      return AllReduceHessian(accs[r], *(*comms)[r], kTimeout, mode);
    });
    for (int r = 0; r < 2; ++r) {
      ASSERT_TRUE(status[r].ok()) << status[r];
      EXPECT_EQ(accs[r].rows(), merged.rows());
      // With two ranks every reduction computes p0 + p1: bitwise equal.
      EXPECT_TRUE(at::equal(accs[r].sum().cpu(), merged.sum().cpu()))
          << "mode " << static_cast<int>(mode) << " rank " << r;
    }
  }
}

TEST(NcclCommunicatorGpuTest, MissingPeerTimesOutAndAborts) {
  BAQ_SKIP_UNLESS_GPUS(2);
  auto comms = MakeDeviceCommunicators(Gpus(2), CommunicatorOptions{});
  ASSERT_TRUE(comms.ok()) << comms.status();
  at::Tensor t = at::ones({1 << 20}, at::TensorOptions(at::kFloat).device(Gpus(2)[0]));
  const absl::Time start = absl::Now();
  const absl::Status s = (*comms)[0]->AllReduceSum(t, absl::Seconds(2));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  EXPECT_EQ((*comms)[0]->Health().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ((*comms)[0]->AllReduceSum(t, kTimeout).code(), absl::StatusCode::kAborted);
}

}  // namespace
}  // namespace baq::worker
