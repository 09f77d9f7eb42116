#include "common/tokenizer/pre_tokenizers.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baq::tokenizer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Pre-tokenizes `text` (a piece at the start of the input) with the
// pre-tokenizer of `json`. Expected values below come from tokenizers 0.23's
// pre_tokenize_str.
std::vector<std::string> PreTokenizeText(const std::string& json,
                                         const std::string& text) {
  absl::StatusOr<std::unique_ptr<PreTokenizer>> p =
      ParsePreTokenizer(Json::parse(json), "pre_tokenizer");
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return {};
  std::vector<Piece> pieces = {{text, /*at_start=*/true}};
  absl::Status s = (*p)->PreTokenize(pieces);
  EXPECT_TRUE(s.ok()) << s;
  std::vector<std::string> out;
  for (const Piece& piece : pieces) out.push_back(piece.text);
  return out;
}

std::string SplitJson(const std::string& behavior, bool invert) {
  return R"({"type": "Split", "pattern": {"Regex": "\\d|\\s"}, "behavior": ")" +
         behavior + R"(", "invert": )" + (invert ? "true" : "false") + "}";
}

constexpr char kSplitText[] = "ab12 cd,ef  3";

TEST(SplitTest, Removed) {
  EXPECT_THAT(PreTokenizeText(SplitJson("Removed", false), kSplitText),
              ElementsAre("ab", "cd,ef"));
  EXPECT_THAT(PreTokenizeText(SplitJson("Removed", true), kSplitText),
              ElementsAre("1", "2", " ", " ", " ", "3"));
}

TEST(SplitTest, Isolated) {
  EXPECT_THAT(PreTokenizeText(SplitJson("Isolated", false), kSplitText),
              ElementsAre("ab", "1", "2", " ", "cd,ef", " ", " ", "3"));
  EXPECT_THAT(PreTokenizeText(SplitJson("Isolated", true), kSplitText),
              ElementsAre("ab", "1", "2", " ", "cd,ef", " ", " ", "3"));
}

TEST(SplitTest, MergedWithPrevious) {
  EXPECT_THAT(
      PreTokenizeText(SplitJson("MergedWithPrevious", false), kSplitText),
      ElementsAre("ab1", "2", " ", "cd,ef ", " ", "3"));
  EXPECT_THAT(
      PreTokenizeText(SplitJson("MergedWithPrevious", true), kSplitText),
      ElementsAre("ab", "1", "2", " cd,ef", " ", " ", "3"));
}

TEST(SplitTest, MergedWithNext) {
  EXPECT_THAT(PreTokenizeText(SplitJson("MergedWithNext", false), kSplitText),
              ElementsAre("ab", "1", "2", " cd,ef", " ", " ", "3"));
  EXPECT_THAT(PreTokenizeText(SplitJson("MergedWithNext", true), kSplitText),
              ElementsAre("ab1", "2", " ", "cd,ef ", " ", "3"));
}

TEST(SplitTest, Contiguous) {
  EXPECT_THAT(PreTokenizeText(SplitJson("Contiguous", false), kSplitText),
              ElementsAre("ab", "12 ", "cd,ef", "  3"));
  EXPECT_THAT(PreTokenizeText(SplitJson("Contiguous", true), kSplitText),
              ElementsAre("ab", "12 ", "cd,ef", "  3"));
}

TEST(SplitTest, EmptyLookaroundMatchesAndStringPatterns) {
  EXPECT_THAT(
      PreTokenizeText(
          R"j({"type": "Split", "pattern": {"Regex": "(?<=[a-z])(?=[A-Z])"},
                      "behavior": "Isolated", "invert": false})j",
          "camelCaseText"),
      ElementsAre("camel", "Case", "Text"));
  // A String pattern is literal: "." is not a wildcard.
  EXPECT_THAT(
      PreTokenizeText(
          R"({"type": "Split", "pattern": {"String": "."}, "behavior": "Removed",
                      "invert": false})",
          "a.b..c"),
      ElementsAre("a", "b", "c"));
}

TEST(MetaspaceTest, PrependSchemesAndSplit) {
  const auto meta = [](const std::string& scheme, bool split) {
    return R"({"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": ")" +
           scheme + R"(", "split": )" + (split ? "true" : "false") + "}";
  };
  const std::string text = "Hey  friend ok";
  EXPECT_THAT(PreTokenizeText(meta("first", true), text),
              ElementsAre("\u2581Hey", "\u2581", "\u2581friend", "\u2581ok"));
  EXPECT_THAT(PreTokenizeText(meta("always", false), text),
              ElementsAre("\u2581Hey\u2581\u2581friend\u2581ok"));
  EXPECT_THAT(PreTokenizeText(meta("never", true), text),
              ElementsAre("Hey", "\u2581", "\u2581friend", "\u2581ok"));
  EXPECT_THAT(PreTokenizeText(meta("never", false), text),
              ElementsAre("Hey\u2581\u2581friend\u2581ok"));

  // "first" prepends only to a piece that starts the input.
  absl::StatusOr<std::unique_ptr<PreTokenizer>> p =
      ParsePreTokenizer(Json::parse(meta("first", false)), "pre_tokenizer");
  ASSERT_TRUE(p.ok()) << p.status();
  std::vector<Piece> pieces = {{"a b", true}, {"c d", false}};
  ASSERT_TRUE((*p)->PreTokenize(pieces).ok());
  EXPECT_EQ(pieces[0].text, "\u2581a\u2581b");
  EXPECT_EQ(pieces[1].text, "c\u2581d");
}

TEST(MetaspaceTest, AddPrefixSpaceFalseMustMatchScheme) {
  absl::StatusOr<std::unique_ptr<PreTokenizer>> p = ParsePreTokenizer(
      Json::parse(
          R"({"type": "Metaspace", "replacement": "_", "add_prefix_space": false})"),
      "pre_tokenizer");
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CharacterClassTest, DigitsPunctuationWhitespace) {
  EXPECT_THAT(
      PreTokenizeText(R"({"type": "Digits", "individual_digits": true})",
                      "a123b45"),
      ElementsAre("a", "1", "2", "3", "b", "4", "5"));
  EXPECT_THAT(
      PreTokenizeText(R"({"type": "Digits", "individual_digits": false})",
                      "a123b45"),
      ElementsAre("a", "123", "b", "45"));
  EXPECT_THAT(PreTokenizeText(R"({"type": "Punctuation"})",
                              "Hi, there!! \u00abok\u00bb$"),
              ElementsAre("Hi", ",", " there", "!", "!", " ", "\u00ab", "ok",
                          "\u00bb", "$"));
  EXPECT_THAT(
      PreTokenizeText(R"({"type": "Whitespace"})", "Hello, world_x  \u00e9!!"),
      ElementsAre("Hello", ",", "world_x", "\u00e9", "!!"));
  EXPECT_THAT(
      PreTokenizeText(R"({"type": "WhitespaceSplit"})", " Hello,\tworld  x "),
      ElementsAre("Hello,", "world", "x"));
  EXPECT_THAT(
      PreTokenizeText(R"({"type": "CharDelimiterSplit", "delimiter": "-"})",
                      "a-b--c-"),
      ElementsAre("a", "b", "c"));
}

TEST(ByteLevelTest, PrefixSpaceRegexAndByteAlphabet) {
  EXPECT_THAT(
      PreTokenizeText(
          R"({"type": "ByteLevel", "add_prefix_space": true, "use_regex": true})",
          "Hello world's \u00e9"),
      ElementsAre("\u0120Hello", "\u0120world", "'s", "\u0120\u00c3\u00a9"));
  EXPECT_THAT(
      PreTokenizeText(
          R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": false})",
          "Hello world"),
      ElementsAre("Hello\u0120world"));
  EXPECT_EQ(ByteToUnicode()[' '], U'\u0120');
  EXPECT_EQ(UnicodeToByte(U'\u0120'), ' ');
  EXPECT_EQ(UnicodeToByte(U'\u4e00'), -1);
}

TEST(SequenceTest, RunsInOrderAndReportsByteLevel) {
  absl::StatusOr<std::unique_ptr<PreTokenizer>> p =
      ParsePreTokenizer(Json::parse(R"({"type": "Sequence", "pretokenizers": [
          {"type": "Digits", "individual_digits": true},
          {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}]})"),
                        "pre_tokenizer");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE((*p)->IsByteLevel());
  std::vector<Piece> pieces = {{"in 2024", true}};
  ASSERT_TRUE((*p)->PreTokenize(pieces).ok());
  std::vector<std::string> texts;
  for (const Piece& piece : pieces) texts.push_back(piece.text);
  EXPECT_THAT(texts, ElementsAre("in", "\u0120", "2", "0", "2", "4"));
}

TEST(PreTokenizerErrorsTest, NamesTheComponent) {
  struct Case {
    const char* json;
    absl::StatusCode code;
    const char* needle;
  };
  const Case cases[] = {
      {R"({"type": "BertPreTokenizer"})", absl::StatusCode::kUnimplemented,
       "pre_tokenizer \"BertPreTokenizer\" is not supported"},
      {R"({"type": "Sequence", "pretokenizers": [{"type": "UnicodeScripts"}]})",
       absl::StatusCode::kUnimplemented,
       "pre_tokenizer \"UnicodeScripts\" is not supported"},
      {R"({"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"})",
       absl::StatusCode::kInvalidArgument, "does not compile"},
      {R"({"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Sideways"})",
       absl::StatusCode::kInvalidArgument, "Sideways"},
      {R"({"type": "CharDelimiterSplit", "delimiter": "ab"})",
       absl::StatusCode::kInvalidArgument, "one character"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::unique_ptr<PreTokenizer>> p =
        ParsePreTokenizer(Json::parse(c.json), "pre_tokenizer");
    ASSERT_FALSE(p.ok()) << c.json;
    EXPECT_EQ(p.status().code(), c.code) << p.status();
    EXPECT_THAT(std::string(p.status().message()), HasSubstr(c.needle));
  }
}

}  // namespace
}  // namespace baq::tokenizer
