#include "common/tokenizer/added_vocabulary.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baq::tokenizer {
namespace {

using ::testing::ElementsAre;

BpeModel Model() {
  absl::StatusOr<BpeModel> m = BpeModel::Parse(
      Json::parse(
          R"({"type": "BPE", "vocab": {"a": 0, "b": 1, "<s>": 2}, "merges": []})"),
      "model");
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(*m);
}

AddedToken Token(const std::string& content, bool normalized = false) {
  AddedToken t;
  t.content = content;
  t.normalized = normalized;
  return t;
}

// Segments as "text" or "<id>" strings, for readable expectations.
std::vector<std::string> Show(const AddedVocabulary& v, const std::string& text,
                              bool normalized = false) {
  std::vector<std::string> out;
  for (const AddedVocabulary::Segment& s : v.Split(text, normalized)) {
    out.push_back(s.id >= 0
                      ? "<" + std::to_string(s.id) + ">"
                      : "\"" + text.substr(s.start, s.end - s.start) + "\"");
  }
  return out;
}

TEST(AddedVocabularyTest, IdsFromVocabularyThenAppended) {
  const BpeModel model = Model();
  absl::StatusOr<AddedVocabulary> v = AddedVocabulary::Build(
      {Token("<s>"), Token("<x>"), Token("<y>"), Token("<x>")}, model, nullptr);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->ids().at("<s>"), 2);  // In the model vocabulary: its id.
  EXPECT_EQ(v->ids().at("<x>"), 3);  // Others from the vocabulary size up.
  EXPECT_EQ(v->ids().at("<y>"), 4);
}

TEST(AddedVocabularyTest, LeftmostLongestNonOverlapping) {
  const BpeModel model = Model();
  absl::StatusOr<AddedVocabulary> v = AddedVocabulary::Build(
      {Token("<|a|>"), Token("<|a|><|b|>"), Token("|b")}, model, nullptr);
  ASSERT_TRUE(v.ok());
  EXPECT_THAT(Show(*v, "x<|a|><|b|>y<|a|>|b"),
              ElementsAre("\"x\"", "<4>", "\"y\"", "<3>", "<5>"));
}

TEST(AddedVocabularyTest, LstripRstripAbsorbWhitespace) {
  const BpeModel model = Model();
  AddedToken l = Token("<L>");
  l.lstrip = true;
  AddedToken r = Token("<R>");
  r.rstrip = true;
  absl::StatusOr<AddedVocabulary> v =
      AddedVocabulary::Build({l, r}, model, nullptr);
  ASSERT_TRUE(v.ok());
  EXPECT_THAT(Show(*v, "a  <L> b <R> \t c"),
              ElementsAre("\"a\"", "<3>", "\" b \"", "<4>", "\"c\""));
  // lstrip does not reach back into a previous match.
  EXPECT_THAT(Show(*v, "<R>  <L>"), ElementsAre("<4>", "<3>"));
}

TEST(AddedVocabularyTest, SingleWordSkipsMatchesInsideWords) {
  const BpeModel model = Model();
  AddedToken w = Token("fox");
  w.single_word = true;
  absl::StatusOr<AddedVocabulary> v =
      AddedVocabulary::Build({w}, model, nullptr);
  ASSERT_TRUE(v.ok());
  EXPECT_THAT(Show(*v, "fox foxes _fox fox!"),
              ElementsAre("<3>", "\" foxes _fox \"", "<3>", "\"!\""));
  EXPECT_THAT(Show(*v, "\u00e9fox"), ElementsAre("\"\u00e9fox\""));
}

TEST(AddedVocabularyTest, NormalizedTokensMatchNormalizedText) {
  const BpeModel model = Model();
  absl::StatusOr<std::unique_ptr<Normalizer>> lower =
      ParseNormalizer(Json::parse(R"({"type": "Lowercase"})"), "normalizer");
  ASSERT_TRUE(lower.ok());
  absl::StatusOr<AddedVocabulary> v = AddedVocabulary::Build(
      {Token("Hello", /*normalized=*/true), Token("RAW")}, model, lower->get());
  ASSERT_TRUE(v.ok());
  EXPECT_THAT(Show(*v, "hello RAW", /*normalized=*/true),
              ElementsAre("<3>", "\" RAW\""));
  EXPECT_THAT(Show(*v, "hello RAW", /*normalized=*/false),
              ElementsAre("\"hello \"", "<4>"));
}

TEST(AddedVocabularyTest, ParsesFlagsAndRejectsMalformedEntries) {
  absl::StatusOr<std::vector<AddedToken>> tokens =
      AddedVocabulary::Parse(nullptr);
  ASSERT_TRUE(tokens.ok());
  EXPECT_TRUE(tokens->empty());
  const Json good = Json::parse(
      R"([{"id": 7, "content": "<s>", "special": true, "lstrip": true}])");
  tokens = AddedVocabulary::Parse(&good);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_TRUE((*tokens)[0].lstrip);
  EXPECT_FALSE(
      (*tokens)[0].normalized);  // Special tokens default to raw matching.
  const Json bad =
      Json::parse(R"([{"id": 7, "lstrip": "yes", "content": "x"}])");
  EXPECT_EQ(AddedVocabulary::Parse(&bad).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baq::tokenizer
