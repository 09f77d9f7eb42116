// JobCheckpoint: what a block checkpoint saves comes back bit for bit, the
// manifest is the commit point, and a damaged or foreign checkpoint is
// refused with a code that says so.
#include "coordinator/job_checkpoint.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "tests/testing/test_paths.h"

namespace baq::coordinator {
namespace {

namespace fs = std::filesystem;

BlockOutput MakeOutput(int64_t block) {
  BlockOutput out;
  out.block = block;
  for (int i = 0; i < 2; ++i) {
    TensorBytes t;
    t.name = "model.layers." + std::to_string(block) + ".proj" + std::to_string(i) + ".weight";
    t.dtype = i == 0 ? DType::kF16 : DType::kI32;
    t.shape = {3, 5};
    t.bytes = std::string(i == 0 ? 30 : 60, '\0');
    for (size_t k = 0; k < t.bytes.size(); ++k) t.bytes[k] = static_cast<char>(k * 7 + block);
    out.tensors.push_back(t);
    out.tensor_format.push_back(i);
    LayerReport r;
    r.name = "model.layers." + std::to_string(block) + ".proj" + std::to_string(i);
    r.rows = 3;
    r.columns = 5;
    r.bits_sum = 0.1 + 0.2 + block;  // Not representable exactly in decimal.
    r.proxy_loss = std::nextafter(1.0 / 3.0, 1.0);
    r.seconds = 0.25;
    r.gptq_bits = 3;
    r.gptq_proxy_loss = std::numeric_limits<double>::denorm_min();
    out.layers.push_back(r);
  }
  return out;
}

CheckpointState MakeState(int64_t blocks_done) {
  CheckpointState s;
  s.num_blocks = 4;
  s.blocks_done = blocks_done;
  s.budget.bits_done = 1e-300 * 3.3;
  s.budget.elements_done = 123456789012;
  s.budget.projection_exact = 2.0 / 3.0;
  s.budget.projection_assigned = -0.0;
  s.budget.reference_losses = {{"block 0", 0.1 + 0.2}, {"block 1", 1e-310}};
  s.worker_failures = 2;
  return s;
}

void ExpectSameOutput(const BlockOutput& a, const BlockOutput& b) {
  EXPECT_EQ(a.block, b.block);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    EXPECT_EQ(a.tensors[i].name, b.tensors[i].name);
    EXPECT_EQ(a.tensors[i].dtype, b.tensors[i].dtype);
    EXPECT_EQ(a.tensors[i].shape, b.tensors[i].shape);
    EXPECT_EQ(a.tensors[i].bytes, b.tensors[i].bytes);
  }
  EXPECT_EQ(a.tensor_format, b.tensor_format);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    EXPECT_EQ(a.layers[i].name, b.layers[i].name);
    EXPECT_EQ(a.layers[i].rows, b.layers[i].rows);
    EXPECT_EQ(a.layers[i].columns, b.layers[i].columns);
    // Bit-exact, not approximately equal: a resumed job must continue with
    // exactly the numbers an undisturbed one has.
    EXPECT_EQ(std::memcmp(&a.layers[i].bits_sum, &b.layers[i].bits_sum, 8), 0);
    EXPECT_EQ(std::memcmp(&a.layers[i].proxy_loss, &b.layers[i].proxy_loss, 8), 0);
    EXPECT_EQ(std::memcmp(&a.layers[i].gptq_proxy_loss, &b.layers[i].gptq_proxy_loss, 8), 0);
    EXPECT_EQ(a.layers[i].gptq_bits, b.layers[i].gptq_bits);
  }
}

const nlohmann::json kConfig = {{"model", "m"}, {"bits", 3}};

TEST(JobCheckpointTest, NoCheckpointIsNotFound) {
  JobCheckpoint ckpt(baq::testing::MakeScratchDir() + "/job-1", kConfig);
  EXPECT_EQ(ckpt.Load().status().code(), absl::StatusCode::kNotFound);
}

TEST(JobCheckpointTest, BlocksStateAndInputsRoundTripExactly) {
  const std::string dir = baq::testing::MakeScratchDir() + "/job-1";
  JobCheckpoint ckpt(dir, kConfig);
  const std::string inputs1 = std::string("\0\1\2 activations of block 1", 26);
  const std::string inputs2 = "activations of block 2";
  ASSERT_TRUE(ckpt.SaveBlock(MakeOutput(0), &inputs1, MakeState(1)).ok());
  ASSERT_TRUE(ckpt.SaveBlock(MakeOutput(1), &inputs2, MakeState(2)).ok());

  JobCheckpoint reopened(dir, kConfig);
  absl::StatusOr<CheckpointState> s = reopened.Load();
  ASSERT_TRUE(s.ok()) << s.status();
  const CheckpointState want = MakeState(2);
  EXPECT_EQ(s->num_blocks, 4);
  EXPECT_EQ(s->blocks_done, 2);
  EXPECT_EQ(s->worker_failures, 2);
  EXPECT_EQ(std::memcmp(&s->budget.bits_done, &want.budget.bits_done, 8), 0);
  EXPECT_EQ(s->budget.elements_done, want.budget.elements_done);
  EXPECT_EQ(std::memcmp(&s->budget.projection_exact, &want.budget.projection_exact, 8), 0);
  EXPECT_TRUE(std::signbit(s->budget.projection_assigned));  // -0.0 stays -0.0.
  ASSERT_EQ(s->budget.reference_losses.size(), 2u);
  EXPECT_EQ(s->budget.reference_losses[0].first, "block 0");
  EXPECT_EQ(s->budget.reference_losses[0].second, 0.1 + 0.2);
  EXPECT_EQ(s->budget.reference_losses[1].second, 1e-310);
  for (int64_t b = 0; b < 2; ++b) {
    absl::StatusOr<BlockOutput> out = reopened.LoadBlock(b);
    ASSERT_TRUE(out.ok()) << out.status();
    ExpectSameOutput(*out, MakeOutput(b));
  }
  absl::StatusOr<std::string> in = reopened.LoadInputs(2);
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ(*in, inputs2);
  // Inputs the manifest no longer points at are gone; no temp files stay.
  EXPECT_FALSE(fs::exists(dir + "/inputs-00001.bin"));
  for (const auto& e : fs::directory_iterator(dir)) {
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
  }
}

TEST(JobCheckpointTest, LastBlockHasNoNextInputs) {
  const std::string dir = baq::testing::MakeScratchDir() + "/job-1";
  JobCheckpoint ckpt(dir, kConfig);
  CheckpointState s = MakeState(4);
  ASSERT_TRUE(ckpt.SaveBlock(MakeOutput(3), nullptr, s).ok());
  EXPECT_EQ(ckpt.Load()->blocks_done, 4);
  EXPECT_FALSE(fs::exists(dir + "/inputs-00004.bin"));
}

TEST(JobCheckpointTest, AnotherConfigsCheckpointIsRefused) {
  const std::string dir = baq::testing::MakeScratchDir() + "/job-1";
  std::string inputs = "x";
  ASSERT_TRUE(JobCheckpoint(dir, kConfig).SaveBlock(MakeOutput(0), &inputs, MakeState(1)).ok());
  nlohmann::json other = kConfig;
  other["bits"] = 4;
  EXPECT_EQ(JobCheckpoint(dir, other).Load().status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(JobCheckpointTest, DamagedFilesAreDataLoss) {
  const std::string dir = baq::testing::MakeScratchDir() + "/job-1";
  JobCheckpoint ckpt(dir, kConfig);
  std::string inputs = "x";
  ASSERT_TRUE(ckpt.SaveBlock(MakeOutput(0), &inputs, MakeState(1)).ok());
  // A block file cut short (a disk that lied about fsync, a manual copy).
  const std::string block = dir + "/block-00000.out";
  fs::resize_file(block, fs::file_size(block) - 5);
  EXPECT_EQ(ckpt.LoadBlock(0).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ckpt.LoadBlock(1).status().code(), absl::StatusCode::kDataLoss);  // Missing.
  baq::testing::WriteFileOrDie(dir + "/manifest.json", "{not json");
  EXPECT_EQ(ckpt.Load().status().code(), absl::StatusCode::kDataLoss);
}

TEST(JobCheckpointTest, WeightsRoundTripAndDamageIsDataLoss) {
  const std::string dir = baq::testing::MakeScratchDir() + "/job-1";
  JobCheckpoint ckpt(dir, kConfig);
  const std::vector<TensorBytes> weights = MakeOutput(3).tensors;
  ASSERT_TRUE(ckpt.SaveWeights(3, weights).ok());
  absl::StatusOr<std::vector<TensorBytes>> back = ckpt.LoadWeights(3);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), weights.size());
  for (size_t i = 0; i < weights.size(); ++i) {
    EXPECT_EQ((*back)[i].name, weights[i].name);
    EXPECT_EQ((*back)[i].shape, weights[i].shape);
    EXPECT_EQ((*back)[i].bytes, weights[i].bytes);
  }
  const std::string path = dir + "/weights-3.bin";
  {
    std::ofstream(path, std::ios::binary | std::ios::app) << "x";  // A trailing byte.
  }
  EXPECT_EQ(ckpt.LoadWeights(3).status().code(), absl::StatusCode::kDataLoss);
  fs::resize_file(path, fs::file_size(path) - 2);  // The last tensor cut short.
  EXPECT_EQ(ckpt.LoadWeights(3).status().code(), absl::StatusCode::kDataLoss);
  fs::resize_file(path, 12);  // Inside the header length.
  EXPECT_EQ(ckpt.LoadWeights(3).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ckpt.LoadWeights(2).status().code(), absl::StatusCode::kDataLoss);  // Missing.
}

TEST(JobCheckpointTest, RemoveDeletesTheDirectory) {
  const std::string dir = baq::testing::MakeScratchDir() + "/job-1";
  JobCheckpoint ckpt(dir, kConfig);
  ASSERT_TRUE(ckpt.SaveState(MakeState(0)).ok());
  EXPECT_TRUE(fs::exists(dir + "/manifest.json"));
  ckpt.Remove();
  EXPECT_FALSE(fs::exists(dir));
}

}  // namespace
}  // namespace baq::coordinator
