// TorchBlockEngine with JobConfig::forward_dtype: `auto` resolves to float32
// on the CPU (the CPU outputs stay byte-identical to an explicit float32
// forward), the checkpoint's dtype on CUDA; a half-precision forward runs a
// whole sequential job on both fixtures (OPT float16, LLaMA bfloat16) and its
// quantization stays close to the float32 forward's.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "common/block_engine.h"
#include "tests/testing/test_paths.h"
#include "worker/engine/block_compute.h"
#include "worker/torch_block_engine.h"

namespace baq::worker {
namespace {

// A half-precision forward changes each layer's inputs by about one rounding
// of the forward dtype, so its Hessians move a little; GPTQ's error feedback
// then carries any flipped code along its row, so many codes differ (CPU,
// 16 x 64 calibration, GPTQ 4 bits: 13 % of the LLaMA weights with bf16, 17 %
// of the OPT ones with fp16, 71 % with bf16, whose forward also rounds the
// fp16 weights), while the total proxy loss tr((W-Q) H (W-Q)^T) moved by
// 0.07-0.14 % (docs/performance.md "Forward dtype"). The bound is on the loss.
constexpr double kTotalProxyLossRtol = 0.01;

struct JobRun {
  std::vector<std::string> tensors;  // "name:bytes", every output tensor in order.
  std::vector<at::Tensor> weights;   // The fake-quant weight of every layer, float32.
  double total_proxy_loss = 0;
};

JobConfig Job(const std::string& model, ForwardDtype forward_dtype) {
  JobConfig c;
  c.model_dir = ::baq::testing::SharedDataDir() + "/models/" + model;
  c.output_dir = ::baq::testing::MakeScratchDir() + "/unused";
  c.calibration.files = {::baq::testing::SourceDir() + "/examples/calibration.txt"};
  c.calibration.num_samples = 16;  // Two forward chunks.
  c.calibration.seqlen = 64;
  c.formats = {OutputFormat::kFakeQuant};
  c.quant.method = QuantMethod::kGptq;
  c.quant.target_bits = 4;
  c.forward_dtype = forward_dtype;
  return c;
}

JobRun RunJob(const JobConfig& config) {
  JobRun run;
  auto engine = MakeTorchBlockEngine(EngineOptions{});
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return run;
  BlockEngine& e = **engine;
  const absl::Status started = e.Start(config);
  EXPECT_TRUE(started.ok()) << started;
  if (!started.ok()) return run;
  for (int64_t b = 0; b < e.num_blocks(); ++b) {
    absl::StatusOr<BlockMeasurement> m = e.Measure(b);
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok()) return run;
    std::vector<LayerAllocation> alloc;
    for (const LayerMeasurement& l : m->layers) alloc.push_back({l.name, {}, 0});
    absl::StatusOr<BlockOutput> out = e.Quantize(b, alloc);
    EXPECT_TRUE(out.ok()) << out.status();
    if (!out.ok()) return run;
    for (const TensorBytes& t : out->tensors) {
      run.tensors.push_back(t.name + ":" + t.bytes);
      const at::ScalarType type = t.dtype == DType::kBF16  ? at::kBFloat16
                                  : t.dtype == DType::kF16 ? at::kHalf
                                                           : at::kFloat;
      std::string bytes = t.bytes;
      run.weights.push_back(at::from_blob(bytes.data(), t.shape, at::TensorOptions().dtype(type))
                                .to(at::kFloat, /*non_blocking=*/false, /*copy=*/true));
    }
    for (const LayerReport& r : out->layers) run.total_proxy_loss += r.proxy_loss;
  }
  e.Reset();
  return run;
}

TEST(ResolveForwardDtypeTest, AutoIsTheCheckpointDtypeOnCudaAndFloat32OnCpu) {
  const at::Device cpu(at::kCPU), cuda(at::kCUDA, 0);
  EXPECT_EQ(ResolveForwardDtype(ForwardDtype::kAuto, DType::kBF16, cpu), at::kFloat);
  EXPECT_EQ(ResolveForwardDtype(ForwardDtype::kAuto, DType::kF16, cpu), at::kFloat);
  EXPECT_EQ(ResolveForwardDtype(ForwardDtype::kAuto, DType::kBF16, cuda), at::kBFloat16);
  EXPECT_EQ(ResolveForwardDtype(ForwardDtype::kAuto, DType::kF16, cuda), at::kHalf);
  EXPECT_EQ(ResolveForwardDtype(ForwardDtype::kAuto, DType::kF32, cuda), at::kFloat);
  EXPECT_EQ(ResolveForwardDtype(ForwardDtype::kFloat32, DType::kBF16, cuda), at::kFloat);
  EXPECT_EQ(ResolveForwardDtype(ForwardDtype::kBFloat16, DType::kF32, cpu), at::kBFloat16);
  EXPECT_EQ(ResolveForwardDtype(ForwardDtype::kFloat16, DType::kBF16, cpu), at::kHalf);
}

class ForwardDtypeTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (!::baq::testing::HaveSharedData()) GTEST_SKIP() << "no shared data";
  }
};

TEST_P(ForwardDtypeTest, AutoOnCpuIsByteIdenticalToFloat32) {
  const JobRun automatic = RunJob(Job(GetParam(), ForwardDtype::kAuto));
  const JobRun float32 = RunJob(Job(GetParam(), ForwardDtype::kFloat32));
  ASSERT_FALSE(automatic.tensors.empty());
  EXPECT_TRUE(automatic.tensors == float32.tensors);
}

TEST_P(ForwardDtypeTest, HalfForwardRunsAndStaysCloseToFloat32) {
  const JobRun float32 = RunJob(Job(GetParam(), ForwardDtype::kFloat32));
  // The fixture's own dtype (what auto picks on CUDA), and bfloat16 for the
  // float16 OPT fixture too (weights rounded to bf16 for the forward).
  for (ForwardDtype half : {ForwardDtype::kBFloat16, ForwardDtype::kFloat16}) {
    if (std::string(GetParam()) == "llama-fixture" && half == ForwardDtype::kFloat16) continue;
    const JobRun run = RunJob(Job(GetParam(), half));
    ASSERT_EQ(run.weights.size(), float32.weights.size()) << ForwardDtypeName(half);
    const double rel = std::abs(run.total_proxy_loss - float32.total_proxy_loss) /
                       float32.total_proxy_loss;
    int64_t changed = 0, total = 0;
    for (size_t i = 0; i < run.weights.size(); ++i) {
      changed += run.weights[i].ne(float32.weights[i]).sum().item<int64_t>();
      total += run.weights[i].numel();
    }
    const double changed_fraction = static_cast<double>(changed) / static_cast<double>(total);
    EXPECT_LE(rel, kTotalProxyLossRtol) << ForwardDtypeName(half);
    RecordProperty(std::string(ForwardDtypeName(half)) + "_proxy_loss_rel", std::to_string(rel));
    RecordProperty(std::string(ForwardDtypeName(half)) + "_changed_weights",
                   std::to_string(changed_fraction));
    std::cout << GetParam() << " " << ForwardDtypeName(half) << ": total proxy loss "
              << run.total_proxy_loss << " vs float32 " << float32.total_proxy_loss
              << " (rel " << rel << "), changed weights " << changed_fraction << "\n";
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ForwardDtypeTest,
                         ::testing::Values("opt-fixture", "llama-fixture"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           return std::string(i.param[0] == 'o' ? "Opt" : "Llama");
                         });

}  // namespace
}  // namespace baq::worker
