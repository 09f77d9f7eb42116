#include "common/tokenizer/pre_tokenizers.h"

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "common/tokenizer/onig_regex.h"
#include "common/unicode.h"

namespace baq::tokenizer {
namespace {

// tokenizers' ByteLevel regex (pre_tokenizers/byte_level.rs).
constexpr absl::string_view kByteLevelRegex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Rust regex's Unicode \w (Alphabetic, M, Nd, Pc, Join_Control), for
// Whitespace's `\w+|[^\w\s]+` (that one runs on the regex crate, not onig).
constexpr absl::string_view kRustWord =
    R"(\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control})";
// char::is_ascii_punctuation || unicode_categories' is_punctuation (P*).
constexpr absl::string_view kPunctuation =
    R"([\p{P}\x21-\x2F\x3A-\x40\x5B-\x60\x7B-\x7E])";

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(
      std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  absl::Status PreTokenize(std::vector<Piece>& pieces) const override {
    for (const auto& part : parts_)
      BAQ_RETURN_IF_ERROR(part->PreTokenize(pieces));
    return absl::OkStatus();
  }
  bool IsByteLevel() const override {
    for (const auto& part : parts_) {
      if (part->IsByteLevel()) return true;
    }
    return false;
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

// Split, and every pre-tokenizer that is a split by a pattern.
class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(OnigRegex regex, SplitBehavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  absl::Status PreTokenize(std::vector<Piece>& pieces) const override {
    return SplitPieces(regex_, behavior_, invert_, pieces);
  }

 private:
  OnigRegex regex_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::optional<OnigRegex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {
    for (int b = 0; b < 256; ++b) {
      std::string utf8;
      AppendUtf8(ByteToUnicode()[b],
                 utf8);  // 1 or 2 bytes: code points < U+0144.
      byte_chars_[b].length = static_cast<int>(utf8.size());
      for (size_t k = 0; k < utf8.size(); ++k)
        byte_chars_[b].bytes[k] = utf8[k];
    }
  }
  absl::Status PreTokenize(std::vector<Piece>& pieces) const override {
    if (add_prefix_space_) {
      for (Piece& p : pieces) {
        if (p.text[0] != ' ') p.text.insert(0, " ");
      }
    }
    if (regex_.has_value()) {
      BAQ_RETURN_IF_ERROR(
          SplitPieces(*regex_, SplitBehavior::kIsolated, false, pieces));
    }
    std::string mapped;
    for (Piece& p : pieces) {
      mapped.resize(2 *
                    p.text.size());  // Every byte maps to 1 or 2 UTF-8 bytes.
      char* out = mapped.data();
      for (char c : p.text) {
        const ByteChar& b = byte_chars_[static_cast<unsigned char>(c)];
        out[0] = b.bytes[0];
        out[1] = b.bytes[1];
        out += b.length;
      }
      mapped.resize(out - mapped.data());
      p.text.swap(mapped);
    }
    return absl::OkStatus();
  }
  bool IsByteLevel() const override { return true; }

 private:
  bool add_prefix_space_;
  struct ByteChar {
    char bytes[2] = {0, 0};
    int length = 0;
  };
  std::optional<OnigRegex> regex_;
  std::array<ByteChar, 256> byte_chars_;
};

enum class PrependScheme { kFirst, kAlways, kNever };

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme,
                        bool split, OnigRegex replacement_regex)
      : replacement_(std::move(replacement)),
        scheme_(scheme),
        split_(split),
        replacement_regex_(std::move(replacement_regex)) {}
  absl::Status PreTokenize(std::vector<Piece>& pieces) const override {
    std::string out;
    for (Piece& p : pieces) {
      out.clear();
      for (char c : p.text) {
        if (c == ' ') {
          out += replacement_;
        } else {
          out.push_back(c);
        }
      }
      const bool prepend = scheme_ == PrependScheme::kAlways ||
                           (scheme_ == PrependScheme::kFirst && p.at_start);
      if (prepend && !absl::StartsWith(out, replacement_))
        out.insert(0, replacement_);
      p.text.swap(out);
    }
    if (!split_) return absl::OkStatus();
    return SplitPieces(replacement_regex_, SplitBehavior::kMergedWithNext,
                       false, pieces);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
  OnigRegex replacement_regex_;
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> MakeSplit(
    absl::string_view pattern, SplitBehavior behavior, bool invert,
    absl::string_view path) {
  BAQ_ASSIGN_OR_RETURN(OnigRegex regex,
                       Annotate(OnigRegex::Compile(pattern), path));
  return std::unique_ptr<PreTokenizer>(
      new SplitPreTokenizer(std::move(regex), behavior, invert));
}

absl::StatusOr<SplitBehavior> Behavior(const Json& j, const char* fallback,
                                       absl::string_view path) {
  BAQ_ASSIGN_OR_RETURN(std::string name,
                       JsonString(j, "behavior", fallback, path));
  return Annotate(ParseSplitBehavior(name), absl::StrCat(path, ".behavior"));
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParseMetaspace(
    const Json& j, absl::string_view path) {
  BAQ_ASSIGN_OR_RETURN(std::string replacement,
                       JsonChar(j, "replacement", path));
  BAQ_ASSIGN_OR_RETURN(std::string scheme_name,
                       JsonString(j, "prepend_scheme", "always", path));
  PrependScheme scheme;
  if (scheme_name == "first") {
    scheme = PrependScheme::kFirst;
  } else if (scheme_name == "always") {
    scheme = PrependScheme::kAlways;
  } else if (scheme_name == "never") {
    scheme = PrependScheme::kNever;
  } else {
    return JsonInvalid(path, "prepend_scheme",
                       "must be \"first\", \"always\" or \"never\"");
  }
  // Older files say add_prefix_space; false must agree with "never".
  if (const Json* add = JsonFind(j, "add_prefix_space");
      add != nullptr && *add == false) {
    if (scheme != PrependScheme::kNever) {
      return JsonInvalid(path, "add_prefix_space",
                         "does not match declared prepend_scheme");
    }
  }
  BAQ_ASSIGN_OR_RETURN(bool split, JsonBool(j, "split", true, path));
  BAQ_ASSIGN_OR_RETURN(OnigRegex regex,
                       OnigRegex::Compile(OnigRegex::Escape(replacement)));
  return std::unique_ptr<PreTokenizer>(new MetaspacePreTokenizer(
      std::move(replacement), scheme, split, std::move(regex)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(
    const Json& j, absl::string_view path) {
  if (!j.is_object()) return JsonInvalid(path, "", "must be an object");
  const std::string type = JsonType(j);
  if (type == "Sequence") {
    const Json* list = JsonFind(j, "pretokenizers");
    if (list == nullptr || !list->is_array()) {
      return JsonInvalid(path, "pretokenizers", "must be an array");
    }
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (size_t i = 0; i < list->size(); ++i) {
      BAQ_ASSIGN_OR_RETURN(
          std::unique_ptr<PreTokenizer> part,
          ParsePreTokenizer((*list)[i],
                            absl::StrCat(path, ".pretokenizers[", i, "]")));
      parts.push_back(std::move(part));
    }
    return std::unique_ptr<PreTokenizer>(
        new SequencePreTokenizer(std::move(parts)));
  }
  if (type == "ByteLevel") {
    BAQ_ASSIGN_OR_RETURN(bool add_prefix_space,
                         JsonBool(j, "add_prefix_space", true, path));
    BAQ_ASSIGN_OR_RETURN(bool use_regex, JsonBool(j, "use_regex", true, path));
    std::optional<OnigRegex> regex;
    if (use_regex) {
      BAQ_ASSIGN_OR_RETURN(regex, OnigRegex::Compile(kByteLevelRegex));
    }
    return std::unique_ptr<PreTokenizer>(
        new ByteLevelPreTokenizer(add_prefix_space, std::move(regex)));
  }
  if (type == "Split") {
    BAQ_ASSIGN_OR_RETURN(std::string pattern, JsonPattern(j, "pattern", path));
    BAQ_ASSIGN_OR_RETURN(SplitBehavior behavior, Behavior(j, "", path));
    BAQ_ASSIGN_OR_RETURN(bool invert, JsonBool(j, "invert", false, path));
    return MakeSplit(pattern, behavior, invert, absl::StrCat(path, ".pattern"));
  }
  if (type == "Digits") {
    BAQ_ASSIGN_OR_RETURN(bool individual,
                         JsonBool(j, "individual_digits", false, path));
    return MakeSplit(
        R"(\p{N})",
        individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous,
        /*invert=*/false, path);
  }
  if (type == "Punctuation") {
    BAQ_ASSIGN_OR_RETURN(SplitBehavior behavior, Behavior(j, "Isolated", path));
    return MakeSplit(kPunctuation, behavior, /*invert=*/false, path);
  }
  if (type == "Whitespace") {
    return MakeSplit(absl::StrCat("[", kRustWord, "]+|[^", kRustWord,
                                  R"(\p{White_Space}]+)"),
                     SplitBehavior::kRemoved, /*invert=*/true, path);
  }
  if (type == "WhitespaceSplit") {
    return MakeSplit(R"(\p{White_Space})", SplitBehavior::kRemoved,
                     /*invert=*/false, path);
  }
  if (type == "CharDelimiterSplit") {
    BAQ_ASSIGN_OR_RETURN(std::string delimiter, JsonChar(j, "delimiter", path));
    return MakeSplit(OnigRegex::Escape(delimiter), SplitBehavior::kRemoved,
                     /*invert=*/false, path);
  }
  if (type == "Metaspace") return ParseMetaspace(j, path);
  return JsonUnsupported("pre_tokenizer", type.empty() ? "(no type)" : type);
}

const std::array<char32_t, 256>& ByteToUnicode() {
  // GPT-2 encoder.py: printable Latin-1 bytes map to themselves, the other
  // 68 bytes to U+0100 onwards, in byte order.
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
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
    for (int b = 0; b < 256; ++b)
      inv[ByteToUnicode()[b]] = static_cast<int16_t>(b);
    return inv;
  }();
  return code_point < inverse.size() ? inverse[code_point] : -1;
}

}  // namespace baq::tokenizer
