#include "common/bpe_pretokenizer.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/unicode.h"

namespace baq {
namespace {

constexpr absl::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr absl::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr absl::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The classes the patterns distinguish; kOther is [^\s\p{L}\p{N}].
enum class Cls : uint8_t { kEnd, kLetter, kNumber, kSpace, kOther };

struct Ch {
  char32_t cp;
  int len;
  Cls cls;
};

Cls Classify(char32_t cp) {
  if (IsUnicodeLetter(cp)) return Cls::kLetter;
  if (IsUnicodeNumber(cp)) return Cls::kNumber;
  if (IsUnicodeWhitespace(cp)) return Cls::kSpace;
  return Cls::kOther;
}

bool IsNewline(char32_t cp) { return cp == '\r' || cp == '\n'; }

// Leftmost-first matcher of one pattern: Match(pos) returns the end (byte
// offset) of the match starting at `pos`, trying the alternatives in order
// as a backtracking engine (Oniguruma) does.
class Matcher {
 public:
  explicit Matcher(absl::string_view text) : text_(text) {}

  Ch At(size_t pos) const {
    if (pos >= text_.size()) return {0, 0, Cls::kEnd};
    const unsigned char b = static_cast<unsigned char>(text_[pos]);
    if (b < 0x80) return {b, 1, kAsciiClass[b]};
    const Utf8Char u = DecodeUtf8(text_, pos);
    return {u.code_point, u.length, Classify(u.code_point)};
  }

  size_t SkipRun(size_t pos, Cls cls) const {
    for (Ch c = At(pos); c.cls == cls; c = At(pos)) pos += c.len;
    return pos;
  }

  // 's|'t|'re|'ve|'m|'ll|'d, optionally case-insensitive; 0 if no match.
  size_t Contraction(size_t pos, bool ignore_case) const {
    const auto fold = [ignore_case](char32_t cp) -> char32_t {
      if (!ignore_case) return cp;
      if (cp == 0x17F) return 's';  // LATIN SMALL LETTER LONG S folds to s.
      return cp < 0x80 && cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    };
    const Ch c1 = At(pos + 1);
    const char32_t a = fold(c1.cp);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return pos + 1 + c1.len;
    const Ch c2 = At(pos + 1 + c1.len);
    const char32_t b = fold(c2.cp);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
      return pos + 1 + c1.len + c2.len;
    }
    return 0;
  }

  // \s+(?!\S)|\s+ at a whitespace character: the run, less its last
  // character when a non-space follows and the run is longer than one.
  size_t WhitespaceTail(size_t pos) const {
    size_t last = pos;
    size_t end = pos;
    for (Ch c = At(end); c.cls == Cls::kSpace; c = At(end)) {
      last = end;
      end += c.len;
    }
    if (end == text_.size() || last == pos) return end;
    return last;
  }

  size_t MatchGpt2(size_t pos) const {
    const Ch c = At(pos);
    if (c.cp == '\'') {
      if (const size_t e = Contraction(pos, /*ignore_case=*/false)) return e;
    }
    if (c.cp == ' ') {
      const Ch d = At(pos + 1);
      if (d.cls == Cls::kLetter || d.cls == Cls::kNumber || d.cls == Cls::kOther) {
        return SkipRun(pos + 1, d.cls);
      }
    }
    if (c.cls != Cls::kSpace) return SkipRun(pos, c.cls);
    return WhitespaceTail(pos);
  }

  size_t MatchLlama3(size_t pos, int max_digits) const {
    const Ch c = At(pos);
    if (c.cp == '\'') {
      if (const size_t e = Contraction(pos, /*ignore_case=*/true)) return e;
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c.cls == Cls::kLetter) return SkipRun(pos, Cls::kLetter);
    if (c.cls != Cls::kNumber && !IsNewline(c.cp) && At(pos + c.len).cls == Cls::kLetter) {
      return SkipRun(pos + c.len, Cls::kLetter);
    }
    // \p{N}{1,max_digits}
    if (c.cls == Cls::kNumber) {
      size_t end = pos;
      for (int k = 0; k < max_digits; ++k) {
        const Ch d = At(end);
        if (d.cls != Cls::kNumber) break;
        end += d.len;
      }
      return end;
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    const size_t start = (c.cp == ' ' && At(pos + 1).cls == Cls::kOther) ? pos + 1 : pos;
    if (At(start).cls == Cls::kOther) {
      size_t end = SkipRun(start, Cls::kOther);
      while (end < text_.size() && IsNewline(static_cast<unsigned char>(text_[end]))) ++end;
      return end;
    }
    // `\s*[\r\n]+`: through the last newline of the whitespace run.
    size_t after_newline = 0;
    size_t end = pos;
    for (Ch d = At(end); d.cls == Cls::kSpace; d = At(end)) {
      end += d.len;
      if (IsNewline(d.cp)) after_newline = end;
    }
    if (after_newline != 0) return after_newline;
    return WhitespaceTail(pos);
  }

 private:
  static const std::array<Cls, 128> kAsciiClass;
  absl::string_view text_;
};

const std::array<Cls, 128> Matcher::kAsciiClass = [] {
  std::array<Cls, 128> table{};
  for (char32_t cp = 0; cp < 128; ++cp) table[cp] = Classify(cp);
  return table;
}();

}  // namespace

absl::string_view SplitPatternRegex(SplitPattern pattern) {
  switch (pattern) {
    case SplitPattern::kGpt2:
      return kGpt2Regex;
    case SplitPattern::kLlama3:
      return kLlama3Regex;
    case SplitPattern::kQwen2:
      return kQwen2Regex;
  }
  return "";
}

absl::StatusOr<SplitPattern> SplitPatternFromRegex(absl::string_view regex) {
  for (SplitPattern p : {SplitPattern::kGpt2, SplitPattern::kLlama3, SplitPattern::kQwen2}) {
    if (regex == SplitPatternRegex(p)) return p;
  }
  return absl::UnimplementedError(
      absl::StrCat("unsupported pre-tokenizer split regex \"", regex,
                   "\" (supported: the GPT-2, Llama 3 and Qwen2 byte-level patterns)"));
}

void SplitByPattern(SplitPattern pattern, absl::string_view text,
                    std::vector<absl::string_view>& pieces) {
  const Matcher m(text);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end;
    switch (pattern) {
      case SplitPattern::kGpt2:
        end = m.MatchGpt2(pos);
        break;
      case SplitPattern::kLlama3:
        end = m.MatchLlama3(pos, 3);
        break;
      case SplitPattern::kQwen2:
        end = m.MatchLlama3(pos, 1);
        break;
      default:
        end = text.size();
    }
    pieces.push_back(text.substr(pos, end - pos));
    pos = end;
  }
}

const std::array<char32_t, 256>& ByteToUnicode() {
  // GPT-2 encoder.py: printable Latin-1 bytes map to themselves, the other
  // 68 bytes to U+0100 onwards, in byte order.
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      t[b] = printable ? static_cast<char32_t>(b) : next++;
    }
    return t;
  }();
  return table;
}

int UnicodeToByte(char32_t code_point) {
  static const std::array<int16_t, 324> inverse = [] {
    std::array<int16_t, 324> inv;
    inv.fill(-1);
    for (int b = 0; b < 256; ++b) inv[ByteToUnicode()[b]] = static_cast<int16_t>(b);
    return inv;
  }();
  return code_point < inverse.size() ? inverse[code_point] : -1;
}

}  // namespace baq
