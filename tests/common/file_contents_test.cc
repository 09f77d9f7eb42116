// ReadFileContents: every byte back (binary, NULs included), and errors that
// name the path.
#include "common/file_contents.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/testing/test_paths.h"

namespace baq {
namespace {

using ::testing::HasSubstr;

TEST(FileContentsTest, ReadsEveryByte) {
  const std::string path = testing::MakeScratchDir() + "/data.bin";
  const std::string bytes("a\0b\r\n\xff", 6);
  testing::WriteFileOrDie(path, bytes);
  absl::StatusOr<std::string> read = ReadFileContents(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, bytes);
}

TEST(FileContentsTest, EmptyFileIsEmpty) {
  const std::string path = testing::MakeScratchDir() + "/empty";
  testing::WriteFileOrDie(path, "");
  absl::StatusOr<std::string> read = ReadFileContents(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, "");
}

TEST(FileContentsTest, MissingFileIsNotFoundNamingIt) {
  const std::string path = testing::MakeScratchDir() + "/no-such-file.json";
  absl::StatusOr<std::string> read = ReadFileContents(path);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(read.status().message()), HasSubstr(path));
}

}  // namespace
}  // namespace baq
