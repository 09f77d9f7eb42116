#include "tests/testing/test_paths.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace baq::testing {

std::string SharedDataDir() {
  if (const char* env = std::getenv("BAQ_SHARED_DATA_DIR")) return env;
  return std::filesystem::weakly_canonical(BAQ_TEST_DATA_DIR).string();
}

bool HaveSharedData() {
  return std::filesystem::exists(SharedDataDir() + "/models/opt-fixture/config.json");
}

std::string SourceDir() { return BAQ_SOURCE_DIR; }
std::string BinaryDir() { return BAQ_BINARY_DIR; }

std::string MakeScratchDir() {
  static std::atomic<int> counter{0};
  const char* base = std::getenv("TEST_TMPDIR");
  std::string root = base != nullptr ? base : std::filesystem::temp_directory_path().string();
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string dir = absl::StrCat(root, "/baq_test_", getpid(), "_",
                                 info != nullptr ? info->name() : "x", "_", counter++);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

void WriteFileOrDie(const std::string& path, const std::string& contents) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  if (!out) {
    std::abort();
  }
}

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream contents;
  contents << in.rdbuf();
  if (!in) {
    std::fprintf(stderr, "ReadFileOrDie: cannot read %s\n", path.c_str());
    std::abort();
  }
  return std::move(contents).str();
}

std::string SharedCorpusPrefix(size_t bytes) {
  std::ifstream in(SharedDataDir() + "/corpus/tiny_shakespeare.txt", std::ios::binary);
  std::string text(bytes, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return text;
}

}  // namespace baq::testing
