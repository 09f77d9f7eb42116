#include "common/text_dataset.h"

#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace baq {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// Produced by tools/testdata/make_text_dataset_expectations.py (HF tokenizers
// + CPython random, as the GPTQ reference code).
constexpr int64_t kGoldenFileTokens[] = {877340, 338465, 284361};
constexpr int64_t kGoldenTotal = 1500166;
constexpr int64_t kGoldenStarts[] = {
    807917,  882002,  84901,   542987,  1072220, 1019064, 849208,  636092,  999496,  750883,
    1223440, 458107,  1058405, 292078,  591056,  293068,  198874,  1296813, 525349,  1116866,
    1478853, 1262280, 308200,  650426,  207121,  154649,  1434418, 692473,  990155,  1174014,
    211185,  741954,  910524,  663112,  1281122, 1343065, 428820,  1158726, 1000362, 928395,
    1093357, 546291,  130609,  1150705, 29447,   195605,  836393,  1489509, 1401218, 1311277,
    2396,    1283241, 1035107, 698635,  511518,  682002,  1475645, 132087,  400696,  1190156,
    464946,  500413,  298832,  1138732, 939460,  191293,  168707,  671203,  1065228, 1026108,
    228710,  632179,  1156091, 610461,  1481766, 261747,  1148066, 697828,  1133056, 426145,
    1264971, 1147624, 1232322, 603261,  933209,  192166,  1250504, 807196,  664895,  1207227,
    507735,  608865,  385600,  397182,  391600,  69148,   1285078, 1377114, 545377,  999357,
    144882,  188375,  1423387, 273100,  313629,  81037,   168292,  1466586, 1133720, 1433400,
    820607,  1479086, 1100111, 578046,  1094273, 493882,  451309,  1424961, 1236902, 879594,
    1215708, 577158,  944899,  1033173, 1384634, 1344687, 1468479, 749454};
constexpr char kGoldenWindowsFnv1a64[] = "104e47c919f664ad";

uint64_t Fnv1a64(absl::Span<const int32_t> ids) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (int32_t id : ids) {
    for (int k = 0; k < 4; ++k) {
      h ^= (static_cast<uint32_t>(id) >> (8 * k)) & 0xFF;
      h *= 0x100000001B3ULL;
    }
  }
  return h;
}

class TextDatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::HaveSharedData()) GTEST_SKIP() << "no shared data";
    absl::StatusOr<BpeTokenizer> tok =
        BpeTokenizer::Load(testing::SharedDataDir() + "/models/opt-fixture/tokenizer.json");
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_.emplace(*std::move(tok));
    dir_ = testing::MakeScratchDir();
  }

  std::string Write(const std::string& name, const std::string& contents) {
    const std::string path = dir_ + "/" + name;
    testing::WriteFileOrDie(path, contents);
    return path;
  }

  std::optional<BpeTokenizer> tokenizer_;
  std::string dir_;
};

TEST_F(TextDatasetTest, GoldenCalibrationMatchesReferenceDraw) {
  const std::vector<std::string> files = GoldenCalibrationFiles(testing::SharedDataDir());
  absl::StatusOr<TokenizedCorpus> corpus = TokenizeFiles(*tokenizer_, files);
  ASSERT_TRUE(corpus.ok()) << corpus.status();
  ASSERT_EQ(corpus->files.size(), 3u);
  EXPECT_THAT(corpus->files[0].first, HasSubstr("war_and_peace.txt"));
  EXPECT_THAT(corpus->files[2].first, HasSubstr("wikitext-2/valid.txt"));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(corpus->files[i].second, kGoldenFileTokens[i]);
  EXPECT_EQ(static_cast<int64_t>(corpus->ids.size()), kGoldenTotal);

  absl::StatusOr<TokenWindows> golden =
      LoadGoldenCalibrationSet(*tokenizer_, testing::SharedDataDir());
  ASSERT_TRUE(golden.ok()) << golden.status();
  EXPECT_EQ(golden->num_windows(), 128);
  EXPECT_EQ(golden->window_tokens, 2048);
  EXPECT_THAT(golden->starts, ElementsAreArray(kGoldenStarts));
  EXPECT_EQ(absl::StrFormat("%016x", Fnv1a64(golden->ids)), kGoldenWindowsFnv1a64);
  // Window 5 is ids[start, start + 2048).
  const absl::Span<const int32_t> w = golden->window(5);
  ASSERT_EQ(w.size(), 2048u);
  EXPECT_TRUE(std::equal(w.begin(), w.end(), corpus->ids.begin() + kGoldenStarts[5]));
}

TEST_F(TextDatasetTest, EvaluationWindowsDropTheTail) {
  absl::StatusOr<TokenWindows> eval =
      LoadEvaluationSet(*tokenizer_, testing::SharedDataDir() + "/wikitext-2/test.txt",
                        /*window_tokens=*/2048);
  ASSERT_TRUE(eval.ok()) << eval.status();
  EXPECT_EQ(eval->num_windows(),
            332485 / 2048);  // 162 windows; 837 tokens dropped.
  EXPECT_EQ(eval->starts[1], 2048);
  EXPECT_EQ(eval->window(0)[0],
            416);  // First WikiText-2 test id (HF tokenizers).

  const std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6, 7};
  absl::StatusOr<TokenWindows> small = EvaluationWindows(ids, 3);
  ASSERT_TRUE(small.ok());
  EXPECT_THAT(small->starts, ElementsAre(0, 3));
  EXPECT_THAT(small->ids, ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_EQ(EvaluationWindows(ids, 8).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EvaluationWindows(ids, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TextDatasetTest, FilesAreEncodedSeparately) {
  // "ab" + "cd" in one string would be one word; separately they are two.
  const std::string a = Write("a.txt", "hello");
  const std::string b = Write("b.txt", " world\n");
  absl::StatusOr<TokenizedCorpus> corpus = TokenizeFiles(*tokenizer_, {a, b});
  ASSERT_TRUE(corpus.ok()) << corpus.status();
  std::vector<int32_t> want = *tokenizer_->Encode("hello");
  const std::vector<int32_t> second = *tokenizer_->Encode(" world\n");
  want.insert(want.end(), second.begin(), second.end());
  EXPECT_EQ(corpus->ids, want);
  EXPECT_EQ(corpus->Describe(), absl::StrFormat("%s (%d tokens), %s (%d tokens)", a,
                                                want.size() - second.size(), b, second.size()));
}

TEST_F(TextDatasetTest, SamplersAreDeterministicAndInRange) {
  for (WindowSampler sampler : {WindowSampler::kPython, WindowSampler::kMt19937_64}) {
    CalibrationOptions options;
    options.num_windows = 1000;
    options.window_tokens = 10;
    options.seed = 42;
    options.sampler = sampler;
    absl::StatusOr<std::vector<int64_t>> a = SampleWindowStarts(25, options);
    absl::StatusOr<std::vector<int64_t>> b = SampleWindowStarts(25, options);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(*a, *b);
    std::vector<int> seen(15, 0);
    for (int64_t s : *a) {
      ASSERT_GE(s, 0);
      ASSERT_LE(s, 14);  // randint(0, 25 - 10 - 1).
      ++seen[s];
    }
    for (int count : seen) EXPECT_GT(count, 20);
  }
  CalibrationOptions options;
  options.num_windows = 3;
  options.window_tokens = 4;
  EXPECT_THAT(*SampleWindowStarts(5, options), ElementsAre(0, 0, 0));  // One possible start.
}

TEST_F(TextDatasetTest, TooLittleDataNamesFilesAndCounts) {
  const std::string a = Write("small_a.txt", "one two three");
  const std::string b = Write("small_b.txt", "four");
  CalibrationOptions options;
  options.window_tokens = 2048;
  absl::StatusOr<TokenWindows> windows = LoadCalibrationSet(*tokenizer_, {a, b}, options);
  EXPECT_EQ(windows.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(windows.status().message());
  EXPECT_THAT(message, HasSubstr("small_a.txt (3 tokens)"));
  EXPECT_THAT(message,
              HasSubstr("small_b.txt (2 tokens)"));  // "four" = "f" "our".
  EXPECT_THAT(message, HasSubstr("2048"));

  // total == window_tokens is still too little (randint(0, -1) raises).
  options.window_tokens = 5;
  EXPECT_EQ(LoadCalibrationSet(*tokenizer_, {a, b}, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.window_tokens = 4;
  EXPECT_TRUE(LoadCalibrationSet(*tokenizer_, {a, b}, options).ok());
  options.num_windows = 0;
  EXPECT_EQ(LoadCalibrationSet(*tokenizer_, {a, b}, options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(TextDatasetTest, BadFilesAreNamed) {
  absl::StatusOr<std::string> missing = ReadTextFile(dir_ + "/missing.txt");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("missing.txt"));

  absl::StatusOr<std::string> empty = ReadTextFile(Write("empty.txt", ""));
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("empty.txt"));

  const std::string latin1 = Write("latin1.txt", "caf\xE9 au lait");
  absl::StatusOr<TokenizedCorpus> corpus =
      TokenizeFiles(*tokenizer_, {Write("ok.txt", "fine"), latin1});
  EXPECT_EQ(corpus.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(corpus.status().message()), HasSubstr("latin1.txt"));
  EXPECT_THAT(std::string(corpus.status().message()), HasSubstr("byte 3"));

  EXPECT_EQ(TokenizeFiles(*tokenizer_, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baq
