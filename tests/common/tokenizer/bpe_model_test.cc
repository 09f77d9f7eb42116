#include "common/tokenizer/bpe_model.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baq::tokenizer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A tiny model: a b c ab abc, byte tokens for 'x' (0x78) and the two bytes
// of 'é' (C3 A9), and <unk>.
Json TinyModel() {
  return Json::parse(R"({"type": "BPE", "unk_token": "<unk>",
      "vocab": {"<unk>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "abc": 5,
                "<0x78>": 6, "<0xC3>": 7, "<0xA9>": 8},
      "merges": [["a", "b"], ["ab", "c"]]})");
}

std::vector<int32_t> Encode(const Json& j, const std::string& piece) {
  absl::StatusOr<BpeModel> m = BpeModel::Parse(j, "model");
  EXPECT_TRUE(m.ok()) << m.status();
  if (!m.ok()) return {};
  BpeModel::Cache cache;
  std::vector<int32_t> ids;
  absl::Status s = m->Tokenize(piece, cache, ids);
  EXPECT_TRUE(s.ok()) << s;
  return ids;
}

TEST(BpeModelTest, MergesStringsAndPairs) {
  EXPECT_THAT(Encode(TinyModel(), "abcab"), ElementsAre(5, 4));
  EXPECT_THAT(Encode(TinyModel(), "cba"), ElementsAre(3, 2, 1));
  Json strings = TinyModel();
  strings["merges"] = Json::parse(R"(["#version: 0.2", "a b", "ab c"])");
  EXPECT_THAT(Encode(strings, "abcab"), ElementsAre(5, 4));
}

TEST(BpeModelTest, ByteFallbackAndUnk) {
  Json j = TinyModel();
  // Without byte_fallback: unknown characters are <unk>, fused when fuse_unk.
  EXPECT_THAT(Encode(j, "axx\u00e9b"), ElementsAre(1, 0, 0, 0, 2));
  j["fuse_unk"] = true;
  EXPECT_THAT(Encode(j, "axx\u00e9b"), ElementsAre(1, 0, 2));
  j["byte_fallback"] = true;
  EXPECT_THAT(Encode(j, "axx\u00e9b"), ElementsAre(1, 6, 6, 7, 8, 2));
  // 'z' has no byte token: <unk> instead, and not flushed before a byte
  // fallback (as tokenizers: the pending unk waits for a vocabulary hit).
  EXPECT_THAT(Encode(j, "zx"), ElementsAre(6, 0));
  EXPECT_THAT(Encode(j, "zxa"), ElementsAre(6, 0, 1));
}

TEST(BpeModelTest, IgnoreMergesAndNoUnk) {
  Json j = TinyModel();
  j["vocab"]["ca"] = 9;
  j["ignore_merges"] = true;
  EXPECT_THAT(Encode(j, "ca"),
              ElementsAre(9));  // A whole-piece token, unmerged.
  j.erase("unk_token");
  EXPECT_THAT(Encode(j, "azb"),
              ElementsAre(4));  // "z" dropped (no unk token): a, b merge.
}

TEST(BpeModelTest, SubwordPrefixAndSuffix) {
  const Json j =
      Json::parse(R"({"type": "BPE", "continuing_subword_prefix": "##",
      "end_of_word_suffix": "</w>",
      "vocab": {"a": 0, "##b": 1, "##c</w>": 2, "a##b": 3, "ab": 4, "ab##c</w>": 5, "abc</w>": 6},
      "merges": ["a ##b", "ab ##c</w>"]})");
  // "a" "##b" "##c</w>" -> "ab" (a + b without the prefix) -> "abc</w>".
  EXPECT_THAT(Encode(j, "abc"), ElementsAre(6));
}

TEST(BpeModelTest, CachedAndUncachedAgree) {
  absl::StatusOr<BpeModel> m = BpeModel::Parse(TinyModel(), "model");
  ASSERT_TRUE(m.ok());
  BpeModel::Cache cache;
  std::vector<int32_t> ids;
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(m->Tokenize("abcab", cache, ids).ok());
  EXPECT_THAT(ids, ElementsAre(5, 4, 5, 4, 5, 4));
  std::string long_piece(300, 'a');
  ids.clear();
  ASSERT_TRUE(m->Tokenize(long_piece, cache, ids).ok());
  EXPECT_EQ(ids.size(), 300u);
}

TEST(BpeModelTest, RefusesOtherModelsAndBadMerges) {
  struct Case {
    const char* json;
    absl::StatusCode code;
    const char* needle;
  };
  const Case cases[] = {
      {R"({"type": "Unigram", "vocab": [["a", 0.0]]})",
       absl::StatusCode::kUnimplemented, "model \"Unigram\" is not supported"},
      {R"({"type": "WordPiece", "vocab": {"a": 0}})",
       absl::StatusCode::kUnimplemented,
       "model \"WordPiece\" is not supported"},
      {R"({"vocab": {"a": 0}})", absl::StatusCode::kUnimplemented, "not BPE"},
      {R"({"type": "BPE", "dropout": 0.1, "vocab": {}, "merges": []})",
       absl::StatusCode::kUnimplemented, "dropout"},
      {R"({"type": "BPE", "vocab": {"a": 0}, "merges": ["a a"]})",
       absl::StatusCode::kInvalidArgument, "model.merges[0]"},
      {R"({"type": "BPE", "vocab": {"a": 0}, "merges": ["a b c"]})",
       absl::StatusCode::kInvalidArgument, "model.merges[0] must be"},
      {R"({"type": "BPE", "vocab": {"a": -1}, "merges": []})",
       absl::StatusCode::kInvalidArgument, "model.vocab"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<BpeModel> m = BpeModel::Parse(Json::parse(c.json), "model");
    ASSERT_FALSE(m.ok()) << c.json;
    EXPECT_EQ(m.status().code(), c.code) << m.status();
    EXPECT_THAT(std::string(m.status().message()), HasSubstr(c.needle));
  }
}

TEST(BpeModelTest, MissingUnkTokenFailsOnlyWhenNeeded) {
  Json j = TinyModel();
  j["unk_token"] = "<nope>";
  absl::StatusOr<BpeModel> m = BpeModel::Parse(j, "model");
  ASSERT_TRUE(m.ok()) << m.status();
  BpeModel::Cache cache;
  std::vector<int32_t> ids;
  EXPECT_TRUE(m->Tokenize("ab", cache, ids).ok());
  const absl::Status s = m->Tokenize("az", cache, ids);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("<nope>"));
}

}  // namespace
}  // namespace baq::tokenizer
