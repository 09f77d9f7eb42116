#include "tools/cli/tokenize_command.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/test_paths.h"

namespace baq::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string TestText() {
  return testing::SourceDir() + "/tests/tools/testdata/tokenizer_test_text.txt";
}
std::string SmallTokenizer() {
  return testing::SourceDir() +
         "/tests/tools/testdata/bpe_prefix_suffix_tokenizer.json";
}

TEST(TokenizeCommandTest, PrintsCountAndIdsAsOneJsonLine) {
  TokenizeOptions o;
  o.tokenizer_file = SmallTokenizer();
  o.text_file = TestText();
  absl::StatusOr<std::string> out = TokenizeToJson(o);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, StartsWith("{\"count\": "));
  ASSERT_EQ(out->back(), '\n');
  EXPECT_EQ(out->find('\n'), out->size() - 1);  // One line.
  const nlohmann::json j = nlohmann::json::parse(*out);
  EXPECT_EQ(j["count"].get<size_t>(), j["ids"].size());
  EXPECT_GT(j["count"].get<size_t>(), 100u);
}

TEST(TokenizeCommandTest, ModelDirReadsItsTokenizerJson) {
  if (!testing::HaveSharedData()) GTEST_SKIP() << "no shared data";
  TokenizeOptions by_dir;
  by_dir.model_dir = testing::SharedDataDir() + "/models/opt-fixture";
  by_dir.text_file = TestText();
  TokenizeOptions by_file = by_dir;
  by_file.model_dir.clear();
  by_file.tokenizer_file =
      testing::SharedDataDir() + "/models/opt-fixture/tokenizer.json";
  absl::StatusOr<std::string> a = TokenizeToJson(by_dir);
  absl::StatusOr<std::string> b = TokenizeToJson(by_file);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*a, *b);
}

TEST(TokenizeCommandTest, EmptyTextGivesNoIds) {
  const std::string empty = ::testing::TempDir() + "/empty.txt";
  std::ofstream(empty).close();
  TokenizeOptions o;
  o.tokenizer_file = SmallTokenizer();
  o.text_file = empty;
  absl::StatusOr<std::string> out = TokenizeToJson(o);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "{\"count\": 0, \"ids\": []}\n");
}

TEST(TokenizeCommandTest, UsageErrorsAreTellableFromRefusedInput) {
  TokenizeOptions none;
  none.text_file = TestText();
  EXPECT_TRUE(IsTokenizeUsageError(TokenizeToJson(none).status()));
  TokenizeOptions both = none;
  both.model_dir = "m";
  both.tokenizer_file = "t";
  EXPECT_TRUE(IsTokenizeUsageError(TokenizeToJson(both).status()));
  TokenizeOptions no_text;
  no_text.tokenizer_file = SmallTokenizer();
  EXPECT_TRUE(IsTokenizeUsageError(TokenizeToJson(no_text).status()));

  TokenizeOptions missing;
  missing.tokenizer_file = "/nonexistent/tokenizer.json";
  missing.text_file = TestText();
  const absl::Status s = TokenizeToJson(missing).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(IsTokenizeUsageError(s));

  const std::string bad = ::testing::TempDir() + "/bad.txt";
  std::ofstream(bad) << "ok \xC3\x28 bad";
  TokenizeOptions invalid;
  invalid.tokenizer_file = SmallTokenizer();
  invalid.text_file = bad;
  const absl::Status t = TokenizeToJson(invalid).status();
  EXPECT_EQ(t.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(IsTokenizeUsageError(t));
  EXPECT_THAT(std::string(t.message()), HasSubstr("bad.txt"));
  EXPECT_THAT(std::string(t.message()), HasSubstr("not valid UTF-8 at byte 3"));
}

}  // namespace
}  // namespace baq::cli
