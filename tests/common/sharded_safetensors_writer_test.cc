// ShardedSafetensorsWriter: one model.safetensors while the data fits the
// limit, else model-0000i-of-0000N.safetensors with an index that
// SafetensorsCheckpoint (and transformers) read back; a tensor larger than
// the limit gets a shard of its own; bad limits and duplicates are refused.
#include "common/sharded_safetensors_writer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/safetensors_checkpoint.h"
#include "nlohmann/json.hpp"
#include "tests/testing/test_paths.h"

namespace baq {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

absl::Span<const uint8_t> Span(const std::string& s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

std::vector<std::string> Listing(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  return names;
}

// Writes tensors "t0".."t<n-1>" of `bytes[i]` F16 bytes each (filled with 'a' + i).
std::string Write(int64_t max_shard_bytes, const std::vector<size_t>& bytes) {
  const std::string dir = testing::MakeScratchDir();
  auto w = ShardedSafetensorsWriter::Create(dir, max_shard_bytes);
  EXPECT_TRUE(w.ok()) << w.status();
  (*w)->SetMetadata("format", "pt");
  for (size_t i = 0; i < bytes.size(); ++i) {
    const std::string data(bytes[i], static_cast<char>('a' + i));
    EXPECT_TRUE((*w)->Add("t" + std::to_string(i), DType::kF16,
                          {static_cast<int64_t>(bytes[i] / 2)}, Span(data))
                    .ok());
  }
  EXPECT_TRUE((*w)->Finish().ok());
  return dir;
}

void ExpectReadsBack(const std::string& dir, const std::vector<size_t>& bytes) {
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  for (size_t i = 0; i < bytes.size(); ++i) {
    auto v = (*ckpt)->Get("t" + std::to_string(i));
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(v->bytes.data()), v->bytes.size()),
              std::string(bytes[i], static_cast<char>('a' + i)));
  }
}

TEST(ShardedSafetensorsWriterTest, FitsInOneFileWithoutAnIndex) {
  const std::vector<size_t> bytes = {8, 8, 8};
  const std::string dir = Write(/*max_shard_bytes=*/1000, bytes);
  EXPECT_THAT(Listing(dir), ElementsAre("model.safetensors"));
  ExpectReadsBack(dir, bytes);
}

TEST(ShardedSafetensorsWriterTest, ShardsBeyondTheLimitWithAnIndex) {
  // Limit 20: 8 + 8 fill shard 1, the third 8 starts shard 2, 40 (over the limit) gets shard
  // 3 alone, and the last tensor starts shard 4.
  const std::vector<size_t> bytes = {8, 8, 8, 40, 2};
  const std::string dir = Write(/*max_shard_bytes=*/20, bytes);
  EXPECT_THAT(Listing(dir), UnorderedElementsAre("model-00001-of-00004.safetensors",
                                                 "model-00002-of-00004.safetensors",
                                                 "model-00003-of-00004.safetensors",
                                                 "model-00004-of-00004.safetensors",
                                                 "model.safetensors.index.json"));
  const nlohmann::json index =
      nlohmann::json::parse(testing::ReadFileOrDie(dir + "/model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"], 66);
  EXPECT_EQ(index["weight_map"]["t0"], "model-00001-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["t1"], "model-00001-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["t2"], "model-00002-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["t3"], "model-00003-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["t4"], "model-00004-of-00004.safetensors");
  ExpectReadsBack(dir, bytes);
}

TEST(ShardedSafetensorsWriterTest, RefusesABadLimitADuplicateAndASecondFinish) {
  const std::string dir = testing::MakeScratchDir();
  EXPECT_EQ(ShardedSafetensorsWriter::Create(dir, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto w = ShardedSafetensorsWriter::Create(dir, 4);
  ASSERT_TRUE(w.ok());
  const std::string data(4, 'x');
  EXPECT_TRUE((*w)->Add("a", DType::kF16, {2}, Span(data)).ok());
  EXPECT_TRUE((*w)->Add("b", DType::kF16, {2}, Span(data)).ok());  // second shard
  EXPECT_EQ((*w)->Add("a", DType::kF16, {2}, Span(data)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*w)->Finish().ok());
  EXPECT_EQ((*w)->Finish().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace baq
