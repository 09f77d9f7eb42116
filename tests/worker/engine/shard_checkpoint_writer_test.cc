// ShardCheckpointWriter: files are written durably in both modes, an
// asynchronous batch's error comes back at the next Write, and a shard's
// older checkpoints are removed once a newer one is durable, keeping two.
#include "worker/engine/shard_checkpoint_writer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/file_contents.h"
#include "tests/testing/test_paths.h"

namespace baq::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

void Touch(const std::string& path) { std::ofstream(path) << "x"; }

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    out.push_back(e.path().filename().string());
  }
  return out;
}

TEST(ShardCheckpointWriterTest, PathNamesShardAndBlock) {
  EXPECT_EQ(ShardCheckpointWriter::Path("/d", 3, 12), "/d/shard-3.block-12.baqa");
}

TEST(ShardCheckpointWriterTest, SupersededKeepsTheNewestOlderCheckpointOfTheShardOnly) {
  const std::string dir = testing::MakeScratchDir();
  for (int b : {0, 4, 8}) Touch(ShardCheckpointWriter::Path(dir, 1, b));
  Touch(ShardCheckpointWriter::Path(dir, 2, 0));        // another shard
  Touch(ShardCheckpointWriter::Path(dir, 1, 16));       // a later block
  Touch(dir + "/shard-1.block-03.baqa");                // not a name we write
  Touch(dir + "/shard-1.block-2.baqa.tmp");             // a temporary
  EXPECT_THAT(ShardCheckpointWriter::Superseded(dir, 1, 12),
              UnorderedElementsAre(ShardCheckpointWriter::Path(dir, 1, 0),
                                   ShardCheckpointWriter::Path(dir, 1, 4)));
  EXPECT_THAT(ShardCheckpointWriter::Superseded(dir, 1, 4), ElementsAre());  // 0 stays
  EXPECT_THAT(ShardCheckpointWriter::Superseded(dir, 2, 4), ElementsAre());
  EXPECT_THAT(ShardCheckpointWriter::Superseded(dir + "/missing", 1, 4), ElementsAre());
}

TEST(ShardCheckpointWriterTest, WritesThenRemovesSupersededInBothModes) {
  for (bool async : {false, true}) {
    const std::string dir = testing::MakeScratchDir();
    ShardCheckpointWriter w(async);
    for (int b : {0, 4, 8, 12}) {
      ShardCheckpointWriter::File f{ShardCheckpointWriter::Path(dir, 0, b), "block " +
                                    std::to_string(b), ShardCheckpointWriter::Superseded(dir, 0, b)};
      ASSERT_TRUE(w.Write({f}).ok());
      ASSERT_TRUE(w.Wait().ok());  // durable from here on
    }
    EXPECT_THAT(Names(dir), UnorderedElementsAre("shard-0.block-8.baqa", "shard-0.block-12.baqa"))
        << (async ? "async" : "sync");
    absl::StatusOr<std::string> last = ReadFileContents(ShardCheckpointWriter::Path(dir, 0, 12));
    ASSERT_TRUE(last.ok());
    EXPECT_EQ(*last, "block 12");
  }
}

TEST(ShardCheckpointWriterTest, AnAsyncBatchsErrorComesBackAtTheNextWrite) {
  const std::string dir = testing::MakeScratchDir();
  ShardCheckpointWriter w(/*async=*/true);
  ASSERT_TRUE(w.Write({{dir + "/no/such/dir/f.baqa", "x", {}}}).ok());  // fails in the background
  absl::Status s = w.Write({{ShardCheckpointWriter::Path(dir, 0, 4), "y", {}}});
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("an earlier shard checkpoint was not written"));
  EXPECT_FALSE(std::filesystem::exists(ShardCheckpointWriter::Path(dir, 0, 4)));
  EXPECT_TRUE(w.Write({{ShardCheckpointWriter::Path(dir, 0, 4), "y", {}}}).ok());
  EXPECT_TRUE(w.Wait().ok());
  EXPECT_TRUE(std::filesystem::exists(ShardCheckpointWriter::Path(dir, 0, 4)));
}

}  // namespace
}  // namespace baq::worker
