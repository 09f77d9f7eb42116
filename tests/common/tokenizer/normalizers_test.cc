#include "common/tokenizer/normalizers.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baq::tokenizer {
namespace {

using ::testing::HasSubstr;

// Expected values from tokenizers 0.23's normalize_str.
std::string NormalizeText(const std::string& json, const std::string& text,
                          bool* at_start = nullptr) {
  absl::StatusOr<std::unique_ptr<Normalizer>> n =
      ParseNormalizer(Json::parse(json), "normalizer");
  EXPECT_TRUE(n.ok()) << n.status();
  if (!n.ok()) return "";
  Piece p{text, true};
  absl::Status s = (*n)->Normalize(p);
  EXPECT_TRUE(s.ok()) << s;
  if (at_start != nullptr) *at_start = p.at_start;
  return p.text;
}

TEST(NormalizersTest, Llama2SequenceOfPrependAndReplace) {
  const std::string llama2 = R"({"type": "Sequence", "normalizers": [
      {"type": "Prepend", "prepend": "\u2581"},
      {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]})";
  EXPECT_EQ(NormalizeText(llama2, "Hello  world"),
            "\u2581Hello\u2581\u2581world");
  EXPECT_EQ(NormalizeText(llama2, ""), "");  // Prepend leaves empty text alone.
}

TEST(NormalizersTest, ReplaceRegexStringAndEmptyMatches) {
  EXPECT_EQ(
      NormalizeText(
          R"({"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "})",
          "a  b\t\nc"),
      "a b c");
  EXPECT_EQ(
      NormalizeText(
          R"({"type": "Replace", "pattern": {"String": "a.b"}, "content": "X"})",
          "a.b axb"),
      "X axb");
  EXPECT_EQ(
      NormalizeText(
          R"({"type": "Replace", "pattern": {"Regex": ""}, "content": "-"})",
          "ab"),
      "-a-b-");
  bool at_start = true;
  EXPECT_EQ(
      NormalizeText(
          R"({"type": "Replace", "pattern": {"Regex": "^x+"}, "content": ""})",
          "xxab", &at_start),
      "ab");
  EXPECT_FALSE(at_start);
}

TEST(NormalizersTest, UnicodeForms) {
  const std::string text = "Cafe\u0301 \ufb01 \u212b";
  EXPECT_EQ(NormalizeText(R"({"type": "NFC"})", text),
            "Caf\u00e9 \ufb01 \u00c5");
  EXPECT_EQ(NormalizeText(R"({"type": "NFD"})", text),
            "Cafe\u0301 \ufb01 A\u030a");
  EXPECT_EQ(NormalizeText(R"({"type": "NFKC"})", text), "Caf\u00e9 fi \u00c5");
  EXPECT_EQ(NormalizeText(R"({"type": "NFKD"})", text),
            "Cafe\u0301 fi A\u030a");
}

TEST(NormalizersTest, LowercaseStripStripAccents) {
  EXPECT_EQ(NormalizeText(R"({"type": "Lowercase"})",
                          "HeLLo \u0130STANBUL \u03a3\u0391\u03a3"),
            "hello i\u0307stanbul \u03c3\u03b1\u03c3");
  bool at_start = true;
  EXPECT_EQ(
      NormalizeText(
          R"({"type": "Strip", "strip_left": true, "strip_right": false})",
          " \t x \u3000", &at_start),
      "x \u3000");
  EXPECT_FALSE(at_start);
  EXPECT_EQ(NormalizeText(
                R"({"type": "Strip", "strip_left": true, "strip_right": true})",
                " \t x \u3000"),
            "x");
  EXPECT_EQ(
      NormalizeText(R"({"type": "Sequence", "normalizers": [{"type": "NFD"},
                                                        {"type": "StripAccents"}]})",
                    "Cr\u00e8me br\u00fbl\u00e9e"),
      "Creme brulee");
}

TEST(NormalizersTest, RefusesUnsupportedAndMalformed) {
  struct Case {
    const char* json;
    absl::StatusCode code;
    const char* needle;
  };
  const Case cases[] = {
      {R"({"type": "Precompiled", "precompiled_charsmap": ""})",
       absl::StatusCode::kUnimplemented,
       "normalizer \"Precompiled\" is not supported"},
      {R"({"type": "Sequence", "normalizers": [{"type": "BertNormalizer"}]})",
       absl::StatusCode::kUnimplemented,
       "normalizer \"BertNormalizer\" is not supported"},
      {R"({"type": "Replace", "pattern": {"Regex": "[a-"}, "content": ""})",
       absl::StatusCode::kInvalidArgument, "normalizer.pattern"},
      {R"({"type": "Replace", "pattern": {"Glob": "*"}, "content": ""})",
       absl::StatusCode::kInvalidArgument, "normalizer.pattern must be"},
      {R"({"type": "Prepend"})", absl::StatusCode::kInvalidArgument,
       "normalizer.prepend is missing"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::unique_ptr<Normalizer>> n =
        ParseNormalizer(Json::parse(c.json), "normalizer");
    ASSERT_FALSE(n.ok()) << c.json;
    EXPECT_EQ(n.status().code(), c.code) << n.status();
    EXPECT_THAT(std::string(n.status().message()), HasSubstr(c.needle));
  }
}

}  // namespace
}  // namespace baq::tokenizer
