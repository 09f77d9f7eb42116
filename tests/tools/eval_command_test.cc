// `baq eval` on every output format of one quantization run (OPT fixture,
// tiny calibration): the packed and gptq checkpoints load back through
// QuantizedWeightLoader (what RunEval installs), packed to exactly the
// fake-quant weights and the same perplexity; gptq to its own grid (F16
// scales, projected per-module widths), checked against the fake-quant
// weights where the widths agree.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>

#include "common/bpe_tokenizer.h"
#include "common/model_config.h"
#include "common/safetensors_checkpoint.h"
#include "common/text_dataset.h"
#include "nlohmann/json.hpp"
#include "tests/testing/local_job.h"
#include "tests/testing/test_paths.h"
#include "tools/cli/local_commands.h"
#include "worker/layer_formats.h"
#include "worker/model/perplexity.h"
#include "worker/model/tensor_convert.h"

namespace baq {
namespace {

constexpr int64_t kEvalSeqlen = 128;
constexpr int64_t kEvalWindows = 4;

// One GPTQ 4-bit run written in all three formats, shared by the tests.
class EvalCommandTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    out_ = new std::string(testing::MakeScratchDir() + "/out");
    JobConfig c = testing::ExampleFixtureJob(*out_);
    c.formats = {OutputFormat::kFakeQuant, OutputFormat::kPacked, OutputFormat::kGptq};
    c.quant.method = QuantMethod::kGptq;
    c.quant.target_bits = 4;
    c.quant.group_size = 128;
    absl::StatusOr<coordinator::JobSummary> s = testing::RunLocalJob(c);
    ASSERT_TRUE(s.ok()) << s.status();
  }
  static void TearDownTestSuite() {
    delete out_;
    out_ = nullptr;
  }

  static std::unique_ptr<SafetensorsCheckpoint> Open(const std::string& format) {
    auto ckpt = SafetensorsCheckpoint::Open(*out_ + "/" + format);
    EXPECT_TRUE(ckpt.ok()) << ckpt.status();
    return ckpt.ok() ? std::move(*ckpt) : nullptr;
  }

  static std::vector<std::string> LayerNames() {
    const nlohmann::json report = testing::ReadJsonFile(*out_ + "/packed/quant_report.json");
    std::vector<std::string> names;
    for (const auto& l : report["layers"]) names.push_back(l["name"]);
    return names;
  }

  // "<name>.weight" of a plain checkpoint as float32.
  static absl::StatusOr<at::Tensor> Weight(const SafetensorsCheckpoint& ckpt,
                                           const std::string& name) {
    absl::StatusOr<TensorView> view = ckpt.Get(name + ".weight");
    if (!view.ok()) return view.status();
    return worker::CopyTensorFromView(*view, at::kCPU, at::kFloat);
  }

  // Calls `check(name, loaded, fake)` for each of the 36 quantized layers:
  // `loaded` is the weight QuantizedWeightLoader (what RunEval installs) makes
  // of `format`'s checkpoint, `fake` the fake-quant checkpoint's, as float32.
  template <typename Check>
  static void ForEachLayerAgainstFakeQuant(const std::string& format, Check check) {
    std::unique_ptr<SafetensorsCheckpoint> fake = Open("fake-quant");
    std::unique_ptr<SafetensorsCheckpoint> quantized = Open(format);
    ASSERT_TRUE(fake && quantized);
    worker::LinearWeightLoader load = worker::QuantizedWeightLoader(*quantized, DType::kF16);
    const std::vector<std::string> names = LayerNames();
    ASSERT_EQ(names.size(), 36u);
    for (const std::string& name : names) {
      LinearLayerSpec spec;
      spec.name = name;
      absl::StatusOr<at::Tensor> w = load(spec);
      ASSERT_TRUE(w.ok()) << name << ": " << w.status();
      absl::StatusOr<at::Tensor> f = Weight(*fake, name);
      ASSERT_TRUE(f.ok()) << name << ": " << f.status();
      check(name, *w, *f);
    }
  }

  // Perplexity as RunEval computes it, on the first windows of eval.txt.
  static double Perplexity(const std::string& format) {
    const std::string dir = *out_ + "/" + format;
    absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
    EXPECT_TRUE(config.ok()) << config.status();
    std::unique_ptr<SafetensorsCheckpoint> ckpt = Open(format);
    auto tok = BpeTokenizer::Load(dir + "/tokenizer.json");
    EXPECT_TRUE(tok.ok());
    auto windows =
        LoadEvaluationSet(*tok, testing::SourceDir() + "/examples/eval.txt", kEvalSeqlen);
    EXPECT_TRUE(windows.ok());
    if (!config.ok() || !ckpt || !tok.ok() || !windows.ok()) return -1;
    windows->starts.resize(kEvalWindows);
    windows->ids.resize(kEvalWindows * kEvalSeqlen);
    worker::PerplexityOptions p;
    if (worker::HasQuantizedLayers(*ckpt)) {
      p.block.linear_weight_loader = worker::QuantizedWeightLoader(*ckpt, config->dtype);
    }
    absl::StatusOr<worker::PerplexityResult> r =
        worker::EvaluatePerplexity(*config, *ckpt, *windows, p);
    EXPECT_TRUE(r.ok()) << format << ": " << r.status();
    return r.ok() ? r->perplexity : -1;
  }

  static std::string* out_;
};

std::string* EvalCommandTest::out_ = nullptr;

TEST_F(EvalCommandTest, PackedLoadsBackToTheFakeQuantWeightsBitForBit) {
  std::unique_ptr<SafetensorsCheckpoint> fake = Open("fake-quant");
  std::unique_ptr<SafetensorsCheckpoint> packed = Open("packed");
  ASSERT_TRUE(fake && packed);
  EXPECT_FALSE(worker::HasQuantizedLayers(*fake));
  EXPECT_TRUE(worker::HasQuantizedLayers(*packed));
  ForEachLayerAgainstFakeQuant(
      "packed", [](const std::string& name, const at::Tensor& w, const at::Tensor& f) {
        EXPECT_TRUE(at::equal(w, f)) << name;
      });
}

TEST_F(EvalCommandTest, GptqLoadsBackToTheFakeQuantGridUpToItsF16Scales) {
  // A uniform 4-bit job: gptq holds the same codes and zero points as the
  // fake-quant weights, with scales rounded to F16, so each weight differs by
  // at most |s - f16(s)| * |q - z| plus two F16 roundings of the result.
  ForEachLayerAgainstFakeQuant(
      "gptq", [](const std::string& name, const at::Tensor& w, const at::Tensor& f) {
        const double scale = f.abs().max().item<double>();
        // |s - f16(s)| <= 2^-11 s and s |q - z| <= 2 max|W|, plus two F16
        // roundings of the result: <= 4 * 2^-11 * max|W|.
        EXPECT_LE((w - f).abs().max().item<double>(), scale * 4 * std::exp2(-11)) << name;
      });
}

TEST_F(EvalCommandTest, FakeQuantAndPackedGiveTheSamePerplexity) {
  const double fake = Perplexity("fake-quant");
  const double packed = Perplexity("packed");
  const double gptq = Perplexity("gptq");
  ASSERT_GT(fake, 1);
  EXPECT_EQ(fake, packed);
  // gptq: same grid up to F16 scales.
  EXPECT_NEAR(gptq / fake, 1.0, 1e-3);
  std::printf("ppl on %lld x %lld tokens: fake-quant %.6f packed %.6f gptq %.6f\n",
              static_cast<long long>(kEvalWindows), static_cast<long long>(kEvalSeqlen), fake,
              packed, gptq);
}

TEST_F(EvalCommandTest, RunEvalAcceptsEveryFormat) {
  for (const char* format : {"fake-quant", "packed", "gptq"}) {
    cli::EvalOptions o;
    o.model_dir = *out_ + "/" + format;
    o.text_file = testing::SourceDir() + "/examples/eval.txt";
    o.seqlen = kEvalSeqlen;
    o.max_windows = 2;
    EXPECT_TRUE(cli::RunEval(o).ok()) << format;
  }
}

}  // namespace
}  // namespace baq
