// End-to-end local mode: `baq quantize`'s code path (JobRunner driving an
// in-process TorchBlockEngine) on the bundled OPT fixture, checking every
// output format against each other and the bit budget.
#include <cmath>
#include <filesystem>

#include "common/safetensors_checkpoint.h"
#include "common/code_packing.h"
#include "coordinator/job_runner.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/local_job.h"
#include "tests/testing/test_paths.h"
#include "worker/layer_formats.h"
#include "worker/model/tensor_convert.h"
#include "worker/torch_block_engine.h"

namespace baq {
namespace {

namespace fs = std::filesystem;

// Achieved average bits vs target (global allocation promise).
constexpr double kBitsTolerance = 1e-3;

using testing::ReadJsonFile;
using testing::RunLocalJob;

JobConfig SmallJob(const std::string& out) {
  JobConfig c = testing::ExampleFixtureJob(out);
  c.formats = {OutputFormat::kFakeQuant, OutputFormat::kPacked, OutputFormat::kGptq};
  return c;
}

TEST(LocalQuantizeTest, BaqFractionalTargetHitsBudgetAndFormatsAgree) {
  const std::string out = testing::MakeScratchDir() + "/out";
  JobConfig config = SmallJob(out);
  config.quant.target_bits = 2.5;
  absl::StatusOr<coordinator::JobSummary> s = RunLocalJob(config);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_NEAR(s->achieved_bits, 2.5, kBitsTolerance);
  EXPECT_EQ(s->allocation, "global");

  auto fake = SafetensorsCheckpoint::Open(out + "/fake-quant");
  auto packed = SafetensorsCheckpoint::Open(out + "/packed");
  auto gptq = SafetensorsCheckpoint::Open(out + "/gptq");
  ASSERT_TRUE(fake.ok() && packed.ok() && gptq.ok());
  nlohmann::json report = ReadJsonFile(out + "/packed/quant_report.json");
  ASSERT_EQ(report["layers"].size(), 36u);  // 6 blocks x 6 linear layers.
  // Every input tensor is present in fake-quant with its original shape.
  auto input = SafetensorsCheckpoint::Open(config.model_dir);
  ASSERT_TRUE(input.ok());
  EXPECT_EQ((*fake)->TensorNames(), (*input)->TensorNames());
  // packed dequantizes to exactly the fake-quant weights (after fp16 rounding).
  for (const auto& layer : report["layers"]) {
    const std::string name = layer["name"];
    absl::StatusOr<at::Tensor> w = worker::DequantizePacked(**packed, name);
    ASSERT_TRUE(w.ok()) << w.status();
    absl::StatusOr<TensorView> fq = (*fake)->Get(name + ".weight");
    ASSERT_TRUE(fq.ok());
    absl::StatusOr<at::Tensor> f = worker::CopyTensorFromView(*fq, at::kCPU, at::kHalf);
    ASSERT_TRUE(f.ok());
    EXPECT_TRUE(at::equal(w->to(at::kHalf), *f)) << name;
    // gptq format: qweight exists with the projected width.
    const int bits = layer["gptq_bits"];
    absl::StatusOr<TensorInfo> qw = (*gptq)->Info(name + ".qweight");
    ASSERT_TRUE(qw.ok()) << name;
    EXPECT_EQ(qw->shape[0], static_cast<int64_t>(layer["columns"]) * bits / 32);
  }
  nlohmann::json config_json = ReadJsonFile(out + "/gptq/config.json");
  EXPECT_EQ(config_json["quantization_config"]["quant_method"], "gptq");
}

TEST(LocalQuantizeTest, GptqUniformFourBits) {
  const std::string out = testing::MakeScratchDir() + "/out";
  JobConfig config = SmallJob(out);
  config.formats = {OutputFormat::kFakeQuant};
  config.quant.method = QuantMethod::kGptq;
  config.quant.target_bits = 4;
  absl::StatusOr<coordinator::JobSummary> s = RunLocalJob(config);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->achieved_bits, 4.0);
  EXPECT_EQ(s->allocation, "uniform");
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
}

TEST(LocalQuantizeTest, LlamaFixtureBaqFractionalTargetWritesEveryFormat) {
  // GQA, RoPE, RMSNorm, SiLU-gated MLP, bf16 checkpoint; intermediate size
  // 688 (not a multiple of 32: the gptq projection must avoid 3 bits there).
  if (!testing::HaveSharedData()) GTEST_SKIP() << "no shared fixtures";
  const std::string out = testing::MakeScratchDir() + "/out";
  JobConfig config = SmallJob(out);
  config.model_dir = testing::SharedDataDir() + "/models/llama-fixture";
  config.quant.target_bits = 2.5;
  absl::StatusOr<coordinator::JobSummary> s = RunLocalJob(config);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_NEAR(s->achieved_bits, 2.5, kBitsTolerance);
  auto input = SafetensorsCheckpoint::Open(config.model_dir);
  auto fake = SafetensorsCheckpoint::Open(out + "/fake-quant");
  auto packed = SafetensorsCheckpoint::Open(out + "/packed");
  auto gptq = SafetensorsCheckpoint::Open(out + "/gptq");
  ASSERT_TRUE(input.ok() && fake.ok() && packed.ok() && gptq.ok());
  EXPECT_EQ((*fake)->TensorNames(), (*input)->TensorNames());
  nlohmann::json report = ReadJsonFile(out + "/fake-quant/quant_report.json");
  EXPECT_NEAR(report["achieved_bits"].get<double>(), 2.5, kBitsTolerance);
  ASSERT_EQ(report["layers"].size(), 42u);  // 6 blocks x 7 linear layers.
  for (const auto& layer : report["layers"]) {
    const std::string name = layer["name"];
    absl::StatusOr<TensorInfo> fq = (*fake)->Info(name + ".weight");
    ASSERT_TRUE(fq.ok()) << name;
    EXPECT_EQ(fq->dtype, DType::kBF16) << name;
    EXPECT_TRUE((*packed)->Contains(name + ".qcodes")) << name;
    absl::StatusOr<TensorInfo> qw = (*gptq)->Info(name + ".qweight");
    ASSERT_TRUE(qw.ok()) << name;
    EXPECT_EQ(qw->shape[0] * 32, static_cast<int64_t>(layer["columns"]) * layer["gptq_bits"].get<int>())
        << name;
  }
}

TEST(LocalQuantizeTest, MissingCalibrationFileFailsAndPublishesNothing) {
  const std::string dir = testing::MakeScratchDir();
  JobConfig config = SmallJob(dir + "/out");
  config.calibration.files = {dir + "/no-such-file.txt"};
  absl::StatusOr<coordinator::JobSummary> s = RunLocalJob(config);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("no-such-file.txt"), std::string::npos) << s.status();
  EXPECT_FALSE(fs::exists(dir + "/out"));
  // No temp dirs left behind either.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 0);
}

}  // namespace
}  // namespace baq
