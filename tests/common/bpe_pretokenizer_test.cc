#include "common/bpe_pretokenizer.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baq {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> Split(SplitPattern pattern, absl::string_view text) {
  std::vector<absl::string_view> pieces;
  SplitByPattern(pattern, text, pieces);
  return std::vector<std::string>(pieces.begin(), pieces.end());
}

// Expected pieces are Hugging Face tokenizers' pre_tokenize_str output.
constexpr absl::string_view kText1 = "Hello  world'S it's\n\n  x\t\ty 12345 \xC2\xBD\xC2\xB2";
constexpr absl::string_view kText2 = "I'LL go\r\n\r\n  then?!\n\nok 2024";

TEST(BpePretokenizerTest, Gpt2Pattern) {
  EXPECT_THAT(Split(SplitPattern::kGpt2, kText1),
              ElementsAre("Hello", " ", " world", "'", "S", " it", "'s", "\n\n ", " x", "\t", "\t",
                          "y", " 12345", " \xC2\xBD\xC2\xB2"));
  EXPECT_THAT(
      Split(SplitPattern::kGpt2, kText2),
      ElementsAre("I", "'", "LL", " go", "\r\n\r\n ", " then", "?!", "\n", "\n", "ok", " 2024"));
}

TEST(BpePretokenizerTest, Llama3Pattern) {
  EXPECT_THAT(Split(SplitPattern::kLlama3, kText1),
              ElementsAre("Hello", " ", " world", "'S", " it", "'s", "\n\n", " ", " x", "\t", "\ty",
                          " ", "123", "45", " ", "\xC2\xBD\xC2\xB2"));
  EXPECT_THAT(
      Split(SplitPattern::kLlama3, kText2),
      ElementsAre("I", "'LL", " go", "\r\n\r\n", " ", " then", "?!\n\n", "ok", " ", "202", "4"));
}

TEST(BpePretokenizerTest, Qwen2PatternSplitsSingleDigits) {
  EXPECT_THAT(Split(SplitPattern::kQwen2, "ok 2024 \xC2\xBD\xC2\xB2"),
              ElementsAre("ok", " ", "2", "0", "2", "4", " ", "\xC2\xBD", "\xC2\xB2"));
}

TEST(BpePretokenizerTest, PiecesCoverTheText) {
  const std::string text = "  \xF0\x9F\x98\x80 a\xCC\x81 \xE6\x97\xA5\xE6\x9C\xAC 'd'x \r\n";
  for (SplitPattern p : {SplitPattern::kGpt2, SplitPattern::kLlama3, SplitPattern::kQwen2}) {
    std::string joined;
    for (const std::string& piece : Split(p, text)) {
      EXPECT_FALSE(piece.empty());
      joined += piece;
    }
    EXPECT_EQ(joined, text);
  }
  EXPECT_THAT(Split(SplitPattern::kGpt2, ""), ::testing::IsEmpty());
}

TEST(BpePretokenizerTest, RecognizesPatternsByText) {
  for (SplitPattern p : {SplitPattern::kGpt2, SplitPattern::kLlama3, SplitPattern::kQwen2}) {
    absl::StatusOr<SplitPattern> parsed = SplitPatternFromRegex(SplitPatternRegex(p));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, p);
  }
  EXPECT_EQ(SplitPatternFromRegex("\\s+").status().code(), absl::StatusCode::kUnimplemented);
}

TEST(BpePretokenizerTest, ByteAlphabetIsGpt2s) {
  const std::array<char32_t, 256>& map = ByteToUnicode();
  EXPECT_EQ(map[' '], 0x120u);   // "Ġ"
  EXPECT_EQ(map['\n'], 0x10Au);  // "Ċ"
  EXPECT_EQ(map['a'], static_cast<char32_t>('a'));
  EXPECT_EQ(map[0xAD], 0x143u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(UnicodeToByte(map[b]), b);
  EXPECT_EQ(UnicodeToByte(' '), -1);
  EXPECT_EQ(UnicodeToByte(0x4E00), -1);
}

}  // namespace
}  // namespace baq
