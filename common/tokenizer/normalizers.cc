#include "common/tokenizer/normalizers.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "common/tokenizer/onig_regex.h"
#include "common/tokenizer/unicode_normalization.h"
#include "common/unicode.h"

namespace baq::tokenizer {
namespace {

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  absl::Status Normalize(Piece& piece) const override {
    for (const auto& part : parts_) BAQ_RETURN_IF_ERROR(part->Normalize(piece));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

// Prepend: `prepend` before any non-empty text.
class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prepend)
      : prepend_(std::move(prepend)) {}
  absl::Status Normalize(Piece& piece) const override {
    if (!piece.text.empty()) piece.text.insert(0, prepend_);
    return absl::OkStatus();
  }

 private:
  std::string prepend_;
};

// Replace: every match of the pattern (empty matches too) becomes `content`.
class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(OnigRegex regex, std::string content)
      : regex_(std::move(regex)), content_(std::move(content)) {}
  absl::Status Normalize(Piece& piece) const override {
    std::vector<OnigRegex::Match> matches;
    BAQ_RETURN_IF_ERROR(regex_.FindAll(piece.text, matches));
    if (matches.empty()) return absl::OkStatus();
    if (content_.empty() && matches[0].start == 0 && matches[0].end > 0)
      piece.at_start = false;
    std::string out;
    out.reserve(piece.text.size());
    size_t prev = 0;
    for (const OnigRegex::Match& m : matches) {
      out.append(piece.text, prev, m.start - prev);
      out += content_;
      prev = m.end;
    }
    out.append(piece.text, prev, std::string::npos);
    piece.text = std::move(out);
    return absl::OkStatus();
  }

 private:
  OnigRegex regex_;
  std::string content_;
};

class UnicodeNormalizer final : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormalizationForm form) : form_(form) {}
  absl::Status Normalize(Piece& piece) const override {
    if (form_ ==
        NormalizationForm::kNfc) {  // Quick check: most text is NFC already.
      bool stable = true;
      for (size_t pos = 0; pos < piece.text.size() && stable;) {
        const Utf8Char c = DecodeUtf8(piece.text, pos);
        stable = !MayChangeUnderNfc(c.code_point);
        pos += c.length;
      }
      if (stable) return absl::OkStatus();
    }
    piece.text = NormalizeUnicode(piece.text, form_);
    return absl::OkStatus();
  }

 private:
  NormalizationForm form_;
};

class LowercaseNormalizer final : public Normalizer {
 public:
  absl::Status Normalize(Piece& piece) const override {
    piece.text = LowercaseUnicode(piece.text);
    return absl::OkStatus();
  }
};

// Strip: White_Space characters (char::is_whitespace) at either end.
class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  absl::Status Normalize(Piece& piece) const override {
    const std::string& t = piece.text;
    size_t begin = 0;
    size_t end = t.size();
    if (left_) {
      while (begin < end) {
        const Utf8Char c = DecodeUtf8(t, begin);
        if (!IsUnicodeWhitespace(c.code_point)) break;
        begin += c.length;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin &&
               (static_cast<unsigned char>(t[start]) & 0xC0) == 0x80)
          --start;
        if (!IsUnicodeWhitespace(DecodeUtf8(t, start).code_point)) break;
        end = start;
      }
    }
    if (begin > 0) piece.at_start = false;
    piece.text = t.substr(begin, end - begin);
    return absl::OkStatus();
  }

 private:
  bool left_;
  bool right_;
};

absl::StatusOr<std::unique_ptr<Normalizer>> ParseReplace(
    const Json& j, absl::string_view path) {
  BAQ_ASSIGN_OR_RETURN(std::string pattern, JsonPattern(j, "pattern", path));
  BAQ_ASSIGN_OR_RETURN(std::string content,
                       JsonRequiredString(j, "content", path));
  BAQ_ASSIGN_OR_RETURN(
      OnigRegex regex,
      Annotate(OnigRegex::Compile(pattern), absl::StrCat(path, ".pattern")));
  return std::unique_ptr<Normalizer>(
      new ReplaceNormalizer(std::move(regex), std::move(content)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(
    const Json& j, absl::string_view path) {
  if (!j.is_object()) return JsonInvalid(path, "", "must be an object");
  const std::string type = JsonType(j);
  if (type == "Sequence") {
    const Json* list = JsonFind(j, "normalizers");
    if (list == nullptr || !list->is_array()) {
      return JsonInvalid(path, "normalizers", "must be an array");
    }
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (size_t i = 0; i < list->size(); ++i) {
      BAQ_ASSIGN_OR_RETURN(
          std::unique_ptr<Normalizer> part,
          ParseNormalizer((*list)[i],
                          absl::StrCat(path, ".normalizers[", i, "]")));
      parts.push_back(std::move(part));
    }
    return std::unique_ptr<Normalizer>(
        new SequenceNormalizer(std::move(parts)));
  }
  if (type == "Prepend") {
    BAQ_ASSIGN_OR_RETURN(std::string prepend,
                         JsonRequiredString(j, "prepend", path));
    return std::unique_ptr<Normalizer>(
        new PrependNormalizer(std::move(prepend)));
  }
  if (type == "Replace") return ParseReplace(j, path);
  if (type == "NFC")
    return std::unique_ptr<Normalizer>(
        new UnicodeNormalizer(NormalizationForm::kNfc));
  if (type == "NFD")
    return std::unique_ptr<Normalizer>(
        new UnicodeNormalizer(NormalizationForm::kNfd));
  if (type == "NFKC")
    return std::unique_ptr<Normalizer>(
        new UnicodeNormalizer(NormalizationForm::kNfkc));
  if (type == "NFKD")
    return std::unique_ptr<Normalizer>(
        new UnicodeNormalizer(NormalizationForm::kNfkd));
  if (type == "Lowercase")
    return std::unique_ptr<Normalizer>(new LowercaseNormalizer());
  if (type == "Strip") {
    BAQ_ASSIGN_OR_RETURN(bool left, JsonBool(j, "strip_left", true, path));
    BAQ_ASSIGN_OR_RETURN(bool right, JsonBool(j, "strip_right", true, path));
    return std::unique_ptr<Normalizer>(new StripNormalizer(left, right));
  }
  if (type == "StripAccents") {
    // Removes combining marks (General_Category M), as is_combining_mark.
    BAQ_ASSIGN_OR_RETURN(OnigRegex marks, OnigRegex::Compile(R"(\p{M})"));
    return std::unique_ptr<Normalizer>(
        new ReplaceNormalizer(std::move(marks), ""));
  }
  return JsonUnsupported("normalizer", type.empty() ? "(no type)" : type);
}

}  // namespace baq::tokenizer
