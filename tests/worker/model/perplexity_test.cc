#include "worker/model/perplexity.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "common/bpe_tokenizer.h"
#include "common/text_dataset.h"
#include "nlohmann/json.hpp"
#include "tests/worker/model/model_test_util.h"

namespace baq::worker {
namespace {

// Relative tolerance of the WikiText-2 perplexity against the fixture's
// reference value (transformers on an H100 in fp16/bf16).
constexpr double kPerplexityRelTol = 0.005;

double ReferencePerplexity(const std::string& model) {
  std::ifstream in(testing::FixtureDir(model) + "/fixture_info.json");
  return nlohmann::json::parse(in).at("wikitext2_test_ppl").get<double>();
}

class WikiTextPerplexityTest : public ::testing::TestWithParam<const char*> {};

TEST_P(WikiTextPerplexityTest, MatchesReference) {
  if (!::baq::testing::HaveSharedData()) GTEST_SKIP() << "no shared data";
  // All 162 windows on 2 CPU cores take tens of minutes: opt in.
  if (std::getenv("BAQ_SLOW_TESTS") == nullptr) {
    GTEST_SKIP() << "full WikiText-2 perplexity on CPU: set BAQ_SLOW_TESTS=1 to run";
  }
  const std::string model = GetParam();
  testing::FixtureModel m = testing::OpenFixtureOrDie(model);
  auto tokenizer = BpeTokenizer::Load(testing::FixtureDir(model) + "/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  auto windows = LoadEvaluationSet(
      *tokenizer, ::baq::testing::SharedDataDir() + "/wikitext-2/test.txt", 2048);
  ASSERT_TRUE(windows.ok()) << windows.status();
  EXPECT_EQ(windows->num_windows(), 162);
  PerplexityOptions options;
  options.num_threads = 2;
  const auto start = std::chrono::steady_clock::now();
  auto result = EvaluatePerplexity(m.config, *m.ckpt, *windows, options);
  ASSERT_TRUE(result.ok()) << result.status();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double reference = ReferencePerplexity(model);
  std::printf("%s ppl %.4f reference %.4f rel %.2e in %.1f s\n", model.c_str(),
              result->perplexity, reference, result->perplexity / reference - 1, seconds);
  EXPECT_NEAR(result->perplexity, reference, kPerplexityRelTol * reference);
}

// Production setting: GPU, model dtype (fp16/bf16), several windows per Forward.
TEST_P(WikiTextPerplexityTest, CudaInModelDtypeMatchesReference) {
  if (!::baq::testing::HaveSharedData()) GTEST_SKIP() << "no shared data";
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const std::string model = GetParam();
  testing::FixtureModel m = testing::OpenFixtureOrDie(model);
  auto tokenizer = BpeTokenizer::Load(testing::FixtureDir(model) + "/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  auto windows = LoadEvaluationSet(
      *tokenizer, ::baq::testing::SharedDataDir() + "/wikitext-2/test.txt", 2048);
  ASSERT_TRUE(windows.ok()) << windows.status();
  PerplexityOptions options;
  options.block.device = at::Device(at::kCUDA, 0);
  options.block.compute_dtype = ToScalarType(m.config.dtype);
  options.batch_windows = 8;
  const auto start = std::chrono::steady_clock::now();
  auto result = EvaluatePerplexity(m.config, *m.ckpt, *windows, options);
  ASSERT_TRUE(result.ok()) << result.status();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double reference = ReferencePerplexity(model);
  std::printf("%s cuda ppl %.4f reference %.4f rel %.2e in %.1f s\n", model.c_str(),
              result->perplexity, reference, result->perplexity / reference - 1, seconds);
  EXPECT_NEAR(result->perplexity, reference, kPerplexityRelTol * reference);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, WikiTextPerplexityTest,
                         ::testing::Values("opt-fixture", "llama-fixture"));

}  // namespace
}  // namespace baq::worker
