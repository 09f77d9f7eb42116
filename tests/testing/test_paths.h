// tests/testing/test_paths.h
//
// Where tests find things: the team's shared fixtures (../shared/data, set at
// configure time as BAQ_SHARED_DATA_DIR), the source tree, the build tree, and
// a fresh per-test scratch directory. Thread-safe.
#ifndef BAQ_TESTS_TESTING_TEST_PATHS_H_
#define BAQ_TESTS_TESTING_TEST_PATHS_H_

#include <cstddef>
#include <string>

namespace baq::testing {

// Absolute path of the shared data dir (models/, golden/, corpus/, wikitext-2/).
std::string SharedDataDir();
// True when SharedDataDir() exists; tests that need it GTEST_SKIP otherwise.
bool HaveSharedData();
std::string SourceDir();
std::string BinaryDir();
// A new empty directory under TEST_TMPDIR or /tmp, unique per call.
std::string MakeScratchDir();
// Writes `contents` to `path` (creating parent dirs); CHECK-fails on error.
void WriteFileOrDie(const std::string& path, const std::string& contents);
// The bytes of the file at `path`; aborts, naming it, if it cannot be read.
std::string ReadFileOrDie(const std::string& path);
// The first `bytes` bytes (all of it if shorter; empty if absent) of the
// shared corpus/tiny_shakespeare.txt: a calibration text that tokenizes in
// well under a second, where the whole corpus would dominate a test.
std::string SharedCorpusPrefix(size_t bytes);

}  // namespace baq::testing

#endif  // BAQ_TESTS_TESTING_TEST_PATHS_H_
