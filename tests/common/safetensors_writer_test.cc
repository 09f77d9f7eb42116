#include "common/safetensors_writer.h"

#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace baq {
namespace {

using ::baq::testing::ReadFileOrDie;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 31);
  return v;
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  return names;
}

// Writes a small model with every kind of tensor shape the reader accepts.
absl::Status WriteSample(const std::string& path) {
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> w = SafetensorsWriter::Create(path);
  if (!w.ok()) return w.status();
  for (absl::Status s : {
           (*w)->Add("z.weight", DType::kF16, {3, 2}, Pattern(12, 1)),
           (*w)->Add("a.bias", DType::kF32, {3}, Pattern(12, 2)),
           (*w)->Add("scalar", DType::kI64, {}, Pattern(8, 3)),
           (*w)->Add("empty", DType::kBF16, {0, 4}, {}),
           (*w)->Add("bytes", DType::kU8, {5}, Pattern(5, 4)),
       }) {
    if (!s.ok()) return s;
  }
  (*w)->SetMetadata("format", "pt");
  (*w)->SetMetadata("quant", "baq");
  return (*w)->Finish();
}

TEST(SafetensorsWriterTest, RoundTripsThroughReader) {
  const std::string dir = testing::MakeScratchDir();
  const std::string path = dir + "/model.safetensors";
  ASSERT_TRUE(WriteSample(path).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  std::vector<std::string> order;
  for (const TensorInfo& t : (*file)->tensors()) order.push_back(t.name);
  // Data is laid out in the order added (zero-size "empty" sorts by offset).
  EXPECT_THAT(order, ElementsAre("z.weight", "a.bias", "scalar", "empty", "bytes"));
  EXPECT_EQ((*file)->metadata(),
            (std::map<std::string, std::string>{{"format", "pt"}, {"quant", "baq"}}));

  auto z = (*file)->Get("z.weight");
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(z->dtype, DType::kF16);
  EXPECT_THAT(z->shape, ElementsAre(3, 2));
  EXPECT_THAT(std::vector<uint8_t>(z->bytes.begin(), z->bytes.end()),
              ::testing::ContainerEq(Pattern(12, 1)));
  auto scalar = (*file)->Get("scalar");
  ASSERT_TRUE(scalar.ok());
  EXPECT_TRUE(scalar->shape.empty());
  EXPECT_EQ(std::vector<uint8_t>(scalar->bytes.begin(), scalar->bytes.end()), Pattern(8, 3));
  auto empty = (*file)->Get("empty");
  ASSERT_TRUE(empty.ok());
  EXPECT_THAT(empty->shape, ElementsAre(0, 4));
  EXPECT_TRUE(empty->bytes.empty());
  // Temp and spill files are gone; the output is world-readable.
  EXPECT_THAT(ListDir(dir), ElementsAre("model.safetensors"));
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
}

TEST(SafetensorsWriterTest, BytesAreDeterministic) {
  const std::string dir = testing::MakeScratchDir();
  ASSERT_TRUE(WriteSample(dir + "/a.safetensors").ok());
  ASSERT_TRUE(WriteSample(dir + "/b.safetensors").ok());
  EXPECT_EQ(ReadFileOrDie(dir + "/a.safetensors"), ReadFileOrDie(dir + "/b.safetensors"));
}

TEST(SafetensorsWriterTest, HeaderIsSortedAndSpacePaddedToEightBytes) {
  const std::string path = testing::MakeScratchDir() + "/x.safetensors";
  auto w = SafetensorsWriter::Create(path);
  ASSERT_TRUE(w.ok());
  const std::vector<uint8_t> two = {7, 9};
  ASSERT_TRUE((*w)->Add("b", DType::kU8, {2}, two).ok());
  ASSERT_TRUE((*w)->Add("a", DType::kU8, {0}, {}).ok());
  EXPECT_EQ((*w)->data_bytes(), 2u);
  ASSERT_TRUE((*w)->Finish().ok());

  const std::string json = R"({"a":{"data_offsets":[2,2],"dtype":"U8","shape":[0]},)"
                           R"("b":{"data_offsets":[0,2],"dtype":"U8","shape":[2]}})";
  std::string header = json + std::string((8 - json.size() % 8) % 8, ' ');
  std::string expected(8, '\0');
  expected[0] = static_cast<char>(header.size());
  expected += header + "\x07\x09";
  EXPECT_EQ(ReadFileOrDie(path), expected);
  EXPECT_EQ(header.size() % 8, 0u);
}

TEST(SafetensorsWriterTest, EmptyModelIsValid) {
  const std::string path = testing::MakeScratchDir() + "/empty.safetensors";
  auto w = SafetensorsWriter::Create(path);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Finish().ok());
  EXPECT_EQ(ReadFileOrDie(path), std::string("\x08\0\0\0\0\0\0\0{}      ", 16));
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->tensors().empty());
}

TEST(SafetensorsWriterTest, AddRejectsBadTensors) {
  auto w = SafetensorsWriter::Create(testing::MakeScratchDir() + "/m.safetensors");
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Add("w", DType::kF32, {1}, Pattern(4, 0)).ok());
  struct Bad {
    std::string name;
    std::vector<int64_t> shape;
    size_t bytes;
    std::string fault;
  };
  for (const Bad& bad : std::vector<Bad>{
           {"w", {1}, 4, "duplicate tensor name"},
           {"x", {2}, 4, "got 4 bytes, shape and dtype need 8"},
           {"x", {-1}, 0, "invalid shape"},
           {"x", {1LL << 40, 1LL << 40}, 0, "invalid shape"},
           {"", {1}, 4, "name must be non-empty"},
           {"__metadata__", {1}, 4, "other than __metadata__"},
           {"bad\xff", {1}, 4, "UTF-8"},
       }) {
    absl::Status s = (*w)->Add(bad.name, DType::kF32, bad.shape, Pattern(bad.bytes, 0));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad.fault;
    EXPECT_THAT(s.message(), HasSubstr(bad.fault));
  }
  EXPECT_EQ((*w)->data_bytes(), 4u);  // failed adds leave no trace
  ASSERT_TRUE((*w)->Finish().ok());
}

TEST(SafetensorsWriterTest, FinishTwiceAndAddAfterFinishAreFailedPrecondition) {
  auto w = SafetensorsWriter::Create(testing::MakeScratchDir() + "/m.safetensors");
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Finish().ok());
  EXPECT_EQ((*w)->Finish().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*w)->Add("x", DType::kU8, {1}, Pattern(1, 0)).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(SafetensorsWriterTest, InvalidUtf8MetadataFailsFinish) {
  const std::string dir = testing::MakeScratchDir();
  auto w = SafetensorsWriter::Create(dir + "/m.safetensors");
  ASSERT_TRUE(w.ok());
  (*w)->SetMetadata("k", "\xc0\xaf");
  EXPECT_EQ((*w)->Finish().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir + "/m.safetensors"));
}

TEST(SafetensorsWriterTest, UnfinishedWriterLeavesNothingBehind) {
  const std::string dir = testing::MakeScratchDir();
  {
    auto w = SafetensorsWriter::Create(dir + "/m.safetensors");
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Add("x", DType::kU8, {3}, Pattern(3, 0)).ok());
    EXPECT_EQ(ListDir(dir).size(), 1u);  // the spill file
  }
  EXPECT_TRUE(ListDir(dir).empty());
}

TEST(SafetensorsWriterTest, ReplacesExistingFileAtomically) {
  const std::string dir = testing::MakeScratchDir();
  testing::WriteFileOrDie(dir + "/m.safetensors", "old");
  ASSERT_TRUE(WriteSample(dir + "/m.safetensors").ok());
  EXPECT_TRUE(SafetensorsFile::Open(dir + "/m.safetensors").ok());
  EXPECT_THAT(ListDir(dir), UnorderedElementsAre("m.safetensors"));
}

TEST(SafetensorsWriterTest, MissingDirectoryIsNotFound) {
  auto w = SafetensorsWriter::Create(testing::MakeScratchDir() + "/no/such/m.safetensors");
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(w.status().message(), HasSubstr("/no/such/"));
}

}  // namespace
}  // namespace baq
