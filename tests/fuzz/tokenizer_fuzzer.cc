// tests/fuzz/tokenizer_fuzzer.cc
//
// libFuzzer target for BpeTokenizer (see docs/fuzzing.md). The first byte
// picks what the rest is:
//   0: text for a byte-level tokenizer (Sequence[Split(Llama-3 regex,
//      Removed, invert), Digits, ByteLevel], added tokens with every flag);
//   1: text for a SentencePiece-style one (NFKC, Lowercase, Replace,
//      Metaspace, Punctuation, byte_fallback, fused unk);
//   2: a whole tokenizer.json, which must load or be refused, and if it
//      loads encode a fixed multilingual text.
// Beyond "no crash, no ASan/UBSan report": invalid UTF-8 text is
// InvalidArgument, valid text always encodes, ids are within the vocabulary.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "common/bpe_tokenizer.h"
#include "common/unicode.h"

namespace {

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "contract violated: %s: %s\n", what, detail.c_str());
  __builtin_trap();
}

// Vocabulary: the ASCII letters/digits/space/punctuation a-z as single
// characters in both alphabets, a few merges, byte tokens.
std::string Vocab(bool byte_level) {
  std::string v = "{\"<unk>\": 0, \"<s>\": 1";
  int id = 2;
  for (char c = '!'; c <= '~'; ++c) {
    if (c == '"' || c == '\\') continue;
    v += ", \"" + std::string(1, c) + "\": " + std::to_string(id++);
  }
  v += byte_level ? ", \"\\u0120\": " : ", \"\\u2581\": ";
  v += std::to_string(id++);
  v += ", \"th\": " + std::to_string(id++);
  v += ", \"the\": " + std::to_string(id++);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    v += ", \"" + std::string(name) + "\": " + std::to_string(id++);
  }
  return v + "}";
}

const baq::BpeTokenizer& Tokenizer(int which) {
  static const baq::BpeTokenizer* const kTokenizers[2] = {
      [] {
        const std::string json = R"({"model": {"type": "BPE", "vocab": )" +
                                 Vocab(true) +
                                 R"(, "merges": [["t", "h"], ["th", "e"]]},
          "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Removed", "invert": true},
            {"type": "Digits", "individual_digits": false},
            {"type": "ByteLevel", "add_prefix_space": true, "use_regex": false}]},
          "added_tokens": [
            {"id": 1, "content": "<s>", "special": true, "normalized": false, "lstrip": true},
            {"id": 999, "content": "the", "single_word": true, "normalized": true, "rstrip": true}]})";
        return new baq::BpeTokenizer(
            *baq::BpeTokenizer::FromJson(json, "byte-level"));
      }(),
      [] {
        const std::string json =
            R"({"model": {"type": "BPE", "vocab": )" + Vocab(false) +
            R"(, "merges": ["t h", "th e"], "unk_token": "<unk>",
            "byte_fallback": true, "fuse_unk": true},
          "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"},
            {"type": "Lowercase"}, {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "}]},
          "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Punctuation", "behavior": "MergedWithPrevious"},
            {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first"}]},
          "added_tokens": [{"id": 1, "content": "<s>", "special": true, "normalized": false}]})";
        return new baq::BpeTokenizer(
            *baq::BpeTokenizer::FromJson(json, "metaspace"));
      }(),
  };
  return *kTokenizers[which];
}

void CheckEncode(const baq::BpeTokenizer& tok, const std::string& text) {
  absl::StatusOr<std::vector<int32_t>> ids = tok.Encode(text);
  const bool valid = baq::FindInvalidUtf8(text) == absl::string_view::npos;
  if (!valid) {
    if (ids.ok() || ids.status().code() != absl::StatusCode::kInvalidArgument) {
      Fail("invalid UTF-8 not refused", ids.status().ToString());
    }
    return;
  }
  if (!ids.ok()) {
    // A tokenizer.json from the input may name an unk token that is missing.
    if (ids.status().code() == absl::StatusCode::kInvalidArgument) return;
    Fail("valid text not encoded", ids.status().ToString());
  }
  for (int32_t id : *ids) {
    if (id < 0 || id >= tok.vocab_size())
      Fail("id out of range", std::to_string(id));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
    case 1:
      CheckEncode(Tokenizer(data[0] % 3), rest);
      break;
    default: {
      absl::StatusOr<baq::BpeTokenizer> tok =
          baq::BpeTokenizer::FromJson(rest, "fuzz.json");
      if (!tok.ok()) {
        if (tok.status().message().empty())
          Fail("refusal without a message", "");
        return 0;
      }
      CheckEncode(
          *tok,
          "Hello <s> w\u00f6rld 123 \u4e2d\u6587 e\u0301 \U0001F600\n\t x");
    }
  }
  return 0;
}
