// AllocateActivations: in memory below the limit, a mapping of an unlinked
// spill file above it (visible in /proc/self/maps until the last tensor
// using it is gone), and clear errors for a bad spill dir.
#include "worker/calibration_inputs.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/testing/test_paths.h"

namespace baq::worker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string ProcMaps() {
  std::ifstream in("/proc/self/maps");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(AllocateActivationsTest, StaysInMemoryWithoutLimitOrBelowIt) {
  ActivationSpillOptions o;
  absl::StatusOr<at::Tensor> t = AllocateActivations({2, 3, 4}, at::kFloat, at::kCPU, o);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_FALSE(IsSpilled(*t));
  o.memory_limit_bytes = 2 * 3 * 4 * 4;  // Exactly fits.
  t = AllocateActivations({2, 3, 4}, at::kFloat, at::kCPU, o);
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(IsSpilled(*t));
}

TEST(AllocateActivationsTest, SpillsAboveTheLimitIntoAnUnlinkedMappedFile) {
  const std::string dir = ::baq::testing::MakeScratchDir();
  ActivationSpillOptions o;
  o.memory_limit_bytes = 1024;
  o.spill_dir = dir;
  {
    absl::StatusOr<at::Tensor> t = AllocateActivations({4, 16, 32}, at::kFloat, at::kCPU, o);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_TRUE(IsSpilled(*t));
    EXPECT_EQ(t->sizes(), at::IntArrayRef({4, 16, 32}));
    EXPECT_TRUE(t->is_contiguous());
    EXPECT_THAT(ProcMaps(), HasSubstr(dir + "/baq-activations-"));
    // Nothing visible in the directory: the file is unlinked.
    EXPECT_TRUE(std::filesystem::is_empty(dir));
    // It is ordinary tensor memory: writes through slices read back.
    const at::Tensor src = at::randn({4, 16, 32});
    for (int64_t s = 0; s < 4; s += 3) {
      const int64_t e = std::min<int64_t>(4, s + 3);
      t->slice(0, s, e).copy_(src.slice(0, s, e));
    }
    EXPECT_TRUE(at::equal(*t, src));
    // A view keeps the mapping alive after the tensor is dropped.
    at::Tensor view = t->slice(0, 1, 2);
    *t = at::Tensor();
    EXPECT_TRUE(at::equal(view, src.slice(0, 1, 2)));
  }
  EXPECT_THAT(ProcMaps(), Not(HasSubstr(dir + "/baq-activations-")));
}

TEST(AllocateActivationsTest, BadSpillDirIsInvalidArgumentNamingIt) {
  ActivationSpillOptions o;
  o.memory_limit_bytes = 1;
  o.spill_dir = ::baq::testing::MakeScratchDir() + "/missing";
  absl::StatusOr<at::Tensor> t = AllocateActivations({8, 8}, at::kFloat, at::kCPU, o);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr(o.spill_dir));
}

}  // namespace
}  // namespace baq::worker
