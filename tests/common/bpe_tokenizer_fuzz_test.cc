// Random and invalid input through every tokenizer we have (the shared
// tokenizer.json files and the model fixtures, plus variants using the
// components those files do not): each input gives ids within the
// vocabulary or a clear InvalidArgument, never a crash. Fixed seeds, a few
// thousand inputs, about a second. tests/fuzz/tokenizer_fuzzer.cc is the
// coverage-guided counterpart (BAQ_BUILD_FUZZERS).
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/bpe_tokenizer.h"
#include "common/unicode.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/test_paths.h"

namespace baq {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

struct Named {
  std::string name;
  std::string json;
};

std::vector<Named> Tokenizers() {
  std::vector<Named> out;
  namespace fs = std::filesystem;
  for (const char* sub : {"tokenizers", "models"}) {
    const fs::path dir = fs::path(testing::SharedDataDir()) / sub;
    if (!fs::is_directory(dir)) continue;
    for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
      const fs::path file = e.path() / "tokenizer.json";
      if (fs::is_regular_file(file))
        out.push_back({file.string(), Read(file.string())});
    }
  }
  // Components no shared file uses, on the Llama-2 vocabulary (byte fallback:
  // every character encodes).
  for (const Named& n : std::vector<Named>(out)) {
    if (n.name.find("/llama2/") == std::string::npos) continue;
    Json j = Json::parse(n.json);
    j["normalizer"] =
        Json::parse(R"({"type": "Sequence", "normalizers": [{"type": "NFKD"},
        {"type": "StripAccents"}, {"type": "Lowercase"}, {"type": "Strip"}]})");
    j["pre_tokenizer"] = Json::parse(R"j({"type": "Sequence", "pretokenizers": [
        {"type": "Punctuation"}, {"type": "Digits", "individual_digits": true},
        {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first"},
        {"type": "Split", "pattern": {"Regex": "(?<=\\p{Ll})(?=\\p{Lu})|\\s+(?!\\S)"},
         "behavior": "MergedWithNext", "invert": false}]})j");
    j["added_tokens"].push_back(Json::parse(
        R"({"id": 32000, "content": "<|x|>", "lstrip": true, "rstrip": true,
            "single_word": true, "normalized": true, "special": false})"));
    out.push_back({"llama2 + every other component", j.dump()});
  }
  return out;
}

// A valid UTF-8 string from a pool that stresses the pipeline: ASCII
// classes, combining marks, Hangul jamo, emoji with ZWJ, special-token
// fragments, whitespace of all kinds.
std::string RandomUtf8(std::mt19937& rng) {
  static const std::vector<std::string> kPool = {"a",
                                                 "Z",
                                                 "0",
                                                 "9",
                                                 " ",
                                                 "  ",
                                                 "\t",
                                                 "\n",
                                                 "\r\n",
                                                 "'",
                                                 "'s",
                                                 "-",
                                                 ".",
                                                 "<",
                                                 ">",
                                                 "|",
                                                 "<s>",
                                                 "</s>",
                                                 "<unk>",
                                                 "<|endoftext|>",
                                                 "<|x|>",
                                                 "<0x41>",
                                                 "\u2581",
                                                 "\u0120",
                                                 "\u00e9",
                                                 "e\u0301",
                                                 "\u0301",
                                                 "\u0325\u0301",
                                                 "\u1100",
                                                 "\u1161",
                                                 "\u11a8",
                                                 "\uac00",
                                                 "\u4e2d",
                                                 "\u0627",
                                                 "\u0416",
                                                 "\u0130",
                                                 "\u03a3",
                                                 "\ufb01",
                                                 "\uff21",
                                                 "\u00bd",
                                                 "\u2460",
                                                 "\u200b",
                                                 "\u200d",
                                                 "\ufeff",
                                                 "\u00a0",
                                                 "\u3000",
                                                 "\U0001F600",
                                                 "\U0001F468\u200D\U0001F469",
                                                 "\U0001F3F3\uFE0F",
                                                 "\U0010FFFF",
                                                 "\u0958",
                                                 "\u212b"};
  std::uniform_int_distribution<size_t> pick(0, kPool.size() - 1);
  std::uniform_int_distribution<int> length(0, 40);
  std::string s;
  for (int n = length(rng); n > 0; --n) s += kPool[pick(rng)];
  return s;
}

std::string RandomBytes(std::mt19937& rng) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> length(0, 64);
  std::string s;
  for (int n = length(rng); n > 0; --n)
    s.push_back(static_cast<char>(byte(rng)));
  return s;
}

TEST(BpeTokenizerFuzzTest, RandomInputGivesIdsOrAClearError) {
  const std::vector<Named> tokenizers = Tokenizers();
  if (tokenizers.empty()) GTEST_SKIP() << "no shared tokenizers";
  std::mt19937 rng(17);
  int encoded = 0;
  int refused = 0;
  for (const Named& n : tokenizers) {
    absl::StatusOr<BpeTokenizer> tok = BpeTokenizer::FromJson(n.json, n.name);
    ASSERT_TRUE(tok.ok()) << tok.status();
    for (int i = 0; i < 400; ++i) {
      const std::string text = i % 2 == 0 ? RandomUtf8(rng) : RandomBytes(rng);
      absl::StatusOr<std::vector<int32_t>> ids = tok->Encode(text);
      if (FindInvalidUtf8(text) != absl::string_view::npos) {
        ASSERT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument)
            << n.name;
        EXPECT_THAT(std::string(ids.status().message()),
                    HasSubstr("not valid UTF-8 at byte"));
        ++refused;
        continue;
      }
      ASSERT_TRUE(ids.ok()) << n.name << ": " << ids.status();
      for (int32_t id : *ids) {
        ASSERT_TRUE(id >= 0 && id < tok->vocab_size())
            << n.name << ": id " << id;
      }
      ++encoded;
    }
  }
  EXPECT_GT(encoded, 1000);
  EXPECT_GT(refused, 500);
}

TEST(BpeTokenizerFuzzTest, MutatedTokenizerJsonLoadsOrFailsCleanly) {
  // Structural mutations of a small file's components (the one the reference
  // test trains: subword prefix and suffix, unk, Whitespace, normalizers).
  std::mt19937 rng(23);
  const Json base = Json::parse(
      Read(testing::SourceDir() +
           "/tests/tools/testdata/bpe_prefix_suffix_tokenizer.json"));
  const std::vector<Json> values = {nullptr,
                                    0,
                                    -1,
                                    "",
                                    "x",
                                    true,
                                    Json::array(),
                                    Json::object(),
                                    Json::parse(R"({"type": "Sequence"})"),
                                    Json::parse(R"({"Regex": "("})")};
  for (int i = 0; i < 300; ++i) {
    Json j = base;
    for (const char* field : {"normalizer", "pre_tokenizer", "added_tokens"}) {
      if (rng() % 2 == 0) j[field] = values[rng() % values.size()];
    }
    if (rng() % 4 == 0) j["model"]["unk_token"] = values[rng() % values.size()];
    absl::StatusOr<BpeTokenizer> tok =
        BpeTokenizer::FromJson(j.dump(), "mutated");
    if (tok.ok()) {
      EXPECT_TRUE(tok->Encode("Hello <s> world 123 \u00e9").ok() ||
                  !tok->Encode("Hello").status().message().empty());
    } else {
      EXPECT_FALSE(tok.status().message().empty());
    }
  }
}

}  // namespace
}  // namespace baq
