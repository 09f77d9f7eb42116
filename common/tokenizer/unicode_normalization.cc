#include "common/tokenizer/unicode_normalization.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "common/unicode.h"
#include "common/unicode_normalization_tables.h"

namespace baq::tokenizer {
namespace {

namespace ui = ::baq::unicode_internal;

// Hangul syllable constants (Unicode §3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161,
                   kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr char32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

uint8_t CombiningClass(char32_t cp) {
  if (cp < 0x300) return 0;
  const ui::CombiningClassRange* end =
      ui::kCombiningClasses + ui::kCombiningClassesSize;
  const ui::CombiningClassRange* it = std::lower_bound(
      ui::kCombiningClasses, end, cp,
      [](const ui::CombiningClassRange& r, char32_t c) { return r.last < c; });
  return it != end && it->first <= cp ? it->ccc : 0;
}

const ui::Decomposition* FindDecomposition(char32_t cp) {
  const ui::Decomposition* end = ui::kDecompositions + ui::kDecompositionsSize;
  const ui::Decomposition* it = std::lower_bound(
      ui::kDecompositions, end, cp,
      [](const ui::Decomposition& d, char32_t c) { return d.code_point < c; });
  return it != end && it->code_point == cp ? it : nullptr;
}

void Decompose(char32_t cp, bool compat, std::vector<char32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const ui::Decomposition* d = cp < 0xA0 ? nullptr : FindDecomposition(cp);
  if (d == nullptr || (d->compat && !compat)) {
    out.push_back(cp);
    return;
  }
  for (int i = 0; i < d->length; ++i) {
    Decompose(ui::kDecompositionData[d->offset + i], compat, out);
  }
}

std::optional<char32_t> Compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase &&
      b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 &&
      b > kTBase && b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const ui::Composition* end = ui::kCompositions + ui::kCompositionsSize;
  const ui::Composition* it = std::lower_bound(
      ui::kCompositions, end, std::make_pair(a, b),
      [](const ui::Composition& c, const std::pair<char32_t, char32_t>& k) {
        return c.first != k.first ? c.first < k.first : c.second < k.second;
      });
  if (it != end && it->first == a && it->second == b) return it->composite;
  return std::nullopt;
}

bool IsAscii(absl::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

}  // namespace

std::string NormalizeUnicode(absl::string_view text, NormalizationForm form) {
  if (IsAscii(text)) return std::string(text);
  const bool compat =
      form == NormalizationForm::kNfkc || form == NormalizationForm::kNfkd;
  const bool compose =
      form == NormalizationForm::kNfc || form == NormalizationForm::kNfkc;
  std::vector<char32_t> chars;
  chars.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const Utf8Char c = DecodeUtf8(text, pos);
    Decompose(c.code_point, compat, chars);
    pos += c.length;
  }
  // Canonical ordering: stable sort of each run of non-starters by class.
  for (size_t i = 0; i < chars.size();) {
    if (CombiningClass(chars[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < chars.size() && CombiningClass(chars[j]) != 0) ++j;
    std::stable_sort(chars.begin() + i, chars.begin() + j,
                     [](char32_t a, char32_t b) {
                       return CombiningClass(a) < CombiningClass(b);
                     });
    i = j;
  }
  if (compose) {
    std::vector<char32_t> out;
    out.reserve(chars.size());
    ptrdiff_t starter = -1;
    int last_class = 0;
    for (char32_t c : chars) {
      const int cls = CombiningClass(c);
      if (starter >= 0) {
        const bool adjacent = static_cast<size_t>(starter) + 1 == out.size();
        const bool blocked =
            !adjacent && (last_class == 0 || last_class >= cls);
        if (!blocked) {
          if (std::optional<char32_t> composite = Compose(out[starter], c)) {
            out[starter] = *composite;
            continue;
          }
        }
      }
      if (cls == 0) starter = static_cast<ptrdiff_t>(out.size());
      out.push_back(c);
      last_class = cls;
    }
    chars = std::move(out);
  }
  std::string result;
  result.reserve(text.size());
  for (char32_t c : chars) AppendUtf8(c, result);
  return result;
}

std::string LowercaseUnicode(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const unsigned char b = static_cast<unsigned char>(text[pos]);
    if (b < 0x80) {
      out.push_back(static_cast<char>(b >= 'A' && b <= 'Z' ? b + 32 : b));
      ++pos;
      continue;
    }
    const Utf8Char c = DecodeUtf8(text, pos);
    pos += c.length;
    if (c.code_point == 0x130) {  // İ -> i + COMBINING DOT ABOVE.
      out += "i\xCC\x87";
      continue;
    }
    const ui::CaseMapping* end = ui::kLowercase + ui::kLowercaseSize;
    const ui::CaseMapping* it =
        std::lower_bound(ui::kLowercase, end, c.code_point,
                         [](const ui::CaseMapping& m, char32_t cp) {
                           return m.code_point < cp;
                         });
    AppendUtf8(
        it != end && it->code_point == c.code_point ? it->mapped : c.code_point,
        out);
  }
  return out;
}

}  // namespace baq::tokenizer
