#include "common/atomic_output_dir.h"

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace baq {
namespace {

using ::baq::testing::ReadFileOrDie;

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(AtomicOutputDirTest, CommitPublishesEverything) {
  const std::string parent = testing::MakeScratchDir();
  auto out = AtomicOutputDir::Create(parent + "/model");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)->final_path(), parent + "/model");
  const std::string temp = (*out)->temp_path();
  EXPECT_THAT(temp, HasSubstr(parent + "/.model.tmp-"));
  testing::WriteFileOrDie(temp + "/config.json", "{}");
  testing::WriteFileOrDie(temp + "/sub/deep/model.safetensors", "weights");
  EXPECT_FALSE(fs::exists(parent + "/model"));  // invisible until Commit()

  ASSERT_TRUE((*out)->Commit().ok());
  EXPECT_EQ(ReadFileOrDie(parent + "/model/config.json"), "{}");
  EXPECT_EQ(ReadFileOrDie(parent + "/model/sub/deep/model.safetensors"), "weights");
  EXPECT_THAT(ListDir(parent), ElementsAre("model"));
  EXPECT_EQ(fs::status(parent + "/model").permissions() & fs::perms::all,
            fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                fs::perms::others_read | fs::perms::others_exec);
  out->reset();  // destroying a committed dir keeps it
  EXPECT_TRUE(fs::exists(parent + "/model/config.json"));
}

TEST(AtomicOutputDirTest, AbandonedDirIsRemoved) {
  const std::string parent = testing::MakeScratchDir();
  {
    auto out = AtomicOutputDir::Create(parent + "/model");
    ASSERT_TRUE(out.ok());
    testing::WriteFileOrDie((*out)->temp_path() + "/a/b.txt", "x");
    EXPECT_THAT(ListDir(parent), ::testing::SizeIs(1));
  }
  EXPECT_THAT(ListDir(parent), IsEmpty());
}

TEST(AtomicOutputDirTest, ExistingTargetIsAlreadyExists) {
  const std::string parent = testing::MakeScratchDir();
  fs::create_directory(parent + "/model");
  auto out = AtomicOutputDir::Create(parent + "/model");
  EXPECT_EQ(out.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(out.status().message(), HasSubstr(parent + "/model already exists"));
  EXPECT_THAT(ListDir(parent), ElementsAre("model"));
}

TEST(AtomicOutputDirTest, TargetCreatedBeforeCommitIsAlreadyExists) {
  // Even an empty dir, which plain rename(2) would silently replace.
  const std::string parent = testing::MakeScratchDir();
  auto out = AtomicOutputDir::Create(parent + "/model/");
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)->final_path(), parent + "/model");
  testing::WriteFileOrDie((*out)->temp_path() + "/f", "new");
  fs::create_directory(parent + "/model");
  EXPECT_EQ((*out)->Commit().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(ListDir(parent + "/model"), IsEmpty());
  out->reset();
  EXPECT_THAT(ListDir(parent), ElementsAre("model"));
}

TEST(AtomicOutputDirTest, OverwriteReplacesOldOutput) {
  const std::string parent = testing::MakeScratchDir();
  testing::WriteFileOrDie(parent + "/model/old.txt", "old");
  testing::WriteFileOrDie(parent + "/model/shared.txt", "old");
  auto out = AtomicOutputDir::Create(parent + "/model", /*overwrite=*/true);
  ASSERT_TRUE(out.ok()) << out.status();
  testing::WriteFileOrDie((*out)->temp_path() + "/shared.txt", "new");
  EXPECT_EQ(ReadFileOrDie(parent + "/model/old.txt"), "old");  // untouched until Commit()
  ASSERT_TRUE((*out)->Commit().ok());
  EXPECT_THAT(ListDir(parent + "/model"), ElementsAre("shared.txt"));
  EXPECT_EQ(ReadFileOrDie(parent + "/model/shared.txt"), "new");
  EXPECT_THAT(ListDir(parent), ElementsAre("model"));  // old output removed
}

TEST(AtomicOutputDirTest, OverwriteWithoutExistingTargetJustPublishes) {
  const std::string parent = testing::MakeScratchDir();
  auto out = AtomicOutputDir::Create(parent + "/model", /*overwrite=*/true);
  ASSERT_TRUE(out.ok());
  ASSERT_TRUE((*out)->Commit().ok());
  EXPECT_THAT(ListDir(parent), ElementsAre("model"));
}

TEST(AtomicOutputDirTest, CommitTwiceIsFailedPrecondition) {
  auto out = AtomicOutputDir::Create(testing::MakeScratchDir() + "/model");
  ASSERT_TRUE(out.ok());
  ASSERT_TRUE((*out)->Commit().ok());
  EXPECT_EQ((*out)->Commit().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(AtomicOutputDirTest, BadPathsAreRejected) {
  const std::string parent = testing::MakeScratchDir();
  EXPECT_EQ(AtomicOutputDir::Create(parent + "/no/such/model").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(AtomicOutputDir::Create(parent + "/..").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AtomicOutputDir::Create("/").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ListDir(parent), IsEmpty());
}

}  // namespace
}  // namespace baq
