#include "common/safetensors_checkpoint.h"

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/safetensors_writer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace baq {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Writes a shard holding one F32 [2] tensor per name, filled with `value`.
void WriteShard(const std::string& path, const std::vector<std::string>& names, uint8_t value) {
  auto w = SafetensorsWriter::Create(path);
  ASSERT_TRUE(w.ok()) << w.status();
  for (const std::string& name : names) {
    const std::vector<uint8_t> bytes(8, value);
    ASSERT_TRUE((*w)->Add(name, DType::kF32, {2}, bytes).ok());
  }
  ASSERT_TRUE((*w)->Finish().ok());
}

void WriteIndex(const std::string& dir, const std::string& weight_map) {
  testing::WriteFileOrDie(
      dir + "/model.safetensors.index.json",
      absl::StrCat(R"({"metadata":{"total_size":32},"weight_map":)", weight_map, "}"));
}

// A two-shard checkpoint as transformers' save_pretrained writes it.
std::string MakeShardedDir() {
  const std::string dir = testing::MakeScratchDir();
  WriteShard(dir + "/model-00001-of-00002.safetensors", {"a", "b"}, 1);
  WriteShard(dir + "/model-00002-of-00002.safetensors", {"c", "d"}, 2);
  WriteIndex(dir, R"({"a":"model-00001-of-00002.safetensors",
                      "b":"model-00001-of-00002.safetensors",
                      "c":"model-00002-of-00002.safetensors",
                      "d":"model-00002-of-00002.safetensors"})");
  return dir;
}

TEST(SafetensorsCheckpointTest, OpensSingleFile) {
  const std::string dir = testing::MakeScratchDir();
  WriteShard(dir + "/model.safetensors", {"w", "b"}, 3);
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->dir(), dir);
  EXPECT_THAT((*ckpt)->TensorNames(), ElementsAre("b", "w"));
  auto w = (*ckpt)->Get("w");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->bytes[0], 3);
}

TEST(SafetensorsCheckpointTest, OpensShardsLazilyThroughIndex) {
  const std::string dir = MakeShardedDir();
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_THAT((*ckpt)->TensorNames(), ElementsAre("a", "b", "c", "d"));
  EXPECT_TRUE((*ckpt)->Contains("c"));
  EXPECT_FALSE((*ckpt)->Contains("e"));
  // Shard 2 is corrupted after Open(): a, b (shard 1) still work, since only
  // the shard that holds a tensor is opened.
  testing::WriteFileOrDie(dir + "/model-00002-of-00002.safetensors", "garbage!!");
  auto a = (*ckpt)->Get("a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->bytes[0], 1);
  auto info = (*ckpt)->Info("b");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->data_begin, 8u);
  auto c = (*ckpt)->Get("c");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("model-00002-of-00002.safetensors"));
}

TEST(SafetensorsCheckpointTest, ConcurrentGetsShareShards) {
  auto ckpt = SafetensorsCheckpoint::Open(MakeShardedDir());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  std::vector<std::thread> threads;
  std::vector<const uint8_t*> seen(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      auto d = (*ckpt)->Get("d");
      seen[i] = d.ok() ? d->bytes.data() : nullptr;
    });
  }
  for (std::thread& t : threads) t.join();
  for (const uint8_t* p : seen) EXPECT_EQ(p, seen[0]);
  EXPECT_NE(seen[0], nullptr);
}

TEST(SafetensorsCheckpointTest, UnknownTensorIsNotFound) {
  const std::string dir = MakeShardedDir();
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok());
  auto e = (*ckpt)->Get("e");
  EXPECT_EQ(e.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(e.status().message(), HasSubstr("no tensor \"e\" in checkpoint " + dir));
  EXPECT_EQ((*ckpt)->Info("e").status().code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsCheckpointTest, IndexNamingMissingShardIsNotFound) {
  const std::string dir = testing::MakeScratchDir();
  WriteShard(dir + "/s1.safetensors", {"a"}, 1);
  WriteIndex(dir, R"({"a":"s1.safetensors","b":"s2.safetensors"})");
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ckpt.status().message(), HasSubstr("missing shard file \"s2.safetensors\""));
  EXPECT_THAT(ckpt.status().message(), HasSubstr("tensor \"b\""));
}

TEST(SafetensorsCheckpointTest, ShardLackingIndexedTensorNamesBoth) {
  const std::string dir = testing::MakeScratchDir();
  WriteShard(dir + "/s1.safetensors", {"a"}, 1);
  WriteIndex(dir, R"({"a":"s1.safetensors","ghost":"s1.safetensors"})");
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  for (absl::Status s : {(*ckpt)->Get("a").status(), (*ckpt)->Info("ghost").status()}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr("s1.safetensors lacks tensor \"ghost\""));
  }
}

TEST(SafetensorsCheckpointTest, RejectsBadIndexes) {
  struct Case {
    std::string index;
    std::string fault;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"weight_map":{"a":"../s1.safetensors"}})", "not a plain file name"},
           {R"({"weight_map":{"a":"sub/s1.safetensors"}})", "not a plain file name"},
           {R"({"weight_map":{"a":"/etc/passwd"}})", "not a plain file name"},
           {R"({"weight_map":{"a":".."}})", "not a plain file name"},
           {R"({"weight_map":{"a":""}})", "not a plain file name"},
           {R"({"weight_map":{"a":3}})", "is not a string"},
           {R"({"weight_map":{}})", "weight_map is empty"},
           {R"({"weight_map":[]})", "no \"weight_map\" object"},
           {R"({"metadata":{}})", "no \"weight_map\" object"},
           {R"([])", "no \"weight_map\" object"},
           {R"({"weight_map":{"a":"s1.safetensors",)", "not valid JSON"},
           {R"({"weight_map":{"a":"s1.safetensors","a":"s1.safetensors"}})", "duplicate key \"a\""},
       }) {
    const std::string dir = testing::MakeScratchDir();
    WriteShard(dir + "/s1.safetensors", {"a"}, 1);
    testing::WriteFileOrDie(dir + "/model.safetensors.index.json", c.index);
    auto ckpt = SafetensorsCheckpoint::Open(dir);
    EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kInvalidArgument) << c.index;
    EXPECT_THAT(ckpt.status().message(), HasSubstr("model.safetensors.index.json: ")) << c.index;
    EXPECT_THAT(ckpt.status().message(), HasSubstr(c.fault)) << c.index;
  }
}

TEST(SafetensorsCheckpointTest, NoWeightsIsNotFound) {
  const std::string dir = testing::MakeScratchDir();
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ckpt.status().message(), HasSubstr("no model.safetensors or"));
  EXPECT_THAT(ckpt.status().message(), ::testing::Not(HasSubstr("pickle")));

  testing::WriteFileOrDie(dir + "/pytorch_model.bin", "PK");
  ckpt = SafetensorsCheckpoint::Open(dir);
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ckpt.status().message(), HasSubstr(".bin/pickle checkpoints are not supported"));

  auto missing = SafetensorsCheckpoint::Open(dir + "/nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(dir + "/nope"));
}

TEST(SafetensorsCheckpointTest, CorruptSingleFileFailsOpen) {
  const std::string dir = testing::MakeScratchDir();
  testing::WriteFileOrDie(dir + "/model.safetensors", "tiny");
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ckpt.status().message(), HasSubstr("model.safetensors: file is 4 bytes"));
}

TEST(SafetensorsCheckpointTest, OpensOptFixture) {
  if (!testing::HaveSharedData()) GTEST_SKIP() << "no shared data";
  auto ckpt = SafetensorsCheckpoint::Open(testing::SharedDataDir() + "/models/opt-fixture");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->TensorNames().size(), 100u);
  auto info = (*ckpt)->Info("model.decoder.layers.0.fc1.weight");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_THAT(info->shape, ElementsAre(1536, 384));
}

}  // namespace
}  // namespace baq
