// Oniguruma behind common/tokenizer/onig_regex.h: Unicode classes and look-around work, and
// loading it leaves the process's POSIX regex functions to glibc (libonig.so exports
// regcomp/regexec too; linked directly it replaced glibc's for every library in the process).
#include "common/tokenizer/onig_regex.h"

#include <dlfcn.h>
#include <regex.h>

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baq::tokenizer {
namespace {

TEST(OnigRegexTest, UnicodeClassesAndLookAhead) {
  // The GPT-2 / Llama-3 style trailing-whitespace rule: \s+(?!\S).
  absl::StatusOr<OnigRegex> re = OnigRegex::Compile(R"(\p{L}+|\s+(?!\S)|\s+)");
  ASSERT_TRUE(re.ok()) << re.status();
  std::vector<OnigRegex::Match> matches;
  const std::string text = "héllo   wörld";
  ASSERT_TRUE(re->FindAll(text, matches).ok());
  std::vector<std::string> pieces;
  for (const OnigRegex::Match& m : matches) {
    pieces.push_back(text.substr(m.start, m.end - m.start));
  }
  EXPECT_THAT(pieces, ::testing::ElementsAre("héllo", "  ", " ", "wörld"));
}

TEST(OnigRegexTest, BadPatternIsInvalidArgumentNamingIt) {
  absl::StatusOr<OnigRegex> re = OnigRegex::Compile("(unclosed");
  ASSERT_FALSE(re.ok());
  EXPECT_EQ(re.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(re.status().message()), ::testing::HasSubstr("(unclosed"));
}

TEST(OnigRegexTest, PosixRegexInTheProcessStaysGlibcs) {
  ASSERT_TRUE(OnigRegex::Compile("a+").ok());  // Oniguruma is loaded now.
  Dl_info info;
  ASSERT_NE(dladdr(reinterpret_cast<void*>(&regcomp), &info), 0);
  EXPECT_THAT(std::string(info.dli_fname), ::testing::HasSubstr("libc.so"));
  regex_t posix;
  ASSERT_EQ(regcomp(&posix, "^20..-..-..T.*Z$", REG_EXTENDED | REG_NOSUB), 0);
  EXPECT_EQ(regexec(&posix, "2026-12-07T15:13:49.866227Z", 0, nullptr, 0), 0);
  regfree(&posix);
  EXPECT_THAT("2026-12-07T15:13:49Z", ::testing::MatchesRegex("20..-..-..T.*Z"));
}

}  // namespace
}  // namespace baq::tokenizer
