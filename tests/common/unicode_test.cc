#include "common/unicode.h"

#include <string>

#include "gtest/gtest.h"

namespace baq {
namespace {

TEST(UnicodeTest, FindsInvalidUtf8LikePython) {
  EXPECT_EQ(FindInvalidUtf8(""), absl::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("abc \xC3\xA9 \xE6\x97\xA5 \xF0\x9F\x98\x80"), absl::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("ab\x80"), 2u);            // Lone continuation.
  EXPECT_EQ(FindInvalidUtf8("a\xC0\xAF"), 1u);         // Overlong '/'.
  EXPECT_EQ(FindInvalidUtf8("a\xE0\x80\xAF"), 1u);     // Overlong.
  EXPECT_EQ(FindInvalidUtf8("\xED\xA0\x80"), 0u);      // Surrogate U+D800.
  EXPECT_EQ(FindInvalidUtf8("\xF4\x90\x80\x80"), 0u);  // > U+10FFFF.
  EXPECT_EQ(FindInvalidUtf8("xy\xE6\x97"), 2u);        // Truncated.
  EXPECT_EQ(FindInvalidUtf8("\xFF"), 0u);
}

TEST(UnicodeTest, DecodesAndEncodes) {
  for (char32_t cp : {0x24u, 0xE9u, 0x7FFu, 0x800u, 0x65E5u, 0xFFFFu, 0x1F600u, 0x10FFFFu}) {
    std::string s;
    AppendUtf8(cp, s);
    ASSERT_EQ(FindInvalidUtf8(s), absl::string_view::npos);
    const Utf8Char c = DecodeUtf8(s, 0);
    EXPECT_EQ(c.code_point, cp);
    EXPECT_EQ(static_cast<size_t>(c.length), s.size());
  }
}

TEST(UnicodeTest, ClassifiesLettersNumbersAndSpaces) {
  for (char32_t cp : {U'a', U'Z', U'é', U'ß', U'ſ', U'Ω', U'Ж', U'日', U'ー', U'ا', U'ª'}) {
    EXPECT_TRUE(IsUnicodeLetter(cp)) << static_cast<uint32_t>(cp);
    EXPECT_FALSE(IsUnicodeNumber(cp));
  }
  for (char32_t cp : {U'0', U'9', U'½', U'²', U'٣', U'Ⅻ', U'①'}) {
    EXPECT_TRUE(IsUnicodeNumber(cp)) << static_cast<uint32_t>(cp);
    EXPECT_FALSE(IsUnicodeLetter(cp));
  }
  for (char32_t cp : {U' ', U'\t', U'\n', U'\v', U'\f', U'\r', char32_t{0x85}, char32_t{0xA0},
                      char32_t{0x1680}, char32_t{0x2000}, char32_t{0x200A}, char32_t{0x2028},
                      char32_t{0x2029}, char32_t{0x202F}, char32_t{0x205F}, char32_t{0x3000}}) {
    EXPECT_TRUE(IsUnicodeWhitespace(cp)) << static_cast<uint32_t>(cp);
  }
  // Not \s in Oniguruma (though Python's isspace() says yes to U+001C).
  for (char32_t cp : {char32_t{0x1C}, char32_t{0x200B}, char32_t{0xFEFF}, char32_t{0x180E}}) {
    EXPECT_FALSE(IsUnicodeWhitespace(cp)) << static_cast<uint32_t>(cp);
  }
  for (char32_t cp : {U'!', U'\'', U'_', U'€', U'😀', char32_t{0x301}}) {
    EXPECT_FALSE(IsUnicodeLetter(cp) || IsUnicodeNumber(cp) || IsUnicodeWhitespace(cp))
        << static_cast<uint32_t>(cp);
  }
}

TEST(UnicodeTest, FlagsCharactersNfcMayChange) {
  EXPECT_FALSE(MayChangeUnderNfc(U'e'));
  EXPECT_FALSE(MayChangeUnderNfc(U'é'));  // Precomposed is already NFC.
  EXPECT_FALSE(MayChangeUnderNfc(U'日'));
  EXPECT_TRUE(MayChangeUnderNfc(0x301));   // Combining acute.
  EXPECT_TRUE(MayChangeUnderNfc(0x212B));  // ANGSTROM SIGN -> U+00C5.
  EXPECT_TRUE(MayChangeUnderNfc(0x1161));  // Hangul vowel jamo composes.
  EXPECT_FALSE(UnicodeVersion().empty());
}

}  // namespace
}  // namespace baq
