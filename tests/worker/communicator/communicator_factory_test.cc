#include "worker/nccl/communicator_factory.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <vector>

namespace baq::worker {
namespace {

TEST(CommunicatorFactoryTest, OneDeviceIsLocal) {
  const std::vector<c10::Device> devices = {c10::Device("cpu")};
  auto comms = MakeDeviceCommunicators(devices, CommunicatorOptions{});
  ASSERT_TRUE(comms.ok()) << comms.status();
  ASSERT_EQ(comms->size(), 1u);
  EXPECT_EQ((*comms)[0]->world_size(), 1);
}

TEST(CommunicatorFactoryTest, SeveralCpuDevicesNeedInProcess) {
  const std::vector<c10::Device> devices = {c10::Device("cpu"), c10::Device("cpu:1")};
  EXPECT_EQ(MakeDeviceCommunicators(devices, CommunicatorOptions{}).status().code(),
            absl::StatusCode::kUnimplemented);
  CommunicatorOptions options;
  options.allow_in_process = true;
  auto comms = MakeDeviceCommunicators(devices, options);
  ASSERT_TRUE(comms.ok()) << comms.status();
  ASSERT_EQ(comms->size(), 2u);
  EXPECT_EQ((*comms)[1]->rank(), 1);
  EXPECT_EQ((*comms)[1]->world_size(), 2);
}

TEST(CommunicatorFactoryTest, RejectsEmptyAndDuplicateDevices) {
  EXPECT_EQ(MakeDeviceCommunicators({}, CommunicatorOptions{}).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<c10::Device> twice = {c10::Device("cuda:0"), c10::Device("cuda:0")};
  EXPECT_EQ(MakeDeviceCommunicators(twice, CommunicatorOptions{}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CommunicatorFactoryTest, MultiProcessRanksNeedCudaAndNccl) {
  EXPECT_EQ(MakeCommunicatorRank(c10::Device("cpu"), 0, 2, "", CommunicatorOptions{})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  if (!HasNcclBackend()) {
    EXPECT_EQ(NewCommunicatorId().status().code(), absl::StatusCode::kUnimplemented);
    EXPECT_EQ(NcclBackendVersion(), "none");
    EXPECT_EQ(NcclDeviceCount(), 0);
  }
}

}  // namespace
}  // namespace baq::worker
