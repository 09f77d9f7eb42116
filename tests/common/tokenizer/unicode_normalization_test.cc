#include "common/tokenizer/unicode_normalization.h"

#include "gtest/gtest.h"

namespace baq::tokenizer {
namespace {

// Expected values from Python's unicodedata.normalize (the tables' source).
TEST(UnicodeNormalizationTest, HangulComposesAndDecomposesAlgorithmically) {
  const std::string jamo = "\u1100\u1161\u11a8";  // G + A + K.
  EXPECT_EQ(NormalizeUnicode(jamo, NormalizationForm::kNfc), "\uac01");
  EXPECT_EQ(NormalizeUnicode("\uac01", NormalizationForm::kNfd), jamo);
  EXPECT_EQ(NormalizeUnicode("\uac00\u11a8", NormalizationForm::kNfc),
            "\uac01");
}

TEST(UnicodeNormalizationTest, CanonicalOrderingAndBlocking) {
  // a + ring below (220) + acute (230), in either order: ordered, then the
  // acute blocked by nothing composes with nothing (no precomposed
  // a-acute-ring).
  EXPECT_EQ(NormalizeUnicode("a\u0301\u0325", NormalizationForm::kNfd),
            "a\u0325\u0301");
  EXPECT_EQ(NormalizeUnicode("a\u0301\u0325", NormalizationForm::kNfc),
            "\u1e01\u0301");
  // s + dot below + dot above composes fully in either order.
  EXPECT_EQ(NormalizeUnicode("s\u0307\u0323", NormalizationForm::kNfc),
            "\u1e69");
  // Composition exclusions and singletons: U+0958 stays decomposed, U+212B ->
  // U+00C5.
  EXPECT_EQ(NormalizeUnicode("\u0958", NormalizationForm::kNfc),
            "\u0915\u093c");
  EXPECT_EQ(NormalizeUnicode("\u212b", NormalizationForm::kNfc), "\u00c5");
}

TEST(UnicodeNormalizationTest, CompatibilityFormsOnlyForNfk) {
  EXPECT_EQ(NormalizeUnicode("\ufb01\u2460\uff21", NormalizationForm::kNfc),
            "\ufb01\u2460\uff21");
  EXPECT_EQ(NormalizeUnicode("\ufb01\u2460\uff21", NormalizationForm::kNfkc),
            "fi1A");
  EXPECT_EQ(NormalizeUnicode("\u00bd", NormalizationForm::kNfkd), "1\u20442");
  EXPECT_EQ(NormalizeUnicode("plain ascii", NormalizationForm::kNfkd),
            "plain ascii");
}

TEST(UnicodeNormalizationTest, LowercaseIsPerCharacter) {
  // No final-sigma context (Rust char::to_lowercase), dotted I to two chars.
  EXPECT_EQ(LowercaseUnicode("\u03a3\u0391\u03a3"), "\u03c3\u03b1\u03c3");
  EXPECT_EQ(LowercaseUnicode("\u0130"), "i\u0307");
  EXPECT_EQ(LowercaseUnicode("\u01c4\u01c5ABC\u00c9"), "\u01c6\u01c6abc\u00e9");
}

}  // namespace
}  // namespace baq::tokenizer
